#!/usr/bin/env bash
# Runs `segformer test-model` on every ONNX conformance case folder (onnx backend-test layout) and
# checks the result against a committed list of the cases expected to pass. Each case runs in its own
# process with a time limit, so a crash or a hang shows up as a failure of that case instead of
# stopping the run (scripts/lib/check-cases.sh, shared with scripts/model-suites.sh).
#
#   scripts/conformance.sh DIR [--expected FILE] [--timeout SECONDS] [--verbose]   check against FILE
#   scripts/conformance.sh DIR --write-expected FILE              write today's passing cases to FILE
#
# FILE defaults to scripts/conformance-expected-pass.txt (one case name a line, `#` comments). It was
# made by `scripts/conformance.sh ../shared/onnx-node-tests --write-expected scripts/conformance-expected-pass.txt`;
# regenerate it the same way when a change makes more cases pass.
# Exits non-zero naming every expected case that no longer passes (failed, unsupported, crashed or
# missing), and when any case crashed or hung. Cases that pass but are not in the list are reported only.
set -uo pipefail
source "$(dirname "$0")/lib/check-cases.sh"
parse_case_arguments scripts/conformance-expected-pass.txt "$@"
case_options() { echo "--atol 1e-5 --rtol 1e-3 --threads 1"; }
list_header() {
    echo "# ONNX conformance cases expected to pass (scripts/conformance.sh checks them)."
    echo "# Regenerate: scripts/conformance.sh ../shared/onnx-node-tests --write-expected $WRITE"
}
cases=()
for folder in "$DIR"/*/; do cases+=("$(basename "$folder")=$folder"); done
check_cases conformance "$EXPECTED" "$WRITE" "$VERBOSE" "$LIMIT" "${cases[@]}"
