#!/usr/bin/env python3
"""Rules of deploy/ that schema validators and policy scanners do not check.

Reads manifests rendered by `kubectl kustomize` and checks how the resources fit together:
probes, resources and the restricted security context of every workload; that each target runs
`serve --target <name>` on its port; that PodDisruptionBudgets, HorizontalPodAutoscalers,
NetworkPolicies, Services, the Ingress and the ServiceMonitor select or name things that exist;
that every Ingress routes exactly the public prefixes (PUBLIC_ROUTES), each to its owner; that a
ServiceMonitor (opt-in, components/servicemonitor) or PodMonitor (AKS managed Prometheus,
components/managed-prometheus) labels series as the monitoring rules expect, and that whoever
scrapes a pod (the namespace monitoring, or the managed agent's pods in kube-system) is admitted
by its NetworkPolicies;
that every ConfigMap, Secret, ServiceAccount and SecretProviderClass referenced exists; that every
*_FILE variable names a file the mounted SecretProviderClass provides; that the split deployment
runs on shared backends and the embedded one on a single replica; that no ConfigMap value is left
for the environment to fill and trusted proxies are trusted only from the environment's subnets.

    deploy_rules.py [--production] [--managed-prometheus] [--env-file FILE] RENDERED.yaml
        --production   also require a PodDisruptionBudget and a HorizontalPodAutoscaler for every
                       workload (the prod overlay)
        --managed-prometheus
                       the rendering runs on a cluster of infra/terraform (AKS managed Prometheus,
                       no Prometheus Operator): every workload is scraped by an
                       azmonitoring.coreos.com monitor, and no monitoring.coreos.com kind is
                       rendered (unknown there: the sync would fail)
        --env-file     the overlay's terraform-outputs.env: images must come from its ACR_LOGIN_SERVER
    deploy_rules.py --self-test [--env-file FILE] RENDERED_PROD.yaml
        breaks the rendered prod manifests in known ways and fails unless every break is caught
        (prod is held to --production and --managed-prometheus)

Exit 0 when every rule holds; 1 with one line per finding otherwise. Needs PyYAML.
"""
from __future__ import annotations

import argparse
import copy
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field

import yaml

# The targets of the binary and their ports (README: PORT by target). Future targets are listed so
# a new folder under deploy/k8s/base passes as soon as it is wired like the others.
TARGET_PORTS = {
    "all": 8080,
    "gateway": 8080,
    "fairness": 8081,
    "leaderboard": 8082,
    "progression": 8083,
    "operators": 8084,
    "campaigns": 8085,
    "participation": 8086,
    "distribution": 8087,
}
# Public route prefixes and the target that serves each (ARCHITECTURE.md, HTTP contract): the one
# list every rendered Ingress is held to (base/ingress.yaml for the split targets,
# components/embedded/ingress.yaml for the embedded process, which serves them all). An Ingress
# must route every prefix here to its owner (or to `all`) and nothing else.
PUBLIC_ROUTES = {
    "/events": "gateway",
    "/fairness": "fairness",
    "/leaderboard": "leaderboard",
    "/players": "progression",
    "/rewards": "progression",
    "/receipts": "progression",
    "/auth": "operators",
    "/operators": "operators",
    "/audit": "operators",
    "/api-keys": "operators",
    "/campaigns": "campaigns",
    "/inbox": "distribution",
    "/webhooks": "distribution",
}
# What the Prometheus rules and dashboards of monitoring/ expect of every LiveOps series (the
# pod-annotation scrape of monitoring/prometheus/prometheus.yml and monitoring/alloy gives them):
# job="liveops" and liveops_target = the pod's app.kubernetes.io/component.
SCRAPE_JOB = "liveops"
TARGET_LABEL_SOURCES = ("__meta_kubernetes_pod_label_app_kubernetes_io_component",
                        "__meta_kubernetes_service_label_app_kubernetes_io_component")
# Who scrapes a pod: the pod-annotation scrape and the Prometheus Operator (ServiceMonitor and
# PodMonitor of monitoring.coreos.com) run in the namespace monitoring; AKS managed Prometheus
# (the same kinds in the add-on's group azmonitoring.coreos.com) scrapes from its ReplicaSet's
# pods in kube-system (components/managed-prometheus).
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor")
OPERATOR_GROUP = "monitoring.coreos.com"
MANAGED_GROUP = "azmonitoring.coreos.com"
MANAGED_SCRAPER_NAMESPACE = "kube-system"
MANAGED_SCRAPER_LABELS = {"rsName": "ama-metrics"}
OPS_PATHS = ("/metrics", "/healthz", "/readyz")
# Seconds the process may need after SHUTDOWN_DELAY to drain requests and consumer batches.
DRAIN_BUDGET = 15
MIN_STARTUP_SECONDS = 120
SHARED_BUSES = {"redis", "servicebus", "sqs"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
UID = 65532


@dataclass
class Pod:
    """A workload's pod template, with what the rules need about it."""

    kind: str
    name: str
    namespace: str
    labels: dict
    annotations: dict
    spec: dict
    workload: dict
    env: dict = field(default_factory=dict)  # container name -> {VAR: value or None}

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def port_names(self) -> set:
        return {p.get("name") for c in self.spec.get("containers", []) for p in c.get("ports", []) if p.get("name")}

    def port_numbers(self) -> set:
        return {p.get("containerPort") for c in self.spec.get("containers", []) for p in c.get("ports", [])}


class Manifests:
    def __init__(self, docs: list):
        self.docs = [d for d in docs if isinstance(d, dict) and d.get("kind")]
        self.errors: list[str] = []

    # -- lookups --------------------------------------------------------------------------------
    def of(self, kind: str) -> list:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None):
        for d in self.of(kind):
            md = d.get("metadata", {})
            if md.get("name") == name and (namespace is None or md.get("namespace") == namespace):
                return d
        return None

    def fail(self, rule: str, where: str, msg: str) -> None:
        self.errors.append(f"[{rule}] {where}: {msg}")

    def pods(self) -> list[Pod]:
        out = []
        for d in self.docs:
            if d["kind"] not in WORKLOAD_KINDS:
                continue
            md, tmpl = d["metadata"], d["spec"]["template"]
            pod = Pod(
                kind=d["kind"],
                name=md["name"],
                namespace=md.get("namespace", "default"),
                labels=tmpl.get("metadata", {}).get("labels", {}) or {},
                annotations=tmpl.get("metadata", {}).get("annotations", {}) or {},
                spec=tmpl["spec"],
                workload=d,
            )
            for c in pod.spec.get("containers", []):
                pod.env[c["name"]] = self.container_env(pod, c)
            out.append(pod)
        return out

    def container_env(self, pod: Pod, c: dict) -> dict:
        """The container's environment as far as the manifests tell (envFrom ConfigMaps, then env)."""
        env = {}
        for src in c.get("envFrom", []):
            ref = src.get("configMapRef")
            if ref:
                cm = self.get("ConfigMap", ref.get("name"), pod.namespace)
                if cm:
                    env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "valueFrom" in e:
                cmk = e["valueFrom"].get("configMapKeyRef")
                cm = self.get("ConfigMap", cmk.get("name"), pod.namespace) if cmk else None
                env[e["name"]] = str((cm.get("data") or {}).get(cmk["key"])) if cm else None
        return env


