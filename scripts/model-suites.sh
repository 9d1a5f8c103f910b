#!/usr/bin/env bash
# Runs the ONNX package's own model suites (../shared/onnx-model-suites: pytorch-converted,
# pytorch-operator, simple — small models, many at opsets 6–10 — and light, 9 real CNNs at opset 9) with
# `segformer test-model`, each case in its own process under a time limit, and checks the outcomes against
# a committed list of the cases expected to pass (scripts/lib/check-cases.sh, shared with conformance.sh).
#
#   scripts/model-suites.sh DIR [--expected FILE] [--timeout SECONDS] [--verbose]   check against FILE
#   scripts/model-suites.sh DIR --write-expected FILE                               write today's passing cases
#
# Tolerances are the onnx package's: light models atol 1e-7, rtol 1e-3 (densenet121 rtol 2e-3), the other
# suites atol 1e-5, rtol 1e-3. Case names are SUITE/CASE; FILE defaults to scripts/model-suites-expected-pass.txt.
# Exits non-zero naming every expected case that no longer passes, and when any case crashed or hung.
set -uo pipefail
source "$(dirname "$0")/lib/check-cases.sh"
parse_case_arguments scripts/model-suites-expected-pass.txt "$@"
case_options() {
    case "$1" in
        light/densenet121) echo "--atol 1e-7 --rtol 2e-3 --threads 1" ;;
        light/*) echo "--atol 1e-7 --rtol 1e-3 --threads 1" ;;
        *) echo "--atol 1e-5 --rtol 1e-3 --threads 1" ;;
    esac
}
list_header() {
    echo "# ONNX model-suite cases expected to pass (scripts/model-suites.sh checks them)."
    echo "# Regenerate: scripts/model-suites.sh ../shared/onnx-model-suites --write-expected $WRITE"
}
cases=()
for suite in pytorch-converted pytorch-operator simple light; do
    [ -d "$DIR/$suite" ] || { echo "no suite $suite in $DIR" >&2; exit 2; }
    for folder in "$DIR/$suite"/*/; do cases+=("$suite/$(basename "$folder")=$folder"); done
done
check_cases "model suite" "$EXPECTED" "$WRITE" "$VERBOSE" "$LIMIT" "${cases[@]}"
