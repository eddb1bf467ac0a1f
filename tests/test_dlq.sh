#!/usr/bin/env bash
# test_dlq.sh: dead letters and operator replay (couponctl dlq) against the
# real servers: letters of an unsupported version dead-lettered by running L
# and W consumers, then replayed once the configuration accepts them (issued,
# refunded past the deadline, handed to W for an inactive deal); replaying
# again changes nothing; --dry-run changes nothing in the store or the queues;
# forged letters refused, then re-signed; --rate; the replay guard; list
# filters and --json; show of JSON and non-JSON bodies; resolve; the audit
# trail and its protection.
# usage: test_dlq.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
setup_store
sets+=(--set lanes.w.delay_ms=1000 --set issue.refund_after_s=60
       --set "issue.retry_delays_ms=[500,1000,2000]" --set issue.sweep_interval_ms=500)
v2=(--set message.max_version=2)
me=$(id -un)
key=$src/.run/secrets/k1.key
llog=$tmp/l.log
wlog=$tmp/w.log
ctl deal set 1 --price-cents 1500 --currency EUR >/dev/null
ctl deal set 2 --price-cents 1500 --currency EUR --inactive >/dev/null

# with_v2: the notifications on stdin, with "v":2 added.
with_v2() { sed 's/}$/,"v":2}/'; }
# paid_ago SECONDS: the notifications on stdin, paid that long ago.
paid_ago() {
    local t
    t=$(date -u -d "@$(($(date +%s) - $1))" +%Y-%m-%dT%H:%M:%S.000Z)
    sed "s/\"paid_at\":\"[^\"]*\"/\"paid_at\":\"$t\"/"
}
# letters REASON BODY...: records dead letters as a lane does, each body
# signed with k1 in its headers.
letters() {
    local reason=$1
    shift
    python3 - "$key" "$reason" "$@" <<'PY' | psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$db" >/dev/null
import hashlib, hmac, json, sys
secret = open(sys.argv[1], "rb").read().rstrip(b"\r\n")
q = lambda s: "'" + s.replace("'", "''") + "'"
for body in sys.argv[3:]:
    sig = "k1:" + hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
    print("SELECT coupond_dead_letter('l', %s, 'recorded by the test', %s, convert_to(%s, 'UTF8'));"
          % (q(sys.argv[2]), q(json.dumps({"headers": {"signature": sig}})), q(body)))
PY
}
ids_of() { sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM dead_letters WHERE $1"; }
store_state() { # everything a replay could change in the store
    sql "SELECT md5(coalesce((SELECT string_agg(d::text, '|' ORDER BY id) FROM dead_letters d), '') ||
                    coalesce((SELECT string_agg(a::text, '|' ORDER BY id) FROM dlq_actions a), '') ||
                    coalesce((SELECT string_agg(p::text, '|' ORDER BY order_id) FROM payments p), '') ||
                    coalesce((SELECT string_agg(c::text, '|' ORDER BY code) FROM coupons c), '') ||
                    coalesce((SELECT string_agg(r::text, '|' ORDER BY seq) FROM refund_log r), '') ||
                    coalesce((SELECT string_agg(o::text, '|' ORDER BY id) FROM refund_outbox o), ''))"
}
queues() { # this run's queues and their depths
    $COUPOND_RABBITMQCTL list_queues -q name messages 2>/dev/null | awk -v r="$run." 'index($1, r) == 1' | sort
}
stop_consumers() {
    for p in "$@"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
}

