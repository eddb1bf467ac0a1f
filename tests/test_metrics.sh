#!/usr/bin/env bash
# test_metrics.sh: /metrics, /healthz and /readyz of an L and a W consumer
# under load: the counters are scraped while the load runs and checked
# afterwards against what the store says happened; /readyz turns 503 while
# the store is stopped and 200 again when it returns.
# usage: test_metrics.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
# Ports of their own (57700-57799 by default); the W delay short.
port_l=${COUPOND_TEST_METRICS_PORT:-57710}
port_w=$((port_l + 1))
sets+=(--set lanes.w.delay_ms=1000 --set metrics.pending_interval_s=1)
setup_store
key=$COUPOND_RUN_DIR/secrets/k1.key
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null

# http PORT PATH: prints "STATUS" on the first line, then the body.
http() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
except Exception as e:
    print(0); print(e)
PY
}
status() { http "$1" "$2" | head -1; }
# metric PORT 'NAME{LABELS}': one sample's value (labels after cluster and lane), or "none".
metric() {
    http "$1" /metrics | python3 -c '
import re, sys
want = sys.argv[1]
name, _, labels = want.partition("{")
for line in sys.stdin:
    m = re.match(r"([a-z_]+)(\{[^}]*\})? (\S+)$", line)
    if not m or m.group(1) != name:
        continue
    got = re.sub(r"cluster=\"[^\"]*\",lane=\"[lw]\",?", "", m.group(2) or "{}")
    if got.strip("{}") == labels.rstrip("}"):
        v = float(m.group(3)); print(int(v) if v == int(v) else v); break
else:
    print("none")' "$2"
}
# wait_status PORT PATH WANT SECONDS
wait_status() {
    local i got
    for ((i = 0; i < $4 * 5; i++)); do
        got=$(status "$1" "$2")
        [[ $got == "$3" ]] && return 0
        sleep 0.2
    done
    echo "wait_status: $2 on $1 is $got, want $3" >&2
    return 1
}
# wait_metric PORT SAMPLE WANT SECONDS
wait_metric() {
    local i got
    for ((i = 0; i < $4 * 2; i++)); do
        got=$(metric "$1" "$2")
        [[ $got == "$3" ]] && return 0
        sleep 0.5
    done
    echo "wait_metric: $2 on $1 is $got, want $3" >&2
    return 1
}

n=3000
start_coupond l "$tmp/l.log" --set "metrics.listen=127.0.0.1:$port_l"
pid_l=$coupond_pid
start_coupond w "$tmp/w.log" --set "metrics.listen=127.0.0.1:$port_w"
pid_w=$coupond_pid
check "L ready" wait_status "$port_l" /readyz 200 30
check "W ready" wait_status "$port_w" /readyz 200 30
eq "L alive" "$(status "$port_l" /healthz)" 200
eq "unknown path" "$(status "$port_l" /nothing)" 404

# 1. A load: n valid orders, 10 whose amount does not match the deal, and 20
#    bad messages on the L topic only; scraped while it runs.
notes "$n" $((n + 10)) 1 2 9999 >"$tmp/load"
for ((i = 0; i < n; i += 300)); do notes "$i" $((i + 300)) >"$tmp/load.$i"; done
( # in slices, so that scrapes fall in between
    ctl publish "$tmp/load" >/dev/null 2>"$tmp/pub.err" || echo "publish failed" >>"$tmp/pub.err"
    for ((i = 0; i < n; i += 300)); do
        ctl publish "$tmp/load.$i" >/dev/null 2>>"$tmp/pub.err" || echo "publish failed" >>"$tmp/pub.err"
        sleep 0.2
    done
) &
pub=$!
for i in $(seq 1 10); do
    body="{\"payment_id\":\"m$i\",\"order_id\":"
    kraw "$body" "signature=k1:$(sign "$key" "$body")"
    kraw "{\"payment_id\":\"nosig$i\",\"order_id\":1042,\"user_id\":42,\"deal_id\":1,\"quantity\":1,\"amount_cents\":1500,\"currency\":\"EUR\",\"paid_at\":\"2026-11-21T10:00:00.000Z\"}"
done
last=0 scrapes=0 monotonic=1
while kill -0 "$pub" 2>/dev/null || ((scrapes < 3)); do
    got=$(metric "$port_l" coupond_notifications_received_total)
    [[ $got == none ]] && { monotonic=0; break; }
    ((got >= last)) || monotonic=0
    last=$got
    scrapes=$((scrapes + 1))
    sleep 0.2
done
wait "$pub"
grep -q "publish failed" "$tmp/pub.err" && bad "publish: $(cat "$tmp/pub.err")"
echo "scraped L $scrapes times while the load ran; received by then: $last of $((n + 30))"
check "received never goes down during the load" test "$monotonic" -eq 1

