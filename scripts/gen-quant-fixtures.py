#!/usr/bin/env python3
"""Writes quant fixtures decoded by an independent decoder: the `gguf` Python package.

For each block type gguf-py can decode, this writes random blocks (NumPy, fixed seed:
every quant bit random, every f16 scale finite and of sane size) to
`tests/fixtures/quant/<TYPE>.raw` and gguf's `gguf.quants.dequantize` of them, as
little-endian f32, to `tests/fixtures/quant/<TYPE>.f32`. `tests/quant_fixtures.rs`
decodes each `.raw` with hearth and compares.

Needs `gguf==0.19.0` and `numpy`. Run it with any Python 3; when those are missing it
creates a virtual environment in `.cache/gguf-venv`, installs them there
(`pip install gguf==0.19.0 numpy`) and re-runs itself inside it. Output is deterministic,
so re-running leaves the committed fixtures unchanged.

    python3 scripts/gen-quant-fixtures.py
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".cache", "gguf-venv")
GGUF_VERSION = "0.19.0"


def ensure_deps():
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("HEARTH_FIXTURE_VENV"):
        sys.exit("gguf/numpy still missing inside the venv; install them by hand")
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        print(f"creating {VENV} with gguf=={GGUF_VERSION} and numpy", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call(
            [py, "-m", "pip", "install", "-q", f"gguf=={GGUF_VERSION}", "numpy"]
        )
    env = dict(os.environ, HEARTH_FIXTURE_VENV="1")
    os.execve(py, [py, os.path.abspath(__file__), *sys.argv[1:]], env)


ensure_deps()

import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402

try:
    from importlib.metadata import version

    if version("gguf") != GGUF_VERSION:
        print(f"warning: gguf {version('gguf')} is not {GGUF_VERSION}", file=sys.stderr)
except Exception:
    pass

OUT = os.path.join(ROOT, "tests", "fixtures", "quant")
SEED = 20260101

# name: (ggml type, bytes per block, elements per block, f16 scale offsets, blocks)
TYPES = {
    "F16": (T.F16, 2, 1, [], 256),
    "BF16": (T.BF16, 2, 1, [], 256),
    "Q4_0": (T.Q4_0, 18, 32, [0], 8),
    "Q4_1": (T.Q4_1, 20, 32, [0, 2], 8),
    "Q5_0": (T.Q5_0, 22, 32, [0], 8),
    "Q5_1": (T.Q5_1, 24, 32, [0, 2], 8),
    "Q8_0": (T.Q8_0, 34, 32, [0], 8),
    "Q2_K": (T.Q2_K, 84, 256, [80, 82], 4),
    "Q3_K": (T.Q3_K, 110, 256, [108], 4),
    "Q4_K": (T.Q4_K, 144, 256, [0, 2], 4),
    "Q5_K": (T.Q5_K, 176, 256, [0, 2], 4),
    "Q6_K": (T.Q6_K, 210, 256, [208], 4),
    "IQ4_NL": (T.IQ4_NL, 18, 32, [0], 8),
    "IQ4_XS": (T.IQ4_XS, 136, 256, [0], 4),
    # E8M0 exponent byte at offset 0 (set in random_raw), then 16 bytes of E2M1 codes.
    "MXFP4": (T.MXFP4, 17, 32, [], 8),
}


def random_raw(rng, name, bb, offsets, n_blocks):
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    if name == "F16":
        # Random bit patterns (subnormals included), with Inf/NaN (exponent 31) made finite.
        bits = raw.view("<u2").reshape(-1)
        bits &= np.where((bits & 0x7C00) == 0x7C00, 0xBFFF, 0xFFFF).astype(np.uint16)
    elif name == "BF16":
        bits = raw.view("<u2").reshape(-1)
        bits &= np.where((bits & 0x7F80) == 0x7F80, 0xBFFF, 0xFFFF).astype(np.uint16)
    if name == "MXFP4":
        # Exponents 2^-10 .. 2^-4, and two blocks at the subnormal end (e = 0, 1).
        raw[:, 0] = rng.integers(117, 124, size=n_blocks)
        raw[0, 0], raw[1, 0] = 0, 1
    for off in offsets:
        mag = rng.uniform(0.001, 0.1, size=n_blocks)
        sign = np.where(rng.integers(0, 2, size=n_blocks) == 0, 1.0, -1.0)
        raw[:, off : off + 2] = (mag * sign).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    total = 0
    for name, (ty, bb, be, offsets, n_blocks) in TYPES.items():
        raw = random_raw(rng, name, bb, offsets, n_blocks)
        vals = quants.dequantize(raw, ty).astype("<f4").reshape(-1)
        assert vals.size == n_blocks * be, name
        assert np.all(np.isfinite(vals)), name
        raw.tofile(os.path.join(OUT, f"{name}.raw"))
        vals.tofile(os.path.join(OUT, f"{name}.f32"))
        total += raw.nbytes + vals.nbytes
        print(f"{name:7} {n_blocks:3} blocks  {raw.nbytes:5} B raw  {vals.nbytes:5} B f32")
    print(f"total {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
