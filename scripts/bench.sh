#!/usr/bin/env bash
# Measures isolated calls side by side with in-process wasmtime on the same
# component and writes docs/benchmarks.md. Optional argument: calls per row.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
scripts/build-plugins.sh >/dev/null

calls=${1:-100000}
report=$(target/debug/prx-bench target/wasm/wasm32-wasip2/release/echo_tool.wasm target/debug/prx-worker "$calls")
# Many idle plugins under a real `prx up` (PRX_BENCH_DENSITY: the counts).
density=$(target/debug/prx-bench density target/wasm/wasm32-wasip2/release/echo_tool.wasm target/debug/prx ${PRX_BENCH_DENSITY:-100 1000})
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)."
  echo
  cat docs/benchmarks-method.md
  echo
  echo "## Results"
  echo
  echo "$report"
  echo
  echo "### Density: idle plugins on one machine"
  echo
  echo "$density"
  echo
  echo "The first window still holds the heartbeats of workers that were called"
  echo "at load (their gaps start at 2 s and double); from 150 s on they are near"
  echo "their 60 s cap. The process above each worker is the init of its PID"
  echo "namespace."
  echo
  cat docs/benchmarks-profile.md
} > docs/benchmarks.md
echo "$report"
echo "$density"
echo "bench.sh: wrote docs/benchmarks.md"
