#!/usr/bin/env python3
"""The logic of scripts/check/monitoring.sh that is awkward in shell.

    monitoring.py static  ROOT WORK   lint rules, tests coverage, dashboards; write
                                      WORK/dashboard-exprs.yml (for promtool) and WORK/used.json
    monitoring.py live    ROOT WORK   run liveops + Prometheus, check rules on real metrics,
                                      force LiveOpsTargetDown to fire; write WORK/scrape.txt
    monitoring.py names   ROOT WORK   every metric name used is exported or allowlisted
    monitoring.py alertmanager ROOT WORK
                                      run Alertmanager with the real route tree and inhibition,
                                      receivers swapped for a local webhook; check deliveries

Every step prints what it asserted and exits non-zero on the first failed assertion group.
Needs python3-yaml (Debian) and, for `live`/`alertmanager`, the prometheus and
prometheus-alertmanager binaries on PATH. Everything listens on 127.0.0.1 only.
"""

import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

SEVERITIES = {"critical", "warning", "info"}
ROOT = Path(".")
RUNBOOK = re.compile(r"^docs/OPERATIONS\.md#([a-z0-9][a-z0-9-]*)$")


class CheckFailed(Exception):
    pass


def fail_if(errors, what):
    if errors:
        for e in errors:
            print(f"  FAIL {e}", file=sys.stderr)
        raise CheckFailed(f"{what}: {len(errors)} problem(s)")


def paths(root):
    mon = root / "monitoring"
    return {
        "rules": sorted((mon / "prometheus" / "rules").glob("*.yml")),
        "tests": sorted((mon / "prometheus" / "tests").glob("*.yml")),
        "dashboards": sorted((mon / "grafana" / "dashboards").glob("*.json")),
        "allowlist": mon / "metrics-allowlist.txt",
        "alertmanager": mon / "alertmanager" / "alertmanager.yml",
        "templates": mon / "alertmanager" / "templates",
        "operations": root / "docs" / "OPERATIONS.md",
    }


def load_rules(files):
    groups = []
    for f in files:
        doc = yaml.safe_load(f.read_text())
        for g in doc.get("groups", []):
            groups.append((f, g))
    return groups


# --- PromQL helpers --------------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr):
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r" \1 ", s)
    names = set()
    # A name followed by "(" or by an aggregation's by/without is a function or an operator.
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*(?:\(|by\b|without\b))?", s):
        name, call = m.group(1), m.group(2)
        if call or name in KEYWORDS:
            continue
        names.add(name)
    return names


GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                "__interval_ms": "60000", "__range_s": "3600"}


def substitute(expr, variables):
    """Replaces Grafana variables; every dashboard variable is a multi-value regex -> `.*`."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in GRAFANA_VARS:
            return GRAFANA_VARS[name]
        if name in variables:
            return ".*"
        raise CheckFailed(f"unknown Grafana variable ${name} in {expr!r}")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def dashboard_exprs(dash):
    """(where, PromQL) of every query of a dashboard: panel targets, annotations, variables."""
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            out.append((f"annotation {a['name']!r}", a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
            if not m:
                raise CheckFailed(f"variable {v['name']}: not label_values(selector, label): {q}")
            out.append((f"variable ${v['name']}", m.group(1)))
    return [(where, substitute(e, variables)) for where, e in out], variables


# --- static ----------------------------------------------------------------------------------

def heading_anchors(markdown):
    """GitHub-style anchors of a Markdown file's headings (and explicit <a id/name>)."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", m.group(1)).strip().lower()
            slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            anchors.add(slug)
        for a in re.findall(r'<a\s+(?:id|name)="([^"]+)"', line):
            anchors.add(a)
    return anchors