# 1. Letters of an unsupported version, dead-lettered by both lanes: 20 for an
# active deal (A), 5 for an inactive deal (B), 5 paid two hours ago (C).
start_coupond l "$llog"
lpid=$coupond_pid
start_coupond w "$wlog"
wpid=$coupond_pid
notes 0 20 | with_v2 >"$tmp/a"
notes 20 25 2 | with_v2 >"$tmp/b"
notes 25 30 | with_v2 | paid_ago 7200 >"$tmp/c"
cat "$tmp/a" "$tmp/b" "$tmp/c" | ctl "${v2[@]}" publish - >/dev/null 2>&1
check "v2 dead-lettered by both lanes" wait_sql "SELECT count(*) FROM dead_letters WHERE reason = 'unsupported_version' AND seen_count = 2" 30 30
eq "no payment from them" "$(sql "SELECT count(*) FROM payments")" 0
eq "lanes' detail" "$(sql "SELECT DISTINCT detail FROM dead_letters")" "v: version 2 not supported (accepting 1 to 1)"
# Forged: a valid body under a wrong signature (D1), and one without any (D2).
forged=$(notes 30 31)
kraw "$forged" "signature=k1:$(printf '0%.0s' $(seq 64))"
kraw "$(notes 31 32)"
check "forged letters dead-lettered" wait_sql "SELECT count(*) FROM dead_letters WHERE reason IN ('bad_signature', 'missing_signature')" 2 30
stop_consumers "$lpid" "$wpid"
A=$(sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM dead_letters WHERE encode(body, 'escape') ~ '\"payment_id\":\"$run-([0-9]|1[0-9])\"'")
D1=$(ids_of "reason = 'bad_signature'")
D2=$(ids_of "reason = 'missing_signature'")
eq "A letters" "$(wc -w <<<"$A")" 20

# 2. list: filters, a table, --json.
eq "list --reason --json" "$(ctl dlq list --reason unsupported_version --json | wc -l)" 30
eq "list --lane w" "$(ctl dlq list --lane w --json | wc -l)" 30
eq "list --lane l" "$(ctl dlq list --lane l --json | wc -l)" 32
eq "both lanes recorded" "$(sql "SELECT count(*) FROM dead_letters WHERE lanes @> '{l,w}'")" 30
eq "the first lane stays" "$(sql "SELECT count(*) FROM dead_letters WHERE lane <> lanes[1]")" 0
eq "list --json is JSON" "$(ctl --json dlq list --reason bad_signature | python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); print(o["reason"], o["lane"], o["state"], o["order_id"] is not None)')" "bad_signature l open True"
eq "list --unresolved" "$(ctl dlq list --unresolved --json | wc -l)" 32
eq "list --since 1h" "$(ctl dlq list --since 1h --json | wc -l)" 32
eq "list --since the future" "$(ctl dlq list --since 2099-01-01 --json 2>/dev/null | wc -l)" 0
eq "list --limit" "$(ctl dlq list --limit 5 --json 2>/dev/null | wc -l)" 5
ctl dlq list --limit 5 >"$tmp/table" 2>"$tmp/table.err"
check "list: a table with a header" grep -q '^ID  *LAST SEEN  *LANE  *REASON  *SEEN  *REPLAYS  *STATE  *ORDER  *DETAIL' "$tmp/table"
check "list: says it is cut" grep -q 'showing 5 of 32' "$tmp/table.err"
ctl dlq list --reason no_such_reason >/dev/null 2>&1
eq "list: unknown reason is a usage error" $? 2
ctl dlq list --since yesterday >/dev/null 2>&1
eq "list: bad --since is a usage error" $? 2

# 3. --dry-run leaves the store and the queues untouched.
before_store=$(store_state)
before_queues=$(queues)
ctl "${v2[@]}" dlq replay --reason unsupported_version --dry-run >"$tmp/dry" 2>"$tmp/dry.err"
eq "dry run exit code" $? 0
eq "dry run: would issue A" "$(grep -c ': dry run: issued (order' "$tmp/dry")" 20
eq "dry run: would hand B to W" "$(grep -c ': dry run: handed_to_w' "$tmp/dry")" 5
eq "dry run: would refund C" "$(grep -c ': dry run: refunded.*deadline: no coupons 60 s' "$tmp/dry")" 5
ctl "${v2[@]}" dlq replay $D1 --resign k1 --dry-run >/dev/null 2>&1
ctl dlq replay $D1 $D2 --dry-run >/dev/null 2>&1
check "dry run: summary" grep -q 'nothing changed' "$tmp/dry.err"
eq "dry run: store untouched" "$(store_state)" "$before_store"
eq "dry run: queues untouched" "$(queues)" "$before_queues"

# 4. The configuration accepts version 2 (the W lane's too): replay by reason.
start_coupond w "$wlog" "${v2[@]}"
wpid=$coupond_pid
ctl "${v2[@]}" dlq replay --reason unsupported_version >"$tmp/replay" 2>"$tmp/replay.err"
eq "replay exit code" $? 0
cat "$tmp/replay.err" >&2
eq "A issued by the replay" "$(sql "SELECT count(*) FROM payments p WHERE state = 'issued' AND (SELECT count(*) FROM coupons c WHERE c.order_id = p.order_id AND issued_by = 'replay') = 2")" 20
eq "C past the deadline: refunded, not issued" "$(sql "SELECT count(*) FROM payments p JOIN refund_log r USING (order_id) WHERE p.state = 'refunded' AND r.reason = 'deadline: no coupons 60 s after payment' AND NOT EXISTS (SELECT 1 FROM coupons c WHERE c.order_id = p.order_id)")" 5
eq "B handed to W, pending" "$(sql "SELECT count(*) FROM payments WHERE deal_id = 2 AND state = 'pending'")" 5
eq "letters closed with their outcome" "$(sql "SELECT string_agg(resolution || '=' || n, ',' ORDER BY resolution) FROM (SELECT resolution, count(*) n FROM dead_letters WHERE reason = 'unsupported_version' AND resolved_at IS NOT NULL AND replay_count = 1 GROUP BY 1) x")" "handed_to_w=5,issued=20,refunded=5"
check "summary" grep -q '30 letters: 30 replayed (20 issued, 5 refunded, 0 duplicate, 5 handed to W), 0 still invalid, 0 refused, 0 failed' "$tmp/replay.err"
ctl deal set 2 --price-cents 1500 --currency EUR >/dev/null
check "W issues B once the deal is active" wait_sql "SELECT count(*) FROM payments p WHERE deal_id = 2 AND state = 'issued' AND EXISTS (SELECT 1 FROM coupons c WHERE c.order_id = p.order_id AND issued_by = 'w')" 5 20
eq "W did not dead-letter B again" "$(sql "SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL AND reason = 'unsupported_version'")" 0

# 5. Replaying them again changes nothing.
after=$(store_state)
ctl "${v2[@]}" dlq replay --reason unsupported_version >"$tmp/again" 2>&1
eq "again by reason: exit code" $? 0
check "again by reason: none open" grep -q 'no open dead letters match' "$tmp/again"
eq "again by reason: store unchanged" "$(store_state)" "$after"
coupons=$(sql "SELECT md5(string_agg(code || order_id || issued_by, ',' ORDER BY code)) FROM coupons")
payments=$(sql "SELECT md5(string_agg(order_id || state, ',' ORDER BY order_id)) FROM payments")
refunds=$(sql "SELECT count(*) FROM refund_log")
ctl "${v2[@]}" dlq replay $A >"$tmp/again-ids" 2>&1
eq "again by id: exit code" $? 0
eq "again by id: duplicates" "$(grep -c 'duplicate (order.*order already issued: nothing changed' "$tmp/again-ids")" 20
eq "again by id: coupons unchanged" "$(sql "SELECT md5(string_agg(code || order_id || issued_by, ',' ORDER BY code)) FROM coupons")" "$coupons"
eq "again by id: payments unchanged" "$(sql "SELECT md5(string_agg(order_id || state, ',' ORDER BY order_id)) FROM payments")" "$payments"
eq "again by id: no refund" "$(sql "SELECT count(*) FROM refund_log")" "$refunds"

# 6. A forged letter is refused by a plain replay, and recorded as refused.
ctl dlq replay "$D1" >"$tmp/forged" 2>&1
eq "forged: exit code" $? 1
check "forged: refused" grep -q "letter $D1: refused (order .*): bad_signature: .*--resign KEY_ID" "$tmp/forged"
eq "forged: recorded as refused" "$(sql "SELECT action || ' ' || result || ' ' || os_user || ' ' || resigned FROM dlq_actions WHERE letter_id = $D1")" "replay refused $me false"
eq "forged: still open, not counted as replayed" "$(sql "SELECT resolved_at IS NULL AND replay_count = 0 FROM dead_letters WHERE id = $D1")" t
eq "forged: no payment" "$(sql "SELECT count(*) FROM payments WHERE payment_id = '$run-30'")" 0
ctl dlq replay --reason bad_signature --resign k1 >/dev/null 2>&1
eq "--resign needs ids" $? 2
ctl dlq replay "$D1" --resign k9 >/dev/null 2>&1
eq "--resign needs a configured key" $? 2
ctl dlq replay "$D1" --resign k1 >"$tmp/resigned" 2>&1
eq "re-signed: exit code" $? 0
check "re-signed: issued" grep -q "letter $D1: issued (order .*): re-signed with key k1 (was bad_signature" "$tmp/resigned"
eq "re-signed: flagged in the audit trail" "$(sql "SELECT result || ' ' || resigned FROM dlq_actions WHERE letter_id = $D1 ORDER BY id DESC LIMIT 1")" "issued true"
eq "re-signed: payment issued" "$(sql "SELECT state FROM payments WHERE payment_id = '$run-30'")" issued

# 7. resolve: closes without replay, with a note; recorded.
ctl dlq resolve "$D2" >/dev/null 2>&1
eq "resolve needs --note" $? 2
ctl dlq resolve "$D2" --note "forged: reported to security" >"$tmp/resolve" 2>&1
eq "resolve: exit code" $? 0
eq "resolve: closed" "$(sql "SELECT resolution || '|' || resolved_by || '|' || resolution_note FROM dead_letters WHERE id = $D2")" "resolved|$me|forged: reported to security"
eq "resolve: recorded" "$(sql "SELECT action || ' ' || result || ' ' || os_user || ' ' || detail FROM dlq_actions WHERE letter_id = $D2")" "resolve resolved $me forged: reported to security"
ctl dlq resolve "$D2" --note again >/dev/null 2>&1
eq "resolve twice: exit code" $? 1
ctl dlq resolve 999999 --note x >/dev/null 2>&1
eq "resolve unknown: exit code" $? 1
# A closed letter that comes back is open again, its resolution gone.
sql "SELECT seen_count FROM coupond_dead_letter('l', 'missing_signature', 'again', '{}', (SELECT body FROM dead_letters WHERE id = $D2))" >/dev/null
eq "reopened" "$(sql "SELECT resolved_at IS NULL AND resolution IS NULL AND resolved_by IS NULL AND seen_count = 2 FROM dead_letters WHERE id = $D2")" t

# 8. show: a JSON body re-indented, a non-JSON body shown safely, --raw, --json.
ctl dlq show "$D1" >"$tmp/show" 2>&1
eq "show: exit code" $? 0
check "show: headers" grep -q '^  signature: k1:0000' "$tmp/show"
check "show: body re-indented" grep -q "^    \"payment_id\": \"$run-30\",$" "$tmp/show"
check "show: history" grep -q "  replay  refused: bad_signature" "$tmp/show"
check "show: re-signed in history" grep -q "  replay  issued (re-signed): re-signed with key k1" "$tmp/show"
ugly=$(sql "SELECT id FROM coupond_dead_letter('w', 'not_utf8', 'invalid UTF-8 at byte 9 (0xff)', '{\"headers\":{\"x-evil\":\"a\u001b[2Jb\"}}', '\x1b5b33316d68656c6c6fff0a0077c3a9726c64e280ae'::bytea)")
ctl dlq show "$ugly" >"$tmp/ugly" 2>&1
eq "show non-JSON: exit code" $? 0
check "show non-JSON: no escape byte reaches the terminal" python3 -c "import sys; sys.exit(b'\x1b' in open('$tmp/ugly', 'rb').read())"
check "show non-JSON: bytes escaped" grep -qF '\x1b[31mhello\xff' "$tmp/ugly"
check "show non-JSON: NUL and direction override escaped, UTF-8 kept" grep -qF '\x00wérld\xe2\x80\xae' "$tmp/ugly"
check "show non-JSON: header escaped" grep -qF 'x-evil: a\x1b[2Jb' "$tmp/ugly"
ctl dlq show "$ugly" --raw >"$tmp/raw"
eq "show --raw: exact bytes" "$(od -An -tx1 "$tmp/raw" | tr -d ' \n')" "1b5b33316d68656c6c6fff0a0077c3a9726c64e280ae"
eq "show --json: body_base64" "$(ctl dlq show "$ugly" --json | python3 -c 'import json,sys,base64; o=json.load(sys.stdin); print(base64.b64decode(o["body_base64"]).hex(), o["body"])')" "1b5b33316d68656c6c6fff0a0077c3a9726c64e280ae None"
ctl dlq show 999999 >/dev/null 2>&1
eq "show unknown: exit code" $? 1

# 9. --rate 100 over 300 letters takes at least ~3 s (2.99 s of pacing).
letters malformed_json $(for i in $(seq 1 300); do printf '{"payment_id":"r%d" ' "$i"; done)
eq "rate: 300 letters" "$(sql "SELECT count(*) FROM dead_letters WHERE reason = 'malformed_json'")" 300
t0=$(date +%s.%N)
ctl dlq replay --reason malformed_json --rate 100 >"$tmp/rate" 2>"$tmp/rate.err"
rc=$?
t1=$(date +%s.%N)
eq "rate: exit code (still invalid)" $rc 1
elapsed=$(python3 -c "print(round($t1 - $t0, 2))")
echo "dlq replay --rate 100 over 300 letters: $elapsed s"
check "rate: at least 2.7 s" python3 -c "import sys; sys.exit(0 if $elapsed >= 2.7 else 1)"
check "rate: summary" grep -q '300 letters: 0 replayed .* 300 still invalid' "$tmp/rate.err"
eq "rate: each replayed once, still open" "$(sql "SELECT count(*) FROM dead_letters WHERE reason = 'malformed_json' AND replay_count = 1 AND resolved_at IS NULL AND last_replay_at IS NOT NULL")" 300
eq "rate: each recorded" "$(sql "SELECT count(*) FROM dlq_actions a JOIN dead_letters d ON d.id = a.letter_id WHERE d.reason = 'malformed_json' AND a.result = 'invalid'")" 300

# Replays by filter read the letters a page (500) at a time.
letters malformed_json $(for i in $(seq 301 600); do printf '{"payment_id":"r%d" ' "$i"; done)
eq "pages: all of them" "$(ctl dlq replay --reason malformed_json --dry-run --json 2>/dev/null | sort -u | wc -l)" 600
eq "pages: --limit across pages" "$(ctl dlq replay --reason malformed_json --limit 550 --dry-run --json 2>/dev/null | sort -u | wc -l)" 550

# 10. The guard: a letter replayed dlq.max_replays times is refused without --force.
one=$(sql "SELECT min(id) FROM dead_letters WHERE reason = 'malformed_json'")
ctl --set dlq.max_replays=1 dlq replay "$one" >"$tmp/guard" 2>&1
eq "guard: exit code" $? 1
check "guard: refused" grep -q "refused: replayed 1 times already (dlq.max_replays = 1): --force" "$tmp/guard"
eq "guard: not replayed" "$(sql "SELECT replay_count FROM dead_letters WHERE id = $one")" 1
ctl --set dlq.max_replays=1 dlq replay "$one" --force >/dev/null 2>&1
eq "guard: --force replays" "$(sql "SELECT replay_count FROM dead_letters WHERE id = $one")" 2
# A letter invalid for another reason now gets that reason.
letters malformed_json '{"payment_id":"x"}'
ctl dlq replay --reason malformed_json --limit 700 >/dev/null 2>&1
eq "new reason recorded" "$(sql "SELECT reason || ': ' || detail FROM dead_letters WHERE body = convert_to('{\"payment_id\":\"x\"}', 'UTF8')")" "invalid_order_id: order_id: missing"

# 11. The audit trail lists each action with user, time and result.
actions=$(sql "SELECT count(*) FROM dlq_actions")
ctl dlq audit --limit 0 --json >"$tmp/audit.json"
eq "audit: every action" "$(wc -l <"$tmp/audit.json")" "$actions"
eq "audit: user, time and result on each" "$(python3 - "$tmp/audit.json" "$me" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ok = all(r["os_user"] == sys.argv[2] and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["at"])
         and r["result"] in ("issued", "refunded", "duplicate", "handed_to_w", "invalid", "refused", "resolved")
         and r["action"] in ("replay", "resolve") for r in rows)
