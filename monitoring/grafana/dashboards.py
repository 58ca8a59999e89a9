#!/usr/bin/env python3
"""Writes the LiveOps Grafana dashboards (grafana/dashboards/*.json) from one description.

    python3 monitoring/grafana/dashboards.py          # rewrites the JSON files
    python3 monitoring/grafana/dashboards.py --check  # fails if a JSON file differs from this

Every panel queries the Prometheus data source chosen in the `datasource` variable (no
hard-coded data source uid) and every selector goes through variables (`$namespace`,
`$service`, `$instance`, ...), never a fixed instance.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}

# Selectors shared by the panels.
NS = 'namespace=~"$namespace"'
SVC = f'{NS}, service=~"$service"'
POD = f'{NS}, container="liveops"'
RI = "$__rate_interval"


# --- variables -------------------------------------------------------------------------------

def datasource_var():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
    }


def query_var(name, label, query, multi=True, include_all=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-query"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "current": {},
        "hide": 0,
        "regex": "",
    }


NAMESPACE_VAR = query_var("namespace", "Namespace", "label_values(up{job=\"liveops\"}, namespace)")


# --- panels ----------------------------------------------------------------------------------

class Layout:
    """Places panels left to right, 24 grid units wide, rows of a fixed height."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1
        self.panels = []

    def row(self, title):
        self.newline()
        self.panels.append({
            "type": "row", "title": title, "id": self._id(), "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": [],
        })
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel, w=12, h=8):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def targets(queries):
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({
            "datasource": DS,
            "expr": expr,
            "legendFormat": legend,
            "refId": chr(ord("A") + i),
            "range": True,
        })
    return out


def timeseries(title, queries, unit="short", description="", stack=False, min0=True):
    defaults = {
        "unit": unit,
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
    }
    if min0:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets(queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title, expr, unit="short", description="", thresholds=None, legend=""):
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets([(expr, legend)]),
        "fieldConfig": {"defaults": {"unit": unit,
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
    }


def dashboard(uid, title, description, variables, layout, tags):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["liveops"] + tags,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource_var()] + variables},
        "annotations": {"list": [{
            "name": "Alerts firing",
            "datasource": DS,
            "enable": True,
            "iconColor": "red",
            "expr": (f'ALERTS{{alertstate="firing", {NS}}}'
                     if any(v["name"] == "namespace" for v in variables)
                     else 'ALERTS{alertstate="firing"}'),
            "titleFormat": "{{alertname}}",
            "textFormat": "{{severity}}",
            "step": "60s",
        }]},
        "links": [{"title": "LiveOps dashboards", "type": "dashboards", "tags": ["liveops"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        "panels": layout.panels,
    }


def summed(metric, sel=NS, by="", fn="rate", window=RI):
    """sum [by (by)] (fn(metric{sel}[window])): a counter's rate or increase, added up."""
    total = f"sum by ({by}) " if by else "sum"
    return f"{total}({fn}({metric}{{{sel}}}[{window}]))"


def last_hour(title, metric, by, legend, description=""):
    """A panel of a counter's increase over the last hour, per `by`."""
    return timeseries(f"{title} (last hour), by {by.split(', ')[-1]}",
                      [(summed(metric, by=by, fn="increase", window="1h"), legend)],
                      "short", description)


def per_second(metric, sel):
    """The per-second rate of each series of a counter."""
    return f"rate({metric}{{{sel}}}[{RI}])"


def ratio(numerator, denominator):
    return f"{numerator} / {denominator}"


def hq(q, metric, by, sel):
    return (f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{sel}}}[{RI}])))")


# --- the dashboards --------------------------------------------------------------------------

# File name -> function that builds the dashboard, in the order they are defined below.
DASHBOARDS = {}


def board(uid, title, description, tags, variables=(NAMESPACE_VAR,)):
    """Registers a dashboard, written to dashboards/<uid>.json, whose panels the decorated
    function places on the layout it is given."""
    def register(fill):
        def build():
            layout = Layout()
            fill(layout)
            return dashboard(uid, title, description, list(variables), layout, tags)
        DASHBOARDS[f"{uid}.json"] = build
        return fill
    return register


@board("liveops-services", "LiveOps / Services: golden signals",
       "Latency, traffic, errors and saturation of each LiveOps service.", ["golden-signals"],
       [NAMESPACE_VAR,
        query_var("service", "Service",
                  'label_values(http_requests_total{namespace=~"$namespace"}, service)')])
