#!/usr/bin/env bash
# Builds everything, starts the supervisor on the example plugins and shows
# a few calls through the CLI. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

PRX_NO_BROWSER=1 scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
scripts/build-plugins.sh

state=$(mktemp -d)
log="$state/prx.log"
# A local service for the http-fetch example (port 18080, as its
# http_allowlist says). Plugins may not reach loopback by default; the
# demo's config allows this one address.
web_pid=
if command -v python3 >/dev/null; then
  mkdir -p "$state/web"
  echo '{"healthy":true,"served_by":"a local service"}' >"$state/web/status.json"
  python3 -m http.server 18080 --bind 127.0.0.1 --directory "$state/web" >/dev/null 2>&1 &
  web_pid=$!
fi
cat >"$state/prx.toml" <<EOF
plugins = "$PWD/target/plugins"
state = "$state"
# Kept between runs, so only the first run compiles the plugins.
cache_dir = "$PWD/target/demo-compile-cache"

[http]
allowed_ranges = ["127.0.0.1/32"]

# Memory is served by the kv-memory storage plugin, not the built-in store.
[memory]
backend = "kv-memory"

# The web console, /metrics and the API on a loopback port (any free one);
# state changes there need the token in $state/api-token.
[api]
http = "127.0.0.1:0"
EOF
target/debug/prx up --config "$state/prx.toml" >"$state/ready" 2>"$log" &
prx_pid=$!
trap 'kill $prx_pid $web_pid 2>/dev/null; wait $prx_pid 2>/dev/null; rm -rf "$state"' EXIT

# The first run compiles every plugin (the Python and JavaScript ones take
# longest); later runs start from the compile cache.
for _ in $(seq 1 3000); do
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
run memory count
run middleware inbound '{"text":"hello","channel":"cli"}'
run middleware inbound '{"text":"this is forbidden"}'
run chat mock-llm '[{"role":"user","content":"hello"}]' --model small
run rpc stats.summary '{"values":[1,2,3,6]}'
run publish prices.ABC '{"price":12.5}'
run rpc stats.last_price '{"symbol":"ABC"}'
# Python plugins (componentize-py): a tool, a hook, the forecast module.
run call hello '{"name":"Ada"}'
run call hello '{"name":42}'
run publish prices.ibm '{"close":125.55}'
run kv list events-py
closes=$(sed -n '2,$p' plugins/examples/forecast/data/ibm-monthly.csv | cut -d, -f2 | paste -sd, -)
run rpc forecast "{\"closes\":[$closes],\"horizon\":6}"
run rpc forecast "{\"closes\":[$closes],\"horizon\":6}"
run rpc forecast '{"closes":[1,2],"horizon":6}'
# JavaScript and TypeScript plugins (componentize-js): a TypeScript tool
# and a JavaScript middleware in the chain beside the Rust one.
run call text_stats '{"text":"The cat sat. The cat ran!","top":2}'
run call text_stats '{"text":"x","top":99}'
run middleware inbound '{"content":"mail ada@example.org or call +44 20 7946 0958"}'
run middleware inbound '{"content":"the secret is out"}'
# A Go tool (standard Go, wasip1, made a component by prx-plugin).
run call hash '{"text":"abc"}'
run modules
run cron run hourly-report
run cron
run kv list audit-hook
if [ -n "$web_pid" ]; then
  run call fetch '{"path":"/status.json"}'
  run call fetch '{"path":"/missing.json"}'
fi
run status

console=$(sed -n 's|^prx: console at ||p' "$state/ready")
echo
echo "The web console was at $console (the token is in $state/api-token)."
echo "\$ curl ${console}metrics | grep ..."
curl -s "${console}metrics" | grep -E '^prx_plugin_(calls_total|errors_total|fuel_consumed_total)\{plugin="(echo-tool|forecast|hello-py)"' | sed 's/^/  /'
echo "\$ curl -X POST ${console}v1/reload   # without the token"
curl -s -X POST "${console}v1/reload"; echo
echo
echo "supervisor log:"
sed 's/^/  /' "$log"
