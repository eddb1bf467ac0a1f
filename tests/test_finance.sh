#!/usr/bin/env bash
# test_finance.sh: couponctl refunds export, refunds verify and reconcile on
# a real PostgreSQL: a known set of refunds exported and compared field by
# field (CSV and JSON); the chain broken by a superuser with the triggers off
# (a changed amount, a deleted row, two rows swapped, rows inserted) and each
# break named; one seeded violation of each invariant reconcile checks.
# usage: test_finance.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
setup_store
has() { # has NAME TEXT WANT: TEXT contains WANT
    if [[ "$2" == *"$3"* ]]; then ok; else bad "$1: '$2' does not contain '$3'"; fi
}
# As a superuser with the triggers (and foreign keys) off.
tamper() { sql "SET session_replication_role = replica; $1"; }

# Ten refunds: reasons with commas, quotes and line feeds; EUR (2 minor
# units), JPY (0), KWD (3). Order o is user o % 100 + 100.
sql "INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency, paid_at)
     SELECT o, 'pay-' || o, o % 100 + 100, 1, 1, a, c, now() - interval '1 hour'
     FROM (VALUES (101, 1500, 'EUR'), (202, 500, 'JPY'), (303, 5, 'EUR'), (404, 1234, 'KWD'),
                  (505, 990, 'EUR'), (606, 1, 'JPY'), (707, 100, 'EUR'), (808, 250, 'EUR'),
                  (909, 7000, 'JPY'), (1010, 42, 'EUR')) v (o, a, c)"
r1='deadline: no coupons, "really"'
r2=$'two\nlines, and a\r\nCRLF'
sql "SELECT coupond_refund(101, \$\$$r1\$\$)" >/dev/null
sql "SELECT coupond_refund(202, E'two\\nlines, and a\\r\\nCRLF')" >/dev/null
for o in 303 404 505 606 707 808 909 1010; do sql "SELECT coupond_refund($o, 'rejected: amount $o')" >/dev/null; done

# 1. Export, CSV: every field against the store's own values.
check "export" ctl refunds export --output "$tmp/all.csv" 2>"$tmp/export.err"
eq "no partial file left" "$(ls "$tmp" | grep -c part)" 0
sql "SELECT seq, to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), r.order_id,
            r.payment_id, p.user_id, r.currency, r.hash
     FROM refund_log r JOIN payments p USING (order_id) ORDER BY seq" >"$tmp/want.txt"
cat >"$tmp/compare.py" <<'PY'
import csv, json, sys
fmt, path, want_path = sys.argv[1], sys.argv[2], sys.argv[3]
amounts = {101: "15.00", 202: "500", 303: "0.05", 404: "1.234", 505: "9.90", 606: "1",
           707: "1.00", 808: "2.50", 909: "7000", 1010: "0.42"}
reasons = {101: 'deadline: no coupons, "really"', 202: "two\nlines, and a\r\nCRLF"}
want = [l.split("|") for l in open(want_path).read().splitlines()]
cols = ["seq", "created_at", "order_id", "payment_id", "user_id", "amount", "currency", "reason", "hash"]
if fmt == "csv":
    raw = open(path, "rb").read()
    assert raw.startswith(b"seq,created_at,order_id,payment_id,user_id,amount,currency,reason,hash\r\n"), raw[:100]
    rows = list(csv.reader(open(path, newline="")))
    assert rows[0] == cols, rows[0]
    got = [dict(zip(cols, r)) for r in rows[1:]]
else:
    got = [json.loads(l) for l in open(path)]
    for g in got:
        assert isinstance(g["seq"], int) and isinstance(g["order_id"], int) and isinstance(g["user_id"], int), g
        for k in ("seq", "order_id", "user_id"):
            g[k] = str(g[k])
assert len(got) == len(want), (len(got), len(want))
for g, w in zip(got, want):
    seq, created, order, pay, user, cur, h = w
    o = int(order)
    exp = {"seq": seq, "created_at": created, "order_id": order, "payment_id": pay,
           "user_id": user, "amount": amounts[o], "currency": cur,
           "reason": reasons.get(o, "rejected: amount %d" % o), "hash": h}
    for k in cols:
        assert g[k] == exp[k], "seq %s %s: got %r, want %r" % (seq, k, g[k], exp[k])