# -- helpers ------------------------------------------------------------------------------------
def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector (matchLabels / matchExpressions); empty selects everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def map_selects(selector: dict | None, labels: dict) -> bool:
    """A Service's plain map selector; an empty one selects nothing (selector-less Service)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


QUANTITY = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
SCALE = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q) -> float | None:
    m = QUANTITY.match(str(q))
    return float(m.group(1)) * SCALE[m.group(2)] if m else None


def spc_objects(spc: dict) -> set:
    """File names a SecretProviderClass (Azure provider) writes: objectAlias or objectName."""
    raw = (spc.get("spec", {}).get("parameters") or {}).get("objects") or ""
    try:
        arr = (yaml.safe_load(raw) or {}).get("array") or []
        names = set()
        for item in arr:
            obj = yaml.safe_load(item) if isinstance(item, str) else item
            names.add(obj.get("objectAlias") or obj.get("objectName"))
        return names
    except (yaml.YAMLError, AttributeError):
        return set()


def synced_secret_keys(m: "Manifests", pod: "Pod", name: str) -> set:
    """Keys of the Secret `name` that a SecretProviderClass mounted by the pod syncs (secretObjects):
    the CSI driver creates it when it mounts the volume, before the containers start, and only
    from objects the class lists."""
    keys = set()
    for v in pod.spec.get("volumes", []):
        csi = v.get("csi") or {}
        if csi.get("driver") != "secrets-store.csi.k8s.io":
            continue
        spc = m.get("SecretProviderClass", (csi.get("volumeAttributes") or {}).get("secretProviderClass"), pod.namespace)
        if not spc:
            continue
        for so in spc["spec"].get("secretObjects") or []:
            if so.get("secretName") == name:
                keys |= {d.get("key") for d in so.get("data") or [] if d.get("objectName") in spc_objects(spc)}
    return keys


def probe_port_ok(probe: dict, container: dict) -> bool:
    port = (probe.get("httpGet") or {}).get("port")
    ports = container.get("ports", [])
    return any(port in (p.get("name"), p.get("containerPort")) for p in ports)


# -- rules --------------------------------------------------------------------------------------
def check(m: Manifests, production: bool, env_file: dict | None, managed_prometheus: bool = False) -> None:
    pods = m.pods()
    if not pods:
        m.fail("workloads", "manifests", "no Deployment or StatefulSet rendered")
    for pod in pods:
        check_pod(m, pod, env_file)
    check_shape(m, pods)
    check_budgets_and_autoscalers(m, pods, production)
    check_network_policies(m, pods, env_file)
    check_services(m, pods)
    check_ingress(m, pods)
    check_monitors(m, pods, managed_prometheus)
    check_identity(m, pods)
    check_config(m, env_file)


def check_config(m: Manifests, env_file: dict | None) -> None:
    """R18: no ConfigMap value is left for the environment to fill, and trusted proxies are
    trusted only from the networks named (the environment's subnets when it is known)."""
    subnets = {v for k, v in (env_file or {}).items() if k.endswith("_CIDR")}
    for cm in m.of("ConfigMap"):
        where, data = f"ConfigMap/{cm['metadata']['name']}", cm.get("data") or {}
        for k, v in data.items():
            if "replaced-from-environment" in str(v):
                m.fail("config", where, f"{k} was never replaced from the environment")
        if int(data.get("TRUSTED_PROXIES") or 0) > 0:
            nets = [c.strip() for c in str(data.get("TRUSTED_PROXY_CIDRS") or "").split(",") if c.strip()]
            if not nets:
                m.fail("config", where, "TRUSTED_PROXIES without TRUSTED_PROXY_CIDRS (the service refuses to start)")
            for net in nets:
                if env_file and net not in subnets:
                    m.fail("config", where, f"TRUSTED_PROXY_CIDRS {net} is none of the environment's subnets")


def check_pod(m: Manifests, pod: Pod, env_file: dict | None) -> None:
    s, w = pod.spec, pod.ref
    # R1 probes
    for c in s.get("containers", []):
        for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")):
            probe = c.get(kind)
            if not probe:
                m.fail("probes", w, f"container {c['name']} has no {kind}")
                continue
            got = (probe.get("httpGet") or {}).get("path")
            if got != path:
                m.fail("probes", w, f"{kind} of {c['name']} checks {got!r}, expected {path}")
            if not probe_port_ok(probe, c):
                m.fail("probes", w, f"{kind} of {c['name']} names a port the container does not declare")
        sp = c.get("startupProbe") or {}
        if sp and sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) < MIN_STARTUP_SECONDS:
            m.fail("probes", w, f"startupProbe of {c['name']} allows less than {MIN_STARTUP_SECONDS} s for the first /readyz (board rebuilds)")
    # R2 resources
    for c in s.get("containers", []):
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if quantity((res.get(part) or {}).get(r)) is None:
                    m.fail("resources", w, f"container {c['name']} sets no {part}.{r}")
        for r in ("cpu", "memory"):
            req, lim = quantity((res.get("requests") or {}).get(r)), quantity((res.get("limits") or {}).get(r))
            if req is not None and lim is not None and req > lim:
                m.fail("resources", w, f"container {c['name']} requests more {r} than its limit")
    # R3 restricted security context
    psc = s.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        m.fail("security", w, "pod securityContext.runAsNonRoot is not true")
    if psc.get("runAsUser") != UID:
        m.fail("security", w, f"pod securityContext.runAsUser is {psc.get('runAsUser')}, expected {UID}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        m.fail("security", w, "pod seccompProfile is not RuntimeDefault")
    if s.get("automountServiceAccountToken") is not False:
        m.fail("security", w, "automountServiceAccountToken is not false")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if s.get(flag):
            m.fail("security", w, f"{flag} is set")
    for c in s.get("containers", []) + s.get("initContainers", []):
        csc = c.get("securityContext") or {}
        if csc.get("allowPrivilegeEscalation") is not False:
            m.fail("security", w, f"container {c['name']}: allowPrivilegeEscalation is not false")
        if csc.get("readOnlyRootFilesystem") is not True:
            m.fail("security", w, f"container {c['name']}: readOnlyRootFilesystem is not true")
        if csc.get("privileged"):
            m.fail("security", w, f"container {c['name']} is privileged")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            m.fail("security", w, f"container {c['name']} does not drop ALL capabilities")
        if caps.get("add"):
            m.fail("security", w, f"container {c['name']} adds capabilities {caps['add']}")
        if csc.get("runAsNonRoot") is False or csc.get("runAsUser") == 0:
            m.fail("security", w, f"container {c['name']} may run as root")
    # R4 writable paths on a read-only root, R12 references of volumes
    volumes = {v["name"]: v for v in s.get("volumes", [])}
    claim_templates = {t["metadata"]["name"] for t in pod.workload["spec"].get("volumeClaimTemplates", [])}
    for c in s.get("containers", []):
        mounts = {vm["mountPath"]: vm for vm in c.get("volumeMounts", [])}
        for vm in mounts.values():
            if vm["name"] not in volumes and vm["name"] not in claim_templates:
                m.fail("references", w, f"container {c['name']} mounts volume {vm['name']}, which is not declared")
        data_dir = pod.env[c["name"]].get("DATA_DIR")
        for path, why in (("/tmp", "/tmp"), (data_dir, "DATA_DIR")):
            if not path:
                m.fail("writable", w, f"container {c['name']}: {why} is not set")
            elif path not in mounts or mounts[path].get("readOnly"):
                m.fail("writable", w, f"container {c['name']}: {why} ({path}) is not a writable volume (read-only root filesystem)")
    for v in volumes.values():
        if "configMap" in v and not m.get("ConfigMap", v["configMap"]["name"], pod.namespace):
            m.fail("references", w, f"volume {v['name']} names ConfigMap {v['configMap']['name']}, which is not rendered")
        if "secret" in v and not m.get("Secret", v["secret"]["secretName"], pod.namespace):
            m.fail("references", w, f"volume {v['name']} names Secret {v['secret']['secretName']}, which is not rendered")
        if "persistentVolumeClaim" in v and not m.get("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], pod.namespace):
            m.fail("references", w, f"volume {v['name']} names a claim that is not rendered")
        csi = v.get("csi") or {}
        if csi.get("driver") == "secrets-store.csi.k8s.io":
            spc = (csi.get("volumeAttributes") or {}).get("secretProviderClass")
            if not m.get("SecretProviderClass", spc, pod.namespace):
                m.fail("references", w, f"volume {v['name']} names SecretProviderClass {spc}, which is not rendered")
    # R12 references of env, service account, governing service
    for c in s.get("containers", []):
        for src in c.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = src.get(key)
                if ref and not ref.get("optional") and not m.get(kind, ref.get("name"), pod.namespace):
                    m.fail("references", w, f"container {c['name']} reads {kind} {ref.get('name')}, which is not rendered")
        for e in c.get("env", []):
            vf = e.get("valueFrom") or {}
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = vf.get(key)
                if not ref or ref.get("optional"):
                    continue
                obj = m.get(kind, ref.get("name"), pod.namespace)
                if kind == "Secret" and not obj and ref["key"] in synced_secret_keys(m, pod, ref.get("name")):
                    continue
                if not obj or ref["key"] not in (obj.get("data") or {}) | (obj.get("stringData") or {}):
                    m.fail("references", w, f"env {e['name']} reads {kind} {ref.get('name')} key {ref['key']}, which is not rendered"
                           " (nor synced by a SecretProviderClass the pod mounts)")
    sa = s.get("serviceAccountName", "default")
    if not m.get("ServiceAccount", sa, pod.namespace):
        m.fail("references", w, f"service account {sa} is not rendered")
    if pod.kind == "StatefulSet" and not m.get("Service", pod.workload["spec"].get("serviceName"), pod.namespace):
        m.fail("references", w, f"serviceName {pod.workload['spec'].get('serviceName')} is not a rendered Service")
    # R13 secret files
    for c in s.get("containers", []):
        mounts = c.get("volumeMounts", [])
        for var, value in sorted(pod.env[c["name"]].items()):
            if not var.endswith("_FILE") or not value:
                continue
            mount = next((vm for vm in mounts if value.startswith(vm["mountPath"].rstrip("/") + "/")), None)
            if not mount:
                m.fail("secret-files", w, f"{var}={value} is on no volume of container {c['name']}")
                continue
            csi = (volumes.get(mount["name"]) or {}).get("csi") or {}
            spc_name = (csi.get("volumeAttributes") or {}).get("secretProviderClass")
            spc = m.get("SecretProviderClass", spc_name, pod.namespace) if spc_name else None
            if spc is not None:
                rel = posixpath.relpath(value, mount["mountPath"])
                if rel not in spc_objects(spc):
                    m.fail("secret-files", w, f"{var}={value}: SecretProviderClass {spc_name} lists no object {rel!r} (it has {sorted(spc_objects(spc))})")
    # R5 target, args and port
    target = pod.labels.get("app.kubernetes.io/component")
    if target not in TARGET_PORTS:
        m.fail("target", w, f"pod label app.kubernetes.io/component={target!r} is not a target ({', '.join(TARGET_PORTS)})")
    else:
        c = s["containers"][0]
        if c.get("args") != ["serve", "--target", target] or c.get("command"):
            m.fail("target", w, f"container args are {c.get('args')}, expected ['serve', '--target', '{target}'] (and no command)")
        port = pod.env[c["name"]].get("PORT")
        if port is None or str(port) != str(TARGET_PORTS[target]):
            m.fail("target", w, f"PORT is {port}, expected {TARGET_PORTS[target]} for {target}")
        http = [p for p in c.get("ports", []) if p.get("name") == "http"]
        if not http or http[0].get("containerPort") != TARGET_PORTS[target]:
            m.fail("target", w, f"container port 'http' is not {TARGET_PORTS[target]}")
        scrape_port = pod.annotations.get("prometheus.io/port")
        if pod.annotations.get("prometheus.io/scrape") == "true" and str(scrape_port) != str(TARGET_PORTS[target]):
            m.fail("target", w, f"prometheus.io/port is {scrape_port}, expected {TARGET_PORTS[target]}")
    # R6 graceful rollout
    delay = pod.env[s["containers"][0]["name"]].get("SHUTDOWN_DELAY")
    grace = s.get("terminationGracePeriodSeconds", 30)
    if delay is None or not str(delay).isdigit():
        m.fail("shutdown", w, "SHUTDOWN_DELAY is not set to a number of seconds")
    elif grace < int(delay) + DRAIN_BUDGET:
        m.fail("shutdown", w, f"terminationGracePeriodSeconds {grace} < SHUTDOWN_DELAY {delay} + {DRAIN_BUDGET} s of draining")
    # R7 spread over zones and hosts, matching the pod itself
    zone = [t for t in s.get("topologySpreadConstraints", []) if t.get("topologyKey") == "topology.kubernetes.io/zone"]
    if not zone or not all(selector_matches(t.get("labelSelector"), pod.labels) for t in zone):
        m.fail("spread", w, "no zone topologySpreadConstraint that selects the pod's own labels")
    anti = ((s.get("affinity") or {}).get("podAntiAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
    host = [t["podAffinityTerm"] for t in anti if t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"]
    if not host or not all(selector_matches(t.get("labelSelector"), pod.labels) for t in host):
        m.fail("spread", w, "no preferred hostname anti-affinity that selects the pod's own labels")
    # R8 image
    for c in s.get("containers", []):
        image = c.get("image", "")
        repo, _, tag = image.rpartition(":")
        if "@sha256:" not in image and (not repo or "/" in tag or tag in ("", "latest") or "set-by-overlay" in tag):
            m.fail("image", w, f"image {image!r} has no fixed tag set by the overlay")
        if env_file and env_file.get("ACR_LOGIN_SERVER") and not image.startswith(env_file["ACR_LOGIN_SERVER"] + "/"):
            m.fail("image", w, f"image {image!r} is not from the environment's registry {env_file['ACR_LOGIN_SERVER']}")


def check_shape(m: Manifests, pods: list[Pod]) -> None:
    """R14: split targets share distributed backends; the embedded process is a single replica."""
    for pod in pods:
        env = pod.env[pod.spec["containers"][0]["name"]]
        target = pod.labels.get("app.kubernetes.io/component")
        if target == "all":
            if env.get("BUS_KIND", "sqlite") == "sqlite" and pod.workload["spec"].get("replicas", 1) != 1:
                m.fail("shape", pod.ref, "the local SQLite bus is consumed by one process: replicas must be 1")
            if pod.kind != "StatefulSet" or not pod.workload["spec"].get("volumeClaimTemplates"):
                m.fail("shape", pod.ref, "the embedded process keeps DATA_DIR on a PersistentVolumeClaim (StatefulSet)")
        elif target in TARGET_PORTS:
            if env.get("BUS_KIND") not in SHARED_BUSES:
                m.fail("shape", pod.ref, f"BUS_KIND={env.get('BUS_KIND')}: split targets need a shared bus ({', '.join(sorted(SHARED_BUSES))})")
            if not (env.get("DB_URL") or env.get("DB_URL_FILE")):
                m.fail("shape", pod.ref, "split targets need a shared database (DB_URL or DB_URL_FILE)")
            if not (env.get("REDIS_URL") or env.get("REDIS_URL_FILE")):
                m.fail("shape", pod.ref, "split targets need shared hot state (REDIS_URL or REDIS_URL_FILE)")


def check_budgets_and_autoscalers(m: Manifests, pods: list[Pod], production: bool) -> None:
    """R9: every PDB and HPA points at a workload; in production every workload has both."""
    for pdb in m.of("PodDisruptionBudget"):
        ns = pdb["metadata"].get("namespace")
        if not any(p.namespace == ns and selector_matches(pdb["spec"].get("selector"), p.labels) for p in pods):
            m.fail("budgets", f"PodDisruptionBudget/{pdb['metadata']['name']}", "selects no pod")
    for hpa in m.of("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if not m.get(ref["kind"], ref["name"], hpa["metadata"].get("namespace")):
            m.fail("autoscaling", f"HorizontalPodAutoscaler/{hpa['metadata']['name']}", f"targets {ref['kind']}/{ref['name']}, which is not rendered")
    if not production:
        return
    for pod in pods:
        pdbs = [p for p in m.of("PodDisruptionBudget")
                if p["metadata"].get("namespace") == pod.namespace and selector_matches(p["spec"].get("selector"), pod.labels)]
        if not pdbs:
            m.fail("budgets", pod.ref, "no PodDisruptionBudget selects its pods")
        for pdb in pdbs:
            if pdb["spec"].get("minAvailable", 0) < 1 and "maxUnavailable" not in pdb["spec"]:
                m.fail("budgets", pod.ref, f"PodDisruptionBudget/{pdb['metadata']['name']} keeps no pod available")
        hpas = [h for h in m.of("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"].get("kind") == pod.kind and h["spec"]["scaleTargetRef"].get("name") == pod.name
                and h["spec"]["scaleTargetRef"].get("apiVersion") == "apps/v1"]
        if not hpas:
            m.fail("autoscaling", pod.ref, "no HorizontalPodAutoscaler targets it")
        for h in hpas:
            spec, where = h["spec"], f"HorizontalPodAutoscaler/{h['metadata']['name']}"
            if spec.get("minReplicas", 1) < 2 or spec["maxReplicas"] < spec.get("minReplicas", 1):
                m.fail("autoscaling", where, "needs minReplicas >= 2 and maxReplicas >= minReplicas")
            if not ((spec.get("behavior") or {}).get("scaleUp") and (spec.get("behavior") or {}).get("scaleDown")):
                m.fail("autoscaling", where, "sets no scaleUp and scaleDown behavior")
            resources = {x["resource"]["name"] for x in spec.get("metrics", []) if x["type"] == "Resource"}
            if not {"cpu", "memory"} <= resources:
                m.fail("autoscaling", where, "does not scale on both cpu and memory")
            # A custom metric is opt-in (components/request-rate-autoscaling): the clusters of
            # infra/terraform serve none, and an HPA missing one metric never scales down. The one
            # allowed is the metric the adapter rule of docs/DEPLOY.md serves.
            for x in spec.get("metrics", []):
                if x["type"] != "Resource" and not (x["type"] == "Pods" and x["pods"]["metric"]["name"] == "http_requests_per_second"):
                    m.fail("autoscaling", where, f"scales on a {x['type']} metric no rule of docs/DEPLOY.md serves (only Pods http_requests_per_second, opt-in)")


def policy_ports_ok(rule_ports: list | None, pod: Pod, port) -> bool:
    """Whether a NetworkPolicy rule's ports admit `port` (a name or number) on this pod."""
    if not rule_ports:
        return True
    numbers = {p.get("containerPort") for c in pod.spec["containers"] for p in c.get("ports", []) if p.get("name") == port} | (
        {port} if isinstance(port, int) else set())
    return any(rp.get("port") == port or rp.get("port") in numbers for rp in rule_ports)


# Where the ingress data path comes from, by ingress class: the Application Gateway sends from its
# subnet (an ipBlock); in-cluster controllers from their namespace.
INGRESS_SOURCE_NAMESPACES = {"nginx": ("ingress-nginx", "nginx-ingress", "app-routing-system")}


def ingress_source(ing: dict):
    cls = ing["spec"].get("ingressClassName")
    if cls == "azure-application-gateway":
        return lambda peer: "ipBlock" in peer
    names = INGRESS_SOURCE_NAMESPACES.get(cls, ())
    return lambda peer: (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") in names


def check_network_policies(m: Manifests, pods: list[Pod], env_file: dict | None) -> None:
    """R10: policies select existing pods, named ports exist, and nothing the system needs is blocked."""
    nps = m.of("NetworkPolicy")
    deny = [n for n in nps if n["spec"].get("podSelector") == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not n["spec"].get("ingress") and not n["spec"].get("egress")]
    if not deny:
        m.fail("network", "NetworkPolicy", "no default deny of all ingress and egress (podSelector {})")
    cidrs = {v for k, v in (env_file or {}).items() if k.endswith("_CIDR")} | {"0.0.0.0/0"}
    for n in nps:
        where, ns = f"NetworkPolicy/{n['metadata']['name']}", n["metadata"].get("namespace")
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in n["spec"].get(direction) or []:
                for peer in rule.get(peers_key) or []:
                    cidr = (peer.get("ipBlock") or {}).get("cidr")
                    if env_file and cidr and cidr not in cidrs:
                        m.fail("network", where, f"ipBlock {cidr} is none of the environment's subnets ({', '.join(sorted(cidrs))})")
        selected = [p for p in pods if p.namespace == ns and selector_matches(n["spec"].get("podSelector"), p.labels)]
        if not selected:
            m.fail("network", where, "its podSelector matches no pod")
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in n["spec"].get(direction) or []:
                for peer in rule.get(peers_key) or []:
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        if not any(p.namespace == ns and selector_matches(peer["podSelector"], p.labels) for p in pods):
                            m.fail("network", where, f"{direction} peer podSelector {peer['podSelector']} matches no pod")
                if direction == "ingress":
                    for rp in rule.get("ports") or []:
                        if isinstance(rp.get("port"), str):
                            for p in selected:
                                if rp["port"] not in p.port_names():
                                    m.fail("network", where, f"port {rp['port']!r} is not a named port of {p.ref}")

    def allowed(pod: Pod, direction: str, port, peer_ok) -> bool:
        for n in nps:
            if n["metadata"].get("namespace") != pod.namespace or not selector_matches(n["spec"].get("podSelector"), pod.labels):
                continue
            for rule in n["spec"].get(direction) or []:
                peers = rule.get("from" if direction == "ingress" else "to")
                if (not peers or any(peer_ok(x) for x in peers)) and policy_ports_ok(rule.get("ports"), pod, port):
                    return True
        return False

    def in_namespace(name: str):
        return lambda peer: (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == name

    def managed_scraper(peer) -> bool:
        """The peer admits the ama-metrics pods: their namespace, and (if it names pods) them."""
        return in_namespace(MANAGED_SCRAPER_NAMESPACE)(peer) and (
            "podSelector" not in peer or selector_matches(peer["podSelector"], MANAGED_SCRAPER_LABELS))

    for pod in pods:
        dns = [n for n in nps if n["metadata"].get("namespace") == pod.namespace and selector_matches(n["spec"].get("podSelector"), pod.labels)
               for rule in n["spec"].get("egress") or [] for rp in rule.get("ports") or [] if rp.get("port") == 53 and rp.get("protocol", "TCP") == "UDP"]
        if not dns:
            m.fail("network", pod.ref, "no egress policy lets it resolve names (UDP 53)")
        # Whoever scrapes the pod must be admitted on the port it scrapes.
        scrapers = {}
        if pod.annotations.get("prometheus.io/scrape") == "true":
            scrapers["the namespace monitoring (prometheus.io/scrape)"] = ("http", in_namespace("monitoring"))
        for mon in m.of("ServiceMonitor") + m.of("PodMonitor"):
            for port in monitor_ports(m, mon, pod, pods):
                if monitor_group(mon) == MANAGED_GROUP:
                    scrapers[f"the managed Prometheus agent (kube-system, {MANAGED_SCRAPER_LABELS}; {mon['kind']}/"
                             f"{mon['metadata']['name']})"] = (port, managed_scraper)
                else:
                    scrapers[f"the namespace monitoring ({mon['kind']}/{mon['metadata']['name']})"] = (port, in_namespace("monitoring"))
        for who, (port, peer_ok) in scrapers.items():
            if not allowed(pod, "ingress", port, peer_ok):
                m.fail("network", pod.ref, f"is scraped by {who} but no policy admits it on port {port}")
    # Pods behind the Ingress: the ingress data path (the Application Gateway subnet or an ingress
    # controller namespace) must be admitted on the backend port.
    for ing in m.of("Ingress"):
        for rule in ing["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                svc_ref = path["backend"].get("service") or {}
                svc = m.get("Service", svc_ref.get("name"), ing["metadata"].get("namespace"))
                if not svc:
                    continue
                for pod in pods:
                    if pod.namespace == svc["metadata"].get("namespace") and map_selects(svc["spec"].get("selector"), pod.labels):
                        target_port = next((sp.get("targetPort", sp["port"]) for sp in svc["spec"]["ports"]
                                            if sp.get("name") == svc_ref.get("port", {}).get("name") or sp["port"] == svc_ref.get("port", {}).get("number")), None)
                        if not allowed(pod, "ingress", target_port, ingress_source(ing)):
                            m.fail("network", pod.ref, f"serves Ingress path {path['path']} but no policy admits the ingress path on port {target_port}")


def check_services(m: Manifests, pods: list[Pod]) -> None:
    """R11: Services select pods (or have endpoint slices) and their target ports exist."""
    for svc in m.of("Service"):
        where, ns = f"Service/{svc['metadata']['name']}", svc["metadata"].get("namespace")
        sel = svc["spec"].get("selector")
        if not sel:
            slices = [e for e in m.of("EndpointSlice") if e["metadata"].get("namespace") == ns
                      and e["metadata"].get("labels", {}).get("kubernetes.io/service-name") == svc["metadata"]["name"]]
            if not slices:
                m.fail("services", where, "has no selector and no EndpointSlice labelled kubernetes.io/service-name for it")
            for sp in svc["spec"].get("ports", []):
                if not any(p.get("name") == sp.get("name") for e in slices for p in e.get("ports", [])):
                    m.fail("services", where, f"port {sp.get('name')} is on no EndpointSlice of it")
            continue
        selected = [p for p in pods if p.namespace == ns and map_selects(sel, p.labels)]
        if not selected:
            m.fail("services", where, f"selector {sel} matches no pod")
        for sp in svc["spec"].get("ports", []):
            tp = sp.get("targetPort", sp["port"])
            for p in selected:
                if (isinstance(tp, str) and tp not in p.port_names()) or (isinstance(tp, int) and tp not in p.port_numbers()):
                    m.fail("services", where, f"targetPort {tp!r} is not a port of {p.ref}")


def check_ingress(m: Manifests, pods: list[Pod]) -> None:
    """R15: one host serves every public route, each from the target that owns it; TLS is on."""
    ings = m.of("Ingress")
    if not ings:
        m.fail("ingress", "Ingress", "none rendered: the public API is not exposed")
    routed = {}
    for ing in ings:
        where, ns = f"Ingress/{ing['metadata']['name']}", ing["metadata"].get("namespace")
        ann = ing["metadata"].get("annotations") or {}
        tls = ing["spec"].get("tls") or []
        if not tls and not ann.get("appgw.ingress.kubernetes.io/appgw-ssl-certificate"):
            m.fail("ingress", where, "no TLS: neither spec.tls nor an Application Gateway certificate annotation")
        for t in tls:
            issuer = ann.get("cert-manager.io/cluster-issuer") or ann.get("cert-manager.io/issuer")
            if t.get("secretName") and not issuer and not m.get("Secret", t["secretName"], ns):
                m.fail("references", where, f"TLS Secret {t['secretName']} is neither rendered nor issued by cert-manager")
        for rule in ing["spec"].get("rules", []):
            host = rule.get("host")
            for path in (rule.get("http") or {}).get("paths", []):
                p = path["path"]
                if p == "/" or any(p == o or p.startswith(o + "/") for o in OPS_PATHS):
                    m.fail("ingress", where, f"path {p} exposes operational endpoints (/metrics, /healthz, /readyz)")
                svc_ref = path["backend"].get("service") or {}
                svc = m.get("Service", svc_ref.get("name"), ns)
                if not svc:
                    m.fail("references", where, f"path {p} goes to Service {svc_ref.get('name')}, which is not rendered")
                    continue
                port = svc_ref.get("port") or {}
                if not any(sp.get("name") == port.get("name") or sp["port"] == port.get("number") for sp in svc["spec"]["ports"]):
                    m.fail("references", where, f"path {p}: Service {svc['metadata']['name']} has no port {port}")
                targets = {q.labels.get("app.kubernetes.io/component") for q in pods
                           if q.namespace == ns and map_selects(svc["spec"].get("selector"), q.labels)}
                routed[p] = (host, targets)
    hosts = {h for h, _ in routed.values()}
    if len(hosts) > 1:
        m.fail("ingress", "Ingress", f"the public API is split over several hosts {sorted(hosts, key=str)}")
    for prefix in sorted(set(routed) - set(PUBLIC_ROUTES)):
        m.fail("ingress", "Ingress", f"route {prefix} is not a public prefix (PUBLIC_ROUTES of scripts/check/deploy_rules.py)")
    for prefix, owner in PUBLIC_ROUTES.items():
        if prefix not in routed:
            m.fail("ingress", "Ingress", f"route {prefix} is not exposed")
        elif not routed[prefix][1] or not routed[prefix][1] <= {owner, "all"}:
            m.fail("ingress", "Ingress", f"route {prefix} goes to {sorted(routed[prefix][1], key=str)}, but {owner} serves it")


def monitor_group(mon: dict) -> str:
    return mon.get("apiVersion", "").split("/")[0]


def monitor_namespaces(mon: dict) -> set | None:
    """The namespaces a monitor selects in: its own by default; None for any."""
    sel = mon["spec"].get("namespaceSelector") or {}
    if sel.get("any"):
        return None
    return set(sel.get("matchNames") or [mon["metadata"].get("namespace")])


def monitor_targets(m: Manifests, mon: dict, pods: list[Pod]) -> list:
    """What a monitor selects: Services (ServiceMonitor) or pods (PodMonitor)."""
    namespaces = monitor_namespaces(mon)
    if mon["kind"] == "ServiceMonitor":
        return [s for s in m.of("Service") if (namespaces is None or s["metadata"].get("namespace") in namespaces)
                and selector_matches(mon["spec"].get("selector"), s["metadata"].get("labels", {}))]
    return [p for p in pods if (namespaces is None or p.namespace in namespaces)
            and selector_matches(mon["spec"].get("selector"), p.labels)]


def monitor_endpoints(mon: dict) -> list:
    return mon["spec"].get("endpoints" if mon["kind"] == "ServiceMonitor" else "podMetricsEndpoints") or []


def monitor_ports(m: Manifests, mon: dict, pod: Pod, pods: list[Pod]) -> list:
    """The pod ports a monitor scrapes on this pod (none when it does not select the pod)."""
    if mon["kind"] == "PodMonitor":
        if not any(t is pod for t in monitor_targets(m, mon, pods)):
            return []
        return [ep.get("port") or ep.get("targetPort") for ep in monitor_endpoints(mon)]
    out = []
    for svc in monitor_targets(m, mon, pods):
        if svc["metadata"].get("namespace") != pod.namespace or not map_selects(svc["spec"].get("selector"), pod.labels):
            continue
        for ep in monitor_endpoints(mon):
            for sp in svc["spec"]["ports"]:
                if ep.get("port") == sp.get("name"):
                    out.append(sp.get("targetPort", sp["port"]))
    return out


def check_monitors(m: Manifests, pods: list[Pod], managed_prometheus: bool) -> None:
    """R17: a ServiceMonitor (components/servicemonitor, Prometheus Operator) or PodMonitor
    (components/managed-prometheus, AKS managed Prometheus) selects what exists, and its series
    carry the labels the rules and dashboards use, as the pod-annotation scrape gives them. On a
    cluster of infra/terraform (managed_prometheus) every workload is scraped by the add-on's
    kind and no Prometheus Operator kind is rendered."""
    monitors = m.of("ServiceMonitor") + m.of("PodMonitor")
    for mon in monitors:
        where = f"{mon['kind']}/{mon['metadata']['name']}"
        if monitor_group(mon) not in (OPERATOR_GROUP, MANAGED_GROUP):
            m.fail("monitoring", where, f"API group {monitor_group(mon)!r} is neither the Prometheus Operator's "
                   f"({OPERATOR_GROUP}) nor AKS managed Prometheus' ({MANAGED_GROUP}): nothing reads it")
        targets = monitor_targets(m, mon, pods)
        if not targets:
            m.fail("references", where, f"selects no {'Service' if mon['kind'] == 'ServiceMonitor' else 'pod'}")
        job_label = mon["spec"].get("jobLabel")
        for ep in monitor_endpoints(mon):
            for t in targets:
                if mon["kind"] == "ServiceMonitor":
                    if ep.get("port") and not any(sp.get("name") == ep["port"] for sp in t["spec"]["ports"]):
                        m.fail("references", where, f"Service/{t['metadata']['name']} has no port named {ep['port']}")
                elif ep.get("port") and ep["port"] not in t.port_names():
                    m.fail("references", where, f"{t.ref} has no port named {ep['port']}")
            if ep.get("honorLabels") is not True:
                m.fail("monitoring", where, "honorLabels is not true: a target label of the same name (`service` for a "
                       "ServiceMonitor) would rename the binary's own to exported_<name>")
            relabel = ep.get("relabelings") or []
            job_set = [r for r in relabel if r.get("targetLabel") == "job" and (r.get("action") or "replace").lower() == "replace"]
            if job_set:
                if any(r.get("sourceLabels") or r.get("replacement") != SCRAPE_JOB for r in job_set):
                    m.fail("monitoring", where, f"a relabeling sets job to something other than {SCRAPE_JOB!r}")
            else:
                for t in targets:
                    if mon["kind"] == "ServiceMonitor":
                        name, labels = f"Service/{t['metadata']['name']}", t["metadata"].get("labels") or {}
                        default = t["metadata"]["name"]
                    else:
                        name, labels = t.ref, t.labels
                        default = f"{mon['metadata'].get('namespace')}/{mon['metadata']['name']}"
                    got = labels.get(job_label) if job_label else default
                    if got != SCRAPE_JOB:
                        m.fail("monitoring", where, f"{name} is scraped as job={got!r}, the rules expect "
                               f"job={SCRAPE_JOB!r} (jobLabel naming a label whose value is {SCRAPE_JOB}, or a relabeling)")
            target = [r for r in relabel if r.get("targetLabel") == "liveops_target"]
            if not target or any((r.get("action") or "replace").lower() != "replace" or
                                 list(r.get("sourceLabels") or []) not in ([t] for t in TARGET_LABEL_SOURCES) for r in target):
                m.fail("monitoring", where, "no relabeling sets liveops_target from the app.kubernetes.io/component label")
    if not managed_prometheus:
        return
    for d in m.docs:
        if d.get("apiVersion", "").split("/")[0] == OPERATOR_GROUP:
            m.fail("monitoring", f"{d['kind']}/{d['metadata']['name']}", f"{OPERATOR_GROUP} is the Prometheus Operator's "
                   f"group; the clusters of infra/terraform run AKS managed Prometheus ({MANAGED_GROUP}) and have no "
                   "such kind (the sync's dry-run fails)")
    managed = [mon for mon in monitors if monitor_group(mon) == MANAGED_GROUP]
    for pod in pods:
        if not any(monitor_ports(m, mon, pod, pods) for mon in managed):
            m.fail("monitoring", pod.ref, f"no {MANAGED_GROUP} PodMonitor or ServiceMonitor scrapes it: AKS managed "
                   "Prometheus would not collect its metrics (components/managed-prometheus)")


def check_identity(m: Manifests, pods: list[Pod]) -> None:
    """R16: the workload identity of the service account is the one the Key Vault mount uses."""
    for pod in pods:
        if pod.labels.get("azure.workload.identity/use") != "true":
            continue
        sa = m.get("ServiceAccount", pod.spec.get("serviceAccountName", "default"), pod.namespace)
        client = ((sa or {}).get("metadata", {}).get("annotations") or {}).get("azure.workload.identity/client-id")
        if not client:
            m.fail("identity", pod.ref, "uses workload identity but its service account has no azure.workload.identity/client-id")
        for v in pod.spec.get("volumes", []):
            name = ((v.get("csi") or {}).get("volumeAttributes") or {}).get("secretProviderClass")
            spc = m.get("SecretProviderClass", name, pod.namespace) if name else None
            if spc and spc["spec"].get("provider") == "azure" and spc["spec"]["parameters"].get("clientID") != client:
                m.fail("identity", pod.ref, f"SecretProviderClass {name} reads Key Vault as {spc['spec']['parameters'].get('clientID')}, the service account is {client}")


# -- self-test ----------------------------------------------------------------------------------
def _find(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def _container(docs, name):
    return _find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _config(docs):
    return _find(docs, "ConfigMap")["data"]


def _drop(docs, kind, name):
    docs.remove(_find(docs, kind, name))


def _pod_monitor_endpoint(docs):
    return _find(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]


def _service_monitor(**change):
    """The ServiceMonitor of components/servicemonitor (not in the prod rendering), with `change`
    applied to its endpoint (jobLabel to its spec; None removes a field)."""
    ep = {"port": "http", "path": "/metrics", "honorLabels": True, "relabelings": [
        {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "targetLabel": "liveops_target", "action": "replace"}]}
    spec = {"jobLabel": "app.kubernetes.io/name", "selector": {"matchLabels": {"app.kubernetes.io/name": "liveops"}}, "endpoints": [ep]}
    for k, v in change.items():
        target = spec if k == "jobLabel" else ep
        if v is None:
            target.pop(k, None)
        else:
            target[k] = v
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "liveops", "namespace": "liveops"}, "spec": spec}


MUTATIONS = [
    ("network", "egress to a subnet of another environment", lambda d: _find(d, "NetworkPolicy", "allow-egress-backends")["spec"]["egress"][1]["to"][0]["ipBlock"].update(cidr="10.41.16.0/24")),
    ("probes", "gateway without a startup probe", lambda d: _container(d, "liveops-gateway").pop("startupProbe")),
    ("probes", "readiness probe on /healthz", lambda d: _container(d, "liveops-fairness")["readinessProbe"]["httpGet"].update(path="/healthz")),
    ("resources", "no memory limit", lambda d: _container(d, "liveops-leaderboard")["resources"]["limits"].pop("memory")),
    ("security", "writable root filesystem", lambda d: _container(d, "liveops-progression")["securityContext"].update(readOnlyRootFilesystem=False)),
    ("security", "capabilities kept", lambda d: _container(d, "liveops-gateway")["securityContext"]["capabilities"].update(drop=["NET_RAW"])),
    ("target", "args of another target", lambda d: _container(d, "liveops-fairness").update(args=["serve", "--target", "gateway"])),
    ("target", "wrong PORT", lambda d: _container(d, "liveops-leaderboard")["env"][0].update(value="8080")),
    ("shutdown", "grace period shorter than the drain", lambda d: _find(d, "Deployment", "liveops-gateway")["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=10)),
    ("spread", "zone spread selecting another target", lambda d: _find(d, "Deployment", "liveops-gateway")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"].update({"app.kubernetes.io/component": "fairness"})),
    ("image", "image tag left to the base", lambda d: _container(d, "liveops-gateway").update(image="liveopsacr.azurecr.io/liveops:set-by-overlay")),
    ("budgets", "a PodDisruptionBudget removed", lambda d: _drop(d, "PodDisruptionBudget", "liveops-fairness")),
    ("autoscaling", "an HPA removed", lambda d: _drop(d, "HorizontalPodAutoscaler", "liveops-leaderboard")),
    ("autoscaling", "gateway HPA on a custom metric no adapter rule serves", lambda d: _find(d, "HorizontalPodAutoscaler", "liveops-gateway")["spec"]["metrics"].append({"type": "External", "external": {"metric": {"name": "queue_depth"}, "target": {"type": "AverageValue", "averageValue": "10"}}})),
    ("network", "policy selecting no pod", lambda d: _find(d, "NetworkPolicy", "allow-monitoring-scrape")["spec"]["podSelector"]["matchLabels"].update({"app.kubernetes.io/name": "liveop"})),
    ("network", "DNS egress removed", lambda d: _find(d, "NetworkPolicy", "allow-egress-backends")["spec"].update(egress=_find(d, "NetworkPolicy", "allow-egress-backends")["spec"]["egress"][1:])),
    ("network", "default deny removed", lambda d: _drop(d, "NetworkPolicy", "default-deny-all")),
    ("network", "public pods not admitted from the ingress path", lambda d: _drop(d, "NetworkPolicy", "allow-ingress-from-app-gateway")),
    ("services", "Service selector typo", lambda d: _find(d, "Service", "liveops-fairness")["spec"]["selector"].update({"app.kubernetes.io/component": "fairnes"})),
    ("references", "ConfigMap reference to a missing name", lambda d: _container(d, "liveops-gateway")["envFrom"][0]["configMapRef"].update(name="liveops-config")),
    ("references", "service account missing", lambda d: _drop(d, "ServiceAccount", "liveops")),
    ("secret-files", "bus-conn not mounted", lambda d: _find(d, "SecretProviderClass")["spec"]["parameters"].update(objects="array:\n  - |\n    objectName: hmac-keys\n    objectType: secret\n  - |\n    objectName: secrets-keys\n    objectType: secret\n  - |\n    objectName: db-url\n    objectType: secret\n  - |\n    objectName: redis-url\n    objectType: secret\n")),
    ("shape", "split targets on the local bus", lambda d: _config(d).update(BUS_KIND="sqlite")),
    ("shape", "split targets without Redis", lambda d: _config(d).pop("REDIS_URL_FILE")),
    ("ingress", "a route to the wrong target", lambda d: _find(d, "Ingress")["spec"]["rules"][0]["http"]["paths"][2]["backend"]["service"].update(name="liveops-fairness")),
    ("ingress", "a public route missing", lambda d: _find(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].pop(0)),
    ("ingress", "metrics exposed", lambda d: _find(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].append({"path": "/metrics", "pathType": "Prefix", "backend": {"service": {"name": "liveops-gateway", "port": {"name": "http"}}}})),
    ("ingress", "a route outside the public prefixes", lambda d: _find(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].append({"path": "/internal", "pathType": "Prefix", "backend": {"service": {"name": "liveops-gateway", "port": {"name": "http"}}}})),
    ("ingress", "the last public route missing", lambda d: _find(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].pop()),
    ("references", "DB_READ_URL from a Secret nothing syncs", lambda d: _find(d, "SecretProviderClass")["spec"].pop("secretObjects")),
    ("monitoring", "a PodMonitor without honorLabels", lambda d: _pod_monitor_endpoint(d).update(honorLabels=False)),
    ("monitoring", "a PodMonitor scraping as job=<namespace>/<name>", lambda d: _find(d, "PodMonitor")["spec"].pop("jobLabel")),
    ("monitoring", "a PodMonitor without liveops_target", lambda d: _pod_monitor_endpoint(d).update(relabelings=[])),
    ("monitoring", "a PodMonitor of the Prometheus Operator's group", lambda d: _find(d, "PodMonitor").update(apiVersion="monitoring.coreos.com/v1")),
    ("monitoring", "the managed Prometheus PodMonitor removed", lambda d: _drop(d, "PodMonitor", "liveops")),
    ("references", "a PodMonitor on a port the pods do not name", lambda d: _pod_monitor_endpoint(d).update(port="metrics")),
    ("network", "the managed Prometheus agent not admitted", lambda d: _drop(d, "NetworkPolicy", "allow-managed-prometheus-scrape")),
    ("network", "the managed Prometheus scrape admitted from the namespace monitoring only", lambda d: _find(d, "NetworkPolicy", "allow-managed-prometheus-scrape")["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"].update({"kubernetes.io/metadata.name": "monitoring"})),
    ("network", "the managed Prometheus scrape admitted for other kube-system pods only", lambda d: _find(d, "NetworkPolicy", "allow-managed-prometheus-scrape")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].update(rsName="ama-logs")),
    # On a cluster with the Prometheus Operator (components/servicemonitor; not held to
    # --managed-prometheus, where the operator's kind is refused as such).
    ("monitoring", "a ServiceMonitor without honorLabels", lambda d: d.append(_service_monitor(honorLabels=False)), False),
    ("monitoring", "a ServiceMonitor scraping as job=<Service name>", lambda d: d.append(_service_monitor(jobLabel=None)), False),
    ("monitoring", "a ServiceMonitor without liveops_target", lambda d: d.append(_service_monitor(relabelings=[])), False),
    ("network", "a ServiceMonitor scrape not admitted from the namespace monitoring", lambda d: (d.append(_service_monitor()), _drop(d, "NetworkPolicy", "allow-monitoring-scrape"), [x["spec"]["template"]["metadata"]["annotations"].pop("prometheus.io/scrape") for x in d if x["kind"] == "Deployment"]), False),
    ("config", "a value never replaced from the environment", lambda d: _config(d).update(TRUSTED_PROXY_CIDRS="replaced-from-environment")),
    ("config", "proxies trusted without their networks", lambda d: _config(d).pop("TRUSTED_PROXY_CIDRS")),
    ("config", "proxies trusted from everywhere", lambda d: _config(d).update(TRUSTED_PROXY_CIDRS="0.0.0.0/0")),
    ("identity", "Key Vault read as another identity", lambda d: _find(d, "SecretProviderClass")["spec"]["parameters"].update(clientID="11111111-1111-1111-1111-111111111111")),
]


def self_test(docs: list, env_file: dict | None) -> int:
    base = Manifests(copy.deepcopy(docs))
    check(base, production=True, env_file=env_file, managed_prometheus=True)
    if base.errors:
        print("self-test needs manifests that pass first:\n" + "\n".join(base.errors))
        return 1
    # The ServiceMonitor mutations start from the component's own, which must pass as it is (on a
    # cluster with the Prometheus Operator).
    with_sm = Manifests(copy.deepcopy(docs) + [_service_monitor()])
    check(with_sm, production=True, env_file=env_file)
    if with_sm.errors:
        print("self-test: the ServiceMonitor of components/servicemonitor fails:\n" + "\n".join(with_sm.errors))
        return 1
    missed = 0
    for rule, what, mutate, *managed in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        m = Manifests(broken)
        check(m, production=True, env_file=env_file, managed_prometheus=managed[0] if managed else True)
        caught = [e for e in m.errors if e.startswith(f"[{rule}]")]
        if caught:
            print(f"  caught  {what}: {caught[0]}")
        else:
            missed += 1
            print(f"  MISSED  {what}: no [{rule}] finding (got {m.errors[:2]})")
    print(f"self-test: {len(MUTATIONS) - missed} passed, {missed} failed")
    return 1 if missed else 0


def read_env_file(path: str) -> dict:
    out = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered")
    ap.add_argument("--production", action="store_true")
    ap.add_argument("--managed-prometheus", action="store_true")
    ap.add_argument("--env-file")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    with open(args.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    env_file = read_env_file(args.env_file) if args.env_file else None
    if args.self_test:
        return self_test(docs, env_file)
    m = Manifests(docs)
    check(m, args.production, env_file, args.managed_prometheus)
    kinds = sorted({d["kind"] for d in m.docs})
    if m.errors:
        print("\n".join(m.errors))
        print(f"{os.path.basename(args.rendered)}: {len(m.errors)} finding(s)")
        return 1
    print(f"{os.path.basename(args.rendered)}: every rule holds ({len(m.docs)} resources: {', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
