#!/usr/bin/env bash
# Runs every check: formatting, clippy (-D warnings), the host workspace's
# unit and integration tests (real supervisor and worker processes, real
# wasm32-wasip2 plugins in Rust, Python, JavaScript and TypeScript), the
# guest workspace's tests, the Python SDK's and Python plugins' pytest
# tests, the JavaScript SDK's and JavaScript plugins' node tests, the Go
# SDK's and Go plugins' go tests, a compile of the fuzz
# targets, the supply-chain gate over every lock file, and a one-minute
# chaos soak. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it starts (seconds since this script began), so a
# slow CI run shows where its time went.
step() { echo "== $1 (at ${SECONDS}s)"; }

scripts/bootstrap.sh

# Every test runner's output is kept, to print one total at the end.
results=$(mktemp)
trap 'rm -f "$results"' EXIT

step "format"
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)

step "release binaries carry no test hooks"
# The worker's test hooks (an attack probe, an abort on a log line) are a
# cargo feature only the test crate turns on; a build of the binaries alone
# (as a release is built: cargo build --release -p prx-supervisor -p
# prx-worker, or a plain cargo build of the default members) must not
# enable it. The control: the whole workspace does.
hooks() { cargo tree "$@" -e features --prefix none | grep -c 'prx-worker feature "test-hooks"' || true; }
if [ "$(hooks -p prx-worker -p prx-supervisor)" != 0 ] || [ "$(hooks)" != 0 ] || [ "$(hooks --workspace)" = 0 ]; then
  echo "test.sh: the feature test-hooks reaches a release build of prx-worker (or no longer reaches the tests)" >&2
  exit 1
fi

step "supply chain (advisories, licenses, duplicates, sources: deny.toml)"
scripts/supply-chain.sh

step "build (binaries the integration tests run)"
cargo build --workspace --bins --quiet

step "layers (the supervisor's imports point down, no file over 600 lines: docs/architecture.md)"
cargo test --quiet --workspace --lib layering

step "clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Guests: natively (the PDK's test host) and for the wasm target.
(cd plugins && cargo clippy --workspace --all-targets --quiet -- -D warnings)
(cd plugins && cargo clippy --workspace --target wasm32-wasip2 --quiet -- -D warnings)

step "host tests"
cargo test --workspace --no-fail-fast 2>&1 | tee -a "$results"

step "chaos soak (a minute of faults under load: scripts/soak.sh)"
scripts/soak.sh 1

step "guest tests (the PDK and examples on the host)"
(cd plugins && cargo test --quiet) 2>&1 | tee -a "$results"

step "Python: the SDK's tests and each Python plugin's own tests (pytest)"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -q -p no:cacheprovider plugins/pdk/python/tests 2>&1 | tee -a "$results"
for dir in plugins/examples/*/ plugins/testing/*/; do
  if [ -f "$dir/plugin.py" ] && [ -d "$dir/tests" ]; then
    target/debug/prx-plugin test --no-smoke --dir "$dir" 2>&1 | tee -a "$results"
  fi
done

step "JavaScript: the SDK's tests and each JavaScript plugin's own tests (node --test)"
(cd plugins/pdk/javascript && node --test tests/) 2>&1 | tee -a "$results"
for dir in plugins/examples/*/ plugins/testing/*/; do
  if [ -f "$dir/package.json" ] && { [ -d "$dir/tests" ] || [ -d "$dir/test" ]; }; then
    target/debug/prx-plugin test --no-smoke --dir "$dir" 2>&1 | tee -a "$results"
  fi
done

step "Go: the SDK's tests and each Go plugin's own tests (go test)"
(cd plugins/pdk/go && GOTOOLCHAIN=local GOPROXY=off GOWORK=off ../../../.venv/bin/go test -v ./...) 2>&1 | tee -a "$results"
for dir in plugins/examples/*/ plugins/testing/*/; do
  if [ -f "$dir/go.mod" ]; then
    target/debug/prx-plugin test --no-smoke --dir "$dir" 2>&1 | tee -a "$results"
  fi
done

step "fuzz targets compile"
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins

# cargo: "test result: ok. 12 passed; 0 failed; ..."; pytest: "3 failed, 17 passed in 0.2s";
# node --test: "# pass 24" and "# fail 0"; go test -v: "--- PASS: TestX" and "--- FAIL: TestX".
read -r passed failed < <(awk '
  /^--- PASS: / { p += 1 }
  /^--- FAIL: / { f += 1 }
  /^# pass [0-9]+$/ { p += $3 }
  /^# fail [0-9]+$/ { f += $3 }
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
  / in [0-9.]+s/ && !/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed,?$/) p += $i; if ($(i+1) ~ /^failed,?$/) f += $i } }
  END { print p + 0, f + 0 }' "$results")
echo
echo "tests: $passed passed, $failed failed"
echo "took ${SECONDS}s"
