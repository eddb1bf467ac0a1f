#!/usr/bin/env bash
# test_publish_outage.sh: couponctl publish when a lane's broker is down:
# Kafka brokers down (mock broker-down), the RabbitMQ node stopped, both.
# A notification is accepted when one lane took it; none: exit 1, bounded.
# usage: test_publish_outage.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
build=${1:?build dir}
src=${2:?source dir}
services=$src/deploy/local/services.sh
[[ -n ${COUPOND_KAFKA_CONTROL:-} ]] || eval "$("$services" env)"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

run=test.outage.$$.$(date +%s)
timeout_ms=2000
amqp_port=${COUPOND_AMQP_URL##*:} # the services' port, not the configuration's default
amqp_port=${amqp_port%%/*}
ctl=("$build/couponctl" --set "lanes.w.amqp.url=amqp://coupond@127.0.0.1:$amqp_port/%2f"
     --set "lanes.l.kafka.topic=$run" --set "lanes.w.amqp.queue=$run.work"
     --set "lanes.w.amqp.delay_queue=$run.delay" --set "publish.timeout_ms=$timeout_ms")
kafkactl() { "$build/coupond-kafkahost" --ctl "$COUPOND_KAFKA_CONTROL" "$@" >/dev/null; }

cleanup() {
    kafkactl up all || true
    "$services" status >/dev/null 2>&1 || "$services" up >/dev/null 2>&1
    # Queues left behind would slow every later restart of the node.
    for q in "$run.work" "$run.delay"; do
        $COUPOND_RABBITMQCTL delete_queue "$q" </dev/null >/dev/null 2>&1
    done
}
trap cleanup EXIT

note() { # note N: a valid notification
    printf '{"payment_id":"%s-%d","order_id":%d,"user_id":%d,"deal_id":1,"quantity":1,"amount_cents":100,"currency":"EUR","paid_at":"2026-11-21T10:00:00.000Z"}\n' \
        "$run" "$1" $((900000 + $1 * 100 + 7)) $((1000 + 7))
}

# publish NAME WANT_RC WANT_L WANT_W: publishes two notes around an invalid
# line and checks each result line and the exit code.
publish() {
    local name=$1 want_rc=$2 want_l=$3 want_w=$4 out rc start elapsed
    start=$(date +%s%N)
    out=$({ note 1; echo '{"payment_id":"bad","order_id":-1}'; note 2; } | "${ctl[@]}" publish - 2>"$tmp/err")
    rc=$?
    elapsed=$((($(date +%s%N) - start) / 1000000))
    [[ $rc == "$want_rc" ]] && ok || bad "$name: exit $rc, want $want_rc: $(cat "$tmp/err")"
    [[ $(grep -c '"line":' <<<"$out") == 3 ]] && ok || bad "$name: want 3 result lines: $out"
    grep -q '"line":2,"accepted":false,"error":"invalid_order_id"' <<<"$out" && ok || bad "$name: invalid line not reported: $out"
    for line in 1 3; do
        result=$(grep "\"line\":$line," <<<"$out")
        [[ $result == *"\"l\":\"$want_l\""* && $result == *"\"w\":\"$want_w\""* ]] && ok ||
            bad "$name: line $line: want l=$want_l w=$want_w: $result"
    done
    # Bounded: a down lane costs about one timeout, never a hang.
    ((elapsed < 3 * timeout_ms + 5000)) && ok || bad "$name: took $elapsed ms"
    echo "$name: exit $rc in $elapsed ms"
    last_out=$out
}
tmp=$(mktemp -d)

# Both up: two accepted by both, the invalid line reported, not sent (exit 1
# because one input was not accepted).
publish "both up" 1 accepted accepted
n=$(kcat -b "$COUPOND_KAFKA_BROKERS" -C -t "$run" -e -q -f '%s\n' 2>/dev/null | grep -c "$run-")
[[ $n == 2 ]] && ok || bad "both up: $n messages on the topic, want 2"

# Kafka down (mock broker-down on all three brokers): W alone.
kafkactl down all
publish "kafka down" 1 refused accepted
grep -q '"l_error":' <<<"$last_out" && ok || bad "kafka down: no l_error"
printf '%s\n' "$(note 3)" | "${ctl[@]}" publish - >/dev/null 2>&1
[[ $? == 0 ]] && ok || bad "kafka down: a valid-only publish must exit 0"
kafkactl up all

# RabbitMQ node stopped: L alone.
"$services" stop-rabbitmq >/dev/null
publish "rabbitmq stopped" 1 accepted refused
grep -q '"w_error":"lane down: ' <<<"$last_out" && ok || bad "rabbitmq stopped: no w_error"
grep -q 'lane w is down' "$tmp/err" && ok || bad "rabbitmq stopped: the down lane is not logged"

# Both down: accepted by none, exit 1 within the bound, a clear summary.
kafkactl down all
publish "both down" 1 refused refused
grep -q 'by none' "$tmp/err" && ok || bad "both down: no summary"
kafkactl up all
"$services" start-rabbitmq >/dev/null

rm -rf "$tmp"
echo "test_publish_outage: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
