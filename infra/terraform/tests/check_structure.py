#!/usr/bin/env python3
"""Structural checks of the Terraform tree that `terraform validate` would partly do (it cannot
run here: it needs the providers) and some it never does:

- every variable of every module and environment has a type (not `any`) and a description, and
  is used outside its own declaration; every local is used;
- every reference resolves: var.*, local.*, module.*, data.*.* and resources are declared in the
  same configuration, var.<object>.<attribute> names an attribute of the variable's type, and
  module.<call>.<output>[.<attribute>] names an output of the called module (and an attribute of
  it, when the output is an object);
- the environments' root (envs/) reaches every module; each module call passes every input that
  has no default and nothing the module does not declare, and each object it passes (a literal,
  var.<x>, or merge(var.<x>, {...})) has every required attribute of the input's type and no
  other; every environment is one <env>.tfvars of that root, which sets only declared variables,
  with values of their types, and prod.tfvars the values of the production design (PROD_DESIGN);
- every output has a description; every module output is consumed by its caller or listed in
  infra/terraform/README.md under "Module outputs not consumed by their callers";
- the root has the outputs the Kustomize bridge reads, and site.tfvars.example with each
  <env>.tfvars sets only declared variables and every variable without a default;
- outputs-to-kustomize.sh turns a terraform output JSON into the documented env file;
- every inline checkov skip / trivy ignore names its rule and gives a reason;
- the Service Bus namespace has the Azure Monitor metric alerts that stand in for the bus_lag
  alerts (which cannot fire with BUS_KIND=servicebus): backlog (ActiveMessages), stalled topics
  (ActiveMessages and OutgoingMessages) and dead letters (DeadletteredMessages), each metric
  with an aggregation Azure Monitor offers for it, every rule sent to a declared action group
  that mails var.monitoring.alert_email_addresses, and docs/OPERATIONS.md's runbooks naming
  the rules;
- the MySQL VM's cloud-init template matches its templatefile() call, renders to YAML and its
  shell scripts parse;
- inputs that carry secrets (SENSITIVE_INPUTS) are declared sensitive;
- every environment with a managed Grafana gets the dashboards: ci/Jenkinsfile imports this
  build's dashboards into <name_prefix>-grafana of <name_prefix>-rg, and the CI service
  principal holds Grafana Editor there.

Usage: check_structure.py [TERRAFORM_DIR]. Parses HCL with python-hcl2 (the bc-python-hcl2 build
that checkov ships). Prints one line per check and "N passed, N failed".
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import hcl2

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
MODULES = ROOT / "modules"
ENVS = ROOT / "envs"
README = ROOT / "README.md"
META_ARGS = {"source", "version", "providers", "count", "for_each", "depends_on"}
KUSTOMIZE_OUTPUTS = [
    "acr_login_server", "workload_identity_client_id", "tenant_id", "key_vault_name", "redis_host",
    "redis_ssl_port", "redis_replicas", "postgres_fqdn", "servicebus_namespace", "mysql_private_ip", "app_gateway_id",
    "waf_policy_id", "appgw_subnet_cidr", "data_subnet_cidr", "vm_subnet_cidr",
]
# Names Terraform defines itself, not declared in the configuration.
BUILTIN_OBJECTS = {"each", "count", "path", "self", "terraform"}
# A resource reference never follows a dot (local.mysql.tls_secret_names.ca is an attribute).
RESOURCE_TYPE = re.compile(r"(?<![.\w])((?:azurerm|random|time|tls|terraform)_[a-z0-9_]+)\.([a-z0-9_]+)\b")


def load_dir(d: Path) -> dict[str, list]:
    """Merges the top-level blocks of every .tf and .tf.json file of a directory. A .tf.json file
    (Terraform JSON syntax: prometheus-rules.tf.json, generated) is shaped like python-hcl2's
    rendering: each top-level object becomes one block of its kind, "//" comments are dropped,
    and its "${...}" strings are read by the same reference checks."""
    merged: dict[str, list] = {}
    for f in sorted(d.glob("*.tf")):
        with f.open() as fh:
            parsed = hcl2.load(fh)
        for key, blocks in parsed.items():
            merged.setdefault(key, []).extend(blocks)
    for f in sorted(d.glob("*.tf.json")):
        parsed = json.loads(f.read_text())
        for key, block in parsed.items():
            if key == "//":
                continue
            if isinstance(block, dict):
                block = {k: v for k, v in block.items() if k != "//"}
            merged.setdefault(key, []).extend(block if isinstance(block, list) else [block])
    return merged


def named(blocks: list) -> dict[str, dict]:
    out = {}
    for b in blocks:
        for name, body in b.items():
            out[name] = body
    return out


def strip_positions(x):
    if isinstance(x, dict):
        return {k: strip_positions(v) for k, v in x.items() if k not in ("__start_line__", "__end_line__")}
    if isinstance(x, list):
        return [strip_positions(v) for v in x]
    return x


def text_without_variables(cfg: dict) -> str:
    """Everything but the variable declarations (a validation that names its own variable is not a use)."""
    return json.dumps({k: v for k, v in cfg.items() if k != "variable"})


def load_tfvars(path: Path) -> dict:
    """A .tfvars file: each variable's value (python-hcl2 wraps each in a list)."""
    with path.open() as fh:
        return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in hcl2.load(fh).items()}


