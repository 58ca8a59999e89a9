#!/usr/bin/env bash
# Checks of the deployment assets (deploy/): renders every Kustomize overlay and example, then
# runs, and fails on any finding of:
#   kubernetes-validate --strict  built-in kinds of every rendering, against the AKS version
#   deploy_schemas.py             custom resources (ServiceMonitor, SecretProviderClass, Argo CD)
#                                 against the minimal strict schemas in scripts/check/crd-schemas
#   deploy_rules.py               how the resources fit together (probes, security, PDB/HPA per
#                                 workload, selectors, references, secret files, routes, who
#                                 scrapes the pods and that they are let in; dev and prod are
#                                 scraped by AKS managed Prometheus), plus its self-test that
#                                 breaks the prod rendering in known ways
#   argocd_kinds                  every kind an Application syncs is one its AppProject allows
#   checkov                       the rendered manifests, the kustomize directories, the Dockerfile
#   trivy config                  deploy/ and the rendered manifests: no HIGH or CRITICAL finding
#   hadolint                      the Dockerfile
#   deploy_image.py               the Dockerfile builds what the suite builds, from a build context
#                                 (.dockerignore) that holds the whole workspace
#   registries                    each environment's registry is the same in Terraform, its overlay
#                                 and ci/Jenkinsfile
# Independent validators run side by side (DEPLOY_CHECK_JOBS at a time, default 3).
#
#   scripts/check/deploy.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

# The Kubernetes version the manifests must be valid for: the AKS default of infra/terraform
# (variable kubernetes_version).
K8S_VERSION="${DEPLOY_K8S_VERSION:-1.32.0}"
JOBS="${DEPLOY_CHECK_JOBS:-3}"
START=$(date +%s)

scripts/tools.sh install
# shellcheck disable=SC1090
source <(scripts/tools.sh env)

if ! command -v kubectl >/dev/null; then
  cat >&2 <<'EOF'
