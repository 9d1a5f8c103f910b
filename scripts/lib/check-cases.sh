# Shared by scripts/conformance.sh and scripts/model-suites.sh (source it; bash): runs
# `segformer test-model` on test-runner case folders (model.onnx + test_data_set_N/), each in its own
# process under a time limit, so a crash or a hang is that case's outcome instead of the end of the run;
# then checks the outcomes against a committed list of the cases expected to pass, or writes that list.
#
#   check_cases TITLE EXPECTED WRITE VERBOSE TIMEOUT NAME=FOLDER…
#
# TITLE names the cases in the summary ("conformance", "model suite"); EXPECTED is the list file (one case
# name a line, `#` comments); WRITE, when not empty, is where to write today's passing cases instead of
# checking; NAME is the case's name in lists and reports (a `group/` prefix gets its own summary line).
# The caller defines `case_options NAME`, which prints the test-model options for that case (tolerances),
# and `list_header`, which prints the `#` lines that head a written list.
# Returns non-zero naming every expected case that no longer passes (failed, unsupported, crashed or
# missing), and when any case crashed or hung. Cases that pass but are not in the list are reported only.

# Reads the scripts' common arguments `DIR [--expected FILE | --write-expected FILE] [--timeout SECONDS]
# [--verbose]` into DIR (made absolute), EXPECTED (default: the first argument), WRITE, LIMIT (default 120 s)
# and VERBOSE, then moves to the repository root.
parse_case_arguments() {
    local usage="usage: $(basename "$0") DIR [--expected FILE | --write-expected FILE] [--timeout SECONDS] [--verbose]"
    EXPECTED="$1"; shift
    DIR="${1:?$usage}"; shift
    DIR=$(cd "$DIR" && pwd) || exit 2
    WRITE=""; VERBOSE=0; LIMIT=120
    while [ $# -gt 0 ]; do
        case "$1" in
            --expected) EXPECTED="$2"; shift 2 ;;
            --write-expected) WRITE="$2"; shift 2 ;;
            --timeout) LIMIT="$2"; shift 2 ;;
            --verbose) VERBOSE=1; shift ;;
            *) echo "unknown option $1; $usage" >&2; exit 2 ;;
        esac
    done
    cd "$(dirname "$0")/.." || exit 2
}

check_cases() {
    local title="$1" expected="$2" write="$3" verbose="$4" limit="$5"; shift 5
    if [ -z "$write" ] && [ ! -f "$expected" ]; then echo "no expected-pass list at $expected" >&2; return 2; fi
    local bin=.build/release/segformer
    [ -x "$bin" ] || swift build -c release --product segformer >/dev/null
    local log; log=$(mktemp -d)
    declare -A outcome   # case name → passed | unsupported | failed | crashed (exit N)
    declare -A group_counts   # "group outcome" → count
    local passed=0 unsupported=0 failed=0 crashed=0 failed_list=() crashed_list=() started=$SECONDS
    local entry name folder rc kind group
    for entry in "$@"; do
        name="${entry%%=*}"; folder="${entry#*=}"
        # shellcheck disable=SC2046   # case_options prints separate options
        timeout "$limit" "$bin" test-model "$folder" $(case_options "$name") >"$log/${name//\//_}.out" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then kind=passed; passed=$((passed + 1))
        elif [ $rc -eq 3 ]; then kind=unsupported; unsupported=$((unsupported + 1))
        elif [ $rc -eq 1 ] || [ $rc -eq 4 ]; then kind=failed; failed=$((failed + 1)); failed_list+=("$name")
        else kind=crashed; crashed=$((crashed + 1)); crashed_list+=("$name (exit $rc)")
        fi
        outcome[$name]=$kind; [ $kind = crashed ] && outcome[$name]="crashed (exit $rc)"
        if [[ "$name" == */* ]]; then group="${name%%/*}"; group_counts["$group $kind"]=$(( ${group_counts["$group $kind"]:-0} + 1 )); fi
        if [ "$verbose" -eq 1 ]; then echo "$rc $name: $(tail -1 "$log/${name//\//_}.out")"; fi
    done
    rm -rf "$log"
    echo "$title cases failing: ${failed_list[*]:-none}"
    echo "$title cases that crashed or hung: ${crashed_list[*]:-none}"
    local groups; groups=$(for k in "${!group_counts[@]}"; do echo "${k%% *}"; done | LC_ALL=C sort -u)
    for group in $groups; do
        echo "  $group: passed ${group_counts["$group passed"]:-0}, unsupported ${group_counts["$group unsupported"]:-0}, failed ${group_counts["$group failed"]:-0}, crashed/hung ${group_counts["$group crashed"]:-0}"
    done
    echo "$title summary: passed $passed, unsupported $unsupported, failed $failed, crashed/hung $crashed (of $((passed + unsupported + failed + crashed)), $((SECONDS - started)) s)"

    if [ -n "$write" ]; then
        {
            list_header
            for name in "${!outcome[@]}"; do [ "${outcome[$name]}" = passed ] && echo "$name"; done | LC_ALL=C sort
        } >"$write"
        echo "wrote $passed passing cases to $write"
        [ $crashed -eq 0 ]; return
    fi

    # Compare with the list: every expected case must still pass; new passes are only reported.
    local regressions=() expected_count=0 result new_passes=()
    declare -A listed
    while read -r name; do
        [ -z "$name" ] && continue
        listed[$name]=1; expected_count=$((expected_count + 1))
        result="${outcome[$name]:-missing}"
        [ "$result" = passed ] || regressions+=("$name: $result")
    done < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$expected")
    for name in "${!outcome[@]}"; do
        [ "${outcome[$name]}" = passed ] && [ -z "${listed[$name]:-}" ] && new_passes+=("$name")
    done
    if [ ${#new_passes[@]} -gt 0 ]; then
        echo "passing but not in $expected (add them by regenerating it): $(printf '%s\n' "${new_passes[@]}" | LC_ALL=C sort | tr '\n' ' ')"
    fi
    if [ ${#regressions[@]} -gt 0 ]; then
        echo "${#regressions[@]} of $expected_count expected cases no longer pass:"
        printf '  %s\n' "${regressions[@]}"
    fi
    [ ${#regressions[@]} -eq 0 ] && [ $crashed -eq 0 ]
}
