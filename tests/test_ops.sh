#!/usr/bin/env bash
# test_ops.sh: what operators reach for at the command line, against the real
# servers: deal list and show; a conflict dead letter that names the fields
# that differ, with both values; order refund (by hand, refused for an order
# issued or refunded, and racing the W lane and a held row lock: exactly one
# outcome each time); refunds summary against the export's own rows; dlq
# purge of resolved letters (dry run, retention, the audit trail kept, open
# letters never); and the operator's role may do both.
# usage: test_ops.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
operator=${run}_operator
ops_cleanup() {
    lib_cleanup
    psql -X -q -d postgres -c "DROP ROLE IF EXISTS $operator" 2>/dev/null
}
trap ops_cleanup EXIT
setup_store
# W retries often (strictly ascending tiers), the deadline is far.
sets+=(--set lanes.w.delay_ms=1000 --set issue.refund_after_s=120
       --set "issue.retry_delays_ms=[300,500,700,1000]"
       --set issue.sweep_interval_ms=500)
me=$(id -un)
llog=$tmp/l.log
wlog=$tmp/w.log
# json_get JSON PYTHON_EXPR: evaluates EXPR on the parsed JSON (as j).
json_get() { python3 -c "import json,sys; j=json.loads(sys.argv[1]); print($2)" "$1"; }
one_outcome() { # orders with both outcomes, or a wrong count of coupons
    sql "SELECT count(*) FROM payments p
         LEFT JOIN (SELECT order_id, count(*) n FROM coupons GROUP BY 1) c USING (order_id)
         LEFT JOIN refund_log r USING (order_id)
         WHERE (p.state = 'issued' AND (coalesce(c.n, 0) <> p.quantity OR r.seq IS NOT NULL))
            OR (p.state = 'refunded' AND (c.n IS NOT NULL OR r.seq IS NULL))
            OR (p.state = 'pending' AND (c.n IS NOT NULL OR r.seq IS NOT NULL))"
}
order_of() { echo $((($1 + 1) * 100 + (1000 + $1) % 100)); } # as lib.sh's notes numbers them

echo "test_ops: step 1 at ${SECONDS}s" >&2
# 1. Deals: listed and shown.
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null
ctl deal set 3 --price-cents 500 --currency JPY --inactive >/dev/null
out=$(ctl deal list)
check "deal list: a table" grep -Eq '^DEAL +PRICE +CURRENCY +STATE +UPDATED' <<<"$out"
check "deal list: deal 1" grep -Eq '^1 +15\.00 +EUR +active ' <<<"$out"
check "deal list: deal 3" grep -Eq '^3 +500 +JPY +inactive ' <<<"$out"
out=$(ctl deal list --json)
eq "deal list --json: one line per deal" "$(wc -l <<<"$out")" 3
eq "deal list --json: fields" "$(json_get "$(sed -n 2p <<<"$out")" 'j["deal_id"], j["price_cents"], j["currency"], j["active"]')" "2 1500 EUR False"
eq "deal list --json global" "$(ctl --json deal list | wc -l)" 3
out=$(ctl deal show 99 2>&1)
eq "deal show: unknown deal exit 1" $? 1
check "deal show: unknown deal says so" grep -q "deal 99 is not in the store" <<<"$out"
eq "deal show: usage" "$(ctl deal show x >/dev/null 2>&1; echo $?)" 2

echo "test_ops: step 2 at ${SECONDS}s" >&2
# 2. The lanes issue some orders; a conflicting notification is dead-lettered
# with the fields that differ first.
start_coupond l "$llog"
lpid=$coupond_pid
start_coupond w "$wlog"
wpid=$coupond_pid
notes 0 10 >"$tmp/first"
ctl publish "$tmp/first" >/dev/null 2>&1
check "issued" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 10 60
out=$(ctl deal show 1 --json)
eq "deal show --json: counts" "$(json_get "$out" 'j["orders"]["issued"], j["orders"]["pending"], j["coupons"]')" "10 0 20"
check "deal show: text" grep -q "^orders      0 pending, 10 issued, 0 refunded" <<<"$(ctl deal show 1)"
# Same order and payment, another quantity and amount.
head -n 1 "$tmp/first" | sed 's/"quantity":2,"amount_cents":3000/"quantity":3,"amount_cents":4500/' | ctl publish - >/dev/null 2>&1
check "conflict dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE reason = 'conflict'" 1 30
o0=$(order_of 0)
eq "conflict detail names the fields" "$(sql "SELECT detail FROM dead_letters WHERE reason = 'conflict'")" \
    "rejected: conflict: order $o0 differs from its stored payment in quantity, amount_cents: quantity (stored 2, received 3), amount_cents (stored 3000, received 4500)"
