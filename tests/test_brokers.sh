#!/usr/bin/env bash
# test_brokers.sh: integration test of the local brokers (Kafka mock cluster, RabbitMQ) with Debian's kcat and amqp-tools.
#
# Usage: bash tests/test_brokers.sh BUILD_DIR SOURCE_DIR
# Needs `deploy/local/services.sh up`; evals `services.sh env` itself when the environment is not set.
set -uo pipefail

BUILD=${1:?usage: test_brokers.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: test_brokers.sh BUILD_DIR SOURCE_DIR}
if [[ -z ${COUPOND_KAFKA_BROKERS:-} || -z ${COUPOND_AMQP_URL:-} ]]; then
    eval "$(bash "$SRC/deploy/local/services.sh" env)" ||
        { echo "test_brokers: services are not up (deploy/local/services.sh up)" >&2; exit 1; }
fi
KAFKAHOST=$BUILD/coupond-kafkahost
[[ -x $KAFKAHOST ]] || KAFKAHOST=${COUPOND_KAFKAHOST:-}

passed=0
failed=0
stamp=$(date +%s)
tmp=$(mktemp -d)
topic=coupond-test-$$-$stamp
group=coupond-test-group-$$-$stamp
queue=coupond.test.$$.$stamp

pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1" >&2; }
# check NAME COMMAND...: runs the command, one result line per check.
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

ctl() { "$KAFKAHOST" --ctl "$COUPOND_KAFKA_CONTROL" "$@" >/dev/null; }

