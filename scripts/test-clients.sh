#!/usr/bin/env bash
# hearth serve against clients no one here wrote: the official `ollama` and `openai`
# Python packages (PyPI, in a venv under ~/.cache/hearth) and curl, with the real Gemma 3
# 270M model in a temporary store. Generate and chat (streamed and not), bad requests, a
# bounded load test, the queue limit, disconnects in each phase (scripts/test-clients.py).
#   scripts/test-clients.sh           the checks (a few minutes on lavapipe)
#   scripts/test-clients.sh --bench   total tokens/s with 1, 4, 8 and 16 concurrent clients
#                                     (HEARTH_BENCH_SECS per count, default 40; one prompt
#                                     for all, or HEARTH_BENCH_DISTINCT=1 one per request)
#   scripts/test-clients.sh --prefill-delay   how long a 2,000-token prompt stalls 4
#                                     streaming clients, in prefill chunks
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_FILE=${HEARTH_TEST_MODEL:-$(scripts/fetch-model.sh)}
VENV=${HEARTH_CLIENT_VENV:-$HOME/.cache/hearth/client-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ollama, openai, jsonschema' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet ollama openai jsonschema
fi
# The checks run the debug build (assertions on); the benchmarks measure the release build.
if [ "${1:-}" = "--bench" ] || [ "${1:-}" = "--prefill-delay" ]; then
    cargo build --quiet --release --bin hearth
    HEARTH=$PWD/target/release/hearth
else
    cargo build --quiet --bin hearth
    HEARTH=$PWD/target/debug/hearth
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
export HEARTH_MODELS=$WORK/store
export HEARTH_NO_EXTERNAL_MODELS=1
"$HEARTH" import --link "$MODEL_FILE" gemma3:270m-base >/dev/null
# The chat model (SmolLM2-135M-Instruct) for structured outputs and tools.
CHAT_FILE=${HEARTH_TEST_CHAT_MODEL:-$(scripts/fetch-model.sh smollm2)}
"$HEARTH" import --link "$CHAT_FILE" smollm2:135m >/dev/null
export HEARTH_CHAT_MODEL_NAME=smollm2:135m

start_server() {
    "$HEARTH" serve --port 0 "$@" >"$WORK/out" 2>"$WORK/err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$WORK/out" 2>/dev/null && break
        sleep 0.1
    done
    BASE=$(sed -n 's/^hearth listening on //p' "$WORK/out")
    [ -n "$BASE" ] || { cat "$WORK/err"; echo "server did not start"; exit 1; }
    echo "server $BASE (pid $SERVER_PID) $*"
}

if [ "${1:-}" = "--bench" ]; then
    start_server --parallel 16 --queue 16 --ctx 512
    "$VENV/bin/python" scripts/test-clients.py "$BASE" gemma3:270m-base "$SERVER_PID" --bench
    exit 0
fi
if [ "${1:-}" = "--prefill-delay" ]; then
    start_server --parallel 8 --queue 8 --ctx 4096 --batch "${HEARTH_SERVE_BATCH:-256}"
    "$VENV/bin/python" scripts/test-clients.py "$BASE" gemma3:270m-base "$SERVER_PID" --prefill-delay
    exit 0
fi

PARALLEL=4
start_server --parallel $PARALLEL --queue 4
# The README's example, with a token limit so that the base model stops soon.
out=$(curl -sS --fail-with-body "$BASE/api/generate" \
    -d '{"model":"gemma3:270m-base","prompt":"Local AI matters because","stream":false,"options":{"num_predict":12}}')
echo "$out" | grep -q '"done":true' || { echo "curl generate failed: $out"; exit 1; }
echo "ok   curl generate: $out" | cut -c1-200
lines=$(curl -sS -N "$BASE/api/chat" \
    -d '{"model":"gemma3:270m-base","messages":[{"role":"user","content":"Hello"}],"options":{"num_predict":6}}' | wc -l)
[ "$lines" -ge 2 ] || { echo "curl chat stream: $lines lines"; exit 1; }
echo "ok   curl chat streamed $lines lines"
sse=$(curl -sS -N "$BASE/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"gemma3:270m-base","messages":[{"role":"user","content":"Hello"}],"max_tokens":6,"stream":true}')
echo "$sse" | tail -n 2 | grep -q 'data: \[DONE\]' || { echo "curl SSE without [DONE]: $sse"; exit 1; }
echo "ok   curl SSE ends with [DONE]"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/generate" -d '{"model":"../x","prompt":"x"}')
[ "$code" = 400 ] || { echo "curl bad name: $code"; exit 1; }
echo "ok   curl bad name: 400"

"$VENV/bin/python" scripts/test-clients.py "$BASE" gemma3:270m-base "$SERVER_PID" "$PARALLEL"