print("ok")
PY
eq "CSV field by field" "$(python3 "$tmp/compare.py" csv "$tmp/all.csv" "$tmp/want.txt" 2>&1)" ok
totals=$(cat "$tmp/export.err")
has "totals EUR" "$totals" "total EUR 28.87 in 6 refunds"
has "totals JPY" "$totals" "total JPY 7501 in 3 refunds"
has "totals KWD" "$totals" "total KWD 1.234 in 1 refund"
has "the last hash, to keep" "$totals" "seq 1 to 10; the last one's hash: $(sql "SELECT hash FROM refund_log WHERE seq = 10")"
ctl refunds export --format json >"$tmp/all.json" 2>/dev/null
eq "JSON field by field" "$(python3 "$tmp/compare.py" json "$tmp/all.json" "$tmp/want.txt" 2>&1)" ok
ctl refunds export >"$tmp/stdout.csv" 2>/dev/null
check "stdout is the same export" cmp -s "$tmp/stdout.csv" "$tmp/all.csv"
# A window: from seq 3's time, to seq 6's (exclusive).
from=$(sql "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM refund_log WHERE seq = 3")
to=$(sql "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM refund_log WHERE seq = 6")
eq "window" "$(ctl refunds export --from "$from" --to "$to" 2>/dev/null | cut -d, -f1 | tr -d '\r' | tail -n +2 | paste -sd' ')" "3 4 5"
ctl refunds export --to 2000-01-01 >/dev/null 2>&1
eq "empty window exits 0" $? 0
ctl refunds export --format xml >/dev/null 2>&1
eq "bad format: usage" $? 2

# 2. verify: clean, then each kind of break, named, then repaired.
out=$(ctl refunds verify)
eq "clean chain verifies" $? 0
has "clean chain" "$out" "10 rows from seq 1 verify"
eq "from seq 4" "$(ctl refunds verify --from-seq 4 | grep -c '7 rows from seq 4 verify')" 1
verifies() { ctl refunds verify >/dev/null; }
verify_broken() { # verify_broken NAME WANT: verify exits 1 and says WANT
    local out
    out=$(ctl refunds verify)
    eq "$1: exit code" $? 1
    has "$1" "$out" "$2"
}
tamper "UPDATE refund_log SET amount_cents = amount_cents + 100 WHERE seq = 3"
verify_broken "amount changed" "broken at seq 3: changed: row seq 3 (order 303)"
eq "amount changed: json" "$(ctl refunds verify --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ok"], d["seq"], d["kind"])')" "False 3 changed"
tamper "UPDATE refund_log SET amount_cents = amount_cents - 100 WHERE seq = 3"
check "repaired" verifies

sql "CREATE TABLE saved AS SELECT * FROM refund_log WHERE seq = 4"
tamper "DELETE FROM refund_log WHERE seq = 4"
verify_broken "row deleted" "broken at seq 4: missing: row seq 4 is missing"
tamper "INSERT INTO refund_log SELECT * FROM saved"
sql "DROP TABLE saved"
check "row put back" verifies
sql "CREATE TABLE saved AS SELECT * FROM refund_log WHERE seq = 10"
tamper "DELETE FROM refund_log WHERE seq = 10"
verify_broken "last row deleted" "broken at seq 10: missing"
tamper "INSERT INTO refund_log SELECT * FROM saved"
tamper "UPDATE refund_log SET amount_cents = 1, hash = coupond_refund_hash(seq, order_id, payment_id, 1, currency, reason, created_at, prev_hash) WHERE seq = 10"
verify_broken "last row rewritten" "broken at seq 10: changed"
tamper "DELETE FROM refund_log WHERE seq = 10; INSERT INTO refund_log SELECT * FROM saved"
sql "DROP TABLE saved"
swap() { # swap A B: exchanges two rows' places in the log
    tamper "UPDATE refund_log SET seq = 1000000 WHERE seq = $1; UPDATE refund_log SET seq = $1 WHERE seq = $2;
            UPDATE refund_log SET seq = $2 WHERE seq = 1000000"
}
check "whole again" verifies
swap 2 6
verify_broken "two rows swapped" "broken at seq 2: reordered: row seq 2 (order 606) links to the hash of seq 5"
swap 2 6
swap 7 8
verify_broken "two neighbours swapped" "broken at seq 7: reordered"
swap 7 8
check "swapped back" verifies

# A forged row in the middle, with a valid hash, the rows after it moved up.
sql "INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency, paid_at, state)
     VALUES (1111, 'pay-forged', 111, 1, 1, 99999, 'EUR', now(), 'pending')"
