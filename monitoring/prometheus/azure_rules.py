#!/usr/bin/env python3
"""Writes the Prometheus rules of monitoring/prometheus/rules/*.yml as Azure Monitor managed
Prometheus rule groups: infra/terraform/modules/stack/prometheus-rules.tf.json (Terraform JSON
syntax, one azurerm_monitor_alert_prometheus_rule_group per rule group), so the AKS clusters
Terraform makes evaluate the same recording and alert rules as an in-cluster Prometheus.

    python3 monitoring/prometheus/azure_rules.py          # rewrites the .tf.json file
    python3 monitoring/prometheus/azure_rules.py --check  # fails if the file differs from this

The rule files stay the one source: never edit the .tf.json by hand. What changes on the way
(the limits and forms of Microsoft.AlertsManagement/prometheusRuleGroups, azurerm 4.x):

- `for` becomes ISO 8601 (5m -> PT5M). Azure refuses a `for` under one minute and azurerm always
  sends one (an unset `for` is refused as "not a valid ISO 8601 duration"), so a rule without
  `for`, or with less than a minute, gets PT1M: it fires one minute later than in Prometheus.
- A group's `interval` becomes ISO 8601 too, rounded up to whole minutes within PT1M..PT15M (the
  service's range): the 30 s recording groups are evaluated every minute.
- `severity` (critical | warning | info) becomes the Azure severity (1 | 2 | 3; 1 is critical
  in docs/OPERATIONS.md, as for the Service Bus alerts) and picks the action group: critical
  pages (azurerm_monitor_action_group.pager), the others are mailed (.this). The label stays.
- At most 20 rules a group (a limit Azure does not raise): a longer group is split in parts.
- Terraform reads every string of a .tf.json file as a template: `${` and `%{` are escaped.
- `runbook_url` becomes absolute: Azure's mails show it as it is, and no Alertmanager template
  adds the repository URL there. The base is `liveops.runbook_base` of
  monitoring/alertmanager/templates/liveops.tmpl (one place for both), also written as
  `local.runbook_base` for the Service Bus alerts of monitoring.tf.
- Every alert can be turned off per environment (var.monitoring.prometheus_alerts_disabled, by
  alert name, through local.prometheus_alerts_disabled in monitoring.tf); recording rules are
  always on.

infra/terraform/tests/prometheus_rules.py has Terraform evaluate the file and compares what it
gets with the rule files, rule by rule (scripts/check/infra.sh).
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "rules"
OUT = ROOT / "infra" / "terraform" / "modules" / "stack" / "prometheus-rules.tf.json"
TEMPLATE = ROOT / "monitoring" / "alertmanager" / "templates" / "liveops.tmpl"

RESOURCE = "azurerm_monitor_alert_prometheus_rule_group"
# Prometheus severity label -> Azure Monitor severity (0 critical .. 4 verbose) and action group.
SEVERITY = {"critical": 1, "warning": 2, "info": 3}
PAGER_SEVERITY = 1  # this and more severe go to the pager's action group
ACTION_GROUPS = {"pager": "azurerm_monitor_action_group.pager", "mail": "azurerm_monitor_action_group.this"}
MAX_RULES = 20  # rules per rule group (Azure Monitor service limits)
MIN_FOR_S, MIN_INTERVAL_S, MAX_INTERVAL_S = 60, 60, 15 * 60
DEFAULT_INTERVAL_S = 60
TIME_TO_RESOLVE = "PT10M"  # Azure resolves a fired alert once its condition is false this long
MAX_LABELS, MAX_ANNOTATION = 10, 1024  # per rule; characters per annotation value
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$")

DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
UNIT_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


class RuleError(Exception):
    pass


def seconds(prom: str) -> float:
    """A Prometheus duration (1h30m, 5m, 30s) in seconds."""
    m = DURATION.match(str(prom))
    if not m or not prom:
        raise RuleError(f"not a Prometheus duration: {prom!r}")
    return sum(int(v) * u for v, u in zip(m.groups(), UNIT_S) if v)


def iso8601(total: float) -> str:
    """Whole seconds as an ISO 8601 duration: 300 -> PT5M, 5400 -> PT1H30M, 86400 -> P1D."""
    total = int(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def template_literal(text: str) -> str:
    """A string Terraform's JSON syntax reads back as exactly `text` (no interpolation)."""
    return text.replace("${", "$${").replace("%{", "%%{")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def runbook_base() -> str:
    """The repository URL the runbook links are relative to: Alertmanager's liveops.runbook_base."""
    m = re.search(r'define "liveops\.runbook_base" \}\}(https://[^{}\s]+/)\{\{ end \}\}', TEMPLATE.read_text())
    if not m:
        raise RuleError(f"{TEMPLATE.relative_to(ROOT)}: no liveops.runbook_base ending in /")
    return m.group(1)


