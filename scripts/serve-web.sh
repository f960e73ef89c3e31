#!/usr/bin/env bash
# Serves the demo page (examples/web/, built by scripts/build-web.sh) on 127.0.0.1.
# Open http://127.0.0.1:PORT/ in a browser with WebGPU; ?model=URL loads a model at once.
set -euo pipefail
cd "$(dirname "$0")/../examples/web"
[ -f pkg/hearth.js ] || { echo "build the package first: scripts/build-web.sh" >&2; exit 1; }
port="${1:-8080}"
echo "hearth demo: http://127.0.0.1:$port/"
exec python3 -m http.server --bind 127.0.0.1 "$port"
