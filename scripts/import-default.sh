#!/usr/bin/env bash
# Prepares the machine (scripts/setup.sh: lavapipe when there is no Vulkan driver), fetches
# and verifies the default model (scripts/fetch-model.sh), builds hearth, and
# registers the file in the model store as `gemma3:270m-base` (hard-linked where the file
# system allows). The store is $HEARTH_MODELS, else hearth's default. Prints the path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >&2
path=$(HEARTH_NO_IMPORT=1 scripts/fetch-model.sh)
cargo build --quiet --bin hearth
target/debug/hearth import "$path" gemma3:270m-base --link >&2
echo "$path"
