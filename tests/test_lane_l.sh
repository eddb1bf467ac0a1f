#!/usr/bin/env bash
# test_lane_l.sh: the L lane end to end on the Kafka host and PostgreSQL:
# bulk issue, duplicates, dead letters, kill -9, failed attempts, a store
# outage; then the same lane on RabbitMQ.
# usage: test_lane_l.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
setup_store
key=$COUPOND_RUN_DIR/secrets/k1.key
log=$tmp/l.log
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null

# 1. 10,000 valid notifications, each published three times.
notes 0 10000 >"$tmp/bulk"
for _ in 1 2 3; do ctl publish "$tmp/bulk" >/dev/null 2>"$tmp/pub.err" || bad "publish: $(cat "$tmp/pub.err")"; done
start_coupond l "$log"
check "10,000 issued" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 10000 120
eq "coupons per order" "$(sql "SELECT count(*) FROM (SELECT p.order_id FROM payments p JOIN coupons c USING (order_id) GROUP BY p.order_id, p.quantity HAVING count(*) <> p.quantity) x")" 0
eq "coupons in all" "$(sql "SELECT count(*), count(DISTINCT code) FROM coupons")" "20000|20000"
eq "issued by l" "$(sql "SELECT DISTINCT issued_by FROM coupons")" l
eq "one attempt each" "$(sql "SELECT max(attempts) FROM payments")" 1
eq "no refunds" "$(sql "SELECT count(*) FROM refund_log")" 0

# 2. 50 bad messages among 100 valid ones: 50 dead letters, all valid issued.
notes 10000 10050 | ctl publish - >/dev/null 2>&1
good='{"payment_id":"ok","order_id":1042,"user_id":42,"deal_id":1,"quantity":1,"amount_cents":1500,"currency":"EUR","paid_at":"2026-11-21T10:00:00.000Z"}'
for i in $(seq 1 10); do # malformed JSON, signed
    body="{\"payment_id\":\"m$i\",\"order_id\":"
    kraw "$body" "signature=k1:$(sign "$key" "$body")"
