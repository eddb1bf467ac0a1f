#!/usr/bin/env bash
# bench.sh: runs coupond's benchmarks on this machine against the local services.
#
# Usage: deploy/local/bench.sh BENCHMARK [ARGS...]
#   publish [-n N] [-r ROUNDS] [-b BATCH] [-m LIST]
#            N notifications (default 100000) through pub_send to both lanes, beside the raw
#            ceiling of each broker measured in the same run (bare librdkafka producer, bare
#            rabbitmq-c publisher with confirms); ROUNDS rounds (default 3), median reported.
#            `publish -h` explains every option. Results and their meaning: docs/benchmarks.md.
#
# Each benchmark: installs missing packages (deps.sh), builds a Release tree, starts the local
# services (services.sh up; idempotent, and left running), loads their environment, then runs.
# Benchmarks report ratios against ceilings measured in the same run, never absolute targets.
#
# Environment: COUPOND_BENCH_BUILD_DIR (default <repo>/build-release); COUPOND_RUN_DIR and
# COUPOND_BUILD_DIR are passed on to services.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${COUPOND_BENCH_BUILD_DIR:-$REPO/build-release}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD

usage() {
    sed -n '4,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&"${2:-2}"
    exit "$1"
}

log() { printf 'bench: %s\n' "$*" >&2; }

# build TARGET...: a Release build of the targets (its log stays in the build tree).
build() {
    mkdir -p "$BUILD"
    log "building $* (Release) in $BUILD"
    if ! { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$BUILD" -j"$(nproc)" --target "$@"; } >"$BUILD/bench-build.log" 2>&1; then
        log "error: the build failed; the end of $BUILD/bench-build.log:"
        tail -n 30 "$BUILD/bench-build.log" >&2
        exit 2
    fi
}

# prepare TARGET...: dependencies, the Release build, the services and their environment.
prepare() {
    "$HERE/deps.sh"
    build "$@"
    "$HERE/services.sh" up
    eval "$("$HERE/services.sh" env)"
}

# The machine the numbers belong to, for docs/benchmarks.md.
machine() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    log "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) CPUs (${cpu:-unknown model}), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

bench_publish() {
    local arg
    for arg in "$@"; do
        if [[ $arg == -h || $arg == --help ]]; then
            build bench_publish
            exec "$BUILD/tests/bench/bench_publish" -h
        fi
    done
    prepare bench_publish
    machine
    exec "$BUILD/tests/bench/bench_publish" "$@"
}

case ${1:-} in
publish)
    shift
    bench_publish "$@"
    ;;
-h | --help | help) usage 0 1 ;;
*)
    [[ -n ${1:-} ]] && log "unknown benchmark '$1'"
    usage 2
    ;;
esac
