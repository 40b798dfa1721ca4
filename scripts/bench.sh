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
} > docs/benchmarks.md
echo "$report"
echo "bench.sh: wrote docs/benchmarks.md"