def absolute(url: str, base: str) -> str:
    """A runbook_url as a link that works outside the repository."""
    return url if re.match(r"^https?://", url) else base + url


def load_groups():
    """(file, group) for every group of every rule file, in file then group order."""
    out = []
    for f in sorted(RULES.glob("*.yml")):
        doc = yaml.safe_load(f.read_text()) or {}
        for g in doc.get("groups") or []:
            out.append((f, g))
    return out


def group_interval(g, where) -> str:
    s = seconds(g["interval"]) if "interval" in g else DEFAULT_INTERVAL_S
    minutes = -(-int(max(s, MIN_INTERVAL_S)) // 60)  # rounded up to a whole minute
    if minutes * 60 > MAX_INTERVAL_S:
        raise RuleError(f"{where}: interval {g['interval']} is longer than Azure's PT15M")
    return iso8601(minutes * 60)


def alert_rule(rule, where, base):
    name = rule["alert"]
    labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (rule.get("annotations") or {}).items()}
    if "runbook_url" in annotations:
        annotations["runbook_url"] = absolute(annotations["runbook_url"], base)
    severity = labels.get("severity")
    if severity not in SEVERITY:
        raise RuleError(f"{where}: alert {name} has severity {severity!r}, not one of {', '.join(SEVERITY)}")
    if len(labels) > MAX_LABELS:
        raise RuleError(f"{where}: alert {name} has {len(labels)} labels, Azure takes {MAX_LABELS}")
    for k, v in annotations.items():
        if len(v) > MAX_ANNOTATION:
            raise RuleError(f"{where}: annotation {k} of {name} has {len(v)} characters, Azure takes {MAX_ANNOTATION}")
    for k in list(labels) + list(annotations):
        if not LABEL.match(k):
            raise RuleError(f"{where}: {name}: {k!r} is not a label or annotation name Azure takes")
    azure_severity = SEVERITY[severity]
    group = "pager" if azure_severity <= PAGER_SEVERITY else "mail"
    return {
        "alert": name,
        "enabled": "${!contains(local.prometheus_alerts_disabled, \"" + name + "\")}",
        "expression": template_literal(rule["expr"].strip()),
        "for": iso8601(max(seconds(rule["for"]) if "for" in rule else 0, MIN_FOR_S)),
        "severity": azure_severity,
        "labels": {k: template_literal(v) for k, v in sorted(labels.items())},
        "annotations": {k: template_literal(v) for k, v in sorted(annotations.items())},
        "action": [{"action_group_id": "${" + ACTION_GROUPS[group] + ".id}"}],
        "alert_resolution": [{"auto_resolved": True, "time_to_resolve": TIME_TO_RESOLVE}],
    }


def recording_rule(rule, where):
    labels = {str(k): str(v) for k, v in (rule.get("labels") or {}).items()}
    if len(labels) > MAX_LABELS:
        raise RuleError(f"{where}: {rule['record']} has {len(labels)} labels, Azure takes {MAX_LABELS}")
    out = {"record": rule["record"], "enabled": True, "expression": template_literal(rule["expr"].strip())}
    if labels:
        out["labels"] = {k: template_literal(v) for k, v in sorted(labels.items())}
    return out


