#!/usr/bin/env bash
# Checks monitoring/: Prometheus rules and their unit tests, the Prometheus config,
# Alertmanager routing and inhibition, Grafana dashboards, the Alloy config, and that every
# metric the rules and dashboards use is one the binary exports (or an exporter's, allowlisted).
# The live part runs the real binary, a real Prometheus and a real Alertmanager on 127.0.0.1.
#
#   scripts/check/monitoring.sh                        # binary: $LIVEOPS_BIN or target/debug/liveops
#   LIVEOPS_BIN=/path/to/liveops scripts/check/monitoring.sh
#
# Tools: Debian prometheus (promtool, prometheus), prometheus-alertmanager (amtool,
# prometheus-alertmanager), python3-yaml; installed by scripts/tools.sh from scripts/tools/apt-monitoring.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
MON="$ROOT/monitoring"
PY=/usr/bin/python3

"$ROOT/scripts/tools.sh" install
# shellcheck disable=SC1090
source <("$ROOT/scripts/tools.sh" env)
for tool in promtool amtool prometheus prometheus-alertmanager; do
  command -v "$tool" >/dev/null || {
    echo "monitoring: $tool not found; scripts/tools.sh install should have installed it" \
      "(Debian packages prometheus, prometheus-alertmanager)" >&2
    exit 1
  }
done
"$PY" -c 'import yaml' 2>/dev/null || {
  echo "monitoring: python3-yaml missing for $PY (Debian package python3-yaml)" >&2
  exit 1
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
step() { echo "== $*"; }
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }
# run NAME CMD...: runs CMD (bounded in time), prints its output, counts it.
run() {
  local name="$1"; shift
  if timeout 300 "$@"; then ok; else bad "$name"; fi
}

