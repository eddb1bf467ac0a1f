#!/usr/bin/env bash
# demo.sh: from a fresh Debian machine to a running coupond: installs what is
# missing, builds, starts the local PostgreSQL, RabbitMQ and Kafka host,
# migrates the store, checks the configuration and sets up demonstration
# deals, starts an L and a W consumer, publishes a demonstration load and
# shows the orders issued.
#
# usage: deploy/local/demo.sh [N]   (N notifications, default 1000)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${COUPOND_BUILD_DIR:-$REPO/build}
N=${1:-1000}

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

step "consumers"
run_dir=$COUPOND_RUN_DIR
port=9464 # each consumer's /metrics, /healthz and /readyz: L on 9464, W on 9465
for role in l w; do
    pidfile=$run_dir/coupond-$role.pid
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$role: already running (pid $(cat "$pidfile"))"
    else
        "$BUILD/coupond" --role "$role" --set "metrics.listen=127.0.0.1:$port" \
            >>"$run_dir/coupond-$role.log" 2>&1 &
        echo $! >"$pidfile"
        echo "$role: started, pid $(cat "$pidfile"), log $run_dir/coupond-$role.log," \
            "metrics http://127.0.0.1:$port/metrics"
    fi
    port=$((port + 1))
done

step "publish $N notifications"
# Fresh order ids on every run; each embeds its user's shard (order % 100 == user % 100).
base=$(date +%s)
python3 - "$base" "$N" >"$run_dir/demo.jsonl" <<'PY'
import sys, datetime
base, n = int(sys.argv[1]), int(sys.argv[2])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
deals = [(1001, 1500, "USD"), (1002, 990, "EUR")]
for i in range(n):
    user = 10000 + i
    deal, price, cur = deals[i % 2]
    qty = 1 + i % 3
    print('{"payment_id":"demo-%d-%d","order_id":%d,"user_id":%d,"deal_id":%d,"quantity":%d,'
          '"amount_cents":%d,"currency":"%s","paid_at":"%s"}'
          % (base, i, (base * 1000 + i) * 100 + user % 100, user, deal, qty, price * qty, cur, now))
PY
ctl publish "$run_dir/demo.jsonl" >"$run_dir/demo.results"
tail -n 1 "$run_dir/demo.results"
first=$(head -n 1 "$run_dir/demo.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["order_id"])')

step "orders issued by the L lane"
lo=$((base * 100000)) hi=$(((base + 1) * 100000))
for _ in $(seq 1 100); do
    issued=$(psql -X -t -A -c "SELECT count(*) FROM payments WHERE order_id >= $lo AND order_id < $hi AND state = 'issued'")
    [[ $issued == "$N" ]] && break
    sleep 0.2
done
psql -X -c "SELECT p.state, c.issued_by, count(DISTINCT p.order_id) AS orders, count(c.code) AS coupons
            FROM payments p LEFT JOIN coupons c USING (order_id)
            WHERE p.order_id >= $lo AND p.order_id < $hi GROUP BY 1, 2"
ctl status "$first"

step "done"
cat <<MSG
The services and both consumers keep running (W checks each order 10 s after it was
published and finds it issued). Try:
  eval "\$($HERE/services.sh env)"
  $BUILD/couponctl status $first
  $BUILD/couponctl config get lanes.w.delay_ms
  psql -c 'SELECT state, count(*) FROM payments GROUP BY 1'
Stop the consumers with: kill \$(cat $run_dir/coupond-l.pid $run_dir/coupond-w.pid)
Stop the services with: $HERE/services.sh down
MSG