def operations_doc(root, text, anchors):
    """What docs/OPERATIONS.md names exists: its in-page links, every setting in backticks
    (`BACKUP_EVERY`) is an `env = "..."` of the binary, every repository path in backticks is a
    file or directory of the repository."""
    errors = []
    for a in re.findall(r"\]\(#([^)]+)\)", text):
        if a not in anchors:
            errors.append(f"link to #{a}: no such heading")
    known = set()
    for f in (root / "crates").rglob("*.rs"):
        known.update(re.findall(r'env\s*=\s*"([A-Z][A-Z0-9_]*)"', f.read_text()))
    settings = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", text))
    for name in sorted(settings - known):
        errors.append(f"`{name}` is not a setting of the binary (no env = \"{name}\" in crates/)")
    paths_named = set()
    for token in re.findall(r"`([^`\s]+)", text):
        token = token.rstrip(".,:")
        if re.match(r"^(scripts|crates|monitoring|deploy|infra|docs|ci)/[\w./-]+$", token) \
                and "<" not in token:
            paths_named.add(token)
    for token in sorted(paths_named):
        if not (root / token).exists():
            errors.append(f"`{token}`: no such file or directory in the repository")
    fail_if(errors, "docs/OPERATIONS.md")
    print(f"  ok   docs/OPERATIONS.md: in-page links resolve; {len(settings)} settings are the "
          f"binary's; {len(paths_named)} repository paths exist")


