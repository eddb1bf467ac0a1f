#!/usr/bin/env bash
# test_lane_w.sh: the W lane end to end on RabbitMQ and PostgreSQL, with short
# timers (delay 1 s, retries 0.5/1/2 s, deadline 8 s): issue after the delay,
# retries, refunds at the deadline and at once, the refund relay, kill -9, a
# broker restart, the sweeper, and L racing two W consumers at the deadline.
# usage: test_lane_w.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
setup_store
sets+=(--set lanes.w.delay_ms=1000 --set issue.refund_after_s=12
       --set "issue.retry_delays_ms=[500,1000,2000]" --set issue.sweep_interval_ms=500)
wlog=$tmp/w.log
llog=$tmp/l.log
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null
ctl deal set 3 --price-cents 1500 --currency EUR --inactive >/dev/null
one_outcome() { # no order with both, or neither after its deadline, or a wrong count
    sql "SELECT count(*) FROM payments p
         LEFT JOIN (SELECT order_id, count(*) n FROM coupons GROUP BY 1) c USING (order_id)
         LEFT JOIN refund_log r USING (order_id)
         WHERE (p.state = 'issued' AND (coalesce(c.n, 0) <> p.quantity OR r.seq IS NOT NULL))
            OR (p.state = 'refunded' AND (c.n IS NOT NULL OR r.seq IS NULL))
            OR (p.state = 'pending' AND (c.n IS NOT NULL OR r.seq IS NOT NULL))"
}

# 1. No L consumer: W issues everything, never before the delay.
start_coupond w "$wlog"
w1=$coupond_pid
t0=$(sql "SELECT now()")
notes 0 2000 | ctl publish - >/dev/null 2>&1
check "2,000 issued by W" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 2000 60
eq "issued by w only" "$(sql "SELECT string_agg(DISTINCT issued_by, ',') FROM coupons")" w
eq "none before the delay" "$(sql "SELECT count(*) FROM coupons WHERE issued_at < '$t0'::timestamptz + interval '1 second'")" 0
echo "W after the delay: $(sql "SELECT round(extract(epoch FROM min(issued_at) - '$t0'::timestamptz)::numeric, 3) || ' s first, ' || round(extract(epoch FROM max(issued_at) - '$t0'::timestamptz)::numeric, 3) || ' s last'  FROM coupons")"

# 1b. A message whose header is not UTF-8 (a forged signature of raw bytes) is a
# dead letter like any other, its header kept as hex, and W goes on.
amqp-publish -u "$COUPOND_AMQP_URL" -r "$run.w.work" -p -H "signature: k1:"$'\xff\xfe' \
    -H $'x-bad\xc3: v' -b '{"payment_id":"rawbytes"}'
notes 2000 2001 | ctl publish - >/dev/null 2>&1
check "not-UTF-8 header dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE body = convert_to('{\"payment_id\":\"rawbytes\"}', 'UTF8')" 1 20
eq "its header kept as hex" "$(sql "SELECT reason, headers->'headers'->'signature'->>'hex' FROM dead_letters WHERE body = convert_to('{\"payment_id\":\"rawbytes\"}', 'UTF8')")" "malformed_signature|6b313afffe"
check "W goes on" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 2001 20
# One that came through the delay queue carries RabbitMQ's x-death, an array
# of tables, kept whole.
amqp-publish -u "$COUPOND_AMQP_URL" -r "$run.w.delay" -p -b '{"payment_id":"viadelay"}'
check "x-death kept" wait_sql "SELECT reason || ' ' || (headers->'headers'->'x-death'->0->>'queue') || ' ' || (headers->'headers'->'x-death'->0->>'reason') FROM dead_letters WHERE body = convert_to('{\"payment_id\":\"viadelay\"}', 'UTF8')" "missing_signature $run.w.delay expired" 20

# 2. A deal inactive for a while, activated before the deadline: W retries, issues.
notes 3000 3020 2 2 3000 | ctl publish - >/dev/null 2>&1
sleep 3
ctl deal set 2 --price-cents 1500 --currency EUR >/dev/null
check "issued after retries" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 2 AND state = 'issued' AND attempts > 1" 20 30

# 3. A deal never active: refunded by deadline + 5 s, on the refunds queue,
# the hash chain verifies. 4. An amount mismatch: refunded at once.
t3=$(date +%s)
notes 4000 4020 3 2 3000 | ctl publish - >/dev/null 2>&1
notes 5000 5010 1 2 2999 | ctl publish - >/dev/null 2>&1
check "mismatch refunded at once" wait_sql "SELECT count(*) FROM refund_log WHERE reason LIKE 'rejected: amount_cents%'" 10 6
eq "refunded at once, before the deadline" "$(sql "SELECT count(*) FROM payments p JOIN refund_log r USING (order_id) WHERE r.reason LIKE 'rejected%' AND r.created_at > p.paid_at + interval '12 seconds'")" 0
check "never-active deal refunded" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 3 AND state = 'refunded'" 20 20
late=$(sql "SELECT round(max(extract(epoch FROM r.created_at - (p.paid_at + interval '12 seconds')))::numeric, 3) FROM payments p JOIN refund_log r USING (order_id) WHERE p.deal_id = 3")
echo "refund lateness after the deadline: max $late s"
check "refunds no later than deadline + 5 s" python3 -c "import sys; sys.exit(0 if float('$late') <= 5 else 1)"
eq "deadline reason" "$(sql "SELECT count(*) FROM refund_log r JOIN payments p USING (order_id) WHERE p.deal_id = 3 AND r.reason LIKE 'deadline%'")" 20
check "refund requests relayed" wait_sql "SELECT count(*) FROM refund_outbox WHERE sent_at IS NULL" 0 10
for _ in $(seq 1 50); do [[ $(queue_depth "$run.refunds") == 30 ]] && break; sleep 0.2; done
eq "refunds queue" "$(queue_depth "$run.refunds")" 30
eq "hash chain verifies" "$(sql "SELECT count(*) FROM coupond_refund_verify()")" 0

