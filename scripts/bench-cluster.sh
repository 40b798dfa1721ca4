#!/usr/bin/env bash
# Measures calls and events across the nodes of a cluster next to the same
# on one node, with a real nats-server, and writes docs/benchmarks-cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
# The echo example and the relay hook, as the integration tests build them.
cargo build --quiet --release --target wasm32-wasip2 --target-dir target/wasm \
  --manifest-path plugins/Cargo.toml -p echo-tool -p relay-hook

report=$(target/debug/prx-bench cluster target/wasm/wasm32-wasip2/release target/debug/prx-worker .venv/bin/nats-server 2>/dev/null)
{
  echo "# Benchmarks: across the nodes of a cluster"
  echo
  echo "Written by \`scripts/bench-cluster.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version); $(.venv/bin/nats-server --version)."
  echo
  echo "How: \`prx-bench cluster\` (bench/src/cluster.rs) starts a nats-server on"
  echo "loopback and three supervisors in one process: node-a runs the echo example,"
  echo "node-b a hook that counts events (plugins/testing/relay-hook), and a third"
  echo "supervisor, alone (no cluster), the same hook. In each of three runs, taking"
  echo "turns: 400 echo calls made on node-a (served there), 400 made on node-b (no"
  echo "echo there: served by node-a over NATS), 400 bare NATS requests between two"
  echo "clients with nothing behind them (the floor of one hop), and 3,000 events"
  echo "published as fast as the host can, until the hook has handled them all: on"
  echo "the lone supervisor, and from node-a to the hook on node-b. Call figures are"
  echo "the median of the runs' medians; event rates the median of the runs."
  echo
  echo "## Results"
  echo
  echo "$report"
} > docs/benchmarks-cluster.md
echo "$report"
echo "bench-cluster.sh: wrote docs/benchmarks-cluster.md"
