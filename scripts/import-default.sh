#!/usr/bin/env bash
# Prepares the machine (scripts/setup.sh: lavapipe when there is no Vulkan driver), fetches
# and verifies the models (scripts/fetch-model.sh): the chat model SmolLM2-135M-Instruct
# and Gemma 3 270M base, builds hearth, and registers them in the model store as
# `smollm2:135m` and `gemma3:270m-base` (hard-linked where the file system allows). The
# store is $HEARTH_MODELS, else hearth's default. Prints the Gemma path (as
# scripts/fetch-model.sh does without an argument).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >&2
chat=$(HEARTH_NO_IMPORT=1 scripts/fetch-model.sh smollm2)
path=$(HEARTH_NO_IMPORT=1 scripts/fetch-model.sh)
cargo build --quiet --bin hearth
target/debug/hearth import "$chat" smollm2:135m --link >&2
target/debug/hearth import "$path" gemma3:270m-base --link >&2
echo "$path"
