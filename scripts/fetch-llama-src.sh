#!/usr/bin/env bash
# Fetches llama.cpp's test data from the PyPI source distribution of llama-cpp-python
# (pinned, sha256-verified): the vocabulary-only GGUFs with their .inp/.out tokenizer
# tests (models/ggml-vocab-*) and the chat templates (models/templates/). Extracts only
# those into $HEARTH_CACHE/llama-models-VERSION and prints that directory. A no-op once
# extracted. Nothing here is built or executed; the tests only read these files.
#
#   scripts/fetch-llama-src.sh --sdist   instead keeps the verified source distribution
#                                        itself at $HEARTH_CACHE/llama_cpp_python-VERSION.tar.gz
#                                        and prints its path (scripts/build-llama-bench.sh
#                                        builds llama.cpp from it). A no-op once there.
# Either way a sdist already kept there is used rather than downloaded again.
set -euo pipefail

VERSION=0.3.36
SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CACHE=${HEARTH_CACHE:-$HOME/.cache/hearth}
OUT="$CACHE/llama-models-$VERSION"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
mkdir -p "$CACHE"

verified() { [ -f "$1" ] && echo "$SHA  $1" | sha256sum -c --status; }

case "${1:-}" in
  "") ;;
  --sdist)
    if verified "$SDIST"; then
      echo "$SDIST"
      exit 0
    fi
    ;;
  *)
    echo "usage: scripts/fetch-llama-src.sh [--sdist]" >&2
    exit 2
    ;;
esac

if [ -z "${1:-}" ] && [ -f "$OUT/.complete" ]; then
  echo "$OUT"
  exit 0
fi

work=$(mktemp -d "$CACHE/fetch-llama.XXXXXX")
trap 'rm -rf "$work"' EXIT
if verified "$SDIST"; then
  tarball=$SDIST
else
  # --no-binary for this package only: the sdist is what we want, and pip only prepares
  # its metadata (scikit-build-core from a wheel), it builds nothing.
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    --dest "$work" "llama-cpp-python==$VERSION" >&2
  tarball="$work/llama_cpp_python-$VERSION.tar.gz"
  if ! verified "$tarball"; then
    echo "fetch-llama-src: sha256 mismatch for $tarball; nothing installed" >&2
    exit 1
  fi
fi
if [ "${1:-}" = --sdist ]; then
  mv "$tarball" "$SDIST"
  echo "$SDIST"
  exit 0
fi
prefix="llama_cpp_python-$VERSION/vendor/llama.cpp/models"
mkdir -p "$work/x"
tar -xzf "$tarball" -C "$work/x" --wildcards "$prefix/ggml-vocab-*" "$prefix/templates/*"
rm -rf "$OUT"
mv "$work/x/$prefix" "$OUT"
touch "$OUT/.complete"
echo "$OUT"
