# lib.sh: helpers for coupond's shell integration tests (sourced).
# Each test gets its own database, topic, group and queues, named after the
# run, so tests never see each other's data. Needs the local services.
#   source lib.sh BUILD_DIR SOURCE_DIR
build=${1:?build dir}
src=${2:?source dir}
services=$src/deploy/local/services.sh
[[ -n ${COUPOND_KAFKA_CONTROL:-} ]] || eval "$("$services" env)"
pass=0 fail=0
run=t$$x$(date +%s)
db=coupond_$run
tmp=$(mktemp -d)
pids=()

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { # check NAME COMMAND...: passes when the command succeeds
    local name=$1
    shift
    if "$@"; then ok; else bad "$name"; fi
}
eq() { # eq NAME GOT WANT
    if [[ "$2" == "$3" ]]; then ok; else bad "$1: got '$2', want '$3'"; fi
}
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

# The settings every program of this run uses: its own store, topic, queues, and the
# services' ports (services.sh may run on other ports than the configuration's defaults).
amqp_port=${COUPOND_AMQP_URL##*:}
amqp_port=${amqp_port%%/*}
sets=(--set "store.conninfo=host=$PGHOST port=$PGPORT dbname=$db user=$PGUSER"
      --set "lanes.l.amqp.url=amqp://coupond@127.0.0.1:$amqp_port/%2f"
      --set "lanes.w.amqp.url=amqp://coupond@127.0.0.1:$amqp_port/%2f"
      --set "lanes.l.kafka.topic=$run.l" --set "lanes.l.kafka.group=$run-l"
      --set "lanes.l.kafka.session_timeout_ms=6000"
      --set "lanes.l.amqp.queue=$run.l" --set "lanes.w.amqp.queue=$run.w.work"
      --set "lanes.w.amqp.delay_queue=$run.w.delay" --set "lanes.w.amqp.refunds_queue=$run.refunds"
      --set "metrics.listen=")
ctl() { "$build/couponctl" "${sets[@]}" "$@"; }

setup_store() {
    createdb "$db" || { echo "cannot create database $db" >&2; exit 1; }
    ctl db migrate >/dev/null || { echo "cannot migrate $db" >&2; exit 1; }
}

# start_coupond ROLE LOG [EXTRA_ARGS...]: starts a consumer in the background.
start_coupond() {
    local role=$1 log=$2
    shift 2
    "$build/coupond" "${sets[@]}" --set log.format=text "$@" --role "$role" >>"$log" 2>&1 &
    coupond_pid=$!
    pids+=("$coupond_pid")
}

# wait_sql QUERY WANT SECONDS: polls until the query prints WANT.
wait_sql() {
    local got i
    for ((i = 0; i < $3 * 10; i++)); do
        got=$(sql "$1" 2>/dev/null)
        [[ "$got" == "$2" ]] && return 0
        sleep 0.1
    done
    echo "wait_sql: '$1' is '$got', want '$2'" >&2
    return 1
}

# queue_depth NAME: messages ready in a RabbitMQ queue.
queue_depth() {
    $COUPOND_RABBITMQCTL list_queues -q name messages_ready 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}

# wait_stable QUERY STABLE_S MAX_S: polls until the query's value stops
# changing for STABLE_S seconds; prints the value.
wait_stable() {
    local last="" got same=0 i
    for ((i = 0; i < $3 * 10; i++)); do
        got=$(sql "$1" 2>/dev/null)
        if [[ "$got" == "$last" ]]; then
            ((++same >= $2 * 10)) && break
        else
            same=0
            last=$got
        fi
        sleep 0.1
    done
    echo "$got"
}

# notes FROM TO [DEAL] [QUANTITY] [AMOUNT]: valid notifications, one per
# line, paid now.
notes() {
    python3 - "$run" "$1" "$2" "${3:-1}" "${4:-2}" "${5:-3000}" <<'PY'
import sys, datetime
run, a, b, deal, qty, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
out = []
for i in range(a, b):
    user = 1000 + i
    order = (i + 1) * 100 + user % 100  # order ids embed the user's shard
    out.append('{"payment_id":"%s-%d","order_id":%d,"user_id":%d,"deal_id":%d,"quantity":%d,'
               '"amount_cents":%d,"currency":"EUR","paid_at":"%s"}'
               % (run, i, order, user, deal, qty, amount, now))
sys.stdout.write("\n".join(out) + "\n")
PY
}

# sign KEYFILE BODY: the signature header value for BODY under k1's secret file.
sign() { printf '%s' "$2" | openssl dgst -sha256 -hmac "$(cat "$1")" -r | cut -d' ' -f1; }

# kraw BODY [HEADER...]: produces one raw message to the L topic (no checks).
kraw() {
    local body=$1
    shift
    local hdrs=()
    for h in "$@"; do hdrs+=(-H "$h"); done
    printf '%s' "$body" | kcat -P -b "$COUPOND_KAFKA_BROKERS" -t "$run.l" -k 1 "${hdrs[@]}" 2>/dev/null
}

lib_cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [[ -n ${COUPOND_TEST_KEEP:-} ]]; then # for a post-mortem
        echo "kept: database $db, queues $run.*, files in $tmp" >&2
        return
    fi
    $COUPOND_RABBITMQCTL list_queues -q name 2>/dev/null | grep "^$run\." | while read -r q; do
        $COUPOND_RABBITMQCTL delete_queue "$q" </dev/null >/dev/null 2>&1  # it reads stdin: not the list
    done
    dropdb --if-exists "$db" 2>/dev/null
    rm -rf "$tmp"
}

lib_done() {
    echo "$(basename "$0" .sh): $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
