#!/usr/bin/env bash
# Contract fuzzing: schemathesis (every check) against the OpenAPI document a running
# `liveops serve` serves, with requests signed like a client signs them and operator routes
# given a bearer token (scripts/check/contract_hooks.py), after openapi-spec-validator checked the
# document itself. Fails on an invalid document, any 5xx, any response that
# breaks the spec, and any schema-valid request the server refuses for a reason the document could
# state (scripts/check/refusals.py reads the run's HAR). Time-bounded: CONTRACT_SECONDS (default 240).
#
#   LIVEOPS_BIN=target/debug/liveops scripts/check/contract.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN="${LIVEOPS_BIN:-target/debug/liveops}"
SECONDS_BUDGET="${CONTRACT_SECONDS:-240}"
[ -x "$BIN" ] || { echo "contract: no liveops binary at $BIN (cargo build -p liveops)" >&2; exit 1; }

scripts/tools.sh install
# shellcheck disable=SC1090
source <(scripts/tools.sh env)
command -v schemathesis >/dev/null || { echo "contract: schemathesis missing (scripts/tools/requirements-contract.txt)" >&2; exit 1; }
command -v openapi-spec-validator >/dev/null || { echo "contract: openapi-spec-validator missing (scripts/tools/requirements-contract.txt)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/liveops-contract.XXXXXX)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
export LIVEOPS_CONTRACT_SECRET="contract-secret-0123456789abcdef-0123"
# The bootstrap admin the hooks log in as for the operator routes; login limits out of the way
# (the fuzzer's own logins with random credentials would otherwise lock the hooks out).
export LIVEOPS_CONTRACT_ADMIN_EMAIL="contract-admin@example.com"
export LIVEOPS_CONTRACT_ADMIN_PASSWORD="contract admin password 0123"
export LIVEOPS_CONTRACT_BASE="http://127.0.0.1:$PORT"
# Where the webhooks the fuzzer registers point (contract_hooks.py): a sink answering 204, on
# loopback, which the server may target with WEBHOOK_ALLOW_PRIVATE.
SINK_PORT="$(free_port)"
export LIVEOPS_CONTRACT_SINK="127.0.0.1:$SINK_PORT"
python3 - "$SINK_PORT" > "$WORK/sink.log" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
SINK_PID=$!
# Boards are snapshotted every 5 s, so the archived boards the hooks ask for exist early. Every
# login of the run comes from an address of its own (the hooks set X-Forwarded-For, trusted from
# one proxy on loopback), so the login limits (255 at most, and the process's failed logins per
# minute) are not in the way of the fuzzing; nor are the caps on webhooks and API keys (at their
# highest: past a cap every create of the run would be the same 409).
HMAC_SECRET="$LIVEOPS_CONTRACT_SECRET" RATE_LIMIT_MAX=100000 LOG_LEVEL=warn WEBHOOK_ALLOW_PRIVATE=true \
  SNAPSHOT_CRON="*/5 * * * * *" WEBHOOK_MAX=1000 API_KEY_MAX=10000 \
  ADMIN_EMAIL="$LIVEOPS_CONTRACT_ADMIN_EMAIL" ADMIN_PASSWORD="$LIVEOPS_CONTRACT_ADMIN_PASSWORD" \
  TRUSTED_PROXIES=1 TRUSTED_PROXY_CIDRS=127.0.0.1 LOGIN_MAX_PER_ADDRESS=255 LOGIN_MAX_FAILURES=255 \
  LOGIN_MAX_FAILED_PER_MINUTE=100000 \
  "$BIN" serve --bind 127.0.0.1 --port "$PORT" --data-dir "$WORK/data" > "$WORK/liveops.log" 2>&1 &
PID=$!
trap 'kill "$PID" "$SINK_PID" 2>/dev/null || true; wait "$PID" "$SINK_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "contract: liveops did not become ready" >&2; cat "$WORK/liveops.log" >&2; exit 1; }

# The reference events, sent as a client sends them, put players on every board; the run starts
# once the default window has an archived snapshot for the hooks to point `period` at.
SAMPLES="${LIVEOPS_SAMPLES:-$ROOT/../shared/sample_events}"
HMAC_SECRET="$LIVEOPS_CONTRACT_SECRET" "$BIN" send --url "http://127.0.0.1:$PORT" \
  --data-dir "$WORK/send" "$SAMPLES"/*.json > "$WORK/send.log" 2>&1 \
  || { echo "contract: liveops send failed:" >&2; cat "$WORK/send.log" >&2; exit 1; }
archived() { [[ "$(curl -fsS "http://127.0.0.1:$PORT/leaderboard/history/periods" || true)" == *'"periods":["'* ]]; }
for _ in $(seq 1 100); do archived && break; sleep 0.2; done
archived || { echo "contract: no snapshot was archived after the sample events" >&2; exit 1; }

status=0
echo "== openapi-spec-validator: the served document is valid OpenAPI (unique operation ids, parameters)"
curl -fsS "http://127.0.0.1:$PORT/openapi.json" > "$WORK/openapi.json"
openapi-spec-validator "$WORK/openapi.json" || status=1

echo "== contract hooks: their examples"
PYTHONPATH="$ROOT/scripts/check" python3 -m doctest "$ROOT/scripts/check/contract_hooks.py" || status=1

echo "== schemathesis: every check, ${SECONDS_BUDGET}s, signed like a client"
# One worker: with two, Hypothesis describing its strategies parses Python source with `ast` from
# two threads, which Python 3.11 does not support ("AST constructor recursion depth mismatch").
PYTHONPATH="$ROOT/scripts/check" SCHEMATHESIS_HOOKS=contract_hooks \
  schemathesis --config-file "$ROOT/scripts/check/schemathesis.toml" run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all --max-time "$SECONDS_BUDGET" --workers 1 \
    --suppress-health-check all --no-color \
    --report junit,har --report-dir "$WORK/report" || status=$?
echo "== refusals: no schema-valid request refused for a reason the document could state"
if python3 "$ROOT/scripts/check/refusals.py" "$WORK/openapi.json" "$WORK"/report/har-*.json; then
  rm -f "$WORK"/report/har-*.json  # tens of MB; kept only when it shows a failure
else
  status=1
fi
if grep -q '"level":"ERROR"' "$WORK/liveops.log"; then
  echo "contract: the server logged errors during the run:" >&2
  grep '"level":"ERROR"' "$WORK/liveops.log" | head -20 >&2
  status=1
fi
echo "contract: exit $status (document check and schemathesis; report in $WORK/report)"
exit "$status"
