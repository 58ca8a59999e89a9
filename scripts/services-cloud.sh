#!/usr/bin/env bash
# Starts (or stops) the throw-away cloud-bus servers of the liveops-sqs and liveops-servicebus
# tests on loopback ports: moto's SQS emulator (scripts/moto-sqs.py), a second one that checks IAM
# permissions (scripts/moto-iam.py makes its users), and the AMQP 1.0 test broker
# (scripts/amqp-broker.py, on Debian's python3-qpid-proton). Installs them with scripts/tools.sh
# (scripts/tools/requirements-cloudbus.txt, scripts/tools/apt-cloudbus.txt) if they are missing.
#
#   scripts/services-cloud.sh start   # installs if needed, starts, writes $LIVEOPS_CLOUD_DIR/env
#   scripts/services-cloud.sh stop    # stops them and deletes their data
#   scripts/services-cloud.sh env     # prints the env file (source it to run tests by hand)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

DIR="${LIVEOPS_CLOUD_DIR:-/tmp/liveops-cloud}"
SQS_PORT="${LIVEOPS_SQS_PORT:-15000}"
SQS_IAM_PORT="${LIVEOPS_SQS_IAM_PORT:-15001}"
AMQP_PORT="${LIVEOPS_AMQP_PORT:-15672}"
TOOLS="${LIVEOPS_TOOLS:-/var/tmp/liveops-tools}"

# shellcheck source=scripts/services-lib.sh
source "$ROOT/scripts/services-lib.sh"
NAME=services-cloud

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_moto() { # directory name, port
  mkdir -p "$DIR/$1"
  # Static test credentials, no instance metadata: nothing here may reach outside loopback.
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true \
    nohup "$TOOLS/venv/bin/python" "$ROOT/scripts/moto-sqs.py" -H 127.0.0.1 -p "$2" > "$DIR/$1/log" 2>&1 &
  echo $! > "$DIR/$1/pid"
  wait_for "moto on $2" port_open "$2"
}

# The second moto checks IAM: its users' keys go to the env file.
start_moto_iam() {
  start_moto moto-iam "$SQS_IAM_PORT"
  AWS_EC2_METADATA_DISABLED=true "$TOOLS/venv/bin/python" "$ROOT/scripts/moto-iam.py" \
    "http://127.0.0.1:$SQS_IAM_PORT" > "$DIR/moto-iam/env"
}

start_broker() {
  mkdir -p "$DIR/amqp"
  # Debian's interpreter: python3-qpid-proton installs for it, not for other pythons on PATH.
  nohup /usr/bin/python3 "$ROOT/scripts/amqp-broker.py" --host 127.0.0.1 --port "$AMQP_PORT" > "$DIR/amqp/log" 2>&1 &
  echo $! > "$DIR/amqp/pid"
  wait_for "AMQP broker on $AMQP_PORT" port_open "$AMQP_PORT"
}

write_env() {
  cat > "$DIR/env" <<ENV
export LIVEOPS_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT
export LIVEOPS_TEST_AMQP_URL=amqp://127.0.0.1:$AMQP_PORT
export LIVEOPS_CLOUD_DIR=$DIR
ENV
  cat "$DIR/moto-iam/env" >> "$DIR/env"
}

start_all() {
  "$ROOT/scripts/tools.sh" install
  start_moto moto "$SQS_PORT"
  start_moto_iam
  start_broker
  write_env
}

services_main "$@"
