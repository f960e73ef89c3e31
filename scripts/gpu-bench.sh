#!/usr/bin/env bash
# Speed of hearth on a lent GPU machine (no network, nothing installed; see the project's
# GPU recipe): random-weight GGUFs of real shapes (Llama-3.2-1B and Llama-3.1-8B, Q4_K_M's
# mix of Q4_K and Q6_K, written by the random_gguf example on that machine's own disk),
# then `hearth bench -p 512 -n 128` and `hearth profile -p 512 -n 16` on each, and pp512
# again on cooperative matrices (HEARTH_COOP_MATRIX=1), results under $OUT. With
# .gpu/kernels (the kernel tests' binary) it first checks every matmul, the cooperative
# one included, against its CPU twin there. With SWEEP set, instead `hearth bench -p 0 -n 64` per matvec geometry
# (HEARTH_MATVEC=WORKGROUP,LANES,ROWS; e.g. SWEEP="128,32,1 128,32,2").
#
# Prepare here, from the repository root:
#   cargo build --release --bin hearth --example random_gguf
#   mkdir -p .gpu && cp target/release/hearth target/release/examples/random_gguf .gpu/
#   cp "$(cargo test --release --test kernels --no-run 2>&1 |
#         sed -n 's/.*(\(target[^)]*kernels-[^)]*\)).*/\1/p')" .gpu/kernels
#   echo /.gl/ >>.git/info/exclude; echo /.gpu/ >>.git/info/exclude; mkdir -p .gl
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   mkdir -p /tmp/amd64/partial; apt-get $o update
#   (cd .gl && apt-get $o download libvulkan1 libglvnd0 libegl1 libgles2 libopengl0)
# then run `bash scripts/gpu-bench.sh` there, carrying .gpu and .gl. NVIDIA's Vulkan
# driver refused to initialize (vk_icdNegotiateLoaderICDInterfaceVersion: -3) until
# libglvnd and libEGL were installed next to the loader.
set -u
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f $icd ] && export VK_DRIVER_FILES=$icd
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/share/glvnd/egl_vendor.d/10_nvidia.json
H=.gpu/hearth
OUT=${OUT:-/tmp/gpu-bench}
M=/tmp/models
mkdir -p "$OUT" $M
$H devices | tee "$OUT/devices.txt" || exit 1
if [ -x .gpu/kernels ]; then
  HEARTH_COOP_MATRIX=1 timeout 240 .gpu/kernels --include-ignored matmul 2>&1 | tail -8 |
    tee "$OUT/kernels-matmul.txt"
fi
for m in ${MODELS:-llama-1b llama-8b}; do
  .gpu/random_gguf $M/$m.gguf $m || exit 1
  if [ -n "${SWEEP:-}" ]; then
    for g in $SWEEP; do
      r=$(HEARTH_MATVEC=$g timeout 60 $H bench $M/$m.gguf -p 0 -n 64 -r 2 | tail -1)
      echo "$m $g: $r" | tee -a "$OUT/sweep.txt"
    done
  else
    timeout 150 $H bench $M/$m.gguf -p 512 -n 128 -r 3 | tee "$OUT/bench-$m.md"
    HEARTH_COOP_MATRIX=1 timeout 100 $H bench $M/$m.gguf -p 512 -n 0 -r 3 |
      tee "$OUT/bench-$m-coop.md"
    timeout 100 $H profile $M/$m.gguf -p 512 -n 16 > "$OUT/profile-$m.txt" 2>&1
    sed -n '/^decode/,$p' "$OUT/profile-$m.txt" | head -14
  fi
  rm -f $M/$m.gguf
done