def services(L):
    def requests(by="", status=""):
        """Requests per second of the selected services [by labels] [with a matching status]."""
        return summed("http_requests_total", f'{SVC}, status=~"{status}"' if status else SVC, by=by)

    L.row("Overview")
    L.add(stat("Requests / s", requests(), "reqps"), w=6, h=4)
    L.add(stat("5xx ratio", ratio(requests(status="5.."), requests()), "percentunit",
               thresholds=[(0.01, "orange"), (0.05, "red")]), w=6, h=4)
    L.add(stat("Gateway p95", hq(0.95, "http_request_duration_seconds", "service",
                                 f'{NS}, service="gateway"'),
               "s", thresholds=[(0.25, "orange"), (0.5, "red")]), w=6, h=4)
    L.add(stat("Pods down or not ready",
               f'count(up{{job="liveops", {NS}}} == 0 or liveops_ready{{job="liveops", {NS}}} == 0) '
               "or vector(0)",
               "short", "Pods Prometheus cannot scrape or whose last /readyz said not ready.",
               thresholds=[(1, "orange")]), w=6, h=4)

    L.row("Traffic")
    L.add(timeseries("Requests per second by service",
                     [(requests("service"), "{{service}}")], "reqps"))
    L.add(timeseries("Requests per second by route and status",
                     [(requests("service, route, status"), "{{route}} {{status}}")], "reqps"))

    L.row("Errors")
    L.add(timeseries("5xx ratio by service",
                     [(ratio(requests("service", "5.."), requests("service")), "{{service}}")],
                     "percentunit",
                     "Alerts: warning above 1 %, critical above 5 % for 5 minutes."))
    L.add(timeseries("4xx by status (refused input, blocked and rate-limited players)",
                     [(requests("service, status", "4.."), "{{service}} {{status}}")], "reqps"))
    L.add(timeseries("Verified signatures per second, by scheme (v1 by key id)",
                     [(summed("signatures_verified_total", by="scheme"), "{{scheme}}"),
                      (summed("signatures_verified_total", f'{NS}, scheme="v1"', by="key"),
                       "v1 key {{key}}")],
                     "reqps",
                     "v2 signs method and path; v1 (sha256=) only timestamp and body, so any "
                     "signed route with an equal body takes it. The v1 key ids are the game "
                     "servers to move; set SIG_ACCEPT_V1=false once v1 stays at zero (ADR 0023)."))
    L.add(timeseries("Forwarded requests: 5xx and refusals per second",
                     [(summed("http_requests_total", f'{NS}, service="forward", status=~"5.."',
                              by="route, status"), "{{status}} {{route}}"),
                      (summed("http_forwards_refused_total", by="pod"), "refused {{pod}}")],
                     "reqps",
                     "Requests for a route of a module this process does not run, sent on to "
                     "its owner (PEER_URL_TEMPLATE), counted under service \"forward\": the "
                     "owner's 5xx, 503 when it cannot be reached, and 503 refusals once 256 are "
                     "on their way from one pod (LiveOpsForwardsRefused)."))
    L.add(timeseries("Requests refused before their route, per second",
                     [(summed("http_requests_refused_total", by="reason, pod"),
                       "{{reason}} {{pod}}")],
                     "reqps",
                     "busy: 503 past HTTP_MAX_IN_FLIGHT requests in progress (LiveOpsRequestsBusy); "
                     "body_timeout: 408 for a body not sent within HTTP_BODY_TIMEOUT "
                     "(LiveOpsSlowBodies)."))

    L.row("Latency")
    L.add(timeseries("p50 / p95 / p99 by service",
                     [(hq(0.5, "http_request_duration_seconds", "service", SVC), "p50 {{service}}"),
                      (hq(0.95, "http_request_duration_seconds", "service", SVC), "p95 {{service}}"),
                      (hq(0.99, "http_request_duration_seconds", "service", SVC), "p99 {{service}}")],
                     "s", "The gateway alert fires above 500 ms p95 for 5 minutes."))
    L.add(timeseries("p95 by route",
                     [(hq(0.95, "http_request_duration_seconds", "service, route", SVC),
                       "{{route}}")], "s"))

    L.row("Saturation")
    L.add(timeseries("CPU per pod (cores)",
                     [(summed("container_cpu_usage_seconds_total", POD, by="pod"),
                       "{{pod}}")], "short"), w=8)
    L.add(timeseries("CPU throttled share per pod",
                     [(ratio(summed("container_cpu_cfs_throttled_periods_total", POD, by="pod"),
                             summed("container_cpu_cfs_periods_total", POD, by="pod")),
                       "{{pod}}")], "percentunit"), w=8)
    L.add(timeseries("Memory working set / limit per pod",
                     [(f"sum by (pod) (container_memory_working_set_bytes{{{POD}}})", "{{pod}}"),
                      (f"sum by (pod) (container_spec_memory_limit_bytes{{{POD}}})",
                       "limit {{pod}}")], "bytes"), w=8)
    L.add(timeseries("Messages waiting on the bus",
                     [(f"max by (topic, group) (bus_lag{{{NS}}})", "{{group}} on {{topic}}")],
                     "short"), w=8)
    L.add(timeseries("Pod restarts (15 m)",
                     [(summed("kube_pod_container_status_restarts_total", POD, by="pod", fn="increase", window="15m"),
                       "{{pod}}")], "short"), w=8)
    L.add(timeseries("Readiness (1 ready, 0 not) per pod",
                     [(f'liveops_ready{{job="liveops", {NS}}}', "{{pod}} {{liveops_target}}")],
                     "short"), w=12)
    L.add(timeseries("Redis errors per second",
                     [(summed("redis_errors_total", by="op, kind"),
                       "{{op}} {{kind}}")], "short"), w=12)
    L.add(timeseries("Database errors per second",
                     [(summed("db_errors_total", by="backend, pool, call, kind"),
                       "{{call}} {{kind}} ({{pool}})")], "short",
                     "Repository calls that did not succeed, by store method: unavailable or "
                     "timeout (503, retried), corrupt (unreadable rows), cancelled (the caller "
                     "gave up first)."), w=8)
    L.add(timeseries("Database call p99 by call",
                     [(hq(0.99, "db_call_seconds", "backend, pool, call", NS), "{{call}} ({{pool}})")], "s",
                     "Each repository call, the wait for a connection (and on SQLite for the "
                     "write turn) included."),
          w=8)
    L.add(timeseries("Database connections in use / max per pod",
                     [(f'sum by (pod, pool) (db_pool_connections{{state="in_use", {NS}}})',
                       "in use {{pod}} {{pool}}"),
                      (f"max by (pod, pool) (db_pool_max_connections{{{NS}}})",
                       "max {{pod}} {{pool}}")], "short",
                     "Sampled every 5 s. The pool-saturated alert fires above 80 % for 10 "
                     "minutes."), w=12)
    L.add(timeseries("Read replica usable (1) and its lag (s) per pod",
                     [(f"min by (pod) (db_read_replica_usable{{{NS}}})", "usable {{pod}}"),
                      (f"max by (pod) (db_read_replica_lag_seconds{{{NS}}})", "lag {{pod}}")],
                     "short",
                     "Only with DB_READ_URL: 0 while the replica is set aside (unreachable, or "
                     "behind by more than the allowed lag) and its reads go to the primary "
                     "(LiveOpsReadReplicaUnusable after 15 minutes)."), w=12)
    L.add(timeseries("SQLite write turn wait p99 per pod",
                     [(hq(0.99, "db_write_turn_wait_seconds", "pod", NS), "{{pod}}")], "s",
                     "Embedded only: a process writes its SQLite file one transaction at a "
                     "time; this is how long a write waited for its turn."), w=6)
    L.add(timeseries("SQLite claims and entries per group (mean) per pod",
                     [(f"{summed('db_write_group_writes_sum', by='pod')} / "
                       f"{summed('db_write_group_writes_count', by='pod')}", "{{pod}}")], "short",
                     "Embedded only: inbox claims and campaign entries that wait for the write "
                     "turn are committed together (ADR 0024); near 1 under light load, tens when "
                     "many players claim a gift or enter a campaign at once."), w=6)


