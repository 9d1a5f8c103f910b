#!/usr/bin/env bash
# Runs `segformer test-model` on every ONNX conformance case folder (onnx backend-test layout) and
# checks the result against a committed list of the cases expected to pass. Each case runs in its own
# process with a time limit, so a crash or a hang shows up as a failure of that case instead of
# stopping the run.
#
#   scripts/conformance.sh DIR [--expected FILE] [--verbose]     check against FILE
#   scripts/conformance.sh DIR --write-expected FILE              write today's passing cases to FILE
#
# FILE defaults to scripts/conformance-expected-pass.txt (one case name a line, `#` comments). It was
# made by `scripts/conformance.sh ../shared/onnx-node-tests --write-expected scripts/conformance-expected-pass.txt`;
# regenerate it the same way when a change makes more cases pass.
# Exits non-zero naming every expected case that no longer passes (failed, unsupported, crashed or
# missing), and when any case crashed or hung. Cases that pass but are not in the list are reported only.
set -uo pipefail
usage="usage: conformance.sh DIR [--expected FILE | --write-expected FILE] [--verbose]"
DIR="${1:?$usage}"; shift
DIR=$(cd "$DIR" && pwd) || exit 2
cd "$(dirname "$0")/.."
EXPECTED=scripts/conformance-expected-pass.txt; WRITE=""; VERBOSE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --expected) EXPECTED="$2"; shift 2 ;;
        --write-expected) WRITE="$2"; shift 2 ;;
        --verbose) VERBOSE=1; shift ;;
        *) echo "unknown option $1; $usage" >&2; exit 2 ;;
    esac
done
if [ -z "$WRITE" ] && [ ! -f "$EXPECTED" ]; then echo "no expected-pass list at $EXPECTED" >&2; exit 2; fi
BIN=.build/release/segformer
[ -x "$BIN" ] || swift build -c release --product segformer >/dev/null
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
declare -A outcome   # case name → passed | unsupported | failed | crashed (exit N)
passed=0; unsupported=0; failed=0; crashed=0
failed_list=(); crashed_list=()
for case in "$DIR"/*/; do
    name=$(basename "$case")
    timeout 120 "$BIN" test-model "$case" --atol 1e-5 --rtol 1e-3 --threads 1 >"$LOG/$name.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then passed=$((passed + 1)); outcome[$name]=passed
    elif [ $rc -eq 3 ]; then unsupported=$((unsupported + 1)); outcome[$name]=unsupported
    elif [ $rc -eq 1 ] || [ $rc -eq 4 ]; then failed=$((failed + 1)); failed_list+=("$name"); outcome[$name]=failed
    else crashed=$((crashed + 1)); crashed_list+=("$name (exit $rc)"); outcome[$name]="crashed (exit $rc)"
    fi
    if [ $VERBOSE -eq 1 ]; then echo "$rc $name: $(tail -1 "$LOG/$name.out")"; fi
done
echo "conformance cases failing: ${failed_list[*]:-none}"
echo "conformance cases that crashed or hung: ${crashed_list[*]:-none}"
echo "conformance summary: passed $passed, unsupported $unsupported, failed $failed, crashed/hung $crashed (of $((passed + unsupported + failed + crashed)))"

if [ -n "$WRITE" ]; then
    {
        echo "# ONNX conformance cases expected to pass (scripts/conformance.sh checks them)."
        echo "# Regenerate: scripts/conformance.sh ../shared/onnx-node-tests --write-expected $WRITE"
        for name in "${!outcome[@]}"; do [ "${outcome[$name]}" = passed ] && echo "$name"; done | LC_ALL=C sort
    } >"$WRITE"
    echo "wrote $passed passing cases to $WRITE"
    [ $crashed -eq 0 ]; exit
fi

# Compare with the list: every expected case must still pass; new passes are only reported.
regressions=(); expected_count=0
declare -A listed
while read -r name; do
    [ -z "$name" ] && continue
    listed[$name]=1; expected_count=$((expected_count + 1))
    result="${outcome[$name]:-missing from $DIR}"
    [ "$result" = passed ] || regressions+=("$name: $result")
done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$EXPECTED")
new_passes=()
for name in "${!outcome[@]}"; do
    [ "${outcome[$name]}" = passed ] && [ -z "${listed[$name]:-}" ] && new_passes+=("$name")
done
if [ ${#new_passes[@]} -gt 0 ]; then
    echo "passing but not in $EXPECTED (add them by regenerating it): $(printf '%s\n' "${new_passes[@]}" | LC_ALL=C sort | tr '\n' ' ')"
fi
if [ ${#regressions[@]} -gt 0 ]; then
    echo "${#regressions[@]} of $expected_count expected cases no longer pass:"
    printf '  %s\n' "${regressions[@]}"
fi
[ ${#regressions[@]} -eq 0 ] && [ $crashed -eq 0 ]
