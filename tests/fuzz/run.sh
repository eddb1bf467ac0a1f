#!/usr/bin/env bash
# run.sh: runs the libFuzzer targets of a COUPOND_FUZZ build, each for a
# bounded time, from its committed seed corpus (tests/fuzz/corpus/TARGET,
# read only) and a fresh working corpus, with tests/fuzz/TARGET.dict when
# there is one. A crash, leak, timeout or
# out-of-memory fails the run; the input that caused it is kept in
# BUILD_DIR/fuzz-artifacts/ and its path printed (rerun it with
# BUILD_DIR/tests/fuzz/TARGET PATH).
#
# usage: tests/fuzz/run.sh BUILD_DIR [SECONDS [TARGET...]]   (SECONDS: 45 by default)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [SECONDS [TARGET...]]}" && pwd)
seconds=${2:-45}
shift $(($# < 2 ? $# : 2))
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(fuzz_msg_parse fuzz_sig_verify fuzz_config fuzz_headers_json fuzz_refund_export)
fi

artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/$t
    [[ -x $bin ]] || { echo "fuzz: $bin is not built" >&2; exit 2; }
    mkdir -p "$work/$t"
    log=$artifacts/$t.log
    dict=()
    [[ -f $HERE/$t.dict ]] && dict=(-dict="$HERE/$t.dict")
    rc=0
    # -timeout: one input over 10 s is a hang; -rss_limit_mb: a leak or a
    # runaway allocation fails instead of swapping the machine.
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "${dict[@]}" \
        "$work/$t" "$HERE/corpus/$t" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
    if ((rc == 0)); then
        printf 'fuzz: %-20s ok: %s runs in %s s, %s, corpus %s (+%s new)\n' "$t" "${runs:-?}" \
            "$seconds" "${cov:-?}" "$(ls "$HERE/corpus/$t" | wc -l)" "$(ls "$work/$t" | wc -l)"
    else
        failed+=("$t")
        echo "fuzz: $t FAILED (exit $rc); its log: $log" >&2
        grep -E 'ERROR|check failed|SUMMARY|Test unit written' "$log" | head -20 >&2 || true
        for a in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log"); do
            echo "fuzz: reproducer: $a (run: $bin $a)" >&2
        done
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
