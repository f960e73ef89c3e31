#!/usr/bin/env bash
# hearth against llama.cpp on the same GGUF file, in one run:
#   scripts/bench-vs-llama.sh MODEL [-p PP] [-n TG] [-r REPS] [-t THREADS]
#   PP=64 TG=16 REPS=1 scripts/bench-vs-llama.sh smollm2:135m
# MODEL is a .gguf path or a name in hearth's model store (`hearth show` gives its file;
# scripts/fetch-model.sh [smollm2] fetches and registers the test models).
#
# Runs llama.cpp's `llama-bench` (CPU backend, THREADS threads, built once from the pinned
# llama-cpp-python sdist by scripts/build-llama-bench.sh) and `hearth bench` (its default
# adapter, e.g. lavapipe's Vulkan on a machine without a GPU) on ppPP (PP prompt tokens
# in one pass) and tgTG (TG tokens generated one at a time), REPS rounds: each round runs
# both tools with one warm-up and one measured repetition, llama.cpp first in odd rounds
# and hearth first in even ones, so load and clock drift fall on both alike. Prints a
# markdown table of mean ± sd t/s per tool, the ratio hearth / llama.cpp of the means and
# the mean ± sd of each round's own ratio (the tools measured minutes apart, so drift of
# the machine between rounds falls out of it), with the date, the machine and the exact
# commands.
#
# Defaults: -p 512 -n 128 -r 3 -t 2 (flags win over the env vars PP, TG, REPS, THREADS;
# 0 skips a test). Also from the environment: HEARTH (the hearth binary; else
# target/release/hearth when built, else target/debug/hearth, built with cargo),
# LLAMA_BENCH (a llama-bench binary; else scripts/build-llama-bench.sh), and extra
# arguments split on spaces: LLAMA_ARGS for llama-bench (e.g. "-fa 1") and HEARTH_ARGS for
# hearth bench (e.g. "--backend vulkan -b 256").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  echo "usage: scripts/bench-vs-llama.sh MODEL [-p PP] [-n TG] [-r REPS] [-t THREADS]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
MODEL=$1
shift
PP=${PP:-512}
TG=${TG:-128}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    -p) PP=$2 ;;
    -n) TG=$2 ;;
    -r) REPS=$2 ;;
    -t) THREADS=$2 ;;
    *) usage ;;
  esac
  shift 2
done
for v in "$PP" "$TG" "$REPS" "$THREADS"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "bench-vs-llama: not a count: $v" >&2; usage; }
done
if [ "$REPS" -lt 1 ] || [ "$THREADS" -lt 1 ]; then
  echo "bench-vs-llama: -r and -t must be at least 1" >&2
  exit 2
fi
if [ "$PP" -eq 0 ] && [ "$TG" -eq 0 ]; then
  echo "bench-vs-llama: nothing to run (-p 0 -n 0)" >&2
  exit 2
fi

if [ -n "${HEARTH:-}" ]; then
  hearth=$HEARTH
elif [ -x target/release/hearth ]; then
  hearth=$PWD/target/release/hearth
else
  nice -n 19 cargo build --quiet --bin hearth
  hearth=$PWD/target/debug/hearth
fi

if [ -f "$MODEL" ]; then
  path=$MODEL
  label=$(basename "$MODEL")
else
  # `hearth show NAME` ends with the line `file  PATH`.
  path=$("$hearth" show "$MODEL" | awk '$1 == "file" { sub(/^ *file +/, ""); print }')
  [ -f "$path" ] || { echo "bench-vs-llama: $MODEL: no such file or model in the store" >&2; exit 1; }
  label=$MODEL
fi

# Built once (about 6 min on two cores), then cached.
llama_bench=${LLAMA_BENCH:-$(scripts/build-llama-bench.sh)}