step "promtool check rules"
run "promtool check rules" promtool check rules "$MON"/prometheus/rules/*.yml

step "promtool test rules"
run "promtool test rules" promtool test rules "$MON"/prometheus/tests/*.yml

step "rules, tests coverage and dashboards (lint)"
run "monitoring.py static" "$PY" scripts/check/monitoring.py static "$ROOT" "$WORK"

step "dashboards match dashboards.py"
run "dashboards.py --check" "$PY" "$MON/grafana/dashboards.py" --check

step "Azure rule groups match the rules (azure_rules.py --check)"
# AKS managed Prometheus evaluates these rules from infra/terraform/modules/stack/
# prometheus-rules.tf.json: a rule changed without regenerating it fails here (and in infra.sh,
# which also has Terraform evaluate the file and compares it rule by rule).
run "azure_rules.py --check" "$PY" "$MON/prometheus/azure_rules.py" --check

step "dashboard queries parse (promtool check rules on the extracted PromQL)"
if [ -f "$WORK/dashboard-exprs.yml" ]; then
  run "dashboard PromQL" promtool check rules "$WORK/dashboard-exprs.yml"
else
  bad "dashboard PromQL: monitoring.py static wrote no dashboard-exprs.yml"
fi

step "promtool check config"
# Debian builds Prometheus without Kubernetes service discovery, so promtool rejects
# kubernetes_sd_configs. Check a copy where each kubernetes_sd_configs block becomes a
# file_sd_configs block (everything else, relabelling included, is checked as written), and
# check the Kubernetes SD blocks' own fields here.
"$PY" - "$MON/prometheus/prometheus.yml" "$WORK/prometheus-check" <<'EOF' && ok || bad "prometheus.yml Kubernetes SD blocks"
import sys, pathlib, yaml
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
doc = yaml.safe_load(src.read_text())
roles = {"node", "pod", "service", "endpoints", "endpointslice", "ingress"}
allowed = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}
errors, n = [], 0
def convert(cfg, where):
    global n
    for sd in cfg.pop("kubernetes_sd_configs", None) or []:
        n += 1
        if sd.get("role") not in roles:
            errors.append(f"{where}: kubernetes_sd role {sd.get('role')!r} not in {sorted(roles)}")
        for key in sd:
            if key not in allowed:
                errors.append(f"{where}: kubernetes_sd has no field {key!r}")
        ns = sd.get("namespaces", {})
        if ns and not isinstance(ns.get("names", []), list):
            errors.append(f"{where}: namespaces.names must be a list")
        cfg.setdefault("file_sd_configs", []).append({"files": [f"k8s-{n}.json"]})
for s in doc.get("scrape_configs", []):
    convert(s, s["job_name"])
for a in doc.get("alerting", {}).get("alertmanagers", []):
    convert(a, "alertmanagers")
doc["rule_files"] = [str(src.parent / r) for r in doc.get("rule_files", [])]
out.mkdir(parents=True, exist_ok=True)
# Files that exist only inside a pod (service account token and CA) or are written at deploy
# time (file_sd targets): stand-ins in the check directory, so promtool checks the rest.
stand_ins = 0
for s in doc.get("scrape_configs", []):
    for holder, key in ((s.get("authorization", {}), "credentials_file"),
                        (s.get("tls_config", {}), "ca_file")):
        if key in holder:
            stand_in = out / f"stand-in-{stand_ins}"
            stand_in.write_text("stand-in\n")
            holder[key] = str(stand_in)
            stand_ins += 1
for cfg in doc.get("scrape_configs", []) + doc.get("alerting", {}).get("alertmanagers", []):
    for sd in cfg.get("file_sd_configs", []):
        for f in sd["files"]:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            (out / f).write_text("[]\n")
(out / "prometheus.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
for e in errors:
    print("  FAIL " + e, file=sys.stderr)
print(f"  ok   {n} kubernetes_sd_configs blocks: known roles and fields; checked as file_sd "
      f"below ({stand_ins} in-pod credential files and the file_sd target files stood in for)")
sys.exit(1 if errors else 0)
EOF
if [ -f "$WORK/prometheus-check/prometheus.yml" ]; then
  run "promtool check config" promtool check config "$WORK/prometheus-check/prometheus.yml"
fi

step "amtool check-config (with the templates)"
sed "s#/etc/alertmanager/templates/\*\.tmpl#$MON/alertmanager/templates/*.tmpl#" \
  "$MON/alertmanager/alertmanager.yml" > "$WORK/alertmanager.yml"
run "amtool check-config" amtool check-config "$WORK/alertmanager.yml"
rendered="$(amtool template render --template.glob="$MON/alertmanager/templates/*.tmpl" \
  --template.text='{{ template "liveops.title" . }} {{ template "liveops.text" . }}' 2>&1)" \
  && grep -q "Runbook:" <<<"$rendered" && ok || bad "amtool template render: $rendered"
# The rules' runbook_url is relative to the repository; every notification (the text and
# PagerDuty's link) must carry it absolute, the template's base in front, and a URL as it is.
cat > "$WORK/am-data.json" <<'JSON'
{"status": "firing", "commonLabels": {"alertname": "LiveOpsHTTPErrors", "severity": "critical"},
 "alerts": [{"status": "firing", "labels": {"alertname": "LiveOpsHTTPErrors"},
             "annotations": {"summary": "s", "description": "d",
                             "runbook_url": "docs/OPERATIONS.md#http-errors"}},
            {"status": "firing", "labels": {"alertname": "Other"},
             "annotations": {"summary": "s", "description": "d",
                             "runbook_url": "https://runbooks.example.org/other"}}]}
JSON
base="$(grep -o 'define "liveops.runbook_base" }}[^{]*' "$MON/alertmanager/templates/liveops.tmpl" \
  | sed 's/.*}}//')"
href="$(sed -n "s/.*href: '\(.*\)'.*/\1/p" "$MON/alertmanager/alertmanager.yml")"
rendered="$(amtool template render --template.glob="$MON/alertmanager/templates/*.tmpl" \
  --template.data="$WORK/am-data.json" \
  --template.text="{{ template \"liveops.text\" . }}|$href" 2>&1)"
want="Runbook: ${base}docs/OPERATIONS.md#http-errors"
if [[ "$base" == https://* ]] && grep -qF "$want" <<<"$rendered" \
    && grep -qF "Runbook: https://runbooks.example.org/other" <<<"$rendered" \
    && grep -qF "|${base}docs/OPERATIONS.md#http-errors" <<<"$rendered"; then
  echo "  ok   runbook links absolute in the text and PagerDuty's link (base $base)"
  ok
else
  bad "runbook links not absolute (base '$base', want '$want'): $rendered"
fi

step "amtool config routes test: each severity reaches its receivers"
routes=0
while read -r want labels; do
  [ -z "$want" ] && continue
  # shellcheck disable=SC2086
  if got="$(amtool config routes test --config.file="$WORK/alertmanager.yml" \
      --verify.receivers="$want" $labels 2>/dev/null)"; then
    echo "  ok   $labels -> $got"
    routes=$((routes + 1))
  else
    bad "route for $labels: got '$got', want '$want'"
  fi
done <<'EOF'
pager,slack alertname=LiveOpsHTTPErrors severity=critical namespace=prod service=gateway
slack alertname=LiveOpsHTTPErrors severity=warning namespace=prod service=gateway
email alertname=LiveOpsPlayersBlocked severity=info namespace=prod
slack alertname=SomethingNew namespace=prod
EOF
[ "$routes" -eq 4 ] && ok

step "Alertmanager: real routes and inhibition, receivers as local webhooks"
run "alertmanager live" "$PY" scripts/check/monitoring.py alertmanager "$ROOT" "$WORK"

step "Alloy config"
run "alloy_lint" "$PY" scripts/check/alloy_lint.py "$MON/alloy/config.alloy"

step "live: liveops serve + Prometheus with the real rules"
run "monitoring.py live" "$PY" scripts/check/monitoring.py live "$ROOT" "$WORK"

step "metric names: used by rules and dashboards vs exported by the binary"
if [ -f "$WORK/scrape.txt" ]; then
  run "monitoring.py names" "$PY" scripts/check/monitoring.py names "$ROOT" "$WORK"
else
  bad "metric names: the live step produced no scrape of /metrics"
fi

echo "monitoring: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
