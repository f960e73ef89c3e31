#!/usr/bin/env bash
# hearth's whole check, as CI runs it: installs what is missing (lavapipe, wasm32 target),
# fetches the real test models (Gemma 3 270M base and SmolLM2-135M-Instruct), then fmt,
# clippy (native and wasm32, warnings denied) and every test on the first adapter wgpu
# offers (lavapipe's Vulkan on a machine without GPU), then the demo page in headless
# Chromium (scripts/test-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
HEARTH_TEST_MODEL=$(scripts/fetch-model.sh)
export HEARTH_TEST_MODEL
# The chat model (SmolLM2-135M-Instruct): llama architecture, byte-level BPE, Q4_1.
HEARTH_TEST_CHAT_MODEL=$(scripts/fetch-model.sh smollm2)
export HEARTH_TEST_CHAT_MODEL
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
# Fixture variables are set above, so a test whose data is missing fails instead of
# skipping (tests/common/mod.rs `fixture`); the summary below counts what ran.
CI=${CI:-true} cargo test -- --test-threads="${HEARTH_TEST_THREADS:-2}" 2>&1 | tee target/test.log
python3 - target/test.log <<'PY'
import re, sys
runs = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored", open(sys.argv[1]).read())
passed, failed, ignored = (sum(int(r[i]) for r in runs) for i in (1, 2, 3))
print(f"tests: {passed} passed, {failed} failed, {ignored} ignored in {len(runs)} test binaries; "
      "none skipped for missing data (fixtures are required: a missing one fails its test)")
sys.exit(1 if failed or not runs else 0)
PY
step browser
scripts/test-browser.sh
step hearth serve with the official ollama and openai clients
scripts/test-clients.sh
step done
