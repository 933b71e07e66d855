#!/usr/bin/env bash
# The main job: builds Quire and generates text from the model named by
# QUIRE_MODEL, printing the per-stage profile.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${QUIRE_MODEL:-}" ]; then
  cat >&2 <<MSG
demo: set QUIRE_MODEL to a GGUF model file, for example
  QUIRE_MODEL=../shared/models/stories260K.gguf scripts/demo.sh
Any Llama-family or Qwen2 GGUF works (TinyLlama, SmolLM2, Qwen2.5, Mistral ...):
download one from your model registry, or convert a checkpoint with the
reference implementation's convert_hf_to_gguf.py.
MSG
  exit 2
fi
build/quire info "$QUIRE_MODEL"
build/quire run -m "$QUIRE_MODEL" -p "${QUIRE_PROMPT:-Once upon a time}" -n "${QUIRE_N:-128}" --temp 0 --profile
echo
