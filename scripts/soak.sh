#!/usr/bin/env bash
# A soak of `hearth serve` on a real model: scripts/soak.sh MINUTES [CLIENTS] [MODEL_NAME]
# (defaults 16 clients, smollm2:135m, the instruction-tuned chat model that
# scripts/fetch-model.sh installs). The clients mix streamed and whole responses, generate
# and chat, the ollama and OpenAI APIs, hang-ups and bad requests (scripts/soak.py); the
# run fails on any lost or truncated response and on resident memory growing more than 5%
# after warm-up. Uses target/release/hearth when built, else builds target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:?usage: scripts/soak.sh MINUTES [CLIENTS] [MODEL_NAME]}
CLIENTS=${2:-16}
NAME=${3:-smollm2:135m}

if [ -x target/release/hearth ]; then
    HEARTH=$PWD/target/release/hearth
else
    cargo build --quiet --bin hearth
    HEARTH=$PWD/target/debug/hearth
fi
# Both models, each registered in the store under its name.
scripts/fetch-model.sh >/dev/null
scripts/fetch-model.sh smollm2 >/dev/null
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# --parallel 4 and a queue that holds every client: the soak is about completeness and
# memory, not the 503 path (the server tests cover that).
"$HEARTH" serve --port 0 --parallel 4 --queue "$CLIENTS" --ctx 1024 >"$WORK/out" 2>"$WORK/err" &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "listening on" "$WORK/out" 2>/dev/null && break
    sleep 0.1
done
BASE=$(sed -n 's/^hearth listening on //p' "$WORK/out")
[ -n "$BASE" ] || { cat "$WORK/err"; echo "server did not start"; exit 1; }
echo "soak: $HEARTH serve at $BASE (pid $SERVER_PID), $NAME, $MINUTES min, $CLIENTS clients"
status=0
python3 scripts/soak.py "$BASE" "$NAME" "$SERVER_PID" "$MINUTES" "$CLIENTS" || status=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "soak: the server died"; tail -20 "$WORK/err"; exit 1
fi
if grep -q "panicked" "$WORK/err"; then
    echo "soak: the server panicked:"; grep -A3 panicked "$WORK/err" | head -20; exit 1
fi
exit $status
