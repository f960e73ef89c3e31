#!/usr/bin/env bash
# Quick start: makes sure a Vulkan adapter exists (lavapipe on a machine without GPU),
# fetches the default model (Gemma 3 270M base, Q4_K_M) if it is missing, builds hearth
# and completes the prompt with it, streaming the text.
#   scripts/run.sh ["PROMPT"] [more `hearth run` options, e.g. -n 64 --temperature 0]
# The default model is a base (pretrained) model: it continues text, so the prompt is fed
# raw (no chat template). Without a prompt, an interactive session starts.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >&2
model=$(scripts/fetch-model.sh)
cargo build --quiet --bin hearth
args=(run "$model" --raw)
if [ $# -gt 0 ]; then
  args+=("$1")
  shift
fi
# Unless told otherwise: 64 tokens (the base model would go on to the context's end).
case " $* " in
  *" -n "* | *" --num-predict"*) ;;
  *) args+=(-n 64) ;;
esac
exec ./target/debug/hearth "${args[@]}" "$@"
