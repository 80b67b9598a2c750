#!/usr/bin/env bash
# Runs a command with the local AWS emulator (moto server) on loopback.
#
#   infra/with-emulator.sh COMMAND [ARGS...]
#
# Starts moto server from the project's .venv on 127.0.0.1 (port from
# EMULATOR_PORT, or a free one) through infra/emulator.py, which turns off
# moto's own event source pollers (the local stack's runners poll
# instead), waits until it answers, exports the AWS settings that point
# the SDK at it, runs COMMAND, and stops the emulator when COMMAND ends or
# is interrupted. Exits with COMMAND's status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/moto_server" ] || { echo "with-emulator: $venv/bin/moto_server is missing; run 'make tools'" >&2; exit 1; }

port="${EMULATOR_PORT:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${EMULATOR_LOG:-$root/target/emulator.log}"
mkdir -p "$(dirname "$log")"

"$venv/bin/python" "$root/infra/emulator.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
stop() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap stop EXIT
# Ctrl-C reaches the whole foreground group: let COMMAND shut down cleanly
# and report its own status instead of dying here first.
trap ':' INT
trap 'exit 143' TERM

ready() { "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "http://127.0.0.1:$port/moto-api/" 2>/dev/null; }
for _ in $(seq 1 150); do
  ready && break
  kill -0 "$moto_pid" 2>/dev/null || { echo "with-emulator: moto server exited; see $log" >&2; exit 1; }
  sleep 0.2
done
ready || { echo "with-emulator: moto server did not answer on port $port; see $log" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_SESSION_TOKEN=
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE
echo "with-emulator: moto server on $AWS_ENDPOINT_URL (log: $log)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
