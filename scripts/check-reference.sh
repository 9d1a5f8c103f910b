#!/usr/bin/env bash
# Checks the runtime against PyTorch's outputs in ../shared/reference (see its README):
# every SegFormer export must reproduce the stored logits within 1e-4 max abs.
#
#   scripts/check-reference.sh SHARED_DIR
set -euo pipefail
SHARED="${1:?usage: check-reference.sh SHARED_DIR}"
cd "$(dirname "$0")/.."
BIN=.build/release/segformer
[ -x "$BIN" ] || swift build -c release >/dev/null
REF="$SHARED/reference"
for model in model.op17.onnx model.op14.onnx model.op18-dynamo.onnx; do
    echo "== segformer-b0-ade/$model"
    "$BIN" test-model "$REF/segformer-b0-ade" --model "$model" --atol 1e-4 --rtol 0
done
echo "== mit-b0-classifier"
"$BIN" test-model "$REF/mit-b0-classifier" --atol 1e-4 --rtol 0