@board("liveops-pipeline", "LiveOps / Event pipeline",
       "From the gateway through the bus to the consumers: rates, lag, batch times.", ["pipeline"])
def pipeline(L):
    L.row("Ingest")
    L.add(timeseries("Events accepted by the gateway, by type",
                     [(summed("events_ingested_total", by="type"), "{{type}}")],
                     "short", stack=True))
    L.add(timeseries("Events dropped, by reason",
                     [(summed("dropped_events_total", by="reason"), "{{reason}}")],
                     "short", "invalid: refused input (a field, a reused Idempotency-Key); "
                     "too_large: a batch or body over its limit; duplicate: a repeat answered "
                     "from the first; blocked: a player blocked by fairness; rate: over "
                     "RATE_LIMIT_MAX; unavailable: the bus or hot state unreachable (503); "
                     "internal: hot state read back corrupt (500); anomaly: quarantined by "
                     "fairness."))
    L.add(timeseries("Gateway publish time p50 / p99 by bus",
                     [(hq(0.5, "bus_publish_seconds", "bus", NS), "p50 {{bus}}"),
                      (hq(0.99, "bus_publish_seconds", "bus", NS), "p99 {{bus}}")], "s",
                     "How long the bus takes to acknowledge a gateway publish (each request's "
                     "events in one call), failed calls included: the first question of the "
                     "gateway latency runbook."))
    L.add(timeseries("Messages published to the bus / trimmed once every group acked them",
                     [(summed("bus_published_total"), "published / s"),
                      (summed("bus_trimmed_total"), "trimmed / s")],
                     "short", "Trimmed: the Redis bus removes what every consumer group has "
                     "acked as the groups poll; published well above trimmed for long means a "
                     "group is behind (see the lag below) and the streams grow toward "
                     "BUS_REDIS_MAX_LEN."))
    L.add(timeseries("Redis bus: wait for replicas p99 / events refused unconfirmed / shortfalls",
                     [(hq(0.99, "bus_replica_wait_seconds", "namespace", NS), "wait p99 (s)"),
                      (summed("bus_unreplicated_total"), "refused / s"),
                      (summed("bus_replica_shortfalls_total"), "shortfalls / s")],
                     "short", "Only with BUS_REDIS_REPLICAS > 0: each publish waits until that many "
                     "replicas hold it; fewer within BUS_REDIS_REPLICA_WAIT_MS and the gateway "
                     "answers 503. With BUS_REDIS_REPLICAS_AWAY, a shortfall (fewer confirmed "
                     "than were followed) stops the next publishes waiting for the missing replica."))
    L.add(timeseries("Redis bus: replicas expected / attached / followed",
                     [(f"max by (namespace) (bus_replicas_expected{{{NS}}})", "expected"),
                      (f"max by (namespace) (bus_replicas_attached{{{NS}}})", "attached"),
                      (f"min by (namespace) (bus_replicas_followed{{{NS}}})", "followed")],
                     "short", "Only with BUS_REDIS_REPLICAS_AWAY: each publish waits for every "
                     "followed replica (attached and caught up), and at least BUS_REDIS_REPLICAS "
                     "minus BUS_REDIS_REPLICAS_AWAY. Followed below expected: a replica is away "
                     "(a patch) and events are confirmed by fewer."))
    L.add(timeseries("Bus calls failing / publishes expired unsent per second",
                     [(summed("bus_receive_failures_total", by="bus"), "receive failed ({{bus}})"),
                      (summed("bus_heartbeat_failures_total", by="bus"),
                       "heartbeat failed ({{bus}})"),
                      (summed("bus_publishes_expired_total", by="bus"),
                       "publish expired ({{bus}})")],
                     "short", "SQS receive calls that failed; Redis consumer heartbeats that failed "
                     "(past a lease, a busy consumer's batch goes to another); SQS publishes that "
                     "waited past their deadline without being sent (answered 503: the bus slower "
                     "than the intake)."))
    L.add(timeseries("Messages per bus group commit (mean)",
                     [(ratio(summed("bus_group_commit_messages_sum"),
                             summed("bus_group_commit_messages_count")), "mean")],
                     "short"))

    L.row("Bus and consumers")
    L.add(timeseries("Bus lag (messages waiting) by group",
                     [(f"max by (topic, group) (bus_lag{{{NS}}})", "{{group}} on {{topic}}")],
                     "short", "Alert when above 5000 and still growing after 10 minutes."))
    L.add(timeseries("Visibility lag: seconds of backlog at the current consumption rate",
                     [(f"max by (group) (bus_lag{{{NS}}}) / on (group) " +
                       summed("consumer_batch_events_sum", by="group"),
                       "{{group}}")], "s",
                     "How long an event accepted now waits before its consumer sees it."))
    L.add(timeseries("Consumer throughput (events / s) by group",
                     [(summed("consumer_batch_events_sum", by="group"),
                       "{{group}}")], "short"))
    L.add(timeseries("Consumer batch time p50 / p95 by group",
                     [(hq(0.5, "consumer_batch_seconds", "group", NS), "p50 {{group}}"),
                      (hq(0.95, "consumer_batch_seconds", "group", NS), "p95 {{group}}")], "s"))
    L.add(timeseries("Events per consumer batch (mean) by group",
                     [(ratio(summed("consumer_batch_events_sum", by="group"),
                             summed("consumer_batch_events_count", by="group")),
                       "{{group}}")], "short"))
    L.add(last_hour("Dead letters", "bus_dead_letters_total", "topic, group",
                    "{{group}} on {{topic}}",
                    "Inspect with `liveops dead-letters`, replay with --replay."))
    L.add(timeseries("Dead letters held (SQS), by group",
                     [(f"max by (topic, group) (bus_dead_letter_messages{{{NS}}})",
                       "{{group}} on {{topic}}")], "short",
                     "Messages in each group's dead-letter queue, read with the lag every 2 s: "
                     "SQS moves them there by its redrive policy, so the counter above never "
                     "sees them. Replayed or removed: back to 0."))
    L.add(last_hour("Undecodable events", "events_undecodable_total", "group", "{{group}}",
                    "Bus messages this release cannot read (a newer release's event during a "
                    "rolling upgrade, or a corrupt one): never acked, so they end in the dead "
                    "letters; finish the rollout, then replay."))
    L.add(last_hour("Batch retries held through a store outage", "consumer_outage_retries_total",
                    "group", "{{group}}",
                    "A consumer whose database does not answer keeps its batch and retries "
                     "instead of polling: nothing is redelivered towards the dead letters."))
    L.add(last_hour("Events failing alone", "consumer_failing_events_total", "group", "{{group}}",
                    "A batch that keeps failing while its database answers is applied one event "
                    "at a time: the rest is acked, these go back to the bus and, after "
                    "BUS_MAX_DELIVERIES, to the dead letters. Their errors are in the logs."))

    L.row("Progression")
    L.add(timeseries("Progression events applied, by type",
                     [(summed("progression_events_applied_total", by="type"),
                       "{{type}}")], "short", stack=True))
    L.add(timeseries("Level-ups and reward claims",
                     [(summed("level_ups_total"), "level-ups / s"),
                      (summed("rewards_claimed_total"), "claims / s"),
                      (summed("progression_replans_total"), "batches planned again / s")],
                     "short",
                     description="A batch is planned again when another consumer changed its "
                                 "players' XP between the read and the commit (a replayed dead "
                                 "letter beside its partition); steady replans mean two "
                                 "consumers share players."))


