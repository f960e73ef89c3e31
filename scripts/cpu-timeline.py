#!/usr/bin/env python3
"""What each core does while a CPU adapter (lavapipe) runs hearth's work: shader code,
waiting, or host code, sampled by Linux `perf` (software clock, so it works in VMs
without a PMU).

Usage: scripts/cpu-timeline.py [--skip S] [--strip S] -- COMMAND [ARGS...]
e.g.   scripts/cpu-timeline.py --skip 8 -- \\
         target/release/hearth bench MODEL -p 0 -n 128 -r 1

Records every core (`perf record -a -e cpu-clock -F 2000`) while COMMAND runs, drops the
first S seconds (loading; 0 by default), and classes each sample:
  shader  code lavapipe's JIT compiled (perf names it after a perf-PID.map or [JIT])
  wait    a core with nothing to run: hearth's spinners (`hearth-spin-*`, see
          src/gpu/spin.rs) or the kernel's idle task where spinning is off
  host    anything else (hearth's own code, lavapipe's driver, libc, the kernel)
It prints each core's shares, then the share of 0.5 ms ticks in which every core ran
shader code, some did and the others waited (a dispatch whose threads finish apart:
llvmpipe hands each worker thread a fixed share of a dispatch's workgroups, so the
others wait for the slowest), or none did. With --strip S it also draws S seconds
(from the skip) as one character per tick and core: S shader, . wait, h host.
"""
import collections
import re
import subprocess
import sys
import tempfile

FREQ = 2000


def usage():
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)


def main():
    args = sys.argv[1:]
    skip, strip = 0.0, 0.0
    while args and args[0] != "--":
        if args[0] in ("--skip", "--strip") and len(args) > 1:
            try:
                value = float(args[1])
            except ValueError:
                usage()
            if args[0] == "--skip":
                skip = value
            else:
                strip = value
            args = args[2:]
        else:
            usage()
    if len(args) < 2:
        usage()
    command = args[1:]
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/perf.data"
        try:
            run = subprocess.run(
                ["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", str(FREQ),
                 "-o", data, "--"] + command)
        except FileNotFoundError:
            sys.exit("cpu-timeline: `perf` is not installed (Debian: linux-perf)")
        if run.returncode != 0:
            sys.exit(f"cpu-timeline: the command (or perf) failed: exit {run.returncode}")
        script = subprocess.run(
            ["perf", "script", "-i", data, "-F", "comm,cpu,time,ip,dso"],
            capture_output=True, text=True)
        if script.returncode != 0:
            sys.exit(f"cpu-timeline: perf script failed: {script.stderr.strip()}")
    line = re.compile(r"\s*(.+?)\s+\[(\d+)\]\s+([\d.]+):\s+\S+\s+\((.*)\)\s*$")
    samples = []
    for text in script.stdout.splitlines():
        m = line.match(text)
        if not m:
            continue
        comm, cpu, t, dso = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4)
        if "perf-" in dso or "[JIT]" in dso:
            kind = "shader"
        elif comm.startswith("hearth-spin") or comm == "swapper":
            kind = "wait"
        else:
            kind = "host"
        samples.append((t, cpu, kind))
    if not samples:
        sys.exit("cpu-timeline: no samples")
    t0 = min(s[0] for s in samples) + skip
    samples = [s for s in samples if s[0] >= t0]
    if not samples:
        sys.exit(f"cpu-timeline: nothing after the first {skip} s")
    cpus = sorted({s[1] for s in samples})
    shares = collections.Counter((s[1], s[2]) for s in samples)
    print("| core | shader | wait | host | samples |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for c in cpus:
        n = sum(shares[(c, k)] for k in ("shader", "wait", "host"))
        row = " | ".join(f"{100 * shares[(c, k)] / n:.1f}%" for k in ("shader", "wait", "host"))
        print(f"| {c} | {row} | {n} |")
    ticks = collections.defaultdict(dict)
    for t, c, kind in samples:
        ticks[int((t - t0) * FREQ)][c] = kind
    full = [v for v in ticks.values() if len(v) == len(cpus)]
    if full:
        every = sum(all(k == "shader" for k in v.values()) for v in full)
        some = sum(any(k == "shader" for k in v.values()) for v in full) - every
        print(f"\nticks ({len(full)} with every core sampled): every core in shader code "
              f"{100 * every / len(full):.1f}%, some {100 * some / len(full):.1f}%, "
              f"none {100 * (len(full) - every - some) / len(full):.1f}%")
    if strip > 0:
        n = int(strip * FREQ)
        mark = {"shader": "S", "wait": ".", "host": "h"}
        print()
        for c in cpus:
            row = "".join(mark.get(ticks.get(i, {}).get(c), "?") for i in range(n))
            print(f"{c:>3} {row}")


if __name__ == "__main__":
    main()
