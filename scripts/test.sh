#!/usr/bin/env bash
# Runs every check: formatting, clippy (-D warnings), the host workspace's
# unit and integration tests (real supervisor and worker processes, real
# wasm32-wasip2 plugins), the guest workspace's tests, and a compile of the
# fuzz targets. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

# Every test runner's output is kept, to print one total at the end.
results=$(mktemp)
trap 'rm -f "$results"' EXIT

echo "== format"
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)

echo "== build (binaries the integration tests run)"
cargo build --workspace --bins --quiet

echo "== clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Guests: natively (the PDK's test host) and for the wasm target.
(cd plugins && cargo clippy --workspace --all-targets --quiet -- -D warnings)
(cd plugins && cargo clippy --workspace --target wasm32-wasip2 --quiet -- -D warnings)

echo "== host tests"
cargo test --workspace 2>&1 | tee -a "$results"

echo "== guest tests (the PDK and examples on the host)"
(cd plugins && cargo test --quiet) 2>&1 | tee -a "$results"

echo "== fuzz targets compile"
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins

read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } } END { print p + 0, f + 0 }' "$results")
echo
echo "tests: $passed passed, $failed failed"
