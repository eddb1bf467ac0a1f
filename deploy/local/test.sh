#!/usr/bin/env bash
# test.sh: installs what is missing, builds with -Werror, starts the local
# services and runs every test: once in the normal build, once under
# AddressSanitizer + UndefinedBehaviorSanitizer, then runs each libFuzzer
# target (tests/fuzz) for 45 s (COUPOND_FUZZ_SECONDS), and the unit tests and
# the store's integration test once more under valgrind.
#
# usage: deploy/local/test.sh [--quick] [CTEST_ARGS...]
#   --quick   the normal build only (no sanitizer build, no fuzzing, no valgrind)
#   e.g.      deploy/local/test.sh --quick -L unit
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
quick=0
if [[ ${1:-} == --quick ]]; then
    quick=1
    shift
fi
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
"$HERE/deps.sh"

build() { # build DIR CMAKE_ARGS...
    local dir=$1
    shift
    cmake -S "$REPO" -B "$dir" -DCOUPOND_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$jobs" >/dev/null
}

step "build (-Wall -Wextra -Werror)"
build "$REPO/build"

step "local services"
started_here=0
if ! "$HERE/services.sh" status >/dev/null 2>&1; then
    started_here=1
fi
"$HERE/services.sh" up
if [[ ${CI:-} != true && $started_here == 1 ]]; then
    # Leave a developer's machine as we found it.
    trap '"$HERE/services.sh" down; rm -f "${summary:-}"' EXIT
fi
eval "$("$HERE/services.sh" env)"

step "tests"
summary=$(mktemp)
[[ ${CI:-} != true && $started_here == 1 ]] || trap 'rm -f "$summary"' EXIT
ctest --test-dir "$REPO/build" --output-on-failure "$@" | tee "$summary"

if ((quick)); then
    exit 0
fi

step "tests under AddressSanitizer + UndefinedBehaviorSanitizer"
build "$REPO/build-asan" -DCOUPOND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$REPO/build-asan" --output-on-failure "$@"

step "fuzzing (libFuzzer, each target for a bounded time)"
# tests/fuzz/: clang only; a machine without clang skips the step, saying so.
if command -v clang >/dev/null; then
    CC=clang cmake -S "$REPO" -B "$REPO/build-fuzz" -DCOUPOND_WERROR=ON -DCOUPOND_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$REPO/build-fuzz" -j"$jobs" --target fuzz >/dev/null
    "$REPO/tests/fuzz/run.sh" "$REPO/build-fuzz" "${COUPOND_FUZZ_SECONDS:-45}"
else
    echo "fuzz: skipped: clang is not installed (deploy/local/deps.sh installs it)"
fi

step "unit tests and the store test under valgrind"
vg_fail=0
for t in test_config test_log test_message test_signature test_display test_exposition test_finance_formats test_store test_publish; do
    if ! (cd "$REPO/tests" && valgrind -q --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite "$REPO/build/tests/$t" >/dev/null); then
        echo "valgrind: $t is not clean" >&2
        vg_fail=1
    fi
done
((vg_fail == 0)) || exit 1
echo "valgrind: clean"

step "summary of the normal build's tests"
grep -E 'tests passed|tests failed' "$summary"
