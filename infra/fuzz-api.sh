#!/usr/bin/env bash
# Contract fuzzing: runs the local API (local-stack up, no demo, no runners:
# nothing the fuzzer creates is delivered anywhere) on free loopback ports
# and points schemathesis at it with the API's OpenAPI document and
# infra/schemathesis.toml. Exits with schemathesis's status: non-zero when
# any answer disagrees with the document.
#
#   infra/with-emulator.sh infra/fuzz-api.sh
#
# Needs the emulator (AWS_ENDPOINT_URL, set by with-emulator.sh) and a built
# target/debug/local-stack.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
bin="$root/target/debug/local-stack"
: "${AWS_ENDPOINT_URL:?run under infra/with-emulator.sh}"
[ -x "$bin" ] || { echo "fuzz-api: $bin is missing; cargo build -p local-stack" >&2; exit 1; }

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"
receiver_port="$(free_port)"
while [ "$receiver_port" = "$api_port" ]; do receiver_port="$(free_port)"; done
log="$root/target/fuzz-api-stack.log"

# A small subscription quota, so the fuzzer meets its error too (the job-id
# quota stays at the documented default, the maxItems of the schema).
LOCAL_STACK_PARAMETERS="MaxSubscriptionsPerCompany=30" \
LOCAL_DEMO=0 LOCAL_RUNNERS=0 LOCAL_API_ADDR="127.0.0.1:$api_port" LOCAL_RECEIVER_ADDR="127.0.0.1:$receiver_port" \
  "$bin" up >"$log" 2>&1 &
stack_pid=$!
stop() { kill -INT "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; }
trap stop EXIT

api="http://127.0.0.1:$api_port"
answers() { "$venv/bin/python" -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError: pass' "$api/job-types" 2>/dev/null; }
for _ in $(seq 1 300); do
  answers && break
  kill -0 "$stack_pid" 2>/dev/null || { echo "fuzz-api: local-stack exited; see $log" >&2; exit 1; }
  sleep 0.2
done
answers || { echo "fuzz-api: the API did not answer on $api; see $log" >&2; exit 1; }

ST_TOKEN="$("$bin" token fuzz-company)"
export ST_TOKEN
cd "$root"
"$venv/bin/schemathesis" --config-file infra/schemathesis.toml run \
  functions/subscriptions-api/openapi.yaml --url "$api" "$@"