class Tree:
    def __init__(self) -> None:
        self.modules = {p.name: load_dir(p) for p in sorted(MODULES.iterdir()) if p.is_dir()}
        # The one root of every environment, and each environment's values (envs/<env>.tfvars).
        self.root = load_dir(ENVS)
        self.envs = {p.stem: load_tfvars(p) for p in sorted(ENVS.glob("*.tfvars")) if not p.name.endswith(".site.tfvars")}

    def all_dirs(self):
        for name, cfg in self.modules.items():
            yield f"modules/{name}", cfg
        yield "envs", self.root


def check_variables_typed_and_described(t: Tree) -> list[str]:
    problems = []
    for where, cfg in t.all_dirs():
        for name, body in named(cfg.get("variable", [])).items():
            types = body.get("type")
            if not types:
                problems.append(f"{where}: variable {name} has no type")
            elif types[0] in ("${any}", "any"):
                problems.append(f"{where}: variable {name} is typed any")
            desc = body.get("description", [""])[0]
            if len(desc.strip()) < 10:
                problems.append(f"{where}: variable {name} has no (real) description")
    return problems


def check_variables_used(t: Tree) -> list[str]:
    problems = []
    for where, cfg in t.all_dirs():
        text = text_without_variables(cfg)
        for name in named(cfg.get("variable", [])):
            if not re.search(r"\bvar\." + re.escape(name) + r"\b", text):
                problems.append(f"{where}: variable {name} is declared but never used")
    return problems


def module_calls(cfg: dict) -> dict[str, dict]:
    return named(cfg.get("module", []))


def module_dir_of(call: dict) -> str:
    src = call["source"][0]
    m = re.fullmatch(r"(?:\.\./modules|\.\.)/([a-z0-9-]+)", src)
    return m.group(1) if m else ""


def callers(t: Tree):
    """Every configuration that calls modules: (where, config)."""
    yield from t.all_dirs()


def reachable(t: Tree, cfg: dict, seen: set[str] | None = None) -> set[str]:
    """Modules a configuration calls, directly or through other modules."""
    seen = set() if seen is None else seen
    for call in module_calls(cfg).values():
        mod = module_dir_of(call)
        if mod in t.modules and mod not in seen:
            seen.add(mod)
            reachable(t, t.modules[mod], seen)
    return seen


def object_attributes(type_expr: str) -> dict[str, str] | None:
    """The attributes of an object type as python-hcl2 renders it ("${object({...})}"), each
    with its own type expression; None when the type is not an object."""
    m = re.fullmatch(r"\$\{object\((\{.*\})\)\}", type_expr.strip(), re.S)
    return ast.literal_eval(m.group(1)) if m else None


def check_object_literal(value, type_expr: str, where: str) -> list[str]:
    """An object passed for an object-typed input sets every required attribute and no other."""
    attrs = object_attributes(type_expr)
    if attrs is None or not isinstance(value, dict):
        return []
    problems = []
    given = {k for k in value if not k.startswith("__")}
    for name in sorted(given - set(attrs)):
        problems.append(f"{where} sets {name}, which the input's type does not have")
    for name, attr_type in sorted(attrs.items()):
        if name not in given:
            if not attr_type.startswith("${optional("):
                problems.append(f"{where} does not set {name} (required by the input's type)")
            continue
        problems += check_object_literal(value[name], attr_type, f"{where}.{name}")
    return problems


def check_envs_reach_every_module(t: Tree) -> list[str]:
    return [f"envs: does not instantiate modules/{mod}, directly or through another module"
            for mod in sorted(set(t.modules) - reachable(t, t.root))]


