#!/usr/bin/env bash
# Builds everything, starts the supervisor on the example plugins and shows
# a few calls through the CLI. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
scripts/build-plugins.sh

state=$(mktemp -d)
log="$state/prx.log"
target/debug/prx up --plugins target/plugins --state "$state" >"$state/ready" 2>"$log" &
prx_pid=$!
trap 'kill $prx_pid 2>/dev/null; wait $prx_pid 2>/dev/null; rm -rf "$state"' EXIT

for _ in $(seq 1 600); do
  grep -q '^prx: ready' "$state/ready" 2>/dev/null && break
  kill -0 $prx_pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
cat "$state/ready"

run() { echo; echo "\$ prx $*"; target/debug/prx "$@" --state "$state" || true; }
run plugins
run call echo '{"text":"hello from an isolated worker"}'
run call echo '{}'
run call nope '{}'
run call visit '{"name":"ada"}'
run call visit '{"name":"ada"}'
run kv list visit-counter
run events
run publish ops.note '{"from":"the operator"}'
run memory store 'Paris is the capital of France' --category fact
run memory store 'The deploy key rotates on Mondays' --category ops
run memory recall 'capital of France'
run status
echo
echo "supervisor log:"
sed 's/^/  /' "$log"
