#!/usr/bin/env bash
# The browser test: builds the web package, writes a tiny random-weight GGUF, serves the
# demo page on 127.0.0.1, and drives it in Debian's headless Chromium (WebGPU on
# SwiftShader, via playwright-core from npm): load the model by URL, generate greedily,
# and assert the token ids equal the native build's for the same model and prompt.
# Installs what is missing (chromium, nodejs/npm with apt; playwright-core under
# ~/.cache/hearth/playwright). HEARTH_BROWSER_MODEL=path.gguf adds a real model;
# HEARTH_SCREENSHOT=out.png saves the page after the last generation.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
command -v chromium >/dev/null || apt_install chromium
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
pw="$HOME/.cache/hearth/playwright"
pw_version=1.65.1
if [ ! -f "$pw/node_modules/playwright-core/package.json" ] ||
    ! grep -q "\"version\": \"$pw_version\"" "$pw/node_modules/playwright-core/package.json"; then
    mkdir -p "$pw"
    npm install --no-audit --no-fund --prefix "$pw" "playwright-core@$pw_version"
fi

scripts/build-web.sh
cargo build --examples
models=examples/web/models
mkdir -p "$models"
n=${HEARTH_BROWSER_TOKENS:-24}
prompt="once upon a time"
./target/debug/examples/tiny_gguf "$models/tiny-gemma3.gguf" gemma3
echo "== native greedy ids"
native=$(./target/debug/examples/greedy_ids "$models/tiny-gemma3.gguf" "$n" "$prompt")
echo "$native"
cases=$(python3 -c 'import json,sys; print(json.dumps([{"model": "models/tiny-gemma3.gguf", "prompt": sys.argv[1], "n": int(sys.argv[2]), "expect": json.loads(sys.argv[3])}]))' "$prompt" "$n" "$native")
if [ -n "${HEARTH_BROWSER_MODEL:-}" ]; then
    ln -sf "$(realpath "$HEARTH_BROWSER_MODEL")" "$models/extra.gguf"
    m=${HEARTH_BROWSER_MODEL_TOKENS:-32}
    p="The capital of France is"
    extra=$(./target/debug/examples/greedy_ids "$models/extra.gguf" "$m" "$p")
    echo "$extra"
    cases=$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c.append({"model": "models/extra.gguf", "prompt": sys.argv[2], "n": int(sys.argv[3]), "expect": json.loads(sys.argv[4]), "load_timeout_ms": 900000, "generate_timeout_ms": 900000}); print(json.dumps(c))' "$cases" "$p" "$m" "$extra")
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory examples/web "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/" >/dev/null && break
    sleep 0.1
done

echo "== headless chromium"
HEARTH_PAGE="http://127.0.0.1:$port/" HEARTH_CASES="$cases" PLAYWRIGHT_DIR="$pw" \
    HEARTH_LOCAL_FILE="$models/tiny-gemma3.gguf" \
    CHROMIUM="$(command -v chromium)" node scripts/browser-test.mjs