# 2. When it has settled, the counters say what the store says.
check "L received everything" wait_metric "$port_l" coupond_notifications_received_total $((n + 30)) 60
check "W received everything" wait_metric "$port_w" coupond_notifications_received_total $((n + 10)) 60
check "all issued" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" "$n" 60
check "rejected ones refunded" wait_sql "SELECT count(*) FROM refund_log" 10 60
sleep 1.5 # one more pending_interval_s
issued_l=$(metric "$port_l" coupond_issued_total)
issued_w=$(metric "$port_w" coupond_issued_total)
eq "issued: L" "$issued_l" "$(sql "SELECT count(DISTINCT order_id) FROM coupons WHERE issued_by = 'l'")"
eq "issued: W" "$issued_w" "$(sql "SELECT count(DISTINCT order_id) FROM coupons WHERE issued_by = 'w'")"
eq "issued: L + W" $((issued_l + issued_w)) "$n"
eq "W: duplicates + issued" $(($(metric "$port_w" coupond_duplicates_total) + issued_w)) "$n"
eq "L rejected" "$(metric "$port_l" coupond_rejected_total)" 10
eq "W rejected" "$(metric "$port_w" coupond_rejected_total)" 10
eq "W refunds (rejected)" "$(metric "$port_w" 'coupond_refunds_total{reason="rejected"}')" "$(sql "SELECT count(*) FROM refund_log")"
eq "W refunds (deadline)" "$(metric "$port_w" 'coupond_refunds_total{reason="deadline"}')" 0
for reason in malformed_json missing_signature; do
    eq "L dead letters: $reason" "$(metric "$port_l" "coupond_dead_letters_total{reason=\"$reason\"}")" \
        "$(sql "SELECT count(*) FROM dead_letters WHERE lane = 'l' AND reason = '$reason'")"
done
eq "dead letters in the store" "$(sql "SELECT count(*) FROM dead_letters")" 20
eq "W dead letters" "$(metric "$port_w" 'coupond_dead_letters_total{reason="malformed_json"}')" 0
eq "L latency observations" "$(metric "$port_l" 'coupond_outcome_latency_seconds_count{outcome="issued"}')" "$issued_l"
eq "W refund latency observations" "$(metric "$port_w" 'coupond_outcome_latency_seconds_count{outcome="refunded"}')" 10
eq "L batch sizes add up" "$(metric "$port_l" coupond_batch_size_sum)" $((n + 30))
eq "L batches counted" "$(metric "$port_l" 'coupond_batch_size_bucket{le="+Inf"}')" "$(metric "$port_l" coupond_batch_size_count)"
eq "W refund requests published" "$(metric "$port_w" 'coupond_publishes_total{kind="refund_request",result="accepted"}')" 10
eq "nothing pending" "$(metric "$port_l" coupond_oldest_pending_seconds)" 0
eq "L broker up" "$(metric "$port_l" coupond_broker_up)" 1
eq "W store up" "$(metric "$port_w" coupond_store_up)" 1
echo "L issued $issued_l, W issued $issued_w, W duplicates $(metric "$port_w" coupond_duplicates_total)"

# 3. The oldest pending payment's age: an order of an unknown deal stays pending.
notes 5000 5001 7 | ctl publish - >/dev/null 2>&1
check "pending age shows" wait_sql "SELECT count(*) FROM payments WHERE state = 'pending'" 1 30
sleep 2
age=$(metric "$port_l" coupond_oldest_pending_seconds)
check "pending age is seconds, not zero ($age)" python3 -c "import sys; sys.exit(not 0 < float('$age') < 60)"

# 4. The store stops: both lanes turn unready (still alive), then ready again.
"$services" stop-pg >/dev/null
check "L unready without the store" wait_status "$port_l" /readyz 503 20
check "W unready without the store" wait_status "$port_w" /readyz 503 20
eq "L alive without the store" "$(status "$port_l" /healthz)" 200
eq "W says why" "$(http "$port_w" /readyz | tail -1)" "not ready: store unreachable"
eq "store_up 0" "$(metric "$port_l" coupond_store_up)" 0
"$services" start-pg >/dev/null
check "L ready again" wait_status "$port_l" /readyz 200 60
check "W ready again" wait_status "$port_w" /readyz 200 60
notes 6000 6100 | ctl publish - >/dev/null 2>&1
check "issuing after the store returned" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" $((n + 100)) 60
check "L still running" kill -0 "$pid_l"
check "W still running" kill -0 "$pid_w"

# 5. A port already taken stops the start with a configuration error.
"$build/coupond" "${sets[@]}" --set "metrics.listen=127.0.0.1:$port_l" --role l >"$tmp/busy.log" 2>&1
eq "port in use: exit 2" $? 2
grep -q "cannot listen" "$tmp/busy.log" && ok || bad "port in use: $(cat "$tmp/busy.log")"

if ((fail)); then
    echo "--- L log" >&2; tail -30 "$tmp/l.log" >&2
    echo "--- W log" >&2; tail -30 "$tmp/w.log" >&2
fi
lib_done
