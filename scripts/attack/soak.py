#!/usr/bin/env python3
"""Soak (issue 14, docs/RELIABILITY.md): MINUTES at half the measured capacity against
`liveops serve` (the embedded default) on loopback, sampling memory (RSS), disk, latency and the
consumers' backlog every INTERVAL seconds. A script, not a CI test: run by scripts/soak.sh.

Capacity is measured first: THREADS senders post signed batches of BATCH events as fast as they
can for 15 s; the events accepted, over the time until every consumer group has applied them,
is the capacity (what the pipeline sustains end to end, not what the gateway takes in). The
soak then paces the same senders to half of it, with a short EVENT_RETENTION (default 11m, just over
the shortest the default settings allow: 2 x SIG_TOLERANCE_SEC + 1 s) so the per-event rows reach their plateau inside the run. Each sample line is JSON; the last line sums up: RSS and disk at the
first and last sample, the p50/p99 latency of the first and last minute, the largest backlog,
and every status seen (a 5xx fails the run).
"""
import argparse
import json
import os
import random
import re
import sys
import threading
import time

import served
from served import Served

SECRET = b"soak-secret-0123456789abcdef-0123456789"


def post(base, path, body):
    status, raw = served.call(base, "POST", path, SECRET, body)
    return status, json.loads(raw) if 200 <= status < 300 else None


def get(base, path):
    status, raw = served.call(base, "GET", path, timeout=10)
    return status, raw.decode()


class Load:
    """Senders of signed batches; `rate` events/s in all (None: as fast as they can)."""

    def __init__(self, base, threads, batch, players):
        self.base, self.threads, self.batch, self.players = base, threads, batch, players
        self.lock = threading.Lock()
        self.accepted = 0
        self.latencies = []
        self.statuses = {}
        self.rate = None
        self.stop = threading.Event()
        self.seq = 0

    def run(self, seconds):
        self.stop.clear()
        ts = [threading.Thread(target=self.sender, args=(i,)) for i in range(self.threads)]
        for t in ts:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in ts:
            t.join()

    def sender(self, i):
        rng = random.Random(i)
        while not self.stop.is_set():
            started = time.time()
            with self.lock:
                self.seq += 1
                seq = self.seq
            events = []
            for j in range(self.batch):
                p = "soak_%05d" % rng.randrange(self.players)
                events.append({"type": "progression", "playerId": p, "ts": int(started),
                               "messageId": "s%d-%d" % (seq, j),
                               "payload": {"deltaXp": rng.randint(10, 500), "activity": "soak"}})
            status, answer = post(self.base, "/events/batch", {"events": events})
            took = time.time() - started
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(took)
                if status == 200 and answer:
                    self.accepted += answer["accepted"]
            if self.rate:
                pause = self.threads * self.batch / self.rate - took
                if pause > 0:
                    time.sleep(pause)

    def take_latencies(self):
        with self.lock:
            l, self.latencies = self.latencies, []
        return l


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * p))] * 1000, 1)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def disk_kib(path):
    """KiB under `path`: the total, and per part (the repository, the bus, the backups)."""
    parts = {"liveops.db": 0, "bus.db": 0, "backups": 0, "other": 0}
    for root, _, files in os.walk(path):
        for f in files:
            try:
                size = os.path.getsize(os.path.join(root, f))
            except OSError:
                continue
            if "backups" in os.path.relpath(root, path).split(os.sep):
                part = "backups"
            else:
                part = next((p for p in parts if f.startswith(p)), "other")
            parts[part] += size
    return sum(parts.values()) // 1024, {k: v // 1024 for k, v in parts.items()}


def consumed(base):
    _, body = get(base, "/metrics")
    seen = {}
    for line in body.splitlines():
        m = re.match(r'^consumer_batch_events_sum\{group="([^"]+)"\}\s+([0-9.e+]+)$', line)
        if m:
            seen[m.group(1)] = float(m.group(2))
    return min(seen.values()) if seen else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--players", type=int, default=5000)
    ap.add_argument("--retention", default="11m",
                    help="EVENT_RETENTION of the server, short so a soak reaches the plateau")
    ap.add_argument("--purge-every", default="30s", help="EVENT_PURGE_EVERY of the server")
    a = ap.parse_args()

    settings = {"EVENT_RETENTION": a.retention, "EVENT_PURGE_EVERY": a.purge_every}
    with Served(a.bin, SECRET, "liveops-soak-", **settings) as run:
        base, data, server = run.base, run.data, run.process
        load = Load(base, a.threads, a.batch, a.players)
        began = time.time()
        load.run(15)
        gateway = load.accepted / 15
        # Capacity is what the whole pipeline sustains, not what the gateway takes in: the
        # events accepted over the time until every consumer group has applied them.
        while consumed(base) < load.accepted and time.time() < began + 600:
            time.sleep(0.2)
        capacity = load.accepted / (time.time() - began)
        print(json.dumps({"capacity_events_per_s": round(capacity),
                          "gateway_events_per_s": round(gateway),
                          "p99_ms_at_capacity": pct(load.take_latencies(), 0.99)}), flush=True)
        load.rate = capacity / 2
        load.accepted = 0
        samples = []
        runner = threading.Thread(target=load.run, args=(a.minutes * 60,))
        started = time.time()
        runner.start()
        while runner.is_alive():
            runner.join(a.interval)
            lat = load.take_latencies()
            disk, parts = disk_kib(data)
            s = {"t_s": round(time.time() - started), "rss_kib": rss_kib(server.pid),
                 "disk_kib": disk, "disk_parts_kib": parts, "accepted": load.accepted,
                 "backlog": max(0, round(load.accepted - consumed(base))),
                 "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "requests": len(lat)}
            samples.append((s, lat))
            print(json.dumps(s), flush=True)
        per_min = max(1, int(60 / a.interval))
        first = [x for _, l in samples[:per_min] for x in l]
        last = [x for _, l in samples[-per_min:] for x in l]
        summary = {
            "minutes": a.minutes, "rate_events_per_s": round(load.rate),
            "events_accepted": load.accepted,
            "rss_kib_first_last": [samples[0][0]["rss_kib"], samples[-1][0]["rss_kib"]],
            "disk_kib_first_last": [samples[0][0]["disk_kib"], samples[-1][0]["disk_kib"]],
            "disk_parts_kib_last": samples[-1][0]["disk_parts_kib"],
            "retention": a.retention,
            "p50_ms_first_last_minute": [pct(first, 0.5), pct(last, 0.5)],
            "p99_ms_first_last_minute": [pct(first, 0.99), pct(last, 0.99)],
            "max_backlog": max(s["backlog"] for s, _ in samples),
            "statuses": load.statuses,
        }
        print(json.dumps(summary), flush=True)
        return 1 if any(int(k) >= 500 or int(k) == 0 for k in load.statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