def build():
    resources, alert_names, names = {}, set(), set()
    base = runbook_base()
    for f, g in load_groups():
        where = f"{f.relative_to(ROOT)}: group {g['name']}"
        rules = []
        for rule in g.get("rules") or []:
            if "alert" in rule:
                if not NAME.match(rule["alert"]):
                    raise RuleError(f"{where}: alert name {rule['alert']!r} is not a valid metric name")
                alert_names.add(rule["alert"])
                rules.append(alert_rule(rule, where, base))
            else:
                rules.append(recording_rule(rule, where))
        if not rules:
            raise RuleError(f"{where}: no rules (Azure wants at least one a group)")
        parts = [rules[i:i + MAX_RULES] for i in range(0, len(rules), MAX_RULES)]
        for n, part in enumerate(parts, 1):
            suffix = f"-{n}" if len(parts) > 1 else ""
            name = f"{f.stem}-{g['name']}{suffix}"
            key = slug(name)
            if key in resources or name in names:
                raise RuleError(f"{where}: rule group {name} would be declared twice")
            names.add(name)
            of = f" (part {n} of {len(parts)})" if len(parts) > 1 else ""
            resources[key] = {
                "name": "${var.name_prefix}-" + name,
                "location": "${var.location}",
                "resource_group_name": "${azurerm_resource_group.this.name}",
                "description": template_literal(
                    f"Group {g['name']}{of} of {f.relative_to(ROOT)}, generated by "
                    "monitoring/prometheus/azure_rules.py; change the rule file, not this group."),
                # Scoped to the cluster: the rules query only its series (label cluster).
                "cluster_name": "${azurerm_kubernetes_cluster.this.name}",
                "scopes": ["${azurerm_monitor_workspace.this.id}", "${azurerm_kubernetes_cluster.this.id}"],
                "interval": group_interval(g, where),
                "rule_group_enabled": True,
                "tags": "${local.tags}",
                "rule": part,
            }
    if not resources:
        raise RuleError("no rule groups in monitoring/prometheus/rules")
    # A name in var.monitoring.prometheus_alerts_disabled that no rule has would leave the alert
    # meant on: the plan fails instead (once, on the first group).
    first = resources[next(iter(resources))]
    first["lifecycle"] = {"precondition": [{
        "condition": "${length(setsubtract(local.prometheus_alerts_disabled, local.prometheus_alert_names)) == 0}",
        "error_message": "monitoring.prometheus_alerts_disabled names an alert that monitoring/prometheus/rules "
                         "does not have (local.prometheus_alert_names lists them).",
    }]}
    return {
        "//": "Generated by monitoring/prometheus/azure_rules.py from monitoring/prometheus/rules/*.yml; "
              "do not edit (python3 monitoring/prometheus/azure_rules.py rewrites it).",
        "locals": {
            "//": "Every alert name of the rule files: var.monitoring.prometheus_alerts_disabled may name only these.",
            "prometheus_alert_names": sorted(alert_names),
            "runbook_base": base,
        },
        "resource": {RESOURCE: resources},
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=True) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    try:
        text = render()
    except (RuleError, KeyError, yaml.YAMLError) as e:
        print(f"azure_rules.py: {e}", file=sys.stderr)
        return 1
    rel = OUT.relative_to(ROOT)
    if check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{rel} is out of date with monitoring/prometheus/rules "
                  "(run python3 monitoring/prometheus/azure_rules.py)", file=sys.stderr)
            return 1
        doc = json.loads(text)
        groups = doc["resource"][RESOURCE]
        rules = sum(len(g["rule"]) for g in groups.values())
        print(f"{rel}: {len(groups)} rule groups, {rules} rules, as generated from monitoring/prometheus/rules")
        return 0
    OUT.write_text(text)
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
