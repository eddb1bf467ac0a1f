#!/usr/bin/env bash
# demo.sh: from a fresh Debian machine to a running coupond: installs what is
# missing, builds, starts the local PostgreSQL, RabbitMQ and Kafka host,
# migrates the store, checks the configuration and sets up demonstration
# deals, then shows one order's story.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${COUPOND_BUILD_DIR:-$REPO/build}

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
"$HERE/deps.sh"

step "build"
cmake -S "$REPO" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
echo "built $BUILD/coupond and $BUILD/couponctl"

step "local services"
"$HERE/services.sh" up
eval "$("$HERE/services.sh" env)"
ctl() { "$BUILD/couponctl" "$@"; }

step "configuration ($COUPOND_CONFIG)"
"$BUILD/coupond" --check | tail -n 1

step "store"
ctl db migrate
ctl deal set 1001 --price-cents 1500 --currency USD
ctl deal set 1002 --price-cents 990 --currency EUR
ctl deal set 1003 --price-cents 500 --currency JPY --inactive

step "done"
cat <<MSG
The services keep running. Try:
  eval "\$($HERE/services.sh env)"
  $BUILD/couponctl config get lanes.w.delay_ms
  psql -c 'table deals'
Stop them with: $HERE/services.sh down
MSG
