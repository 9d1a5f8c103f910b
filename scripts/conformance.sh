#!/usr/bin/env bash
# Runs `segformer test-model` on every ONNX conformance case folder (onnx backend-test layout) and
# prints a summary: passed / unsupported / failed. Each case runs in its own process with a time
# limit, so a crash or a hang shows up as a failure of that case instead of stopping the run.
#
#   scripts/conformance.sh DIR [--min-passed N] [--verbose]
#
# Exits non-zero if a case crashed or hung, or if fewer than N cases passed.
set -uo pipefail
DIR="${1:?usage: conformance.sh DIR [--min-passed N] [--verbose]}"; shift
MIN_PASSED=0; VERBOSE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --min-passed) MIN_PASSED="$2"; shift 2 ;;
        --verbose) VERBOSE=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
BIN=.build/release/segformer
[ -x "$BIN" ] || swift build -c release >/dev/null
LOG=$(mktemp -d)
passed=0; unsupported=0; failed=0; crashed=0
failed_list=(); crashed_list=()
for case in "$DIR"/*/; do
    name=$(basename "$case")
    timeout 120 "$BIN" test-model "$case" --atol 1e-5 --rtol 1e-3 --threads 1 >"$LOG/$name.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then passed=$((passed + 1))
    elif [ $rc -eq 3 ]; then unsupported=$((unsupported + 1))
    elif [ $rc -eq 1 ] || [ $rc -eq 4 ]; then failed=$((failed + 1)); failed_list+=("$name")
    else crashed=$((crashed + 1)); crashed_list+=("$name (exit $rc)")
    fi
    if [ $VERBOSE -eq 1 ]; then echo "$rc $name: $(tail -1 "$LOG/$name.out")"; fi
done
echo "conformance cases failing: ${failed_list[*]:-none}"
echo "conformance cases that crashed or hung: ${crashed_list[*]:-none}"
echo "conformance summary: passed $passed, unsupported $unsupported, failed $failed, crashed/hung $crashed (of $((passed + unsupported + failed + crashed)))"
rm -rf "$LOG"
[ $crashed -eq 0 ] && [ $passed -ge "$MIN_PASSED" ]