done
for i in $(seq 1 10); do # forged: signed with another secret
    body=${good/\"ok\"/\"forged$i\"}
    printf 'not-the-real-secret-%d' "$i" >"$tmp/forged.key"
    kraw "$body" "signature=k1:$(sign "$tmp/forged.key" "$body")"
done
for i in $(seq 1 10); do # unknown key id
    body=${good/\"ok\"/\"unknown$i\"}
    kraw "$body" "signature=k9:$(sign "$key" "$body")"
done
for i in $(seq 1 5); do # missing signature
    kraw "${good/\"ok\"/\"nosig$i\"}"
done
for i in $(seq 1 5); do # oversized (over 16 KiB), signed
    body="{\"payment_id\":\"big$i\",\"pad\":\"$(head -c 17000 /dev/zero | tr '\0' x)\"}"
    kraw "$body" "signature=k1:$(sign "$key" "$body")"
done
for i in $(seq 1 5); do # an invalid field, signed
    body=${good/\"quantity\":1/\"quantity\":$((100 + i))}
    kraw "$body" "signature=k1:$(sign "$key" "$body")"
done
for i in $(seq 1 5); do # unsupported version, signed
    body=${good/\"ok\"/\"v2-$i\",\"v\":2}
    kraw "$body" "signature=k1:$(sign "$key" "$body")"
done
notes 10050 10100 | ctl publish - >/dev/null 2>&1
check "bad messages dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE lane = 'l'" 50 60
check "valid around them issued" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 10100 60
eq "reasons" "$(sql "SELECT string_agg(reason || '=' || n, ',' ORDER BY reason) FROM (SELECT reason, count(*) n FROM dead_letters GROUP BY reason) x")" \
    "bad_signature=10,invalid_quantity=5,malformed_json=10,missing_signature=5,too_large=5,unknown_key_id=10,unsupported_version=5"
eq "no payment from a bad message" "$(sql "SELECT count(*) FROM payments WHERE payment_id !~ '^$run-'")" 0
eq "dead letters keep body and headers" "$(sql "SELECT count(*) FROM dead_letters WHERE length(body) > 0 AND headers ? 'headers' AND detail <> ''")" 50
# A key and a header that are not UTF-8: recorded as hex, the letter kept.
printf '%s' '{"payment_id":"rawbytes"}' |
    kcat -P -b "$COUPOND_KAFKA_BROKERS" -t "$run.l" -k $'\xff' -H "signature=k1:"$'\xff' 2>/dev/null
check "not-UTF-8 key and header dead-lettered" wait_sql "SELECT reason || ' ' || (headers->'key'->>'hex') || ' ' || (headers->'headers'->'signature'->>'hex') FROM dead_letters WHERE body = convert_to('{\"payment_id\":\"rawbytes\"}', 'UTF8')" "malformed_signature ff 6b313aff" 20

# 3. Failed attempts are recorded and left to W.
printf '%s\n' '{"payment_id":"'$run'-inactive","order_id":2042,"user_id":42,"deal_id":2,"quantity":1,"amount_cents":1500,"currency":"EUR","paid_at":"2026-11-21T10:00:00.000Z"}' \
    '{"payment_id":"'$run'-mismatch","order_id":3042,"user_id":42,"deal_id":1,"quantity":2,"amount_cents":1500,"currency":"EUR","paid_at":"2026-11-21T10:00:00.000Z"}' |
    ctl publish - >/dev/null 2>&1
check "failed attempts recorded" wait_sql "SELECT count(*) FROM payments WHERE order_id IN (2042, 3042) AND attempts = 1" 2 60
eq "inactive deal: pending" "$(sql "SELECT state, attempts, last_error <> '' FROM payments WHERE order_id = 2042")" "pending|1|t"
eq "mismatch: rejected" "$(sql "SELECT state, last_error LIKE 'rejected%' FROM payments WHERE order_id = 3042")" "pending|t"

# 4. kill -9 in the middle of a stream, then restart: one outcome per order.
# A batch acknowledged but not yet issued when the process died is W's to
# finish (ack first), so at most one batch of orders may be missing here.
notes 20000 25000 | ctl publish - >/dev/null 2>&1
for _ in $(seq 1 100); do
    n=$(sql "SELECT count(*) FROM payments WHERE order_id >= 2000000")
    ((n > 0)) && break
    sleep 0.05
done
kill -9 "$coupond_pid"
echo "killed the consumer with $n of 5000 orders of the stream stored"
start_coupond l "$log"
issued=$(wait_stable "SELECT count(*) FROM payments WHERE order_id >= 2000000 AND order_id < 3000000 AND state = 'issued'" 8 120)
echo "after kill -9 and restart: $issued of 5000 issued by L (the rest were in the batch in hand)"
check "at most one batch left to W after kill -9" test $((5000 - issued)) -le 500
eq "no order holds two sets" "$(sql "SELECT count(*) FROM (SELECT order_id FROM coupons GROUP BY order_id HAVING count(*) > max((SELECT quantity FROM payments p WHERE p.order_id = coupons.order_id))) x")" 0

# 5. The store stops for a few seconds mid-stream: no crash, a pause, a resume.
notes 30000 31000 | ctl publish - >/dev/null 2>&1
"$services" stop-pg >/dev/null
notes 31000 32000 | ctl publish - >/dev/null 2>&1
sleep 3
check "consumer survives the outage" kill -0 "$coupond_pid"
"$services" start-pg >/dev/null
notes 32000 33000 | ctl publish - >/dev/null 2>&1
check "orders after the store returned issued" wait_sql "SELECT count(*) FROM payments WHERE order_id >= 3200100 AND order_id < 3300100 AND state = 'issued'" 1000 120
check "consumer still running" kill -0 "$coupond_pid"
grep -q "store unavailable" "$log" && ok || bad "the outage was not logged"
echo "store outage: $(sql "SELECT count(*) FROM payments WHERE order_id >= 3000100 AND order_id < 3200100") of 2000 orders around it reached the store through L"

# 6. SIGTERM: finishes, leaves the group, exits 0.
kill -TERM "$coupond_pid"
wait "$coupond_pid"
eq "SIGTERM exit code" $? 0

# 7. The same lane on RabbitMQ.
sets+=(--set lanes.l.transport=amqp)
start_coupond l "$log"
notes 40000 42000 | ctl publish - >/dev/null 2>&1
check "L on amqp: 2,000 issued" wait_sql "SELECT count(*) FROM payments WHERE order_id >= 4000000 AND state = 'issued'" 2000 120
kill -TERM "$coupond_pid"
wait "$coupond_pid"
eq "L on amqp: SIGTERM exit code" $? 0

if ((fail)); then
    echo "--- consumer log (tail)" >&2
    tail -n 40 "$log" >&2
fi
lib_done