# A long payment id and only paid_at differing: the old text was cut before
# it reached the notification's paid_at.
long=$(printf 'p%.0s' $(seq 64))
body='{"payment_id":"'$long'","order_id":420101,"user_id":1,"deal_id":1,"quantity":2,"amount_cents":3000,"currency":"EUR","paid_at":"2026-11-21T10:00:00.000Z"}'
printf '%s\n' "$body" | ctl publish - >/dev/null 2>&1
check "long payment id issued" wait_sql "SELECT state FROM payments WHERE order_id = 420101" issued 30
printf '%s\n' "${body/10:00:00.000Z/10:00:00.250Z}" | ctl publish - >/dev/null 2>&1
check "paid_at conflict dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE reason = 'conflict'" 2 30
detail=$(sql "SELECT detail FROM dead_letters WHERE reason = 'conflict' AND detail LIKE '%420101%'")
eq "conflict detail: paid_at, both values" "$detail" \
    "rejected: conflict: order 420101 differs from its stored payment in paid_at: paid_at (stored 2026-11-21T10:00:00.000000Z, received 2026-11-21T10:00:00.250000Z)"
check "dlq show shows the fields" grep -q "paid_at (stored 2026-11-21T10:00:00.000000Z, received 2026-11-21T10:00:00.250000Z)" \
    <<<"$(ctl dlq show "$(sql "SELECT id FROM dead_letters WHERE detail LIKE '%420101%'")")"