# 5. kill -9 a W consumer mid-stream, restart; restart the RabbitMQ node mid-stream.
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null
notes 6000 8000 | ctl publish - >/dev/null 2>&1
sleep 1.5
kill -9 "$w1"
start_coupond w "$wlog"
w1=$coupond_pid
notes 8000 9000 | ctl publish - >/dev/null 2>&1
"$services" stop-rabbitmq >/dev/null
"$services" start-rabbitmq >/dev/null
# The node takes a moment to elect its quorum queues' leaders: a publish
# before that is refused by W (and says so); wait until W takes one again.
for _ in $(seq 1 60); do
    notes 9000 9001 | ctl publish - 2>/dev/null | grep -q '"w":"accepted"' && break
    sleep 0.5
done
notes 9001 10000 | ctl publish - >"$tmp/after-restart" 2>/dev/null
eq "W takes notifications after the restart" "$(grep -c '"w":"accepted"' "$tmp/after-restart")" 999
# Nothing lost: every order ends issued, or refunded when the outage outlasted
# the (short) deadline.
check "kill -9 and broker restart: every order finished" wait_sql "SELECT count(*) FROM payments WHERE order_id > 600000 AND order_id <= 1000100 AND state <> 'pending'" 4000 90
echo "kill -9 and broker restart: $(sql "SELECT string_agg(state || '=' || n, ', ') FROM (SELECT state, count(*) n FROM payments WHERE order_id > 600000 AND order_id <= 1000100 GROUP BY 1) x")"
eq "one outcome per order" "$(one_outcome)" 0

# 6. Published to L only (the W publish fails), L's attempt fails: the
# sweeper finishes it by the deadline: issued once the deal is active,
# refunded when it never is.
# L gets a topic of its own here, so it does not first work through the
# backlog of the earlier steps.
l2=(--set "lanes.l.kafka.topic=$run.l2" --set "lanes.l.kafka.group=$run-l2")
start_coupond l "$llog" "${l2[@]}"
lpid=$coupond_pid
ctl deal set 4 --price-cents 1500 --currency EUR --inactive >/dev/null
notes 11000 11005 4 1 1500 | ctl "${l2[@]}" --set "lanes.w.amqp.url=amqp://x@127.0.0.1:9/" publish - >/dev/null 2>&1
notes 11005 11010 3 1 1500 | ctl "${l2[@]}" --set "lanes.w.amqp.url=amqp://x@127.0.0.1:9/" publish - >/dev/null 2>&1
check "L recorded the failed attempts" wait_sql "SELECT count(*) FROM payments WHERE order_id > 1100000 AND order_id < 1101100 AND attempts >= 1" 10 30
ctl deal set 4 --price-cents 1500 --currency EUR >/dev/null
check "sweeper issued the recoverable ones" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 4 AND state = 'issued'" 5 20
check "sweeper refunded the others by the deadline" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 3 AND order_id > 1100000 AND state = 'refunded'" 5 20
eq "sweeper on time" "$(sql "SELECT count(*) FROM payments p JOIN refund_log r USING (order_id) WHERE p.deal_id = 3 AND p.order_id > 1100000 AND r.created_at > p.paid_at + interval '17 seconds'")" 0

# 7. L and two W consumers race at the deadline on 200 orders.
start_coupond w "$wlog"
w2=$coupond_pid
ctl deal set 5 --price-cents 1500 --currency EUR --inactive >/dev/null
notes 12000 12200 5 1 1500 >"$tmp/race"
ctl publish "$tmp/race" >/dev/null 2>&1
sleep 11.5
ctl deal set 5 --price-cents 1500 --currency EUR >/dev/null
ctl "${l2[@]}" --set "lanes.w.amqp.url=amqp://x@127.0.0.1:9/" publish "$tmp/race" >/dev/null 2>&1
check "race: every order finished" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 5 AND state <> 'pending'" 200 30
eq "race: one outcome per order" "$(one_outcome)" 0
echo "race: $(sql "SELECT string_agg(state || '=' || n, ', ') FROM (SELECT state, count(*) n FROM payments WHERE deal_id = 5 GROUP BY 1) x")"
eq "hash chain still verifies" "$(sql "SELECT count(*) FROM coupond_refund_verify()")" 0

kill -TERM "$w1" "$w2" "$lpid"
for p in "$w1" "$w2" "$lpid"; do
    wait "$p"
    eq "SIGTERM exit code" $? 0
done
if ((fail)); then
    echo "--- W log (tail)" >&2
    grep -v ' debug ' "$wlog" | tail -n 40 >&2
fi
lib_done