def passed_object(value, variables: dict[str, dict]):
    """What a module input passes, as an object literal where it can tell: the literal itself;
    for var.<x> or merge(var.<x>, {...}) the attributes of variable x's object type (values
    unknown) with the literal's on top. Anything else is returned as it is."""
    m = re.fullmatch(r"\$\{(?:merge\()?var\.([a-z0-9_]+)(?:,(\{.*\})\))?\}", value, re.S) if isinstance(value, str) else None
    if not m or m.group(1) not in variables:
        return value
    attrs = object_attributes(variables[m.group(1)]["type"][0])
    if attrs is None:
        return value
    return {**{a: None for a in attrs}, **(ast.literal_eval(m.group(2)) if m.group(2) else {})}


def check_module_inputs(t: Tree) -> list[str]:
    problems = []
    for where, cfg in callers(t):
        for call_name, call in module_calls(cfg).items():
            mod = module_dir_of(call)
            if mod not in t.modules:
                problems.append(f"{where}: module {call_name} has source {call['source'][0]!r}, not ../../modules/<name> or ../<name>")
                continue
            declared = named(t.modules[mod].get("variable", []))
            passed = {k for k in call if k not in META_ARGS and not k.startswith("__")}
            for arg in sorted(passed - set(declared)):
                problems.append(f"{where}: module {call_name} passes {arg}, which modules/{mod} does not declare")
            for var, body in sorted(declared.items()):
                if "default" not in body and var not in passed:
                    problems.append(f"{where}: module {call_name} does not pass {var} (no default in modules/{mod})")
                if var in passed:
                    value = passed_object(call[var][0], named(cfg.get("variable", [])))
                    problems += check_object_literal(value, body["type"][0], f"{where}: module {call_name} input {var}")
    return problems


def check_env_tfvars(t: Tree) -> list[str]:
    """The environments differ in values only: each is an <env>.tfvars of the one root, naming
    itself, setting only declared variables, objects with the attributes of their types."""
    problems = [] if {"dev", "prod"} <= set(t.envs) else [f"envs: expected dev.tfvars and prod.tfvars, found {sorted(t.envs)}"]
    declared = named(t.root.get("variable", []))
    for env, values in t.envs.items():
        if values.get("environment") != env:
            problems.append(f"envs/{env}.tfvars: environment is {values.get('environment')!r}, not {env!r}")
        for key, value in sorted(values.items()):
            if key not in declared:
                problems.append(f"envs/{env}.tfvars sets {key}, which is not declared")
            else:
                problems += check_object_literal(value, declared[key]["type"][0], f"envs/{env}.tfvars: {key}")
    return problems


def declarations(cfg: dict) -> dict[str, set]:
    """What a configuration declares, by kind of reference."""
    resources = set()
    for block in cfg.get("resource", []):
        for rtype, instances in block.items():
            resources |= {f"{rtype}.{name}" for name in instances}
    data = set()
    for block in cfg.get("data", []):
        for dtype, instances in block.items():
            data |= {f"{dtype}.{name}" for name in instances}
    local_names = set()
    for block in cfg.get("locals", []):
        local_names |= {k for k in block if not k.startswith("__")}
    return {"var": set(named(cfg.get("variable", []))), "local": local_names, "module": set(module_calls(cfg)),
            "data": data, "resource": resources}