@board("liveops-fairness", "LiveOps / Fairness",
       "Anomaly flags, strikes, blocks and what the gateway refuses because of them.", ["fairness"])
def fairness(L):
    L.row("Flags and blocks")
    L.add(stat("Flags (last hour)", summed("anomaly_flags_total", fn="increase", window="1h")), w=8, h=4)
    L.add(stat("Strikes given (last hour)", summed("anomaly_flags_total", fn="increase", window="1h"),
               description="Every flag gives its player one strike, once per event (a "
               "redelivered batch strikes again without counting twice); strikes are not "
               "counted separately."), w=8, h=4)
    L.add(stat("Fairness blocks (last hour)", summed("fairness_blocks_total", fn="increase", window="1h"),
               thresholds=[(20, "orange")]), w=8, h=4)
    L.add(timeseries("Anomaly flags per second, by event type",
                     [(summed("anomaly_flags_total", by="type"), "{{type}}")],
                     "short"))
    L.add(timeseries("Flag rate against its 1-hour average",
                     [(summed("anomaly_flags_total", by="type", window="5m"), "now {{type}}"),
                      (summed("anomaly_flags_total", by="type", window="1h"), "1 h avg {{type}}")],
                     "short", "The spike alert fires above three times the hour's average."))
    L.add(timeseries("Fairness blocks per second",
                     [(summed("fairness_blocks_total"), "blocks / s"),
                      (summed("fairness_rejudged_total"), "batches judged again / s")], "short",
                     "A batch is judged again when another replica stored a verdict on one of its "
                     "events first (both judged a redelivery): its verdict stands."))
    L.add(timeseries("Gateway refusals of blocked players (403)",
                     [(summed("http_requests_total", f'{NS}, service="gateway", status="403"'),
                       "403 / s")], "reqps"))
    L.add(timeseries("Quarantined events (dropped as anomaly)",
                     [(summed("dropped_events_total", f'{NS}, reason="anomaly"'),
                       "quarantined / s")], "short"))
    L.add(timeseries("Fairness consumer lag",
                     [(f'max by (group) (bus_lag{{{NS}, group="fairness"}})', "{{group}}")],
                     "short"))


