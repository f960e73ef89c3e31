#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60) with
# cargo-fuzz and libFuzzer, starting from the committed corpus (fuzz/corpus/<target>),
# and prints each target's executions. New inputs go to fuzz/corpus-new/<target> (not
# committed; minimize with `cargo fuzz cmin` before adding any); crashes to
# fuzz/artifacts/<target>. A plain `cargo test --test fuzz_corpus` replays the corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP lets it take cargo-fuzz's
# nightly-only flags. FUZZ_SANITIZER=none runs without AddressSanitizer (about twice
# as fast; the library has no unsafe parsing code, so ASan mostly catches leaks and
# allocation blow-ups).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf tokenizer chat_template json_grammar server_request constraint tool_calls model_names)
fi
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Per-target libFuzzer options: input size, and a time limit per input well above
# what the fuel limit allows a chat template.
opts() {
    case $1 in
        gguf) echo "-max_len=65536 -timeout=30" ;;
        chat_template) echo "-max_len=16384 -timeout=30" ;;
        tokenizer) echo "-max_len=4096 -timeout=20" ;;
        *) echo "-max_len=8192 -timeout=20" ;;
    esac
}

cargo fuzz build --sanitizer "$sanitizer"

declare -A execs
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus-new/$t" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/fuzz.log"
    echo "== $t: ${secs}s"
    # shellcheck disable=SC2046
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "fuzz/corpus-new/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 \
        -print_final_stats=1 $(opts "$t") 2>&1 | tee "$log" | grep -E "^#[0-9]+[[:space:]]+(DONE|INITED)|ERROR|panicked|SUMMARY|deadly|Test unit written"; then
        :
    fi
    if grep -qE "ERROR: libFuzzer|panicked|deadly signal|SUMMARY: " "$log"; then
        echo "!! $t failed; see $log and fuzz/artifacts/$t"
        status=1
    fi
    execs[$t]=$(awk '/stat::number_of_executed_units/ {n += $2} END {print n + 0}' "$log")
done

echo
echo "target            executions in ${secs}s"
for t in "${targets[@]}"; do
    printf "%-17s %s\n" "$t" "${execs[$t]:-?}"
done
exit $status
