#!/usr/bin/env bash
# hearth's whole check, as CI runs it: installs what is missing (lavapipe, wasm32 target),
# fetches the real test model, then fmt, clippy (native and wasm32, warnings denied) and
# every test on the first adapter wgpu offers (lavapipe's Vulkan on a machine without GPU),
# then the demo page in headless Chromium (scripts/test-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
HEARTH_TEST_MODEL=$(scripts/fetch-model.sh)
export HEARTH_TEST_MODEL
# llama.cpp's tokenizer suite and chat templates (read-only test data).
HEARTH_LLAMA_MODELS=$(scripts/fetch-llama-src.sh)
export HEARTH_LLAMA_MODELS

step() { echo; echo "== $* ($(date +%T))"; }

step cargo fmt --check
cargo fmt --all -- --check
step clippy, native
cargo clippy --all-targets -- -D warnings
step clippy, wasm32 library
cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
step tests
cargo build --bins --examples
./target/debug/hearth devices
cargo test -- --test-threads="${HEARTH_TEST_THREADS:-2}"
step browser
scripts/test-browser.sh
step hearth serve with the official ollama and openai clients
scripts/test-clients.sh
step done
