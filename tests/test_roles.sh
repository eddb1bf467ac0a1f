#!/usr/bin/env bash
# test_roles.sh: the database roles of 003_roles.sql. Both lanes run as a
# login granted coupond_daemon only: orders issue, are refunded (at once and
# at the deadline) and the refund requests are relayed. The daemon cannot
# update, delete or truncate the refund log nor move the chain head; finance
# reads and exports but cannot write.
# usage: test_roles.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
daemon=${run}_daemon
finance=${run}_finance
roles_cleanup() {
    lib_cleanup
    psql -X -q -d postgres -c "DROP ROLE IF EXISTS $daemon" -c "DROP ROLE IF EXISTS $finance" 2>/dev/null
}
trap roles_cleanup EXIT
setup_store
# The logins share the local password, so that store.password still applies.
pw=$(cat "$COUPOND_RUN_DIR/secrets/pg.password")
sql "CREATE ROLE $daemon LOGIN PASSWORD '$pw' IN ROLE coupond_daemon;
     CREATE ROLE $finance LOGIN PASSWORD '$pw' IN ROLE coupond_finance"
as() { # as ROLE SQL: runs SQL as the login ROLE; prints output and errors
    PGPASSWORD=$pw psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U "$1" -d "$db" -c "$2" 2>&1
}
denied() { # denied NAME ROLE SQL: the statement fails with "permission denied"
    local out
    out=$(as "$2" "$3")
    if [[ $out == *"permission denied"* ]]; then ok; else bad "$1: $out"; fi
}
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null

# Both lanes as the daemon's login, with short timers.
# W waits long enough for L to issue most orders first.
sets+=(--set lanes.w.delay_ms=4000 --set issue.refund_after_s=10
       --set "issue.retry_delays_ms=[500,1000]" --set issue.sweep_interval_ms=500)
daemon_sets=(--set "store.conninfo=host=$PGHOST port=$PGPORT dbname=$db user=$daemon")
start_coupond l "$tmp/l.log" "${daemon_sets[@]}"
lpid=$coupond_pid
start_coupond w "$tmp/w.log" "${daemon_sets[@]}"
wpid=$coupond_pid

notes 0 200 | ctl publish - >/dev/null 2>&1        # issued, by L (and W finds them done)
notes 1000 1010 1 2 2999 | ctl publish - >/dev/null 2>&1 # amount mismatch: refunded at once by W
notes 2000 2010 2 2 3000 | ctl publish - >/dev/null 2>&1 # deal inactive: refunded at the deadline
check "issued as the daemon" wait_sql "SELECT count(*) FROM payments WHERE state = 'issued'" 200 60
check "refunded at once and at the deadline" wait_sql "SELECT count(*) FROM payments WHERE state = 'refunded'" 20 60
check "refund requests relayed" wait_sql "SELECT count(*) FROM refund_outbox WHERE sent_at IS NULL" 0 20
check "L issued as the daemon" wait_sql "SELECT count(DISTINCT order_id) > 0 FROM coupons WHERE issued_by = 'l'" t 5
eq "chain head advanced" "$(sql "SELECT seq FROM refund_chain_head")" 20
eq "hash chain verifies" "$(sql "SELECT count(*) FROM coupond_refund_verify()")" 0
eq "no permission errors in the lanes' logs" "$(grep -c 'permission denied' "$tmp/l.log" "$tmp/w.log" | awk -F: '{ s += $2 } END { print s }')" 0
eq "the lanes ran as the daemon" "$(sql "SELECT count(*) FROM pg_stat_activity WHERE usename = '$daemon' AND datname = '$db'" | awk '$1 >= 2 { print "yes" }')" yes

# The daemon: only inserts into refund_log, never moves the head itself.
denied "daemon UPDATE refund_log" "$daemon" "UPDATE refund_log SET amount_cents = 1 WHERE seq = 1"
denied "daemon DELETE refund_log" "$daemon" "DELETE FROM refund_log WHERE seq = 1"
denied "daemon TRUNCATE refund_log" "$daemon" "TRUNCATE refund_log CASCADE"
denied "daemon UPDATE refund_chain_head" "$daemon" "UPDATE refund_chain_head SET seq = 0"
denied "daemon DELETE coupons" "$daemon" "DELETE FROM coupons"
denied "daemon writes deals" "$daemon" "UPDATE deals SET price_cents = 1"
denied "daemon UPDATE dlq_actions" "$daemon" "UPDATE dlq_actions SET detail = ''"

# Finance: reads everything, writes nothing.
eq "finance reads refund_log" "$(as "$finance" "SELECT count(*) FROM refund_log")" 20
eq "finance verifies" "$(as "$finance" "SELECT count(*) FROM coupond_refund_verify()")" 0
denied "finance INSERT deals" "$finance" "INSERT INTO deals VALUES (9, 1, 'EUR')"
denied "finance UPDATE payments" "$finance" "UPDATE payments SET attempts = 0"
denied "finance INSERT refund_log" "$finance" "INSERT INTO refund_log (order_id, payment_id, amount_cents, currency, reason) VALUES (1, 'x', 1, 'EUR', 'x')"
denied "finance DELETE dead_letters" "$finance" "DELETE FROM dead_letters"
denied "finance issues" "$finance" "SELECT * FROM coupond_refund(100, 'x')"
fin=(--set "store.conninfo=host=$PGHOST port=$PGPORT dbname=$db user=$finance")
check "finance exports" ctl "${fin[@]}" refunds export --output "$tmp/refunds.csv" 2>/dev/null
eq "exported rows" "$(python3 -c "import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=''))) - 1)" "$tmp/refunds.csv")" 20
check "finance verifies with couponctl" ctl "${fin[@]}" refunds verify >/dev/null
check "finance reconciles" ctl "${fin[@]}" reconcile >/dev/null 2>&1

kill -TERM "$lpid" "$wpid"
for p in "$lpid" "$wpid"; do
    wait "$p"
    eq "SIGTERM exit code" $? 0
done
if ((fail)); then
    echo "--- W log (tail)" >&2
    grep -v ' debug ' "$tmp/w.log" | tail -n 30 >&2
fi
lib_done