# Every field differs, both payment ids 64 characters long: the names of all
# seven come first, before the lane's cut of the text.
other=${body//\"$long\"/\"$(printf 'q%.0s' $(seq 64))\"}
other=${other/\"user_id\":1,/\"user_id\":101,}
other=${other/\"deal_id\":1,\"quantity\":2,\"amount_cents\":3000,\"currency\":\"EUR\"/\"deal_id\":2,\"quantity\":3,\"amount_cents\":4500,\"currency\":\"JPY\"}
other=${other/10:00:00.000Z/11:00:00.000Z}
printf '%s\n' "$other" | ctl publish - >/dev/null 2>&1
check "all-fields conflict dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE reason = 'conflict'" 3 30
eq "conflict detail: all seven names first" "$(sql "SELECT detail LIKE 'rejected: conflict: order 420101 differs from its stored payment in payment_id, user_id, deal_id, quantity, amount_cents, currency, paid_at: payment_id (stored ppp%' FROM dead_letters WHERE reason = 'conflict' AND detail LIKE '%payment_id, user_id%'")" t

echo "test_ops: step 3 at ${SECONDS}s" >&2
# 3. order refund: a pending order (inactive deal: W keeps retrying).
notes 100 103 2 | ctl publish - >/dev/null 2>&1
check "pending on deal 2" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 2 AND state = 'pending' AND attempts >= 1" 3 30
o=$(order_of 100)
out=$(ctl order refund "$o" --note "the customer asked")
eq "order refund: exit 0" $? 0
eq "order refund: says so" "$out" "order $o: refunded (refund seq 1, reason operator, by $me)"
eq "order refund: refunded" "$(sql "SELECT state FROM payments WHERE order_id = $o")" refunded
eq "order refund: the refund log" "$(sql "SELECT reason || ' ' || amount_cents FROM refund_log WHERE order_id = $o")" "operator 3000"
eq "order refund: the outbox" "$(sql "SELECT payload->>'reason' FROM refund_outbox WHERE order_id = $o")" operator
eq "order refund: who and why" "$(sql "SELECT os_user || '|' || note || '|' || refund_seq FROM operator_refunds WHERE order_id = $o")" "$me|the customer asked|1"
check "status shows who and why" grep -q "^refunded by $me on .*: the customer asked" <<<"$(ctl status "$o")"
out=$(ctl order refund "$o" --note again 2>&1)
eq "order refund again: exit 1" $? 1
check "order refund again: says why" grep -q "order $o is already refunded (refund seq 1): not refunded" <<<"$out"
out=$(ctl order refund "$o0" --note "issued already" 2>&1)
eq "order refund of an issued order: exit 1" $? 1
check "order refund of an issued order: says why" grep -q "order $o0 is already issued: not refunded" <<<"$out"
eq "order refund of an issued order: nothing changed" "$(sql "SELECT state || ' ' || (SELECT count(*) FROM coupons WHERE order_id = $o0) || ' ' || (SELECT count(*) FROM refund_log WHERE order_id = $o0) FROM payments WHERE order_id = $o0")" "issued 2 0"
eq "order refund of an unknown order: exit 1" "$(ctl order refund 77 --note x >/dev/null 2>&1; echo $?)" 1
out=$(ctl order refund "$(order_of 101)" --note "withdrawn" --json)
eq "order refund --json" "$(json_get "$out" 'j["result"], j["state"], j["refund_seq"], j["note"]')" "refunded refunded 2 withdrawn"
eq "operator refunds recorded" "$(sql "SELECT count(*) FROM operator_refunds")" 2

echo "test_ops: step 4 at ${SECONDS}s" >&2
# 4. The race, held: a transaction holds the order's row and issues it (as W
# does) while order refund waits for the row; then the same with a refund.
notes 200 202 3 1 500 | sed 's/"EUR"/"JPY"/' | ctl publish - >/dev/null 2>&1
check "pending on deal 3" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 3 AND state = 'pending' AND attempts >= 1" 2 30
a=$(order_of 200) b=$(order_of 201)
psql -X -q -t -A -d "$db" >"$tmp/held-a" 2>&1 <<SQL &
BEGIN;
SELECT 1 FROM payments WHERE order_id = $a FOR UPDATE;
UPDATE deals SET active = true WHERE deal_id = 3;
SELECT pg_sleep(3);
SELECT c.outcome FROM payments p,
       LATERAL coupond_issue($a, p.payment_id, p.user_id, p.deal_id, p.quantity, p.amount_cents,
                             p.currency, p.paid_at, ARRAY['AAAAAAAAAAAAAAA1'], 'w') c
 WHERE p.order_id = $a;
UPDATE deals SET active = false WHERE deal_id = 3;
COMMIT;
SQL
held=$!
holding() { wait_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND query LIKE '%pg_sleep(3)%' AND state = 'active' AND pid <> pg_backend_pid()" 1 20; }
check "held race: the row is held" holding
out=$(ctl order refund "$a" --note race 2>&1)
eq "held race, issue first: order refund exit 1" $? 1
wait "$held"
check "held race: the holder issued" grep -qx issued "$tmp/held-a"
check "held race, issue first: says why" grep -q "order $a is already issued" <<<"$out"
eq "held race, issue first: one outcome" "$(sql "SELECT state || ' ' || (SELECT count(*) FROM coupons WHERE order_id = $a) || ' ' || (SELECT count(*) FROM refund_log WHERE order_id = $a) || ' ' || (SELECT count(*) FROM operator_refunds WHERE order_id = $a) FROM payments WHERE order_id = $a")" "issued 1 0 0"
psql -X -q -t -A -d "$db" >"$tmp/held-b" 2>&1 <<SQL &
BEGIN;
SELECT 1 FROM payments WHERE order_id = $b FOR UPDATE;
SELECT pg_sleep(3);
SELECT outcome FROM coupond_refund($b, 'deadline');
COMMIT;
SQL
held=$!
check "held race: the row is held again" holding
out=$(ctl order refund "$b" --note race 2>&1)
eq "held race, refund first: order refund exit 1" $? 1
wait "$held"
check "held race: the holder refunded" grep -qx refunded "$tmp/held-b"
eq "held race, refund first: one refund, W's" "$(sql "SELECT string_agg(reason, ',') FROM refund_log WHERE order_id = $b")" deadline
eq "held race, refund first: no operator row" "$(sql "SELECT count(*) FROM operator_refunds WHERE order_id = $b")" 0

echo "test_ops: step 5 at ${SECONDS}s" >&2
# 5. The race, live: 20 orders pending on an inactive deal while W retries
# them every few hundred milliseconds; the deal is activated while operators
# refund them all at once. Each order ends with exactly one outcome, and
# order refund's exit code says which.
ctl deal set 4 --price-cents 1500 --currency EUR --inactive >/dev/null
notes 300 320 4 1 1500 | ctl publish - >/dev/null 2>&1
check "pending on deal 4" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 4 AND state = 'pending' AND attempts >= 1" 20 30
# The refunds start over 3 s; the deal is activated 0.5 s in. Twenty
# connections at once on a loaded machine: a patient connect timeout.
racers=()
patient=(--set "store.conninfo=host=$PGHOST port=$PGPORT dbname=$db user=$PGUSER connect_timeout=60")
for i in $(seq 300 319); do
    o=$(order_of "$i")
    (sleep "$((RANDOM % 3)).$((RANDOM % 10))"; ctl "${patient[@]}" order refund "$o" --note "live race" >/dev/null 2>"$tmp/race.$o.err"; echo "$o $?" >"$tmp/race.$o") &
    racers+=($!)
done
sleep 0.5
ctl deal set 4 --price-cents 1500 --currency EUR >/dev/null
wait "${racers[@]}"
check "live race: every order finished" wait_sql "SELECT count(*) FROM payments WHERE deal_id = 4 AND state <> 'pending'" 20 30
mismatch=0
for i in $(seq 300 319); do
    read -r o rc <"$tmp/race.$(order_of "$i")"
    st=$(sql "SELECT state FROM payments WHERE order_id = $o")
    if ! { [ "$rc" = 0 ] && [ "$st" = refunded ]; } && ! { [ "$rc" = 1 ] && [ "$st" = issued ]; }; then
        mismatch=$((mismatch + 1))
        echo "live race: order $o: order refund exit $rc, state $st: $(cat "$tmp/race.$o.err")" >&2
    fi
done
eq "live race: exit codes match the outcomes" "$mismatch" 0
eq "live race: operator refunds are the refunded ones" "$(sql "SELECT count(*) FROM payments p LEFT JOIN operator_refunds o USING (order_id) WHERE p.deal_id = 4 AND (p.state = 'refunded') <> (o.order_id IS NOT NULL)")" 0
eq "one outcome per order" "$(one_outcome)" 0
echo "live race: $(sql "SELECT string_agg(state || '=' || n, ', ') FROM (SELECT state, count(*) n FROM payments WHERE deal_id = 4 GROUP BY 1 ORDER BY 1) x")"
eq "hash chain verifies" "$(sql "SELECT count(*) FROM coupond_refund_verify()")" 0
check "reconcile" ctl reconcile >/dev/null 2>&1
kill -TERM "$lpid" "$wpid"
wait "$lpid" "$wpid" 2>/dev/null

echo "test_ops: step 6 at ${SECONDS}s" >&2
# 6. refunds summary: the export's rows, counted and summed.
ctl refunds export --format json >"$tmp/export.json" 2>/dev/null
for by in currency reason day; do
    want=$(python3 - "$tmp/export.json" "$by" <<'PY'
import json, sys
from decimal import Decimal
groups = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = {"currency": "", "reason": r["reason"], "day": r["created_at"][:10]}[sys.argv[2]]
    n, s = groups.get((key, r["currency"]), (0, Decimal(0)))
    groups[(key, r["currency"])] = (n + 1, s + Decimal(r["amount"]))
for (key, cur), (n, s) in sorted(groups.items()):
    print(" ".join(x for x in (key, cur, str(n), str(s)) if x))
PY
)
    got=$(ctl refunds summary --by "$by" --json | python3 -c '
import json, sys
from decimal import Decimal
for line in sys.stdin:
    j = json.loads(line)
    key = j.get(sys.argv[1], "") if sys.argv[1] != "currency" else ""
    print(" ".join(x for x in (key, j["currency"], str(j["refunds"]), str(Decimal(j["amount"]))) if x))' "$by")
    eq "refunds summary --by $by equals the export" "$got" "$want"
done
out=$(ctl refunds summary --by reason)
check "refunds summary: a table" grep -Eq '^REASON +CURRENCY +REFUNDS +AMOUNT' <<<"$out"
n=$(sql "SELECT count(*) FROM refund_log WHERE reason = 'operator' AND currency = 'EUR'")
check "refunds summary: the operator's refunds" grep -Eq "^operator +EUR +$n +" <<<"$out"
check "refunds summary: default by currency" grep -Eq '^CURRENCY +REFUNDS +AMOUNT' <<<"$(ctl refunds summary)"
out=$(ctl refunds summary --from 2099-01-01 2>&1)
eq "refunds summary of an empty window" "$out" "refunds summary: no refunds"
eq "refunds summary --to before --from" "$(ctl refunds summary --from 2026-12-02 --to 2026-12-01 >/dev/null 2>&1; echo $?)" 2

echo "test_ops: step 7 at ${SECONDS}s" >&2
# 7. dlq purge: resolved letters past the retention go, with an audit row
# each; the recently resolved and the open ones stay.
ctl dlq resolve "$(sql "SELECT min(id) FROM dead_letters WHERE reason = 'conflict'")" --note "payment system confirmed the first" >/dev/null
psql -X -q -d "$db" -c "SELECT coupond_dead_letter('l', 'malformed_json', 'old', '{}', convert_to('old-$run', 'UTF8'));
                        SELECT coupond_dead_letter('w', 'malformed_json', 'recent', '{}', convert_to('recent-$run', 'UTF8'));
                        SELECT coupond_dead_letter('w', 'malformed_json', 'open, seen long ago', '{}', convert_to('open-$run', 'UTF8'))" >/dev/null
old=$(sql "SELECT id FROM dead_letters WHERE detail = 'old'")
recent=$(sql "SELECT id FROM dead_letters WHERE detail = 'recent'")
open=$(sql "SELECT id FROM dead_letters WHERE detail = 'open, seen long ago'")
ctl dlq resolve "$old" "$recent" --note "garbage from a test client" >/dev/null
sql "UPDATE dead_letters SET resolved_at = now() - interval '10 days' WHERE id = $old;
     UPDATE dead_letters SET received_at = now() - interval '30 days', last_seen_at = now() - interval '30 days' WHERE id = $open" >/dev/null
letters_before=$(sql "SELECT count(*) FROM dead_letters")
state=$(sql "SELECT md5(string_agg(d::text, '|' ORDER BY id)) FROM dead_letters d")$(sql "SELECT count(*) FROM dlq_actions")
out=$(ctl dlq purge --resolved --older-than 7d --dry-run 2>"$tmp/purge.err")
eq "purge --dry-run: exit 0" $? 0
check "purge --dry-run: lists the old letter" grep -Eq "^$old +malformed_json " <<<"$out"
eq "purge --dry-run: only it" "$(grep -c '^[0-9]' <<<"$out")" 1
check "purge --dry-run: says nothing changed" grep -q "1 resolved letter would be purged.*dry run: nothing changed" "$tmp/purge.err"
eq "purge --dry-run: nothing changed" "$(sql "SELECT md5(string_agg(d::text, '|' ORDER BY id)) FROM dead_letters d")$(sql "SELECT count(*) FROM dlq_actions")" "$state"
out=$(ctl dlq purge --resolved --older-than 7d --json 2>/dev/null)
eq "purge: the old letter" "$(json_get "$out" 'j["id"], j["reason"], j["resolution"], j["purged"]')" "$old malformed_json resolved True"
eq "purge: it is gone" "$(sql "SELECT count(*) FROM dead_letters WHERE id = $old")" 0
eq "purge: the others stay" "$(sql "SELECT count(*) FROM dead_letters")" $((letters_before - 1))
eq "purge: show says no such letter" "$(ctl dlq show "$old" >/dev/null 2>&1; echo $?)" 1
out=$(ctl dlq audit --letter "$old" --json)
eq "purge: the audit trail keeps the letter's story" "$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["action"] for l in sys.stdin))' <<<"$out")" "resolve purge"
check "purge: the audit row says who and what" grep -q "\"os_user\":\"$me\".*\"result\":\"purged\".*purged after 7 days: reason malformed_json" <<<"$(tail -n 1 <<<"$out")"
# A retention of 0 takes every resolved letter, and still no open one.
out=$(ctl dlq purge --resolved --older-than 0s 2>&1)
eq "purge 0s: no resolved letter left" "$(sql "SELECT count(*) FROM dead_letters WHERE resolved_at IS NOT NULL")" 0
eq "purge 0s: every open letter stays" "$(sql "SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL")" $((letters_before - 3))
eq "purge 0s: the open old letter stays" "$(sql "SELECT count(*) FROM dead_letters WHERE id = $open")" 1
eq "purge: one audit row per purged letter" "$(sql "SELECT count(*) FROM dlq_actions WHERE action = 'purge'")" 3
# The store itself never deletes an open letter, whatever it is asked.
eq "purge in SQL leaves open letters" "$(sql "SELECT count(*) FROM coupond_dlq_purge(interval '0', 'x', '', false)")" 0

echo "test_ops: step 8 at ${SECONDS}s" >&2
# 8. The operator's role may refund an order and purge letters.
pw=$(cat "$COUPOND_RUN_DIR/secrets/pg.password")
sql "CREATE ROLE $operator LOGIN PASSWORD '$pw' IN ROLE coupond_operator" >/dev/null
as_op=(--set "store.conninfo=host=$PGHOST port=$PGPORT dbname=$db user=$operator")
check "operator role: order refund" ctl "${as_op[@]}" order refund "$(order_of 102)" --note "as the operator role" >/dev/null
eq "operator role: recorded" "$(sql "SELECT db_user FROM operator_refunds WHERE order_id = $(order_of 102)")" "$operator"
ctl dlq resolve "$open" --note "closing" >/dev/null
check "operator role: dlq purge" ctl "${as_op[@]}" dlq purge --resolved --older-than 0s >/dev/null 2>&1
eq "operator role: purged" "$(sql "SELECT count(*) FROM dead_letters WHERE id = $open")" 0

if ((fail)); then
    echo "--- W log (tail)" >&2
    grep -v ' debug ' "$wlog" | tail -n 30 >&2
fi
lib_done
