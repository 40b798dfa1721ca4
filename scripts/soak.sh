#!/usr/bin/env bash
# The chaos soak: scripts/soak.sh [MINUTES] [-- prx-soak options]
#
# One supervisor (the real prx and prx-worker binaries) with the example
# plugins in Rust and Python under steady mixed load from several clients,
# while faults land at random for MINUTES (default 10): workers killed and
# stopped, hot reloads with good, broken and half-written builds, crash
# loops into quarantine, and the supervisor killed with kill -9 and
# started again on the same state. Then every plugin must serve again,
# every acknowledged kv write must be there, and nothing may be left
# behind. The fault sequence's seed is printed; `-- --seed N` replays it.
# Exits non-zero when a verdict fails. CI runs a one-minute soak.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-10}
shift || true
[ "${1:-}" = "--" ] && shift

# The binaries the integration tests use (the workspace's features), so a
# soak in CI does not rebuild them differently.
cargo build --quiet --workspace --bins
scripts/build-plugins.sh >/dev/null
exec target/debug/prx-soak --minutes "$minutes" "$@"