read -r -a llama_extra <<<"${LLAMA_ARGS:-}"
read -r -a hearth_extra <<<"${HEARTH_ARGS:-}"
llama_cmd=("$llama_bench" -m "$path" -p "$PP" -n "$TG" -r 1 -t "$THREADS" -o json "${llama_extra[@]}")
hearth_cmd=("$hearth" bench "$path" -p "$PP" -n "$TG" -r 1 -o json "${hearth_extra[@]}")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_llama() {
  if ! "${llama_cmd[@]}" >"$work/llama-$1.json" 2>"$work/llama.log"; then
    cat "$work/llama.log" >&2
    echo "bench-vs-llama: llama-bench failed" >&2
    exit 1
  fi
}
run_hearth() {
  if ! "${hearth_cmd[@]}" >"$work/hearth-$1.json" 2>"$work/hearth.log"; then
    cat "$work/hearth.log" >&2
    echo "bench-vs-llama: hearth bench failed" >&2
    exit 1
  fi
}
for ((i = 1; i <= REPS; i++)); do
  echo "bench-vs-llama: round $i/$REPS" >&2
  if ((i % 2)); then run_llama "$i"; run_hearth "$i"; else run_hearth "$i"; run_llama "$i"; fi
done

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 - "$work" "$REPS" "$label" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$cpu" \
  "$THREADS" "$(printf '%q ' "${llama_cmd[@]}")" "$(printf '%q ' "${hearth_cmd[@]}")" <<'PY'
import json, statistics, sys

work, reps, label, date, ncpu, cpu, threads, llama_cmd, hearth_cmd = sys.argv[1:]
reps = int(reps)
llama, hearth = {}, {}  # test -> t/s per round
for i in range(1, reps + 1):
    with open(f"{work}/llama-{i}.json") as f:
        runs = json.load(f)
    for r in runs:
        if r["n_gen"] == 0:
            test = f"pp{r['n_prompt']}"
        elif r["n_prompt"] == 0:
            test = f"tg{r['n_gen']}"
        else:
            continue
        llama.setdefault(test, []).append(r["avg_ts"])
    with open(f"{work}/hearth-{i}.json") as f:
        h = json.load(f)
    for t in h["tests"]:
        hearth.setdefault(t["test"], []).append(t["tokens_per_second"])

def fmt(v):
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.2f} ± {sd:.2f}"

l0 = runs[0] if runs else {}
print(f"## hearth vs llama.cpp: {label}")
print()
print(f"- date: {date}")
print(f"- machine: {ncpu} CPUs, {cpu}")
print(f"- llama.cpp: llama-cpp-python 0.3.36 vendored (build {l0.get('build_commit', '?')}), "
      f"CPU backend, {threads} threads; CPU as it reports it: {l0.get('cpu_info', '?')}")
print(f"- hearth: {h['backend']} on {h['adapter']}; model {h['model']}, "
      f"{h['size_bytes'] / 2**20:.2f} MiB")
print(f"- {reps} round(s), each one warm-up and one measured run of both tools, "
      "llama.cpp first in odd rounds, hearth first in even ones; t/s mean ± sd over rounds")
print()
print("| model | test | llama.cpp t/s | hearth t/s | ratio | ratio by round |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for test in sorted(set(llama) | set(hearth), key=lambda t: (t[:2] != "pp", int(t[2:]))):
    lv, hv = llama.get(test), hearth.get(test)
    ratio = f"{statistics.mean(hv) / statistics.mean(lv):.2f}" if lv and hv else "–"
    # Each round's own ratio (both tools measured minutes apart at most), mean ± sd:
    # steadier than the ratio of the means where the machine drifts between rounds.
    paired = "–"
    if lv and hv and len(lv) == len(hv):
        r = [h / l for h, l in zip(hv, lv)]
        sd = statistics.stdev(r) if len(r) > 1 else 0.0
        paired = f"{statistics.mean(r):.3f} ± {sd:.3f}"
    print(f"| {label} | {test} | {fmt(lv) if lv else '–'} | {fmt(hv) if hv else '–'} | {ratio} | {paired} |")
print()
print("Commands (each run once per round):")
print()
print("```sh")
print(llama_cmd.rstrip())
print(hearth_cmd.rstrip())
print("```")
PY
