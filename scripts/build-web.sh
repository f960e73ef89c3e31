#!/usr/bin/env bash
# Builds the browser package: the library for wasm32 (profile `web`: optimized
# dependencies, no debug info) and its JS bindings from wasm-bindgen-cli at exactly the
# version in Cargo.lock (installed once under ~/.cache/hearth/tools), into
# examples/web/pkg/. With --serve [PORT], then serves examples/web/ on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "wasm-bindgen is not in Cargo.lock" >&2; exit 1; }
tools="${HEARTH_TOOLS:-$HOME/.cache/hearth/tools}"
bindgen="$tools/bin/wasm-bindgen"
if ! "$bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
    if command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -qx "wasm-bindgen $version"; then
        mkdir -p "$tools/bin"
        cp "$(command -v wasm-bindgen)" "$bindgen"
    else
        echo "== installing wasm-bindgen-cli $version into $tools (once; a minute or two)"
        # Unoptimized: it installs in 79 s instead of 206 s on 2 cores (CI builds it every
        # run) and writes the same files, in 4 s instead of 1.
        # --locked first; a registry index without one of its locked versions gets a fresh resolve.
        CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
            cargo install wasm-bindgen-cli --version "$version" --root "$tools" --locked ||
            CARGO_PROFILE_RELEASE_OPT_LEVEL=0 cargo install wasm-bindgen-cli --version "$version" --root "$tools"
    fi
fi

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
    rustup target add wasm32-unknown-unknown

echo "== cargo build (wasm32, profile web)"
cargo rustc --lib --target wasm32-unknown-unknown --profile web --crate-type cdylib
echo "== wasm-bindgen $version -> examples/web/pkg"
"$bindgen" --target web --out-dir examples/web/pkg \
    target/wasm32-unknown-unknown/web/hearth.wasm
ls -l examples/web/pkg/hearth_bg.wasm

if [ "${1:-}" = "--serve" ]; then
    exec scripts/serve-web.sh "${2:-8080}"
fi