tamper "UPDATE payments SET state = 'refunded' WHERE order_id = 1111;
        UPDATE refund_log SET seq = seq + 1000000 WHERE seq >= 5; UPDATE refund_log SET seq = seq - 999999 WHERE seq > 1000000;
        INSERT INTO refund_log SELECT 5, 1111, 'pay-forged', 99999, 'EUR', 'forged', now(), r.hash,
            coupond_refund_hash(5, 1111, 'pay-forged', 99999, 'EUR', 'forged', now(), r.hash) FROM refund_log r WHERE seq = 4"
verify_broken "row inserted" "broken at seq 5: inserted: row seq 5 (order 1111)"
tamper "DELETE FROM refund_log WHERE seq = 5; UPDATE refund_log SET seq = seq + 999999 WHERE seq > 5; UPDATE refund_log SET seq = seq - 1000000 WHERE seq > 1000000"
check "forged row removed" verifies
# A forged row at the end, chained correctly, but the head never moved.
tamper "INSERT INTO refund_log SELECT 11, 1111, 'pay-forged', 99999, 'EUR', 'forged', now(), r.hash,
            coupond_refund_hash(11, 1111, 'pay-forged', 99999, 'EUR', 'forged', now(), r.hash) FROM refund_log r WHERE seq = 10"
verify_broken "row appended" "broken at seq 11: inserted: row seq 11 (order 1111) is beyond the chain head"
tamper "DELETE FROM refund_log WHERE seq = 11; UPDATE payments SET state = 'pending' WHERE order_id = 1111"
check "chain whole at the end" verifies
eq "the database agrees" "$(sql "SELECT count(*) FROM coupond_refund_verify()")" 0

# 3. reconcile: clean, then one violation of each invariant.
sql "INSERT INTO deals VALUES (1, 1500, 'EUR')"
out=$(ctl reconcile 2>&1)
eq "clean store: exit 0" $? 0
has "clean: counts" "$out" "refunded   10"
has "clean: in flight" "$out" "pending_in_flight             1"
# Invariant 1: issued without its coupons.
tamper "INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency, paid_at, state)
        VALUES (1212, 'pay-1212', 112, 1, 2, 3000, 'EUR', now(), 'issued')"
# Invariant 2: pending 2 hours after payment; another 1830 s, within the grace.
sql "INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency, paid_at)
     VALUES (1313, 'pay-1313', 113, 1, 1, 1500, 'EUR', now() - interval '2 hours'),
            (1414, 'pay-1414', 114, 1, 1, 1500, 'EUR', now() - interval '1830 seconds')"
out=$(ctl reconcile 2>&1)
eq "violations: exit 1" $? 1
has "invariant 1" "$out" "violation: invariant 1: order 1212: issued with 0 of 2 coupons"
has "invariant 2" "$out" "violation: invariant 2: order 1313: still pending"
eq "within the grace" "$(grep -c 'order 1414' <<<"$out")" 0
eq "without the grace" "$(ctl --set reconcile.grace_s=0 reconcile 2>&1 | grep -c 'invariant 2: order 1414')" 1
eq "--since leaves older orders out" "$(ctl reconcile --since 1h 2>&1 | grep -c 'order 1313')" 0
# Invariant 3: published ids, one dead-lettered, one nowhere; a refused one is not owed.
sql "INSERT INTO dead_letters (lane, reason, body) VALUES ('l', 'bad_signature', convert_to('{\"payment_id\":\"x\",\"order_id\":1515,\"user_id\":15}', 'UTF8'))"
printf '%s\n' 101 '{"line":2,"order_id":"1515","payment_id":"x","accepted":true,"l":"accepted","w":"accepted"}' \
    '{"line":3,"order_id":"1616","payment_id":"y","accepted":true,"l":"accepted","w":"refused"}' \
    '{"line":4,"order_id":"1717","payment_id":"z","accepted":false}' '{"order_id":1818,"payment_id":"n"}' >"$tmp/published"
out=$(ctl reconcile --published "$tmp/published" 2>&1)
eq "invariant 3: exit 1" $? 1
has "invariant 3: lost" "$out" "violation: invariant 3: order 1616: published and accepted, but neither in payments nor in dead_letters"
has "invariant 3: lost notification" "$out" "violation: invariant 3: order 1818"
eq "invariant 3: found ones pass" "$(grep -cE 'invariant 3: order (101|1515|1717):' <<<"$out")" 0
eq "json" "$(ctl --json reconcile 2>/dev/null | grep -c '"violation":')" 2
printf 'nonsense\n' >"$tmp/bad"
ctl reconcile --published "$tmp/bad" >/dev/null 2>&1
eq "bad --published file: usage" $? 2
lib_done
