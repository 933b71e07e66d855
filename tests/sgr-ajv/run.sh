#!/usr/bin/env bash
# Integration test: `quire extract` outputs checked by an independent JSON
# Schema validator (Ajv, from the npm registry, installed into WORK once).
set -euo pipefail
QUIRE=$1; SHARED=$2; WORK=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
if [ ! -d "$WORK/node_modules/ajv-formats" ]; then
  cp "$here/package.json" "$WORK/"
  (cd "$WORK" && npm install --no-audit --no-fund --silent >/dev/null 2>&1) || { echo "cannot install ajv from npm"; exit 1; }
fi
cp "$here/check.mjs" "$WORK/"
# under the sanitizers the same check on a smaller sample (options given later win)
if [ -n "${QUIRE_TEST_SANITIZED:-}" ]; then set -- "$@" --per-split 3 --seeds 1; fi
exec node "$WORK/check.mjs" "$QUIRE" "$SHARED" "$@"
