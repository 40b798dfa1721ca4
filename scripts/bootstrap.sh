#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test prx-sandbox:
# the wasm32-wasip2 target of the pinned toolchain (rust-toolchain.toml).
# Idempotent; safe to run on every CI job.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "bootstrap: cargo is missing; install Rust 1.95 with rustup first" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "bootstrap: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi
echo "bootstrap: ok ($(rustc --version), targets: $(rustup target list --installed | tr '\n' ' '))"
