#!/usr/bin/env python3
"""The machine code lavapipe makes of hearth's compute shaders, counted: a noise-free
instrument for kernel work on a CPU rasterizer, where timings move 10-30% between runs.

Usage: [LOOPS=N] scripts/lavapipe-asm.py [--keep FILE] -- COMMAND [ARGS...]
(LOOPS: how many loops to list per shader, largest first; 4 by default.)
e.g.   HEARTH_BENCH_ROWS=256 HEARTH_BENCH_COLS=256 \
         scripts/lavapipe-asm.py -- cargo bench --bench matvec -- q8_0

Runs COMMAND with Mesa's GALLIVM_DEBUG=asm (the x86 code llvmpipe's JIT emits for each
shader; Mesa's release builds print it too) and its shader cache off, so every shader
the command creates is compiled and printed, in creation order. For each compute shader
it prints its size and its loops (a backward jump and the code it spans; nested loops
are listed each), largest first, with:
  instrs   instructions in the loop body
  fp       vector float multiplies, adds and subtracts (vmulps/vaddps/vsubps, FMA)
  loads    bounds-checked per-lane storage loads (the `cmp; jae` pairs): lavapipe loads a
           storage word at an address that differs between invocations one lane at a
           time, about 13 instructions each (a mask test, the binding's size, a compare,
           the load, a blend into the vector)
  stack    instructions touching the stack (%rsp): register spills and reloads
  per fp   instrs / fp: what each useful float operation costs
Measured with it (2026-12-04, Mesa 25.0.7, AVX2): the batched matvec's 8-column step
costs 5.5-6 instructions per float op for Q8_0, Q5_0, Q4_K and Q6_K (a third of them
spills for the K-quants), the single-token Q8_0 matvec 21.5 (about 80% in its loads).
"""
import collections
import os
import re
import subprocess
import sys

FP = re.compile(r"^v(mul|add|sub|fmadd|fmsub|fnmadd)\w*p[sd]$")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


def functions(lines):
    """The JIT'd compute shaders' bodies (`cs_co_variant`), as (address, op, args)."""
    out, cur = [], None
    for line in lines:
        if line == "cs_co_variant:":
            cur = []
            out.append(cur)
        elif re.match(r"^[A-Za-z_.][\w.]*:$", line):
            cur = None
        elif cur is not None:
            m = INSN.match(line)
            if m:
                cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def loops(body):
    """(start, end) of every backward jump's span of more than 64 bytes."""
    spans = []
    for addr, op, arg in body:
        if op.startswith("j"):
            try:
                off = int(arg.strip(), 0)
            except ValueError:
                continue
            if off < -64:
                spans.append((addr + off, addr))
    return sorted(set(spans), key=lambda s: s[0] - s[1])


def stats(insns):
    ops = collections.Counter(op for _, op, _ in insns)
    fp = sum(n for op, n in ops.items() if FP.match(op))
    loads = sum(
        1
        for (_, a, _), (_, b, _) in zip(insns, insns[1:])
        if a.startswith("cmp") and b == "jae"
    )
    stack = sum("rsp" in args for _, _, args in insns)
    per = f"{len(insns) / fp:.1f}" if fp else "-"
    return f"instrs {len(insns):6} fp {fp:5} loads {loads:4} stack {stack:5} per fp {per}"


def main():
    args = sys.argv[1:]
    keep = None
    if len(args) >= 2 and args[0] == "--keep":
        keep, args = args[1], args[2:]
    if not args or args[0] != "--" or len(args) < 2:
        sys.exit(__doc__)
    env = dict(os.environ, GALLIVM_DEBUG="asm", MESA_SHADER_CACHE_DISABLE="true")
    run = subprocess.run(args[1:], env=env, capture_output=True, text=True, errors="replace")
    text = run.stdout + run.stderr
    if keep:
        with open(keep, "w") as f:
            f.write(text)
    found = functions(text.split("\n"))
    if not found:
        sys.exit(f"no shader code in the output (exit {run.returncode}): is the adapter lavapipe?")
    for i, body in enumerate(found):
        print(f"shader {i}: {len(body)} instructions")
        for start, end in loops(body)[:int(os.environ.get("LOOPS", "4"))]:
            print("  loop " + stats([x for x in body if start <= x[0] <= end]))
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
