#!/usr/bin/env bash
# Builds every guest under plugins/ for wasm32-wasip2 (Rust with cargo,
# Python, JavaScript, TypeScript and Go with prx-plugin: componentize-py,
# componentize-js, go and wit-component) and assembles ready plugin
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
# Python, JavaScript and Go plugins are built by prx-plugin
# (componentize-py and go from .venv, componentize-js from
# plugins/cli/js/node_modules: all installed by scripts/bootstrap.sh); an
# unchanged one is not rebuilt.
cargo build --quiet --bin prx-plugin

place() { # <source dir> <destination root> <component>
  local to="$2/$(basename "$1")"
  mkdir -p "$to"
  cp "$1/plugin.toml" "$to/plugin.toml"
  # Write-then-rename, so a running supervisor never sees half a file.
  cp "$3" "$to/.plugin.wasm.tmp"
  mv "$to/.plugin.wasm.tmp" "$to/plugin.wasm"
}
for dir in plugins/examples/*/ plugins/testing/*/; do
  dir=${dir%/}
  dest=target/plugins
  [[ $dir == plugins/testing/* ]] && dest=target/test-plugins
  [ -f "$dir/plugin.toml" ] || continue
  if [ -f "$dir/Cargo.toml" ]; then
    crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)
    place "$dir" "$dest" "$out/${crate//-/_}.wasm"
  elif [ -f "$dir/plugin.py" ] || [ -f "$dir/package.json" ] || [ -f "$dir/go.mod" ]; then
    target/debug/prx-plugin build --dir "$dir" >/dev/null
    place "$dir" "$dest" "$dir/plugin.wasm"
  fi
done
echo "build-plugins: $(ls target/plugins | wc -l) example plugins in target/plugins, $(ls target/test-plugins 2>/dev/null | wc -l) test plugins in target/test-plugins"