def static(root, work):
    p = paths(root)
    groups = load_rules(p["rules"])
    alerts, records, anchors, errors = [], [], {}, []
    for f, g in groups:
        for r in g["rules"]:
            if "alert" in r:
                alerts.append(r)
                sev = r.get("labels", {}).get("severity")
                where = f"{f.name}: {r['alert']}"
                if sev not in SEVERITIES:
                    errors.append(f"{where}: severity {sev!r} is not one of {sorted(SEVERITIES)}")
                ann = r.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not str(ann.get(key, "")).strip():
                        errors.append(f"{where}: annotation {key} missing")
                m = RUNBOOK.match(ann.get("runbook_url", ""))
                if not m:
                    errors.append(f"{where}: runbook_url {ann.get('runbook_url')!r} is not "
                                  "docs/OPERATIONS.md#<anchor>")
                else:
                    anchors.setdefault(m.group(1), set()).add(r["alert"])
            else:
                records.append(r)
    fail_if(errors, "alert labels and annotations")
    print(f"  ok   {len(alerts)} alert rules: severity, summary, description, runbook_url each")

    # Tests: every (alert, severity) fires somewhere, every alert is quiet somewhere, every
    # recording rule is evaluated.
    fired, quiet, tested_records = set(), set(), set()
    for t in p["tests"]:
        doc = yaml.safe_load(t.read_text())
        for case in doc.get("tests", []):
            for a in case.get("alert_rule_test", []):
                if a.get("exp_alerts"):
                    for e in a["exp_alerts"]:
                        fired.add((a["alertname"], e.get("exp_labels", {}).get("severity")))
                else:
                    quiet.add(a["alertname"])
            for q in case.get("promql_expr_test", []):
                tested_records.add(q["expr"].strip())
    errors = []
    for r in alerts:
        key = (r["alert"], r["labels"]["severity"])
        if key not in fired:
            errors.append(f"{r['alert']} ({key[1]}): no test where it fires")
        if r["alert"] not in quiet:
            errors.append(f"{r['alert']}: no test where it stays quiet")
    for r in records:
        if r["record"] not in tested_records:
            errors.append(f"recording rule {r['record']}: no promql_expr_test evaluates it")
    fail_if(errors, "rule test coverage")
    print(f"  ok   every alert has a firing and a quiet test ({len(fired)} alert/severity pairs, "
          f"{len(quiet)} alerts); every one of {len(records)} recording rules is tested")

    # Runbook anchors.
    print("  info runbook anchors: " + ", ".join(sorted(anchors)))
    if not p["operations"].exists():
        raise CheckFailed("docs/OPERATIONS.md is missing: the runbook_url links point into it")
    operations = p["operations"].read_text()
    have = heading_anchors(operations)
    missing = sorted(a for a in anchors if a not in have)
    fail_if([f"docs/OPERATIONS.md has no heading for #{a} (used by "
             f"{', '.join(sorted(anchors[a]))})" for a in missing], "runbook anchors")
    print(f"  ok   all {len(anchors)} runbook anchors are headings of docs/OPERATIONS.md")
    operations_doc(root, operations, have)

    # Dashboards.
    errors, exprs, used = [], [], {}
    uids = set()
    for d in p["dashboards"]:
        dash = json.loads(d.read_text())
        if dash.get("uid") in uids:
            errors.append(f"{d.name}: uid {dash.get('uid')} used twice")
        uids.add(dash.get("uid"))
        tmpl = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        if tmpl.get("datasource", {}).get("type") != "datasource":
            errors.append(f"{d.name}: no `datasource` variable of type datasource")
        text = d.read_text()
        for uid in re.findall(r'"uid":\s*"([^"]*)"', text):
            if uid not in ("${datasource}", dash.get("uid")):
                errors.append(f"{d.name}: hard-coded data source uid {uid!r}")
        for where, e in dashboard_exprs(dash)[0]:
            exprs.append((d.name, where, e))
            for n in metric_names(e):
                used.setdefault(n, set()).add(f"{d.name}")
        for m in re.finditer(r'instance\s*=~?\s*\\?"([^"$\\]+)', text):
            errors.append(f"{d.name}: hard-coded instance {m.group(1)!r}")
    fail_if(errors, "dashboards")
    print(f"  ok   {len(p['dashboards'])} dashboards: datasource variable, no fixed data source "
          f"uid or instance; {len(exprs)} PromQL queries extracted")

    # Provisioning: a file provider for the dashboards, a Prometheus data source.
    prov = root / "monitoring" / "grafana" / "provisioning"
    dash_prov = yaml.safe_load((prov / "dashboards" / "liveops.yaml").read_text())
    ds_prov = yaml.safe_load((prov / "datasources" / "liveops.yaml").read_text())
    if dash_prov.get("apiVersion") != 1 or not all(
            p_.get("type") == "file" and p_.get("options", {}).get("path")
            for p_ in dash_prov.get("providers", [])) or not dash_prov.get("providers"):
        errors.append("provisioning/dashboards: needs apiVersion 1 and file providers with a path")
    ds = ds_prov.get("datasources", [])
    ds_uids = [d.get("uid") for d in ds]
    if len(set(ds_uids)) != len(ds_uids) or not any(d.get("type") == "prometheus" for d in ds):
        errors.append("provisioning/datasources: uids must be unique and one must be Prometheus")
    fail_if(errors, "Grafana provisioning")
    print(f"  ok   provisioning: {len(dash_prov['providers'])} dashboard provider(s), "
          f"{len(ds)} data sources ({', '.join(d['type'] for d in ds)})")

    rules_doc = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e,
         "labels": {"dashboard": name, "where": where[:60]}}
        for i, (name, where, e) in enumerate(exprs)]}]}
    (work / "dashboard-exprs.yml").write_text(yaml.safe_dump(rules_doc, sort_keys=False))
    (work / "dashboard-exprs.json").write_text(json.dumps(exprs))

    for _, g in groups:
        for r in g["rules"]:
            for n in metric_names(r["expr"]):
                used.setdefault(n, set()).add("rule " + r.get("alert", r.get("record", "")))
    (work / "used.json").write_text(json.dumps({k: sorted(v) for k, v in used.items()}))
    (work / "records.json").write_text(json.dumps([r["record"] for r in records]))


# --- processes -------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what, probe, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
        except (OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout}s waiting for {what}" + (f" ({last})" if last else ""))


