#!/usr/bin/env bash
# Builds every guest under plugins/ for wasm32-wasip2 (Rust with cargo,
# Python with prx-plugin and componentize-py) and assembles ready plugin
# directories (plugin.toml + plugin.wasm):
#   target/plugins/<name>/        the examples (what `prx up` demos)
#   target/test-plugins/<name>/   the faulty and hostile guests of the tests
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build-plugins: the wasm32-wasip2 target is missing; run scripts/bootstrap.sh (or: rustup target add wasm32-wasip2)" >&2
  exit 1
fi

cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path plugins/Cargo.toml --target-dir target/wasm

out=target/wasm/wasm32-wasip2/release
assemble() { # <source dir> <destination root>
  local src=$1 dest=$2 crate
  crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)
  mkdir -p "$dest/$(basename "$src")"
  cp "$src/plugin.toml" "$dest/$(basename "$src")/plugin.toml"
  # Write-then-rename, so a running supervisor never sees half a file.
  cp "$out/${crate//-/_}.wasm" "$dest/$(basename "$src")/.plugin.wasm.tmp"
  mv "$dest/$(basename "$src")/.plugin.wasm.tmp" "$dest/$(basename "$src")/plugin.wasm"
}
for dir in plugins/examples/*/; do
  [ -f "$dir/plugin.toml" ] && [ -f "$dir/Cargo.toml" ] && assemble "${dir%/}" target/plugins
done
for dir in plugins/testing/*/; do
  [ -f "$dir/plugin.toml" ] && [ -f "$dir/Cargo.toml" ] && assemble "${dir%/}" target/test-plugins
done
# Python plugins: prx-plugin builds them with componentize-py (from .venv,
# which scripts/bootstrap.sh makes); an unchanged one is not rebuilt.
cargo build --quiet --bin prx-plugin
assemble_python() { # <source dir> <destination root>
  local src=$1 dest=$2
  target/debug/prx-plugin build --dir "$src" >/dev/null
  mkdir -p "$dest/$(basename "$src")"
  cp "$src/plugin.toml" "$dest/$(basename "$src")/plugin.toml"
  cp "$src/plugin.wasm" "$dest/$(basename "$src")/.plugin.wasm.tmp"
  mv "$dest/$(basename "$src")/.plugin.wasm.tmp" "$dest/$(basename "$src")/plugin.wasm"
}
for dir in plugins/examples/*/; do
  [ -f "$dir/plugin.toml" ] && [ -f "$dir/plugin.py" ] && assemble_python "${dir%/}" target/plugins
done
for dir in plugins/testing/*/; do
  [ -f "$dir/plugin.toml" ] && [ -f "$dir/plugin.py" ] && assemble_python "${dir%/}" target/test-plugins
done
echo "build-plugins: $(ls target/plugins | wc -l) example plugins in target/plugins, $(ls target/test-plugins 2>/dev/null | wc -l) test plugins in target/test-plugins"
