#!/usr/bin/env python3
"""Fairness under attack, measured (issue 14, docs/RELIABILITY.md): false positives over honest
traffic, and how soon a scripted cheater is blocked.

Starts `liveops serve` (the embedded default) on a free loopback port with a fresh data
directory, sends EVENTS honest events from PLAYERS players in signed batches of 500 (a fixed
random seed, so a rerun sends the same traffic), with two scripted cheaters among them: after the
honest traffic one sends maximal boss kills one at a time until the gateway answers 403, the other
ten times the median honest kill (at most 50 events; a subtler cheat, reported). Then it
reads, from the server's own answers: how many anomaly flags there were (/metrics), which
honest players were flagged or blocked (/fairness/players/{id}), and the cheater's standing on
the leaderboard (absent: quarantined points never count).

    scripts/attack/fairness.py --bin target/debug/liveops [--events 100000] [--players 1000]
                               [--dist bands|lognormal] [--json]

`bands`: every boss kill is worth tier x U(200, 300) points and XP ticks U(10, 500) (bounded,
like most game rewards); `lognormal`: points and XP drawn from a log-normal with sigma 0.5 (a
long right tail of honest lucky runs). Exits 1 if the maximal cheater was not blocked within 10
events, any quarantined point reached a leaderboard, or any honest player was blocked; false flags
are reported.
"""
import argparse
import json
import random
import re
import sys
import time

import served
from served import Served

SECRET = b"fairness-attack-secret-0123456789abcdef"


def call(base, method, path, body=None, timeout=30):
    return served.call(base, method, path, SECRET, body, timeout)


def honest_event(rng, player, dist, n):
    now = int(time.time())
    if rng.random() < 0.5:
        tier = rng.randint(1, 10)
        if dist == "bands":
            points = tier * rng.randint(200, 300)
        else:
            points = min(1_000_000, int(rng.lognormvariate(7.0, 0.5)))
        payload = {"bossId": "boss_%d" % tier, "tier": tier, "points": points}
        kind = "boss_kill"
    else:
        if dist == "bands":
            delta = rng.randint(10, 500)
        else:
            delta = max(1, min(100_000, int(rng.lognormvariate(5.0, 0.5))))
        payload = {"deltaXp": delta, "activity": "quest"}
        kind = "progression"
    return {"type": kind, "playerId": player, "ts": now, "messageId": "m%d" % n,
            "payload": payload}


def flags_total(base):
    _, body = call(base, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        m = re.match(r'^anomaly_flags_total\{[^}]*\}\s+([0-9.e+]+)$', line)
        if m:
            total += float(m.group(1))
    return int(total)


def wait(what, check, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        v = check()
        if v:
            return v
        time.sleep(0.5)
    sys.exit("timed out waiting for " + what)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--players", type=int, default=1000)
    ap.add_argument("--dist", choices=["bands", "lognormal"], default="bands")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    rng = random.Random(14)
    with Served(a.bin, SECRET, "liveops-fairness-") as server:
        base = server.base
        players = ["honest_%04d" % i for i in range(a.players)]
        sent = 0
        honest_refused = 0
        started = time.time()
        batch = []
        kills = []  # the honest kills' points, for the tenfold cheater
        for n in range(a.events):
            batch.append(honest_event(rng, players[n % a.players], a.dist, n))
            if batch[-1]["type"] == "boss_kill":
                kills.append(batch[-1]["payload"]["points"])
            if len(batch) == 500 or n == a.events - 1:
                s, body = call(base, "POST", "/events/batch", {"events": batch})
                if s != 200:
                    sys.exit("batch answered %d: %s" % (s, body[:300]))
                answer = json.loads(body)
                sent += answer["accepted"]
                refused = [r for r in answer["results"] if r["status"] != 202]
                # A wrongly blocked honest player is refused (403): a false positive, counted.
                if any(r["status"] != 403 for r in refused):
                    sys.exit("honest events refused: %s" % json.dumps(refused[:3]))
                honest_refused += len(refused)
                batch = []
        send_s = time.time() - started
        kills.sort()
        median_kill = kills[len(kills) // 2] if kills else 1000
        # Let every consumer catch up: each group has taken in every event.
        wait("consumers", lambda: caught_up(base, sent), 900)
        honest_flags = flags_total(base)
        # The cheaters: maximal kills, then ten times the median kill, one at a time, until the
        # gateway refuses.
        cheater = "cheater_0001"
        blocked_after = cheat(base, cheater, lambda i: 1_000_000 - i)
        tenfold = "cheater_0002"
        tenfold_blocked_after = cheat(base, tenfold, lambda i: 10 * median_kill - i)
        s, body = call(base, "GET", "/leaderboard/players/%s?window=seasonal&around=0" % cheater)
        cheater_ranked = s == 200
        blocked_honest, flagged_honest = 0, 0
        for p in players:
            s, body = call(base, "GET", "/fairness/players/" + p)
            f = json.loads(body) if s == 200 else {}
            flagged_honest += 1 if f.get("strikes", 0) or f.get("flags") else 0
            blocked_honest += 1 if f.get("blocked") else 0
        result = {
            "distribution": a.dist,
            "honest_events": sent,
            "honest_players": a.players,
            "send_seconds": round(send_s, 1),
            "false_positive_flags": honest_flags,
            "honest_players_flagged": flagged_honest,
            "honest_players_blocked": blocked_honest,
            "honest_events_refused_403": honest_refused,
            "cheater_events_until_403": blocked_after,
            "median_honest_kill": median_kill,
            "tenfold_cheater_events_until_403": tenfold_blocked_after,
            "cheater_on_leaderboard": cheater_ranked,
        }
        print(json.dumps(result) if a.json else "\n".join("%s: %s" % kv for kv in result.items()))
        ok = (blocked_after is not None and blocked_after <= 10 and not cheater_ranked
              and blocked_honest == 0)
        return 0 if ok else 1


def cheat(base, player, points, most=50):
    """Sends `points(i)` boss kills one at a time until the gateway answers 403; how many were
    sent before it did, None if it never did within `most`."""
    for i in range(most):
        ev = {"type": "boss_kill", "playerId": player, "ts": int(time.time()),
              "messageId": "c%d" % i,
              "payload": {"bossId": "boss_10", "tier": 10, "points": points(i)}}
        s, body = call(base, "POST", "/events", ev)
        if s == 403:
            return i
        if s != 202:
            sys.exit("cheater event answered %d: %s" % (s, body[:300]))
        time.sleep(0.2)
    return None


def caught_up(base, sent):
    """Whether fairness has judged all `sent` events and the leaderboard taken in those it passed."""
    _, body = call(base, "GET", "/metrics")
    seen = {}
    for line in body.decode().splitlines():
        m = re.match(r'^consumer_batch_events_sum\{group="([^"]+)"\}\s+([0-9.e+]+)$', line)
        if m:
            seen[m.group(1)] = float(m.group(2))
    # Quarantined events never reach the leaderboard's topic.
    return seen.get("fairness", 0) >= sent and seen.get("leaderboard", 0) >= sent - flags_total(base)


if __name__ == "__main__":
    sys.exit(main())