@board("liveops-leaderboards", "LiveOps / Leaderboards",
       "Score updates, top-N cache, rebuilds and snapshots.", ["leaderboards"])
def leaderboards(L):
    LB = f'{NS}, service="leaderboard"'
    L.row("Updates")
    L.add(timeseries("Score updates per second, by window",
                     [(summed("leaderboard_updates_total", by="window"),
                       "{{window}}")], "short"))
    L.add(timeseries("Leaderboard consumer lag",
                     [(f'max by (group) (bus_lag{{{NS}, group="leaderboard"}})', "{{group}}")],
                     "short"))
    L.row("Reads")
    L.add(timeseries("Top-N cache hit ratio",
                     [(f'sum(rate(leaderboard_top_cache_total{{{NS}, result="hit"}}[{RI}])) '
                       f"/ sum(rate(leaderboard_top_cache_total{{{NS}}}[{RI}]))", "hit ratio")],
                     "percentunit"))
    L.add(timeseries("Leaderboard reads p95 by route",
                     [(hq(0.95, "http_request_duration_seconds", "route", LB), "{{route}}")], "s"))
    L.row("Rebuilds and snapshots")
    L.add(timeseries("Last rebuild time per pod",
                     [(f"max by (pod) (leaderboard_rebuild_seconds{{{NS}}})", "{{pod}}")], "s",
                     "How long the last start-up rebuild of the live boards took."))
    L.add(last_hour("Snapshots saved", "leaderboard_snapshots_total", "window, final",
                    "{{window}} final={{final}}"))
    L.add(last_hour("Boards reloaded from the repository", "leaderboard_board_reloads_total",
                    "reason", "{{reason}}",
                    "A rank store update failed, a score commit failed and may have landed, or "
                     "the reconcile found the rank store short of a board's players (Redis "
                     "restarted empty): the boards concerned are raised again from the database."))
    L.add(timeseries("Latest totals raised again by the reconcile (last 5 minutes)",
                     [(summed("leaderboard_reraised_total", fn="increase", window="5m"),
                       "raised again"),
                      (summed("leaderboard_reraise_skipped_total", fn="increase", window="5m"),
                       "not noted (past 200 000 a pass)")], "short",
                     "Every LB_RECONCILE_SEC each replica raises again the totals its commits "
                     "raised in that pass and the one before, so a Redis failover that lost the "
                     "last writes heals within a pass or two. Follows the score update rate "
                     "(raising is idempotent). Not noted: those players heal at their next event."))
    L.add(last_hour("Final snapshots recovered", "leaderboard_finals_recovered_total", "window",
                    "{{window}}",
                    "A period's final snapshot not taken in time (no leaderboard process ran at "
                    "its end) and taken later from the stored scores."))
    L.add(last_hour("Scores committed after their final snapshot was due",
                    "leaderboard_late_scores_total", "window", "{{window}}",
                    "Events held up longer than LB_SETTLE_SEC (a consumer outage across a "
                     "period's end): the hall of fame of that period is taken again; a rank "
                     "campaign already decided keeps what it paid."))


