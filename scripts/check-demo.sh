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
# Shows the demo's milestones as they come (its errors go straight to stderr); the log keeps all of
# stdout. With pipefail the pipeline's status is the demo's own (the filter may match nothing).
status=0
"$BIN" demo --output "$OUT" | tee "$OUT.log" | { grep -E "val mIoU|^mIoU|wrote" || true; } || status=$?
if [ $status -ne 0 ]; then
    echo "demo failed (exit $status); log: $OUT.log"
    exit 1
fi
end=$(date +%s)
line=$(tail -1 "$OUT.log")
miou=$(echo "$line" | awk '{print $2}')
echo "demo: $line  ($((end - start)) s)"
test -f "$OUT/model.onnx" && test -f "$OUT/config.json"
[[ "$line" == mIoU* && "$miou" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "demo's last line is not 'mIoU <number> …'"; exit 1; }
awk -v m="$miou" -v min="$MIN" 'BEGIN { exit !(m >= min) }' || { echo "demo mIoU $miou is below $MIN"; exit 1; }
rm -rf "$(dirname "$OUT")"