print(ok, sorted({r["result"] for r in rows}))
PY
)" "True ['duplicate', 'handed_to_w', 'invalid', 'issued', 'refunded', 'refused', 'resolved']"
ctl dlq audit --letter "$D1" >"$tmp/audit"
check "audit: a table" grep -q '^AT  *USER  *HOST  *ACTION  *LETTER  *ORDER  *RESULT  *FLAGS  *DETAIL' "$tmp/audit"
check "audit: the re-signed replay flagged" grep -q "$me .* replay  *$D1 .* issued  *re-signed" "$tmp/audit"
eq "audit: dry runs record nothing" "$(sql "SELECT count(*) FROM dlq_actions WHERE detail LIKE '%dry%'")" 0
psql -X -q -d "$db" -c "UPDATE dlq_actions SET result = 'issued'" >/dev/null 2>&1
eq "audit trail: no update" $? 1
psql -X -q -d "$db" -c "DELETE FROM dlq_actions" >/dev/null 2>&1
eq "audit trail: no delete" $? 1
eq "audit trail: intact" "$(sql "SELECT count(*) FROM dlq_actions")" "$actions"

# 12. Exit codes: usage and an unreachable store.
ctl dlq replay >/dev/null 2>&1
eq "replay without a selection: usage" $? 2
ctl dlq replay 1 --reason malformed_json >/dev/null 2>&1
eq "replay ids and filters: usage" $? 2
"$build/couponctl" "${sets[@]}" --set "store.conninfo=host=127.0.0.1 port=1 dbname=x user=x" dlq list >/dev/null 2>&1
eq "store unavailable: exit code" $? 3

stop_consumers "$wpid"
if ((fail)); then
    echo "--- W log (tail)" >&2
    grep -v ' debug ' "$wlog" | tail -n 20 >&2
fi
lib_done