@board("liveops-datastores", "LiveOps / MySQL VM and Redis",
       "The MySQL virtual machine (node_exporter), MySQL (mysqld_exporter) and Redis "
       "(redis_exporter).", ["mysql", "redis"],
       [query_var("node", "MySQL VM", 'label_values(node_uname_info{job="mysql-node"}, instance)'),
        query_var("mysql", "MySQL", 'label_values(mysql_up{job="mysqld"}, instance)'),
        query_var("redis", "Redis", 'label_values(redis_up{job="redis"}, instance)')])
def datastores(L):
    NODE = 'job="mysql-node", instance=~"$node"'
    MY = 'job="mysqld", instance=~"$mysql"'
    RD = 'job="redis", instance=~"$redis"'
    L.row("MySQL VM (node_exporter)")
    L.add(timeseries("CPU busy",
                     [(f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{NODE}, mode="idle"}}[{RI}]))',
                       "{{instance}}")], "percentunit", "Alert above 90 % for 10 minutes."), w=8)
    L.add(timeseries("CPU by mode",
                     [(f'sum by (mode) (rate(node_cpu_seconds_total{{{NODE}, mode!="idle"}}[{RI}]))',
                       "{{mode}}")], "short", stack=True), w=8)
    L.add(timeseries("Load (1 m)", [(f"node_load1{{{NODE}}}", "{{instance}}")], "short"), w=8)
    L.add(timeseries("Memory available",
                     [(ratio(f"node_memory_MemAvailable_bytes{{{NODE}}}",
                             f"node_memory_MemTotal_bytes{{{NODE}}}"),
                       "{{instance}}")], "percentunit"), w=8)
    disks = f'{NODE}, fstype!~"tmpfs|overlay"'
    L.add(timeseries("Disk space free",
                     [(ratio(f"node_filesystem_avail_bytes{{{disks}}}",
                             f"node_filesystem_size_bytes{{{disks}}}"),
                       "{{mountpoint}}")], "percentunit"), w=8)
    L.add(timeseries("Disk busy",
                     [(per_second("node_disk_io_time_seconds_total", NODE), "{{device}}")],
                     "percentunit"), w=8)
    L.add(timeseries("Network",
                     [(per_second("node_network_receive_bytes_total", f'{NODE}, device!="lo"'),
                       "in {{device}}"),
                      (per_second("node_network_transmit_bytes_total", f'{NODE}, device!="lo"'),
                       "out {{device}}")], "Bps"), w=12)
    L.add(timeseries("MySQL backup age",
                     [(f"time() - max by (instance) "
                       f"(liveops_mysql_backup_last_success_timestamp_seconds{{{NODE}}})",
                       "{{instance}}")], "s",
                     "Since the last dump copied to blob storage (a timer every 10 minutes; "
                     "node_exporter's textfile collector). LiveOpsMySQLBackupTooOld above 30 "
                     "minutes."), w=12)
    L.row("MySQL (mysqld_exporter)")
    L.add(stat("MySQL up", f"min(mysql_up{{{MY}}})", thresholds=[(1, "green")]), w=12, h=4)
    L.add(stat("Connections used",
               f"max(mysql_global_status_threads_connected{{{MY}}} "
               f"/ mysql_global_variables_max_connections{{{MY}}})", "percentunit",
               thresholds=[(0.8, "orange"), (0.95, "red")]), w=12, h=4)
    L.add(timeseries("Queries per second",
                     [(per_second("mysql_global_status_queries", MY), "{{instance}}")],
                     "short"), w=8)
    L.add(timeseries("Commands per second (top)",
                     [(f"topk(8, sum by (command) (rate(mysql_global_status_commands_total{{{MY}}}[{RI}])))",
                       "{{command}}")], "short"), w=8)
    L.add(timeseries("Slow queries and row lock waits",
                     [(per_second("mysql_global_status_slow_queries", MY), "slow {{instance}}"),
                      (per_second("mysql_global_status_innodb_row_lock_waits", MY),
                       "lock waits {{instance}}")], "short"), w=8)
    def pages(state):
        return f"sum by (instance) (mysql_global_status_buffer_pool_pages{{{MY}, state{state}}})"

    # "old" pages are a part of "data": leave them out of the total.
    L.add(timeseries("InnoDB buffer pool pages in use",
                     [(ratio(pages('="data"'), pages('=~"data|free|misc"')), "{{instance}}")],
                     "percentunit"), w=12)
    L.add(timeseries("Traffic",
                     [(per_second("mysql_global_status_bytes_received", MY), "in"),
                      (per_second("mysql_global_status_bytes_sent", MY), "out")], "Bps"),
          w=12)
    L.row("Redis (redis_exporter)")
    L.add(timeseries("Memory used / maxmemory",
                     [(f"redis_memory_used_bytes{{{RD}}} / (redis_memory_max_bytes{{{RD}}} > 0)",
                       "{{instance}}")], "percentunit", "Alert above 90 % for 5 minutes."), w=8)
    L.add(timeseries("Commands per second",
                     [(per_second("redis_commands_processed_total", RD), "{{instance}}")],
                     "short"), w=8)
    L.add(timeseries("Clients and evictions",
                     [(f"redis_connected_clients{{{RD}}}", "clients {{instance}}"),
                      (per_second("redis_evicted_keys_total", RD), "evicted/s {{instance}}")],
                     "short"), w=8)