class Procs:
    """Started processes, stopped (by pid, TERM then KILL) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log, env=None):
        f = open(log, "w")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL)
        self.procs.append((name, p))
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)


def prom_query(base, q):
    status, body = request("GET", f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise CheckFailed(f"query {q!r}: {doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]["result"]


# --- live ------------------------------------------------------------------------------------

def signed_post(base, path, secret, payload):
    """POSTs `payload` signed `v2=` (over the timestamp, method, path and body)."""
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    text = f"v2\n{ts}\nPOST\n{urllib.parse.urlsplit(base + path).path}\n".encode() + body
    sig = hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    return request("POST", base + path, body, {"content-type": "application/json",
                                           "x-timestamp": ts, "x-signature": f"v2={sig}"})


def exercise(liveops, base, data_dir, env, work, secret):
    """Traffic that makes the binary register its metrics: the sample events through
    `liveops send`, a warm-up and three absurd kills (flags, strikes, a block), a level-up
    and a reward claim, leaderboard reads (top-N cache miss then hit)."""
    # The reference events live beside the repository (../shared/sample_events), as for the tests.
    sample_dir = Path(os.environ.get("LIVEOPS_SAMPLES", ROOT.parent / "shared" / "sample_events"))
    samples = sorted(sample_dir.glob("*.json"))
    if not samples:
        raise CheckFailed(f"no sample events in {sample_dir} (set LIVEOPS_SAMPLES)")
    now = int(time.time())
    warm = [{"type": "boss_kill", "playerId": f"player_warm_{i}", "ts": now,
             "payload": {"bossId": "dragon_lord", "tier": 3, "points": 900 + (i % 7) * 40}}
            for i in range(30)]
    cheat = [{"type": "boss_kill", "playerId": "player_cheat", "ts": now,
              "payload": {"bossId": "dragon_lord", "tier": 3, "points": 1_000_000 - i}}
             for i in range(3)]
    xp = [{"type": "progression", "playerId": "player_level", "ts": now,
           "payload": {"deltaXp": 1500, "activity": "quest_completion"}}]
    files = []
    for name, events in (("warm", warm), ("cheat", cheat), ("xp", xp)):
        f = work / f"events-{name}.json"
        f.write_text(json.dumps({"events": events}))
        files.append(f)
    argv = [liveops, "send", "--url", base, "--data-dir", str(data_dir)]
    for batch in ([str(s) for s in samples], [str(files[0])], [str(files[1]), str(files[2])]):
        r = subprocess.run(argv + batch, env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise CheckFailed(f"liveops send {batch}: exit {r.returncode}: {r.stdout}{r.stderr}")
        time.sleep(1.0)  # the warm-up must be judged before the cheater's kills
    print(f"  ok   liveops send: {len(samples)} sample events, {len(warm)} warm-up kills, "
          f"{len(cheat)} absurd kills, a level-up (all 2xx)")

    def reward():
        status, body = request("GET", f"{base}/players/player_level/progress")
        pending = json.loads(body).get("pendingRewards", []) if status == 200 else []
        return pending[0]["rewardId"] if pending else None
    reward_id = wait_for("a pending reward for player_level", reward, 20)
    status, body = signed_post(base, "/rewards/claim", secret,
                               {"playerId": "player_level", "rewardId": reward_id})
    if status != 200:
        raise CheckFailed(f"POST /rewards/claim: {status} {body}")
    wait_for("player_cheat blocked", lambda: json.loads(
        request("GET", f"{base}/fairness/players/player_cheat")[1]).get("blocked") is True, 20)
    for _ in range(2):
        status, _ = request("GET", f"{base}/leaderboard?window=daily")
        if status != 200:
            raise CheckFailed(f"GET /leaderboard: {status}")
    print("  ok   reward claimed, cheater blocked, leaderboard read twice")


def live_rules(root, work):
    """The real rule files for a Prometheus evaluating every second: group intervals dropped
    (the global 1 s applies), expressions and `for` untouched; plus one derived rule, the real
    LiveOpsTargetDown with `for: 0s` and label check="derived", so it fires within the check's
    time bound."""
    out = []
    derived = None
    for f in paths(root)["rules"]:
        doc = yaml.safe_load(f.read_text())
        for g in doc["groups"]:
            g.pop("interval", None)
            for r in g["rules"]:
                if r.get("alert") == "LiveOpsTargetDown":
                    derived = json.loads(json.dumps(r))
        target = work / f"live-{f.name}"
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(target)
    if derived is None:
        raise CheckFailed("rules have no LiveOpsTargetDown alert")
    derived["for"] = "0s"
    derived["labels"]["check"] = "derived"
    target = work / "live-derived.yml"
    target.write_text(yaml.safe_dump({"groups": [{"name": "check-derived", "rules": [derived]}]}))
    out.append(target)
    return out


def live(root, work):
    liveops = os.environ.get("LIVEOPS_BIN", str(root / "target" / "debug" / "liveops"))
    if not os.access(liveops, os.X_OK):
        raise CheckFailed(f"no liveops binary at {liveops}: build it (cargo build) or set "
                          "LIVEOPS_BIN")
    for tool in ("prometheus",):
        if not shutil.which(tool):
            raise CheckFailed(f"{tool} not on PATH: run scripts/tools.sh install "
                              "(Debian package prometheus)")
    procs = Procs()
    try:
        data_dir = work / "liveops-data"
        data_dir.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        secret = hashlib.sha256(os.urandom(32)).hexdigest()
        env = dict(os.environ, ENV="dev", DATA_DIR=str(data_dir), PORT=str(port), BIND="127.0.0.1",
                   HMAC_SECRET=secret, SNAPSHOT_CRON="* * * * * *", ANOMALY_WARMUP="20",
                   LOG_LEVEL="info", BACKUP_EVERY="10s", BACKUP_DIR=str(work / "backups"))
        env.pop("REDIS_URL", None)
        env.pop("DB_URL", None)
        app = procs.start("liveops", [liveops, "serve"], work / "liveops.log", env)
        wait_for("liveops /readyz", lambda: request("GET", f"{base}/readyz")[0] == 200, 60)
        print(f"  ok   liveops serve ready on {base}")

        prom_port = free_port()
        prom = f"http://127.0.0.1:{prom_port}"
        rule_files = live_rules(root, work)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{
                "job_name": "liveops",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                    "labels": {"namespace": "check", "pod": "liveops-check",
                                               "liveops_target": "all"}}],
            }],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        procs.start("prometheus", [
            "prometheus", f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn"], work / "prometheus.log")
        wait_for("Prometheus ready", lambda: request("GET", f"{prom}/-/ready")[0] == 200, 30)
        wait_for("Prometheus scraping liveops (up == 1)",
                 lambda: any(r["value"][1] == "1"
                             for r in prom_query(prom, 'up{job="liveops"}')), 20)
        print(f"  ok   Prometheus on {prom} scrapes liveops (up == 1)")
        # Traffic once Prometheus watches, so rates over the scrapes are above zero.
        exercise(liveops, base, data_dir, env, work, secret)

        # Every rule loaded and evaluates without error on real data.
        def rules_healthy():
            doc = json.loads(request("GET", f"{prom}/api/v1/rules")[1])
            rules = [r for g in doc["data"]["groups"] for r in g["rules"]]
            bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
            if bad:
                raise CheckFailed("rules failing in Prometheus: " + "; ".join(bad))
            return rules if all(r.get("health") == "ok" for r in rules) and rules else None
        rules = wait_for("every rule evaluated once", rules_healthy, 20)
        print(f"  ok   {len(rules)} rules loaded by Prometheus, every one healthy")

        # Recording rules turn the binary's real series into the expected shapes.
        expect = {
            'service:http_requests:rate5m{service="gateway"}': "gateway request rate",
            'service:http_requests_5xx:ratio_rate5m{service="gateway"}': "gateway 5xx ratio (0)",
            'service:http_request_duration_seconds:p95_5m{service="gateway"}': "gateway p95",
            'type:events_ingested:rate5m{type="boss_kill"}': "boss_kill ingest rate",
            'group:consumer_events:rate5m{group="progression"}': "progression throughput",
            'group:consumer_batch_seconds:p95_5m{group="leaderboard"}': "leaderboard batch p95",
            'group:bus_lag:max{group="fairness"}': "fairness bus lag",
            'type:anomaly_flags:rate5m{type="boss_kill"}': "boss_kill flag rate",
        }

        def recorded():
            missing = [q for q in expect if not prom_query(prom, q)]
            return not missing or None
        try:
            wait_for("recording rules on real series", recorded, 20)
        except CheckFailed:
            missing = [q for q in expect if not prom_query(prom, q)]
            raise CheckFailed("recording rules produced nothing for: " + ", ".join(missing))
        first = next(iter(expect))
        rate = float(prom_query(prom, first)[0]["value"][1])
        if rate <= 0:
            raise CheckFailed(f"{first} is {rate}, expected > 0")
        print(f"  ok   {len(expect)} recording rules produce series from the binary's metrics")

        # Dashboard queries run against real data without PromQL runtime errors.
        exprs = json.loads((work / "dashboard-exprs.json").read_text())
        with_data = 0
        errors = []
        for name, where, e in exprs:
            try:
                if prom_query(prom, e):
                    with_data += 1
            except CheckFailed as ex:
                errors.append(f"{name} {where}: {ex}")
        fail_if(errors, "dashboard queries in Prometheus")
        print(f"  ok   all {len(exprs)} dashboard queries run in Prometheus; {with_data} return data "
              "here (the rest need exporters or Kubernetes)")

        # The last scrape, for the metric name comparison, once the first scheduled backup
        # (BACKUP_EVERY=10s) has reported its metrics.
        wait_for("a scheduled backup's metrics", lambda: "\nbackup_last_success_timestamp_seconds "
                 in request("GET", f"{base}/metrics")[1], 30)
        status, text = request("GET", f"{base}/metrics")
        (work / "scrape.txt").write_text(text)
        print(f"  ok   scraped {len(text.splitlines())} lines of /metrics for the name check")

        # Force an alert: stop liveops; the derived LiveOpsTargetDown (for: 0s) must fire and
        # the real one (for: 2m) must be pending, within 60 s.
        procs.stop(app)
        t0 = time.monotonic()

        def target_down():
            doc = json.loads(request("GET", f"{prom}/api/v1/alerts")[1])
            got = {(a["labels"].get("check", "real"), a["state"])
                   for a in doc["data"]["alerts"] if a["labels"]["alertname"] == "LiveOpsTargetDown"}
            return got if {("derived", "firing"), ("real", "pending")} <= got else None
        got = wait_for("LiveOpsTargetDown firing after liveops stopped", target_down, 60)
        print(f"  ok   liveops stopped: LiveOpsTargetDown firing (for: 0s copy) and pending (real "
              f"rule, for: 2m) after {time.monotonic() - t0:.1f}s: {sorted(got)}")
    finally:
        procs.stop_all()


# --- names -----------------------------------------------------------------------------------

def exported_in_source(root):
    names = set()
    for f in (root / "crates").rglob("*.rs"):
        if {"tests", "benches", "examples"} & set(f.relative_to(root / "crates").parts):
            continue
        for kind, name in re.findall(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][\w:]*)"',
                                     f.read_text()):
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def names(root, work):
    used = json.loads((work / "used.json").read_text())
    records = set(json.loads((work / "records.json").read_text()))
    scraped = set()
    for line in (work / "scrape.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            scraped.add(re.match(r"[a-zA-Z_:][\w:]*", line).group(0))
    source = exported_in_source(root)
    allow = {}
    for line in paths(root)["allowlist"].read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            raise CheckFailed(f"allowlist line without a source: {line!r}")
        allow[parts[0]] = parts[1]
    errors = []
    counts = {}
    for name in sorted(used):
        if name in scraped:
            kind = "liveops (scraped)"
            if name in allow and allow[name] != "prometheus":
                errors.append(f"{name} is exported by liveops but allowlisted as {allow[name]}")
        elif name in records:
            kind = "recording rule"
        elif name in allow:
            kind = allow[name]
            if kind == "liveops" and name not in source:
                errors.append(f"{name}: allowlisted as liveops but no counter!/gauge!/histogram! "
                              "under crates/ exports it")
        else:
            kind = None
            hint = " (it is in the code: a scenario that produces it, or an allowlist line " \
                   "with source liveops, is needed)" if name in source else ""
            errors.append(f"{name} (used by {', '.join(used[name][:3])}) is neither in the "
                          f"binary's /metrics, nor a recording rule, nor allowlisted{hint}")
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    for name in sorted(set(allow) - set(used)):
        errors.append(f"allowlist line {name} ({allow[name]}) is used by no rule or dashboard")
    fail_if(errors, "metric names")
    print(f"  ok   {len(used)} metric names used by rules and dashboards: " +
          ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    pending = sorted(n for n in used if allow.get(n) == "liveops-pending")
    if pending:
        print("  info expected from work not merged yet: " + ", ".join(pending))


# --- alertmanager ----------------------------------------------------------------------------

class Webhook(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Webhook.received.append((self.path.strip("/"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def alertmanager(root, work):
    if not shutil.which("prometheus-alertmanager"):
        raise CheckFailed("prometheus-alertmanager not on PATH: run scripts/tools.sh install "
                          "(Debian package prometheus-alertmanager)")
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}"

    # The real route tree and inhibit rules; each receiver becomes a webhook to its own path,
    # and the waits shrink so the check stays short.
    cfg = yaml.safe_load(paths(root)["alertmanager"].read_text())
    cfg["global"] = {"resolve_timeout": "5m"}
    cfg.pop("templates", None)
    cfg["receivers"] = [{"name": r["name"], "webhook_configs": [
        {"url": f"{hook_url}/{r['name']}", "send_resolved": False}]} for r in cfg["receivers"]]

    def shrink(route):
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for r in route.get("routes", []):
            shrink(r)
    shrink(cfg["route"])
    cfg["route"]["group_wait"] = "1s"
    cfg["route"]["group_interval"] = "1s"
    (work / "alertmanager-live.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = Procs()
    try:
        procs.start("alertmanager", [
            "prometheus-alertmanager", f"--config.file={work / 'alertmanager-live.yml'}",
            f"--storage.path={work / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=", "--log.level=warn"], work / "alertmanager.log")
        wait_for("Alertmanager ready", lambda: request("GET", f"{base}/-/ready")[0] == 200, 30)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def alert(name, severity, service):
            return {"labels": {"alertname": name, "severity": severity, "namespace": "check",
                               "service": service},
                    "annotations": {"summary": f"{name} {severity}"}, "startsAt": now}
        sent = [
            # Both severities of one alert: the critical must page and post; the warning must be
            # inhibited.
            alert("LiveOpsHTTPErrors", "critical", "gateway"),
            alert("LiveOpsHTTPErrors", "warning", "gateway"),
            # A warning with no critical beside it goes to Slack.
            alert("LiveOpsHTTPErrors", "warning", "progression"),
            alert("LiveOpsPlayersBlocked", "info", "fairness"),
        ]
        status, body = request("POST", f"{base}/api/v2/alerts", json.dumps(sent).encode(),
                            {"content-type": "application/json"})
        if status != 200:
            raise CheckFailed(f"POST /api/v2/alerts: {status} {body}")

        want = {
            ("pager", "LiveOpsHTTPErrors", "critical", "gateway"),
            ("slack", "LiveOpsHTTPErrors", "critical", "gateway"),
            ("slack", "LiveOpsHTTPErrors", "warning", "progression"),
            ("email", "LiveOpsPlayersBlocked", "info", "fairness"),
        }

        def delivered():
            got = {(recv, a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["service"])
                   for recv, msg in Webhook.received for a in msg["alerts"]}
            return got if want <= got else None
        got = wait_for("Alertmanager deliveries", delivered, 30)
        time.sleep(3)  # anything inhibited would have been delivered by now
        got = {(recv, a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["service"])
               for recv, msg in Webhook.received for a in msg["alerts"]}
        extra = got - want
        fail_if([f"unexpected delivery {e}" for e in sorted(extra)], "Alertmanager routing")
        print(f"  ok   Alertmanager delivered {len(want)} notifications as routed: critical -> "
              "pager + slack, warning -> slack, info -> email; the warning beside its critical "
              "was inhibited")
    finally:
        procs.stop_all()
        hook.shutdown()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    global ROOT
    cmd, root, work = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3])
    ROOT = root
    work.mkdir(parents=True, exist_ok=True)
    try:
        {"static": static, "live": live, "names": names, "alertmanager": alertmanager}[cmd](root, work)
    except CheckFailed as e:
        print(f"FAIL {cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
