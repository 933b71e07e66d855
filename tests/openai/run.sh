#!/usr/bin/env bash
# Integration test: the official openai npm client against quire serve.
# Installs the client from the npm registry into BUILD/openai-node once.
set -euo pipefail
QUIRE=$1; SHARED=$2; WORK=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
if [ ! -d "$WORK/node_modules/openai" ]; then
  cp "$here/package.json" "$WORK/"
  (cd "$WORK" && npm install --no-audit --no-fund --silent >/dev/null 2>&1) || { echo "cannot install the openai npm client"; exit 1; }
fi
cp "$here/client.mjs" "$WORK/"
keys=$(mktemp); echo "test-key-for-the-openai-client tenant-test" > "$keys"
fifo=$(mktemp -u); mkfifo "$fifo"
"$QUIRE" serve -m "$SHARED/models/stories260K.gguf" --embed-model "$SHARED/models/synthetic/syn-bert-F16.gguf" \
  --port 0 --ready-fd 3 --api-key-file "$keys" -t 2 3>"$fifo" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$keys" "$fifo"' EXIT
read -t 30 port < "$fifo"
node "$WORK/client.mjs" "http://127.0.0.1:$port/v1"
