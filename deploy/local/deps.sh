#!/usr/bin/env bash
# deps.sh: installs the Debian packages coupond needs to build, test and run locally (only the missing ones).
#
# Usage: deploy/local/deps.sh [--check]
#   --check  only report what is missing (exit 1 if anything is).
# Runs apt-get update/install only when something is missing; needs root (or sudo) then.
set -euo pipefail

PACKAGES=(
    # servers and client tools
    postgresql rabbitmq-server kcat amqp-tools
    # toolchain
    cmake gcc pkg-config valgrind clang-format python3 python3-yaml
    # fuzzing (tests/fuzz): clang with its libFuzzer and sanitizer runtimes
    clang libclang-rt-dev
    # libraries
    libpq-dev librdkafka-dev librabbitmq-dev libcjson-dev libjansson-dev libconfig-dev
    libssl-dev libmicrohttpd-dev libsystemd-dev
    # benchmarks: GNU time (peak RSS)
    time
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ ${1:-} == --check ]]; then
    echo "deps: missing: ${missing[*]}" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}" >&2
sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install packages" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the packaged services from starting on install: the project runs its own
# instances on its own ports (policy-rc.d is removed again on exit).
policy=/usr/sbin/policy-rc.d
own_policy=0 # read by the EXIT trap
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    # shellcheck disable=SC2034 # read by the EXIT trap
    own_policy=1
fi
trap 'if ((own_policy)); then "${sudo[@]}" rm -f "$policy"; fi' EXIT
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}" >&2