@board("liveops-campaigns", "LiveOps / Campaigns",
       "Live-event campaigns: state changes, entries, draws, inbox claims, webhook deliveries "
       "and operator logins.", ["campaigns"])
def campaigns(L):
    LIVE = f'{NS}, service=~"operators|campaigns|participation|distribution"'
    L.row("Campaigns")
    L.add(stat("Campaigns settled (last 24 h)",
               f'sum(increase(campaigns_total{{{NS}, state="settled"}}[24h]))'), w=6, h=4)
    L.add(stat("Draws (last 24 h)", f"sum(increase(draws_total{{{NS}}}[24h]))"), w=6, h=4)
    L.add(stat("Rank campaigns ranked late (last 24 h)",
               f'sum(increase(campaign_rankings_total{{{NS}, read="late"}}[24h]))',
               thresholds=[(1, "orange")]), w=6, h=4)
    L.add(stat("Webhook deliveries dead-lettered (last 24 h)",
               f'sum(increase(webhook_deliveries_total{{{NS}, result="dead"}}[24h]))',
               thresholds=[(1, "orange")]), w=6, h=4)
    L.add(timeseries("Campaign state changes (per hour), by state",
                     [(f"sum by (state) (increase(campaigns_total{{{NS}}}[1h]))", "{{state}}")],
                     "short", "draft, scheduled, live, ended, settled, cancelled: each change "
                     "counted once, by the replica that made it."))
    L.add(timeseries("Entries and inbox claims per second",
                     [(f"sum(rate(entries_total{{{NS}}}[{RI}]))", "entries / s"),
                      (f"sum(rate(inbox_claims_total{{{NS}}}[{RI}]))", "claims / s")], "short"))
    L.row("Webhooks and operators")
    L.add(timeseries("Webhook delivery attempts per second, by result",
                     [(f"sum by (result) (rate(webhook_deliveries_total{{{NS}}}[{RI}]))",
                       "{{result}}"),
                      (f"sum(rate(webhook_redeliveries_total{{{NS}}}[{RI}]))", "redelivered")],
                     "short",
                     "failed: retried, up to hourly; dead: failing for WEBHOOK_RETRY_SEC (a day); "
                     "redelivered: dead deliveries an operator sent again "
                     "(POST /webhooks/{id}/redeliver)."))
    L.add(timeseries("Webhook outbox: age of the oldest event not yet queued",
                     [(f"max(webhook_outbox_oldest_undispatched_seconds{{{NS}}})", "oldest")],
                     "s", "Campaign events wait in the outbox until a tick queues one delivery "
                     "per subscribed webhook (8 MiB of bodies a tick); growing past minutes: the "
                     "queueing fails (LiveOpsWebhookOutboxStuck)."))
    L.add(timeseries("Background task rounds failing per second, by task",
                     [(f"sum by (task) (rate(background_round_failures_total{{{NS}}}[{RI}]))",
                       "{{task}}")], "short",
                     "The scheduler, decider, settlement, inbox placer, webhook queue, snapshots, "
                     "reconcile and retention purges: no successful round for twice the task's "
                     "period plus 15 minutes fires LiveOpsBackgroundTaskFailing; the log names the "
                     "item and the error."))
    L.add(timeseries("Operator logins per second, by result",
                     [(f"sum by (result) (rate(operator_logins_total{{{NS}}}[{RI}]))",
                       "{{result}}")], "short",
                     "throttled: over the per-address or the per-account-and-address limit."))
    L.add(timeseries("Operator creates answered again (per hour)",
                     [(f"sum(increase(operator_requests_replayed_total{{{NS}}}[1h]))",
                       "answered again")], "short",
                     "A create or send retried under its Idempotency-Key got its first answer "
                     "again; nothing was created twice. Many: a client retrying on timeouts."))
    L.add(timeseries("Secrets at rest: rows not as the settings want, and values that did not open",
                     [(f"max by (table) (secrets_stale{{{NS}}})", "{{table}} stale"),
                      (f"sum by (table) (increase(secrets_unreadable_total{{{NS}}}[1h]))",
                       "{{table}} unreadable (last hour)"),
                      (f"sum by (result) (increase(secrets_key_reloads_total{{{NS}}}[10m]))",
                       "keys file {{result}} (pods, last 10 min)"),
                      (f"count by (key) (secrets_keys_in_force{{{NS},seals=\"true\"}} == 1)",
                       "pods sealing with {{key}}")], "short",
                     "stale: secrets in the clear or under an older key of SECRETS_KEYS_FILE "
                     "(with SECRETS_SEAL=false: sealed), resealed up to 1000 rows a table a minute by "
                     "each process; remove an old key only once every table is at 0. "
                     "unreadable: sealed under a key the file no longer holds, or altered "
                     "(LiveOpsSecretsUnreadable). keys file applied: pods that took a new version "
                     "of the file; rejected or unreadable: LiveOpsSecretsKeysFileRefused. pods "
                     "sealing with a key: one line per key during a rotation; step 3 may start "
                     "once only the new key's is left and nothing is stale."))
    L.add(timeseries("Live-event routes p95 by route",
                     [(hq(0.95, "http_request_duration_seconds", "route", LIVE), "{{route}}")],
                     "s"))

def render(build):
    return json.dumps(build(), indent=2) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("dashboards out of date with dashboards.py: " + ", ".join(stale)
              + " (run python3 monitoring/grafana/dashboards.py)", file=sys.stderr)
        return 1
    if check:
        print(f"dashboards: {len(DASHBOARDS)} JSON files match dashboards.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