cleanup() {
    # Never leave the shared cluster down or the test queue behind, whatever failed.
    [[ -n $KAFKAHOST ]] && "$KAFKAHOST" --ctl "$COUPOND_KAFKA_CONTROL" up all >/dev/null 2>&1
    amqp-delete-queue -u "$COUPOND_AMQP_URL" -q "$queue" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

# consume: one pass of the consumer group over the topic, up to the end of every partition;
# it commits its offsets when it leaves. Prints "key|value|headers" lines, sorted. The mock
# coordinator makes a member that joins soon after another left wait session.timeout.ms - 1 s
# (45 s by default), hence the short session timeout.
consume() {
    timeout 60 kcat -b "$COUPOND_KAFKA_BROKERS" -G "$group" -X auto.offset.reset=earliest \
        -X session.timeout.ms=6000 \
        -e -q -f '%k|%s|%h\n' "$topic" 2>"$tmp/consume.err" | LC_ALL=C sort
}

produce() { # produce FILE: "key|value" lines, with the two test headers.
    timeout 60 kcat -P -b "$COUPOND_KAFKA_BROKERS" -t "$topic" -K '|' \
        -H "signature=k1:$sig" -H "trace=t-$$" -l "$1" 2>"$tmp/produce.err"
}

# ---------------------------------------------------------------- Kafka

echo "# kafka: $COUPOND_KAFKA_BROKERS, topic $topic, group $group"
sig=$(printf '%064d' 0 | tr 0 a)
for i in 1 2 3 4 5; do
    printf '%d|{"payment_id":"pay-%d","order_id":%d,"note":"caf\xc3\xa9 \xe2\x82\xac %d"}\n' \
        $((1000 + i)) "$i" $((1000 + i)) "$i"
done >"$tmp/batch1"
printf '2001|{"payment_id":"pay-6"}\n2002|{"payment_id":"pay-7"}\n' >"$tmp/batch2"
expect() { # expect FILE: the consumer's view of produced lines.
    sed "s/\$/|signature=k1:$sig,trace=t-$$/" "$1" | LC_ALL=C sort
}
passes=0
consumed() { # consumed FILE|none: one pass of the group gets exactly FILE's messages, or none.
    local got=$tmp/got.$((++passes))
    consume >"$got" || { echo "kcat consumer failed (exit $?)" >&2; return 1; }
    if [[ $1 == none ]]; then
        [[ ! -s $got ]] || { echo "unexpected messages:" >&2; cat "$got" >&2; return 1; }
    else
        diff <(expect "$1") "$got" >&2
    fi
}

three_brokers() { kcat -L -b "$COUPOND_KAFKA_BROKERS" -m 10 | grep -q '^ 3 brokers:'; }
check "kafka: metadata lists 3 brokers" three_brokers
check "kafka: produce 5 keyed messages with headers (topic auto-created)" produce "$tmp/batch1"
check "kafka: the group receives the exact bytes, keys and headers" consumed "$tmp/batch1"
check "kafka: the committed offsets hold (a second pass gets nothing)" consumed none
check "kafka: produce 2 more" produce "$tmp/batch2"
check "kafka: the group resumes at its committed offsets (only the 2 new)" consumed "$tmp/batch2"

if [[ -x $KAFKAHOST && -S $COUPOND_KAFKA_CONTROL ]]; then
    check "kafka: control socket answers ping" ctl ping
    check "kafka: control rejects a bad broker id" eval '! ctl down 9'
    check "kafka: take all brokers down" ctl down all
    start=$SECONDS
    produce_fails() { # kcat exits 1 on a failed delivery, 124 if timeout had to stop it
        echo "9|down" | timeout 30 kcat -P -b "$COUPOND_KAFKA_BROKERS" -t "$topic" -K '|' \
            -X message.timeout.ms=5000 2>/dev/null
        (($? == 1))
    }
    check "kafka: producing fails while all brokers are down" produce_fails
    check "kafka: ... and within 10 s, not by timeout ($((SECONDS - start)) s)" test $((SECONDS - start)) -le 10
    check "kafka: bring all brokers up" ctl up all
    printf '3001|{"payment_id":"pay-8"}\n' >"$tmp/batch3"
    check "kafka: producing works again" produce "$tmp/batch3"
    check "kafka: the group gets the message produced after the outage" consumed "$tmp/batch3"
else
    fail "kafka: no coupond-kafkahost binary or control socket ($COUPOND_KAFKA_CONTROL)"
fi

# ---------------------------------------------------------------- RabbitMQ

echo "# amqp: queue $queue"
amqp() { "$@" -u "$COUPOND_AMQP_URL" 2>>"$tmp/amqp.err"; }
declared() { [[ $(amqp amqp-declare-queue -d -q "$queue") == "$queue" ]]; }
check "amqp: declare a durable queue" declared
bodies=('{"payment_id":"pay-1","order_id":1001}' $'caf\xc3\xa9 \xe2\x82\xac with  spaces' 'third')
for body in "${bodies[@]}"; do
    check "amqp: publish persistent with a signature header" \
        amqp amqp-publish -r "$queue" -p -C application/json -H "signature: k1:$sig" -b "$body"
done
for body in "${bodies[@]}"; do
    amqp amqp-get -q "$queue" >"$tmp/body"
    check "amqp: get back '${body:0:24}...' byte for byte, in order" cmp -s "$tmp/body" <(printf '%s' "$body")
done
amqp amqp-get -q "$queue" >/dev/null
check "amqp: the queue is empty afterwards" test $? -eq 2
deleted_empty() { [[ $(amqp amqp-delete-queue -q "$queue") == 0 ]]; }
check "amqp: delete the queue (0 messages left)" deleted_empty

# ---------------------------------------------------------------- result

if ((failed)); then
    for f in "$tmp"/*.err; do
        [[ -s $f ]] && { echo "--- $(basename "$f")"; tail -n 20 "$f"; } >&2
    done
    run=${COUPOND_RUN_DIR:-$SRC/.run}
    for f in "$run/kafka/kafkahost.log" "$run/rabbitmq/log/coupond@localhost.log"; do
        [[ -f $f ]] && { echo "--- $f"; tail -n 20 "$f"; } >&2
    done
fi
echo "test_brokers: $passed passed, $failed failed"
((failed == 0))
