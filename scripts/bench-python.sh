#!/usr/bin/env bash
# Measures Python plugins (hello-py, forecast) beside the same components
# run in-process on wasmtime, and writes docs/benchmarks-python.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
scripts/build-plugins.sh >/dev/null

report=$(target/debug/prx-bench python target/plugins target/debug/prx-worker . 2>/dev/null)
{
  echo "# Benchmarks: Python plugins"
  echo
  echo "Written by \`scripts/bench-python.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)."
  echo
  echo "How: \`prx-bench python\` (bench/src/python.rs). The in-process rows run the"
  echo "same component through the worker's own runtime code in the bench process"
  echo "(no supervisor, no sandbox); the others go through a real supervisor and"
  echo "sandboxed worker. Spawn to ready: 21 rounds from the compile cache; forecast"
  echo "computed: 41 calls, each on a new input (the last close nudged), so none is"
  echo "a cache hit; from the cache: 401 calls with one input. Medians."
  echo
  echo "## Results"
  echo
  echo "$report"
} > docs/benchmarks-python.md
echo "$report"
echo "bench-python.sh: wrote docs/benchmarks-python.md"
