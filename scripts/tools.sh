#!/usr/bin/env bash
# Installs the validators and helpers the test suite runs, once, into a fixed cache directory that
# outlives the clone (Debian packages, PyPI tools in one virtualenv, npm tools in one prefix);
# later runs find them there and install nothing.
#
#   scripts/tools.sh install      # installs what is missing (safe to run concurrently: a lock)
#   source <(scripts/tools.sh env) # puts the tools on PATH
#
# What to install is listed in scripts/tools/: apt-*.txt (Debian packages, one per line),
# requirements-*.txt (PyPI, pinned) and package.json (npm, pinned). Each area of the test suite
# owns its own list file.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LIST="$ROOT/scripts/tools"
TOOLS="${LIVEOPS_TOOLS:-/var/tmp/liveops-tools}"

log() { echo "tools: $*" >&2; }

install_apt() {
  local wanted=() missing=() pkg
  shopt -s nullglob
  for f in "$LIST"/apt-*.txt; do
    while read -r pkg; do
      pkg="${pkg%%#*}"; pkg="${pkg// /}"
      [ -n "$pkg" ] && wanted+=("$pkg")
    done < "$f"
  done
  shopt -u nullglob
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Do not let the packages start their own daemons.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  fi
}

install_pip() {
  shopt -s nullglob
  local reqs=("$LIST"/requirements-*.txt)
  shopt -u nullglob
  [ ${#reqs[@]} -eq 0 ] && return 0
  local stamp
  stamp=$(cat "${reqs[@]}" | sha256sum | cut -c1-16)
  if [ -f "$TOOLS/venv/.stamp" ] && [ "$(cat "$TOOLS/venv/.stamp")" = "$stamp" ]; then
    return 0
  fi
  log "pip install into $TOOLS/venv"
  [ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv"
  local args=()
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  PIP_CACHE_DIR="$TOOLS/pip-cache" "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "${args[@]}"
  echo "$stamp" > "$TOOLS/venv/.stamp"
}

install_npm() {
  [ -f "$LIST/package.json" ] || return 0
  local stamp
  stamp=$(cat "$LIST/package.json" | sha256sum | cut -c1-16)
  if [ -f "$TOOLS/npm/.stamp" ] && [ "$(cat "$TOOLS/npm/.stamp")" = "$stamp" ]; then
    return 0
  fi
  log "npm install into $TOOLS/npm"
  mkdir -p "$TOOLS/npm"
  cp "$LIST/package.json" "$TOOLS/npm/package.json"
  (cd "$TOOLS/npm" && npm install --no-audit --no-fund --loglevel=error --cache "$TOOLS/npm-cache" >/dev/null)
  echo "$stamp" > "$TOOLS/npm/.stamp"
}

# Cargo tools the suite runs beyond the toolchain (cargo-fuzz for scripts/fuzz.sh), built once
# into $TOOLS/cargo.
install_cargo() {
  local bin="$TOOLS/cargo/bin/cargo-fuzz" want="0.13.2"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $want"; then
    return 0
  fi
  log "cargo install cargo-fuzz $want into $TOOLS/cargo"
  cargo install --quiet --locked --root "$TOOLS/cargo" \
    --target-dir "$TOOLS/cargo/build" "cargo-fuzz@$want"
  rm -rf "$TOOLS/cargo/build"
}

case "${1:-install}" in
  install)
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/.lock"
    flock 9
    install_apt
    install_pip
    install_npm
    install_cargo
    ;;
  env)
    echo "export PATH=\"$TOOLS/venv/bin:$TOOLS/npm/node_modules/.bin:$TOOLS/cargo/bin:\$PATH\""
    echo "export LIVEOPS_TOOLS=\"$TOOLS\""
    ;;
  *) echo "usage: $0 install|env" >&2; exit 2 ;;
esac