def references(cfg: dict) -> dict[str, set]:
    """What a configuration refers to, outside the variable declarations (whose validations
    name their own variable). Expressions are read from python-hcl2's rendering, so comments
    do not count."""
    text = text_without_variables(cfg)
    validations = json.dumps([strip_positions(v) for v in cfg.get("variable", [])])
    data = {f"{a}.{b}" for a, b in re.findall(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)", text)}
    without_data = re.sub(r"\bdata\.[a-z0-9_]+\.[a-z0-9_]+", "", text)
    return {
        "var": set(re.findall(r"\bvar\.([a-z0-9_]+)", text + validations)),
        "local": set(re.findall(r"\blocal\.([a-z0-9_]+)", text)),
        "module": set(re.findall(r"\bmodule\.([a-z0-9_]+)", text)),
        "data": data,
        "resource": {f"{a}.{b}" for a, b in RESOURCE_TYPE.findall(without_data)},
    }


def check_references_resolve(t: Tree) -> list[str]:
    problems = []
    for where, cfg in t.all_dirs():
        declared, used = declarations(cfg), references(cfg)
        for kind in ("var", "local", "module", "data", "resource"):
            for name in sorted(used[kind] - declared[kind]):
                prefix = "" if kind == "resource" else f"{kind}."
                problems.append(f"{where}: {prefix}{name} is referred to but not declared")
        for name in sorted(declared["local"] - used["local"]):
            problems.append(f"{where}: local.{name} is declared but never used")
        text = text_without_variables(cfg)
        for name, body in named(cfg.get("variable", [])).items():
            attrs = object_attributes(body["type"][0])
            if attrs is None:
                continue
            for attr in sorted(set(re.findall(r"\bvar\." + re.escape(name) + r"\.([a-z0-9_]+)", text)) - set(attrs)):
                problems.append(f"{where}: var.{name}.{attr}: the type of variable {name} has no attribute {attr}")
        text = text_without_variables(cfg)
        for call_name, call in module_calls(cfg).items():
            mod = module_dir_of(call)
            outputs = named(t.modules.get(mod, {}).get("output", []))
            for out, attr in set(re.findall(r"\bmodule\." + re.escape(call_name) + r"\.([a-z0-9_]+)(?:\.([a-z0-9_]+))?", text)):
                if out not in outputs:
                    problems.append(f"{where}: module.{call_name}.{out} is not an output of modules/{mod}")
                    continue
                value = outputs[out].get("value", [None])[0]
                if attr and isinstance(value, dict) and attr not in value:
                    problems.append(f"{where}: module.{call_name}.{out}.{attr}: output {out} of modules/{mod} has no attribute {attr}")
    return problems


def documented_outputs() -> set[str]:
    """`module/output` names listed in the README section about unconsumed module outputs."""
    text = README.read_text() if README.exists() else ""
    m = re.search(r"^## Module outputs not consumed by their callers\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return set(re.findall(r"`([a-z0-9-]+/[a-z0-9_]+)`", m.group(1))) if m else set()


def check_outputs(t: Tree) -> list[str]:
    problems = []
    for where, cfg in t.all_dirs():
        for name, body in named(cfg.get("output", [])).items():
            if len(body.get("description", [""])[0].strip()) < 10:
                problems.append(f"{where}: output {name} has no (real) description")
    consumed = set()
    for _, cfg in callers(t):
        text = json.dumps(strip_positions(cfg))
        for call_name, call in module_calls(cfg).items():
            mod = module_dir_of(call)
            for out in re.findall(r"\bmodule\." + re.escape(call_name) + r"\.([a-z0-9_]+)", text):
                consumed.add(f"{mod}/{out}")
    documented = documented_outputs()
    for mod, cfg in t.modules.items():
        for out in named(cfg.get("output", [])):
            key = f"{mod}/{out}"
            if key not in consumed and key not in documented:
                problems.append(f"modules/{mod}: output {out} is neither consumed by its caller nor documented in README.md")
    for key in sorted(documented):
        mod, out = key.split("/")
        if out not in named(t.modules.get(mod, {}).get("output", [])):
            problems.append(f"README.md documents {key}, which does not exist")
    return problems


# The production design (README.md, "dev and prod"): what envs/prod.tfvars must set, by
# variable and attribute. The checkov skips that dev's cheaper choices need (public API server,
# Free tier, public Key Vault endpoint) would hide the same regression in prod; this holds prod to
# the design instead.
PROD_DESIGN = {
    ("aks", "private_cluster"): True,
    ("aks", "sku_tier"): "Standard",
    ("key_vault", "public_network_access_enabled"): False,
    ("key_vault", "sku_name"): "premium",
    ("registry_sku", None): "Premium",
    ("servicebus", "sku"): "Premium",
    ("redis", "sku_name"): "Premium",
    ("redis", "persistence"): "aof",
    ("postgres", "high_availability"): True,
    ("postgres", "geo_redundant_backup"): True,
    ("postgres", "read_replica"): True,
    ("postgres", "backup_retention_days"): 35,
    ("mysql", "azure_backup_enabled"): True,
    ("monitoring", "grafana_enabled"): True,
    ("monitoring", "zone_redundant"): True,
}


def check_prod_keeps_the_production_design(t: Tree) -> list[str]:
    calls = module_calls(t.root)
    if "stack" not in calls or "prod" not in t.envs:
        return ["envs: no module \"stack\" or no prod.tfvars"]
    problems = []
    stack = json.dumps(strip_positions(calls["stack"]))
    for (variable, attr), wanted in PROD_DESIGN.items():
        value = t.envs["prod"].get(variable)
        got = value.get(attr) if attr and isinstance(value, dict) else value
        where = f"{variable}.{attr}" if attr else variable
        if got != wanted:
            problems.append(f"envs/prod.tfvars: {where} is {got!r}, the production design says {wanted!r}")
        # The value must reach the stack: var.<variable> is passed, and the attribute is not
        # overridden by the merge() around it.
        if not re.search(r"\bvar\." + variable + r"\b", stack) or (attr and re.search(r"'" + attr + r"': '\$\{var\.", stack)):
            problems.append(f"envs/main.tf: {where} of prod.tfvars does not reach module stack as it is")
    return problems


def check_env_outputs_for_kustomize(t: Tree) -> list[str]:
    problems = []
    outputs = named(t.root.get("output", []))
    for out in KUSTOMIZE_OUTPUTS:
        if out not in outputs:
            problems.append(f"envs: output {out} (read by outputs-to-kustomize.sh) is missing")
        elif outputs[out].get("sensitive", [False])[0] is True:
            problems.append(f"envs: output {out} is sensitive and cannot go to a ConfigMap")
    return problems


def check_tfvars_examples(t: Tree) -> list[str]:
    example = ENVS / "site.tfvars.example"
    if not example.exists():
        return ["envs: site.tfvars.example is missing"]
    site = load_tfvars(example)
    declared = named(t.root.get("variable", []))
    problems = [f"envs/site.tfvars.example sets {key}, which is not declared" for key in sorted(set(site) - set(declared))]
    for env, values in t.envs.items():
        for var, body in sorted(declared.items()):
            if "default" not in body and var not in values and var not in site:
                problems.append(f"envs: neither {env}.tfvars nor site.tfvars.example sets {var} (no default)")
    if not (ENVS / "backend.hcl.example").exists():
        problems.append("envs: backend.hcl.example is missing")
    backends = [b for b in t.root.get("terraform", []) if "backend" in b]
    if not backends or "azurerm" not in json.dumps(backends[0]["backend"]):
        problems.append("envs: no backend \"azurerm\" block")
    return problems


def check_outputs_to_kustomize_script(t: Tree) -> list[str]:
    script = ROOT / "scripts" / "outputs-to-kustomize.sh"
    sample = {o: {"sensitive": False, "type": "string", "value": f"value-of-{o}"} for o in KUSTOMIZE_OUTPUTS}
    sample["redis_ssl_port"] = {"sensitive": False, "type": "number", "value": 6380}
    sample["redis_replicas"] = {"sensitive": False, "type": "number", "value": 2}
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # The script writes under <repo>/deploy/k8s/overlays/<env>: run it on a copy of itself
        # placed in a scratch repository layout so the real overlay is not touched.
        fake_root = Path(tmp) / "repo"
        (fake_root / "infra/terraform/scripts").mkdir(parents=True)
        fake_script = fake_root / "infra/terraform/scripts/outputs-to-kustomize.sh"
        fake_script.write_text(script.read_text())
        fake_script.chmod(0o755)
        good = Path(tmp) / "good.json"
        good.write_text(json.dumps(sample))
        run = subprocess.run([str(fake_script), "dev", "--json", str(good)], capture_output=True, text=True, timeout=60)
        written = fake_root / "deploy/k8s/overlays/dev/terraform-outputs.env"
        if run.returncode != 0 or not written.exists():
            return [f"outputs-to-kustomize.sh failed on good input: {run.stderr.strip()}"]
        lines = [l for l in written.read_text().splitlines() if l and not l.startswith("#")]
        pairs = dict(l.split("=", 1) for l in lines)
        expected = {"ACR_LOGIN_SERVER": "value-of-acr_login_server", "REDIS_PORT": "6380",
                    "WAF_POLICY_ID": "value-of-waf_policy_id", "APPGW_SUBNET_CIDR": "value-of-appgw_subnet_cidr",
                    "DATA_SUBNET_CIDR": "value-of-data_subnet_cidr", "VM_SUBNET_CIDR": "value-of-vm_subnet_cidr"}
        if any(pairs.get(k) != v for k, v in expected.items()):
            problems.append(f"outputs-to-kustomize.sh wrote unexpected values: {pairs}")
        if len(pairs) != len(KUSTOMIZE_OUTPUTS) or lines != sorted(lines):
            problems.append("outputs-to-kustomize.sh must write one sorted KEY=value per output")
        for bad_change in ({"tenant_id": {"sensitive": True, "type": "string", "value": "x"}},
                           {"key_vault_name": {"sensitive": False, "type": "string", "value": ""}}):
            bad = Path(tmp) / "bad.json"
            bad.write_text(json.dumps({**sample, **bad_change}))
            run = subprocess.run([str(fake_script), "prod", "--json", str(bad)], capture_output=True, text=True, timeout=60)
            if run.returncode == 0:
                problems.append(f"outputs-to-kustomize.sh accepted bad input {bad_change}")
        missing = dict(sample)
        missing.pop("app_gateway_id")
        bad = Path(tmp) / "missing.json"
        bad.write_text(json.dumps(missing))
        if subprocess.run([str(fake_script), "prod", "--json", str(bad)], capture_output=True, timeout=60).returncode == 0:
            problems.append("outputs-to-kustomize.sh accepted outputs without app_gateway_id")
    return problems


def check_scanner_skips_have_reasons(t: Tree) -> list[str]:
    """Every checkov skip and trivy ignore names one rule and says why, inline."""
    problems = []
    for f in sorted(ROOT.rglob("*.tf")):
        if ".terraform" in f.parts:
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            where = f"{f.relative_to(ROOT)}:{n}"
            if "checkov:skip" in line and not re.search(r"#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{19,}", line):
                problems.append(f"{where}: checkov skip without a rule id and a reason of 20+ characters")
            if "trivy:ignore" in line and not re.search(r"#trivy:ignore:(AVD|AZU)-[A-Z]*-?\d+(\[[a-z_.]+=[^\]\s]+\])?\s+\S.{19,}", line):
                problems.append(f"{where}: trivy ignore without a rule id and a reason of 20+ characters")
    return problems


# Azure Monitor's metrics of Microsoft.ServiceBus/namespaces and the aggregations each offers
# (learn.microsoft.com, "Azure Service Bus monitoring data reference"); every one has the
# dimension EntityName: a queue or topic, never a subscription.
SERVICEBUS_METRIC_AGGREGATIONS = {
    "ActiveMessages": {"Average", "Minimum", "Maximum"},
    "DeadletteredMessages": {"Average", "Minimum", "Maximum"},
    "Messages": {"Average", "Minimum", "Maximum"},
    "ScheduledMessages": {"Average", "Minimum", "Maximum"},
    "IncomingMessages": {"Total"},
    "OutgoingMessages": {"Total"},
    "IncomingRequests": {"Total"},
    "SuccessfulRequests": {"Total"},
    "ServerErrors": {"Total"},
    "UserErrors": {"Total"},
    "ThrottledRequests": {"Total"},
}
# What the alerts must watch to stand in for LiveOpsBusLagGrowing (a topic's backlog),
# LiveOpsConsumerStalled (messages waiting, none received) and the dead letters.
SERVICEBUS_ALERT_METRICS = {"ActiveMessages", "OutgoingMessages", "DeadletteredMessages"}
# The runbooks that must name the rules (docs/OPERATIONS.md headings).
SERVICEBUS_RUNBOOKS = ["Bus lag", "Consumer stalled", "Dead letters"]


def check_servicebus_alerts(t: Tree) -> list[str]:
    """On Service Bus the bus cannot read lag (no bus_lag gauge), so Azure Monitor metric alerts
    on the namespace stand in for LiveOpsBusLagGrowing and LiveOpsConsumerStalled (ADR 0015):
    they exist, watch the metrics that say so with aggregations Azure offers, reach someone,
    and the runbooks name them."""
    stack = t.modules.get("stack", {})
    resources = {}
    for block in stack.get("resource", []):
        for rtype, instances in block.items():
            for name, body in instances.items():
                resources[f"{rtype}.{name}"] = strip_positions(body)
    alerts = {k: b for k, b in resources.items() if k.startswith("azurerm_monitor_metric_alert.")
              and "azurerm_servicebus_namespace.this.id" in json.dumps(b.get("scopes"))}
    if not alerts:
        return ["modules/stack: no azurerm_monitor_metric_alert on azurerm_servicebus_namespace.this "
                "(the stand-in for the bus_lag alerts on Service Bus)"]
    problems = []
    # The criteria: literal criteria blocks, or the table the rules iterate (locals).
    text = json.dumps(strip_positions({k: v for k, v in stack.items() if k != "variable"}))
    used = {}
    flat = text
    while re.search(r"\$\{[^{}]*\}", flat):  # interpolations (thresholds, topics) out of the way
        flat = re.sub(r"\$\{[^{}]*\}", "_", flat)
    for crit in re.findall(r"\{[^{}]*\}", flat):
        metric = re.search(r"'(?:metric|metric_name)': '([A-Za-z]+)'", crit) or re.search(r'"metric_name": \["([A-Za-z]+)"\]', crit)
        aggregation = re.search(r"'aggregation': '([A-Za-z]+)'", crit) or re.search(r'"aggregation": \["([A-Za-z]+)"\]', crit)
        if metric and aggregation:
            used.setdefault(metric.group(1), set()).add(aggregation.group(1))
    for metric, aggregations in sorted(used.items()):
        if metric not in SERVICEBUS_METRIC_AGGREGATIONS:
            problems.append(f"modules/stack: Service Bus alert metric {metric} is not a metric of Microsoft.ServiceBus/namespaces")
            continue
        for a in sorted(aggregations - SERVICEBUS_METRIC_AGGREGATIONS[metric]):
            problems.append(f"modules/stack: Service Bus alert metric {metric} aggregated by {a}; "
                            f"Azure Monitor offers {', '.join(sorted(SERVICEBUS_METRIC_AGGREGATIONS[metric]))}")
    for metric in sorted(SERVICEBUS_ALERT_METRICS - set(used)):
        problems.append(f"modules/stack: no Service Bus alert watches {metric}")
    if "EntityName" not in text:
        problems.append("modules/stack: the Service Bus alerts do not split by EntityName (per topic)")
    for key, body in sorted(alerts.items()):
        groups = re.findall(r"azurerm_monitor_action_group\.([a-z0-9_]+)\.id", json.dumps(body.get("action", [])))
        if not groups:
            problems.append(f"modules/stack: {key} has no action (an action group): it reaches nobody")
        for g in groups:
            group = resources.get(f"azurerm_monitor_action_group.{g}")
            if group is None:
                problems.append(f"modules/stack: {key} sends to azurerm_monitor_action_group.{g}, which is not declared")
            elif "var.monitoring.alert_email_addresses" not in json.dumps(group):
                problems.append(f"modules/stack: azurerm_monitor_action_group.{g} does not mail var.monitoring.alert_email_addresses")
    operations = ROOT.parents[1] / "docs" / "OPERATIONS.md"
    doc = operations.read_text() if operations.exists() else ""
    for heading in SERVICEBUS_RUNBOOKS:
        m = re.search(r"^### " + re.escape(heading) + r"\n(.*?)(?=^#{1,3} |\Z)", doc, re.S | re.M)
        if not m:
            problems.append(f"docs/OPERATIONS.md has no runbook \"{heading}\"")
            continue
        for key in sorted(alerts):
            if key not in m.group(1):
                problems.append(f"docs/OPERATIONS.md, \"{heading}\": does not name {key}, which stands in on Service Bus")
    return problems


def check_cloud_init_template(t: Tree) -> list[str]:
    """The MySQL VM's cloud-init template: every ${var} it uses is passed by templatefile() and
    every passed key is used; rendered (plain ${name} interpolation and $${ escapes, the only
    template syntax it uses), it is #cloud-config YAML whose shell scripts pass `bash -n`."""
    import yaml

    problems = []
    calls = [(f, m) for f in sorted(MODULES.rglob("*.tf"))
             for m in [re.search(r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\}\)\)', f.read_text(), re.S)] if m]
    if len(calls) != 1:
        return [f"expected one templatefile(\"${{path.module}}/...\", {{...}}) call under modules/, found {len(calls)}"]
    tf_file, m = calls[0]
    template = tf_file.parent / m.group(1)
    passed = set(re.findall(r"^\s*([a-z_]+)\s*=", m.group(2), re.M))
    text = template.read_text()
    if "%{" in text.replace("%%{", ""):
        problems.append(f"{template.name}: uses template directives, which this check does not render")
    used = set(re.findall(r"(?<!\$)\$\{([a-z_]+)\}", text))
    for name in sorted(used - passed):
        problems.append(f"{template.name} uses ${{{name}}}, which templatefile() does not pass")
    for name in sorted(passed - used):
        problems.append(f"templatefile() passes {name}, which {template.name} does not use")
    rendered = re.sub(r"(?<!\$)\$\{([a-z_]+)\}", lambda v: f"rendered-{v.group(1)}", text).replace("$${", "${")
    if not rendered.startswith("#cloud-config\n"):
        problems.append(f"{template.name}: the first line must be #cloud-config")
    try:
        doc = yaml.safe_load(rendered)
    except yaml.YAMLError as e:
        return problems + [f"{template.name}: not YAML once rendered: {e}"]
    scripts = [f for f in doc.get("write_files", []) if str(f.get("content", "")).startswith("#!/bin/bash")]
    if len(scripts) < 3:
        problems.append(f"{template.name}: expected the key vault, set-up and backup scripts, found {len(scripts)}")
    for f in scripts:
        check = subprocess.run(["bash", "-n"], input=f["content"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            problems.append(f"{template.name}: {f['path']} does not parse: {check.stderr.strip()}")
    units = {f["path"] for f in doc.get("write_files", [])}
    for unit in ("/etc/systemd/system/liveops-mysql-backup.service", "/etc/systemd/system/liveops-mysql-backup.timer"):
        if unit not in units:
            problems.append(f"{template.name}: {unit} is missing")
    return problems


# Root inputs that hold a secret: declared sensitive, so plans and outputs never show them.
SENSITIVE_INPUTS = {"alert_pager_webhook_url": "the pager integration's key is part of the URL"}


def check_sensitive_inputs(t: Tree) -> list[str]:
    declared = named(t.root.get("variable", []))
    problems = []
    for name, why in sorted(SENSITIVE_INPUTS.items()):
        if name not in declared:
            problems.append(f"envs: variable {name} is not declared")
        elif declared[name].get("sensitive", [False])[0] is not True:
            problems.append(f"envs: variable {name} is not sensitive ({why})")
    return problems


def check_dashboards_reach_grafana(t: Tree) -> list[str]:
    """ci/Jenkinsfile imports monitoring/grafana/dashboards into the managed Grafana of every
    environment that has one (monitoring.grafana_enabled), by the names Terraform gives it, and
    Terraform lets the CI service principal write there (Grafana Editor)."""
    jenkinsfile = ROOT.parents[1] / "ci" / "Jenkinsfile"
    ci = jenkinsfile.read_text() if jenkinsfile.exists() else ""
    stack = t.modules.get("stack", {})
    text = json.dumps(strip_positions({k: v for k, v in stack.items() if k != "variable"}))
    problems = []
    if '"${var.name_prefix}-grafana"' not in text or '"${var.name_prefix}-rg"' not in text:
        problems.append("modules/stack: the Grafana is not <name_prefix>-grafana in <name_prefix>-rg (ci/Jenkinsfile names them so)")
    editors = [b for b in stack.get("resource", []) for rtype, inst in b.items() if rtype == "azurerm_role_assignment"
               for body in inst.values() if "Grafana Editor" in json.dumps(body)]
    if not editors or "var.monitoring.grafana_editor_object_ids" not in json.dumps(editors):
        problems.append("modules/stack: no Grafana Editor role assignment for var.monitoring.grafana_editor_object_ids")
    stack_call = json.dumps(strip_positions(module_calls(t.root).get("stack", {})))
    if not re.search(r"'grafana_editor_object_ids': \['\$\{var\.ci_principal_object_id\}'\]", stack_call):
        problems.append("envs/main.tf: monitoring.grafana_editor_object_ids is not [var.ci_principal_object_id] (CI imports the dashboards)")
    if not re.search(r"stash\(name: 'grafana-dashboards', includes: 'monitoring/grafana/dashboards/\*\.json'\)", ci):
        problems.append("ci/Jenkinsfile: the build's dashboards (monitoring/grafana/dashboards/*.json) are not stashed as grafana-dashboards")
    for env, values in sorted(t.envs.items()):
        monitoring = values.get("monitoring") or {}
        if not monitoring.get("grafana_enabled"):
            continue
        prefix, upper = values.get("name_prefix"), env.upper()
        for const, want in ((f"{upper}_RESOURCE_GROUP", f"{prefix}-rg"), (f"{upper}_GRAFANA_NAME", f"{prefix}-grafana")):
            got = re.search(r"^\s*" + const + r" = '([^']*)'", ci, re.M)
            if not got or got.group(1) != want:
                problems.append(f"ci/Jenkinsfile: {const} is {got.group(1) if got else 'not set'}, envs/{env}.tfvars makes {want}")
        if not re.search(r"importDashboards\(env\." + upper + r"_RESOURCE_GROUP, env\." + upper + r"_GRAFANA_NAME,", ci):
            problems.append(f"ci/Jenkinsfile: no importDashboards(env.{upper}_RESOURCE_GROUP, env.{upper}_GRAFANA_NAME, ...) "
                            f"({env} has a managed Grafana)")
    return problems


CHECKS = [
    check_variables_typed_and_described,
    check_variables_used,
    check_references_resolve,
    check_envs_reach_every_module,
    check_module_inputs,
    check_env_tfvars,
    check_prod_keeps_the_production_design,
    check_outputs,
    check_env_outputs_for_kustomize,
    check_tfvars_examples,
    check_outputs_to_kustomize_script,
    check_scanner_skips_have_reasons,
    check_servicebus_alerts,
    check_cloud_init_template,
    check_sensitive_inputs,
    check_dashboards_reach_grafana,
]


def main() -> int:
    tree = Tree()
    failed = 0
    for check in CHECKS:
        problems = check(tree)
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {check.__name__}")
        for p in problems:
            print(f"  - {p}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
