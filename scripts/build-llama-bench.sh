#!/usr/bin/env bash
# Builds llama.cpp's `llama-bench` (CPU backend only) from the vendored llama.cpp of the
# pinned llama-cpp-python sdist (scripts/fetch-llama-src.sh --sdist: the same verified
# download the tokenizer tests use) and prints the binary's path. Once built it is kept at
# $HEARTH_CACHE/tools/llama-bench-VERSION/llama-bench and re-running is a no-op.
#
# Statically linked (no libllama.so beside it), x86-64 with AVX2 kernels, and AVX-512 ones
# where this CPU has avx512f (an AVX-512 build dies of SIGILL on AVX2-only CPUs such as
# AMD Zen 3), chosen here rather than by the compiler's -march (GGML_NATIVE=OFF). The AMX
# kernels stay off: they crash in some VMs. Needs a C++17 compiler, make and cmake; with
# no cmake on PATH one is installed from PyPI into the venv $HEARTH_CACHE/llama-venv. The
# build runs under `nice -n 19` with $JOBS parallel jobs (default 1): about 6 min on two
# cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=0.3.36
CACHE=${HEARTH_CACHE:-$HOME/.cache/hearth}
OUT="$CACHE/tools/llama-bench-$VERSION"
BIN="$OUT/llama-bench"
JOBS=${JOBS:-1}

if [ -x "$BIN" ] && [ -f "$OUT/.complete" ]; then
  echo "$BIN"
  exit 0
fi

cmake=$(command -v cmake || true)
if [ -z "$cmake" ]; then
  venv="$CACHE/llama-venv"
  if [ ! -x "$venv/bin/cmake" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    nice -n 19 "$venv/bin/python" -m pip install --quiet cmake >&2
  fi
  cmake=$venv/bin/cmake
fi

sdist=$(scripts/fetch-llama-src.sh --sdist)
mkdir -p "$CACHE/tools"
work=$(mktemp -d "$CACHE/tools/build-llama-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="llama_cpp_python-$VERSION/vendor/llama.cpp"
# The sources only: not the vocabulary GGUFs under models/.
tar -xzf "$sdist" -C "$work" --exclude "$src/models/*" "$src"
start=$(date +%s)
avx512=OFF
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then avx512=ON; fi
echo "build-llama-bench: configuring llama.cpp ($src)" >&2
nice -n 19 "$cmake" -S "$work/$src" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=$avx512 \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_CCACHE=OFF >&2
echo "build-llama-bench: building llama-bench with -j$JOBS (nice 19)" >&2
nice -n 19 "$cmake" --build "$work/build" --target llama-bench -j"$JOBS" >&2
built="$work/build/bin/llama-bench"
"$built" --help >/dev/null
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$built" "$BIN"
touch "$OUT/.complete"
echo "build-llama-bench: built in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