deploy.sh: kubectl (1.32 or newer, with kustomize built in) is required and not on PATH.
  Debian: add the Kubernetes apt repository (https://pkgs.k8s.io/core:/stable:/v1.32/deb/) and
  `apt-get install kubectl`, or put the release binary (https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl)
  on PATH. A standalone kustomize works too as `kustomize build` (not wired here).
EOF
  exit 1
fi
for tool in kubernetes-validate checkov trivy hadolint python; do
  if ! command -v "$tool" >/dev/null; then
    echo "deploy.sh: $tool is missing after scripts/tools.sh install (scripts/tools/requirements-deploy.txt)" >&2
    exit 1
  fi
done

OUT="$(mktemp -d "${TMPDIR:-/tmp}/liveops-deploy-check.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
R="$OUT/rendered"
mkdir -p "$R/k8s" "$R/argocd" "$OUT/logs"

echo "== render (kubectl kustomize, $(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))"
# name:directory:deploy_rules.py options
RENDERINGS=(
  "dev:deploy/k8s/overlays/dev:--managed-prometheus --env-file deploy/k8s/overlays/dev/terraform-outputs.env"
  "prod:deploy/k8s/overlays/prod:--production --managed-prometheus --env-file deploy/k8s/overlays/prod/terraform-outputs.env"
)
for dir in deploy/k8s/examples/*/; do
  dir="${dir%/}"
  RENDERINGS+=("example-$(basename "$dir"):$dir:--env-file $dir/terraform-outputs.env")
done
for r in "${RENDERINGS[@]}"; do
  IFS=: read -r name dir _ <<<"$r"
  kubectl kustomize "$dir" > "$R/k8s/$name.yaml"
  echo "$dir -> $(grep -c '^kind:' "$R/k8s/$name.yaml") resources"
done
kubectl kustomize deploy/argocd/apps > "$R/argocd/apps.yaml"
cp deploy/argocd/root.yaml "$R/argocd/root.yaml"
echo "deploy/argocd -> $(cat "$R"/argocd/*.yaml | grep -c '^kind:') resources"

# -- the checks (each writes $OUT/logs/<name>.log and .rc; some take one argument) ---------------
check_kubernetes_validate() {
  local out rc=0
  out=$(kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$R"/k8s/*.yaml "$R"/argocd/*.yaml) || rc=$?
  # Custom resources have no schema here: they are checked by deploy_schemas.py (next check).
  grep -v "^WARN .*Couldn't find schema for kind" <<<"$out" || true
  grep -o "Couldn't find schema for kind [A-Za-z]* with api version [^ ]*" <<<"$out" | sort -u |
    sed 's/^/not schema-checked here (see crd-schemas): /' || true
  if [ $rc -ne 0 ] || grep -q '^ERROR\|^FATAL' <<<"$out"; then return 1; fi
  echo "kubernetes-validate $(kubernetes-validate --version) --strict -k $K8S_VERSION: no error in $(cat "$R"/k8s/*.yaml "$R"/argocd/*.yaml | grep -c '^kind:') resources"
}
check_crd_schemas() {
  python scripts/check/deploy_schemas.py "$K8S_VERSION" "$R"/k8s/*.yaml "$R"/argocd/*.yaml &&
    python scripts/check/deploy_schemas.py --self-test "$K8S_VERSION" "$R"/k8s/*.yaml "$R"/argocd/*.yaml
}
check_rules() {
  local r name dir opts rc=0
  for r in "${RENDERINGS[@]}"; do
    IFS=: read -r name dir opts <<<"$r"
    # shellcheck disable=SC2086
    python scripts/check/deploy_rules.py $opts "$R/k8s/$name.yaml" || rc=1
  done
  python scripts/check/deploy_rules.py --self-test --env-file deploy/k8s/overlays/prod/terraform-outputs.env \
    "$R/k8s/prod.yaml" | grep -v '^  caught' || rc=1
  return $rc
}
checkov_run() {
  local out rc=0
  out=$(checkov --skip-download --quiet --compact "$@" 2>&1) || rc=$?
  grep -v '^\s*$' <<<"$out" || true
  return $rc
}
check_checkov_rendered() { checkov_run --framework kubernetes -d "$R"; }
# Argo CD refuses to sync a kind its AppProject does not list (the whole sync fails): every kind
# of the overlay each Application deploys must be in the project's namespaced or cluster list.
check_argocd_kinds() {
  local maps=() r name dir
  for r in "${RENDERINGS[@]}"; do
    IFS=: read -r name dir _ <<<"$r"
    maps+=("$dir=$R/k8s/$name.yaml")
  done
  python - "$R/argocd/apps.yaml" "${maps[@]}" <<'PY'
import sys, yaml
apps = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
renderings = dict(a.split("=", 1) for a in sys.argv[2:])
projects = {d["metadata"]["name"]: d["spec"] for d in apps if d["kind"] == "AppProject"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass"}
errors, checked = [], 0
for app in (d for d in apps if d["kind"] == "Application"):
    name, spec = app["metadata"]["name"], app["spec"]
    path = spec["source"]["path"]
    if path not in renderings:
        errors.append(f"Application {name}: {path} is not rendered by this check")
        continue
    project = projects.get(spec["project"])
    if project is None:
        errors.append(f"Application {name}: project {spec['project']} is not in deploy/argocd/apps")
        continue
    for d in (d for d in yaml.safe_load_all(open(renderings[path])) if d):
        group = d["apiVersion"].rpartition("/")[0]
        lists = ("clusterResourceWhitelist",) if d["kind"] in CLUSTER_SCOPED else ("namespaceResourceWhitelist",)
        allowed = {(w["group"], w["kind"]) for l in lists for w in project.get(l) or []}
        if (group, d["kind"]) not in allowed and ("*", "*") not in allowed:
            errors.append(f"Application {name} ({path}): {d['kind']} of group {group or 'core'!r} is not in "
                          f"project {spec['project']}'s {lists[0]}: the sync would fail")
        checked += 1
for e in sorted(set(errors)):
    print(e)
print(f"argocd kinds: {checked} resources of {sum(d['kind'] == 'Application' for d in apps)} Applications, every kind allowed by its project"
      if not errors else f"argocd kinds: {len(set(errors))} finding(s)")
sys.exit(1 if errors else 0)
PY
}
# One kustomize directory per run, and sequential inside checkov: its kustomize runner writes the
# renderings of every overlay whose base it cannot name into one scratch directory, by index and
# then by kind-namespace-name, so overlays scanned together overwrite each other's files (and, in
# parallel, half-written ones: a flaky "expected a single document" crash).
check_checkov_kustomize() { CHECKOV_PARALLELIZATION_TYPE=none checkov_run --framework kustomize -d "$1"; }
check_checkov_dockerfile() { checkov_run --framework dockerfile -f deploy/docker/Dockerfile; }
check_trivy() {
  local dir
  for dir in deploy "$R"; do
    trivy config --quiet --skip-check-update --disable-telemetry --cache-dir "$LIVEOPS_TOOLS/trivy-cache" \
      --format json --output "$OUT/trivy-$(basename "$dir").json" "$dir" || return 1
  done
  python - "$OUT"/trivy-*.json <<'PY'
import collections, json, sys
counts, findings, passed = collections.Counter(), [], 0
for path in sys.argv[1:]:
    for res in json.load(open(path)).get("Results") or []:
        passed += (res.get("MisconfSummary") or {}).get("Successes", 0)
        for f in res.get("Misconfigurations") or []:
            if f.get("Status") == "FAIL":
                counts[f["Severity"]] += 1
                findings.append(f"{f['Severity']:8} {f['ID']} {res['Target']}: {f['Title']}")
for line in sorted(findings):
    print(line)
print(f"trivy config: {passed} checks passed; findings by severity: {dict(counts) or 'none'} (HIGH and CRITICAL fail)")
sys.exit(1 if counts["HIGH"] or counts["CRITICAL"] else 0)
PY
}
check_hadolint() {
  hadolint --failure-threshold style deploy/docker/Dockerfile && echo "hadolint $(hadolint --version | awk '{print $NF}'): no finding"
}
check_image() { python scripts/check/deploy_image.py "$ROOT"; }
# The GitOps repository is this repository: CI pushes the image tags where Argo CD reads them.
check_one_repository() {
  local ci argo
  ci=$(sed -n "s/^ *GITOPS_REPO_URL = '\([^']*\)'.*/\1/p" ci/Jenkinsfile)
  argo=$(grep -hoE '(repoURL:|^ *-) *https://[^ ]+' deploy/argocd/root.yaml deploy/argocd/apps/*.yaml |
    sed -E 's/^(repoURL:|[ -]*) *//' | sort -u)
  if [ -z "$ci" ] || [ -z "$argo" ] || [ "$argo" != "$ci" ]; then
    echo "ci/Jenkinsfile GITOPS_REPO_URL ($ci) must be the one repository of deploy/argocd ($(tr '\n' ' ' <<<"$argo"))"
    return 1
  fi
  echo "one GitOps repository: $ci (ci/Jenkinsfile GITOPS_REPO_URL, every repoURL and sourceRepos of deploy/argocd)"
}

# Each cluster pulls only from its own registry (AcrPull of its kubelet identity): the registry
# Terraform creates for an environment (envs/<env>.tfvars acr_name), the one its overlay's images
# come from (terraform-outputs.env ACR_LOGIN_SERVER, which deploy_rules.py holds the images to)
# and the one CI pushes to and bumps it with (ci/Jenkinsfile <ENV>_ACR_NAME) must be the same.
check_registries() {
  local env tf ci out rc=0
  for env in dev prod; do
    tf=$(sed -n 's/^ *acr_name *= *"\([^"]*\)".*/\1/p' "infra/terraform/envs/$env.tfvars")
    ci=$(sed -n "s/^ *${env^^}_ACR_NAME = '\([^']*\)'.*/\1/p" ci/Jenkinsfile)
    out=$(sed -n 's/^ACR_LOGIN_SERVER=//p' "deploy/k8s/overlays/$env/terraform-outputs.env")
    if [ -z "$tf" ] || [ "$out" != "$tf.azurecr.io" ] || [ "$ci" != "$tf" ]; then
      echo "$env: registries differ: envs/$env.tfvars acr_name=$tf, overlays/$env ACR_LOGIN_SERVER=$out, ci/Jenkinsfile ${env^^}_ACR_NAME=$ci"
      rc=1
    else
      echo "$env: one registry $out (envs/$env.tfvars, overlays/$env/terraform-outputs.env, ci/Jenkinsfile ${env^^}_ACR_NAME)"
    fi
  done
  return $rc
}

# name[:argument]
CHECKS=(kubernetes_validate crd_schemas rules argocd_kinds checkov_rendered checkov_dockerfile trivy hadolint image
        one_repository registries checkov_kustomize:deploy/k8s/base)
for r in "${RENDERINGS[@]}"; do
  IFS=: read -r _ dir _ <<<"$r"
  CHECKS+=("checkov_kustomize:$dir")
done
echo "== ${#CHECKS[@]} checks, $JOBS at a time"
running=0
for c in "${CHECKS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
  log="$OUT/logs/${c//[:\/]/_}"
  ( s=$(date +%s); rc=0; IFS=: read -r fn arg <<<"$c"
    "check_$fn" ${arg:+"$arg"} > "$log.log" 2>&1 || rc=$?; echo "$rc $(( $(date +%s) - s ))" > "$log.rc" ) &
  running=$((running + 1))
done
wait

failed=0
for c in "${CHECKS[@]}"; do
  log="$OUT/logs/${c//[:\/]/_}"
  read -r rc secs < "$log.rc"
  if [ "$rc" = 0 ]; then
    echo "-- PASS $c (${secs}s)"
    sed 's/^/   /' "$log.log"
  else
    echo "-- FAIL $c (${secs}s, exit $rc)"
    sed 's/^/   /' "$log.log"
    failed=$((failed + 1))
  fi
done
echo "deploy: $(( ${#CHECKS[@]} - failed )) passed, $failed failed ($(( $(date +%s) - START ))s)"
[ "$failed" -eq 0 ]
