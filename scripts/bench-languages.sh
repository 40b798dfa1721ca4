#!/usr/bin/env bash
# Measures one tool (text statistics) written in Rust, Python, TypeScript
# and Go side by side, and writes docs/benchmarks-languages.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh >/dev/null
cargo build --workspace --bins --quiet
scripts/build-plugins.sh >/dev/null

report=$(target/debug/prx-bench languages target/plugins target/test-plugins target/debug/prx-worker 2>/dev/null)
{
  echo "# Benchmarks: one tool in Rust, Python, TypeScript and Go"
  echo
  echo "Written by \`scripts/bench-languages.sh\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version); node $(node --version)."
  echo
  echo "How: \`prx-bench languages\` (bench/src/languages.rs). The same tool, text"
  echo "statistics, in Rust (plugins/testing/text-stats-rs), Python"
  echo "(plugins/testing/text-stats-py), TypeScript (plugins/examples/text-stats-ts)"
  echo "and Go (plugins/testing/text-stats-go):"
  echo "its component's size, its first compile (Cranelift, in-process, once), a"
  echo "sandboxed worker's spawn to ready from the compile cache (21 starts a run) and"
  echo "a call on the same 2 KiB text through one supervisor and the worker (201 calls"
  echo "a run, the languages taking turns). Each figure is the median of three runs'"
  echo "medians; the ratios in brackets are to Rust."
  echo
  echo "## Results"
  echo
  echo "$report"
} > docs/benchmarks-languages.md
echo "$report"
echo "bench-languages.sh: wrote docs/benchmarks-languages.md"
