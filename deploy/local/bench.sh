#!/usr/bin/env bash
# bench.sh: runs coupond's benchmarks on this machine against the local services.
#
# Usage: deploy/local/bench.sh BENCHMARK [ARGS...]
#   publish [-n N] [-r ROUNDS] [-b BATCH] [-m LIST]
#            N notifications (default 100000) through pub_send to both lanes, beside the raw
#            ceiling of each broker measured in the same run (bare librdkafka producer, bare
#            rabbitmq-c publisher with confirms); ROUNDS rounds (default 3), median reported.
#            `publish -h` explains every option. Results and their meaning: docs/benchmarks.md.
#   lane-l [-n N] [-r RATE] [-T SECONDS]
#            the L lane end to end: N notifications (default 100000) pre-published, then
#            coupond --role l issues them (payments/s, peak RSS), beside the store's own
#            ceiling for the same rows (store_issue_batch, same batches); then latency from
#            publish to issued at RATE payments/s offered (default 5000) for SECONDS (20).
#   lane-w [-n N]
#            the W lane: N notifications (default 20000) issued by W alone and checked by W
#            when already issued, beside bare rabbitmq-c consume-and-ack ceilings (messages
#            published straight in, and dead-lettered as in the W work queue); refund
#            punctuality (2000 refunds, deadline 10 s).
#   export [-n N]
#            couponctl refunds export of N refunds (default 1000000, written by
#            tests/bench/bulk_refunds.sql with a valid chain) to a CSV file, and refunds verify:
#            wall time and peak RSS of couponctl (GNU time), against a 32 MiB target.
#
# Each benchmark: installs missing packages (deps.sh), builds a Release tree, starts the local
# services (services.sh up; idempotent, and left running), loads their environment, then runs.
# Benchmarks report ratios against ceilings measured in the same run, never absolute targets.
#
# Environment: COUPOND_BENCH_BUILD_DIR (default <repo>/build-release); COUPOND_RUN_DIR and
# COUPOND_BUILD_DIR are passed on to services.sh. COUPOND_BENCH_COUPOND: the coupond binary the
# lane benchmarks measure (default the Release build's), for A/B runs of a prototype built
# elsewhere; everything else (ceilings, publishers) stays this tree's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${COUPOND_BENCH_BUILD_DIR:-$REPO/build-release}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD

usage() {
    sed -n '4,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&"${2:-2}"
    exit "$1"
}

log() { printf 'bench: %s\n' "$*" >&2; }

# build TARGET...: a Release build of the targets (its log stays in the build tree).
build() {
    mkdir -p "$BUILD"
    log "building $* (Release) in $BUILD"
    if ! { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$BUILD" -j"$(nproc)" --target "$@"; } >"$BUILD/bench-build.log" 2>&1; then
        log "error: the build failed; the end of $BUILD/bench-build.log:"
        tail -n 30 "$BUILD/bench-build.log" >&2
        exit 2
    fi
}

# prepare TARGET...: dependencies, the Release build, the services and their environment.
prepare() {
    "$HERE/deps.sh"
    build "$@"
    "$HERE/services.sh" up
    eval "$("$HERE/services.sh" env)"
}

# The machine the numbers belong to, for docs/benchmarks.md.
machine() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    log "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nproc) CPUs (${cpu:-unknown model}), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

bench_publish() {
    local arg
    for arg in "$@"; do
        if [[ $arg == -h || $arg == --help ]]; then
            build bench_publish
            exec "$BUILD/tests/bench/bench_publish" -h
        fi
    done
    prepare bench_publish
    machine
    exec "$BUILD/tests/bench/bench_publish" "$@"
}

# ---------------------------------------------------------------- lane benchmarks: helpers
# Each run names its own databases, topic, consumer group and queues after the run (like
# tests/lib.sh) and removes them on exit; the coupond database and the default topic and
# queues are never touched. Only processes this script started are stopped, by their id.

lane_init() { # lane_init TAG: names, a scratch directory, the clean-up trap
    run=b$1$$x$(date +%s)
    tmp=$(mktemp -d)
    dbs=()
    pids=()
    trap lane_cleanup EXIT
    trap 'exit 130' INT TERM
    sets=(--set "lanes.l.kafka.topic=$run.l" --set "lanes.l.kafka.group=$run-l"
          --set "lanes.l.amqp.queue=$run.l"
          --set "lanes.w.amqp.queue=$run.w.work" --set "lanes.w.amqp.delay_queue=$run.w.delay"
          --set "lanes.w.amqp.refunds_queue=$run.refunds"
          --set "metrics.listen=" --set log.format=text)
    CLK_TCK=$(getconf CLK_TCK)
    if [[ -n ${COUPOND_BENCH_COUPOND:-} ]]; then
        log "measuring the coupond binary $COUPOND_BENCH_COUPOND (COUPOND_BENCH_COUPOND)"
    fi
}

lane_cleanup() {
    local rc=$? p q d f
    set +e
    if ((rc != 0)); then
        for f in "$tmp"/*.log; do
            [[ -s $f ]] || continue
            log "the end of the consumer log $(basename "$f"):"
            tail -n 15 "$f" | sed 's/^/    /' >&2
        done
    fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in {1..50}; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
    # The queues this run declared (retry tiers are named after their work queue).
    for q in $($COUPOND_RABBITMQCTL list_queues -q name 2>/dev/null | grep "^$run\."); do
        $COUPOND_RABBITMQCTL delete_queue "$q" >/dev/null 2>&1
    done
    for d in "${dbs[@]}"; do dropdb --if-exists "$d" 2>/dev/null; done
    rm -rf "$tmp"
}

conninfo() { echo "store.conninfo=host=$PGHOST port=$PGPORT dbname=$1 user=$PGUSER"; }
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
ctl() { "$BUILD/couponctl" "${sets[@]}" "$@"; }

# new_db NAME: a migrated scratch store with deals 1..50 (1990 EUR, active) and deal 100
# (inactive, for refunds).
new_db() {
    createdb "$1"
    dbs+=("$1")
    ctl --set "$(conninfo "$1")" db migrate >/dev/null
    sql "$1" "INSERT INTO deals (deal_id, price_cents, currency, active)
              SELECT g, 1990, 'EUR', true FROM generate_series(1, 50) g
              UNION ALL SELECT 100, 1990, 'EUR', false" >/dev/null
}

# start_coupond ROLE DB LOG [ARGS...]: a Release consumer in the background; sets $cpid.
start_coupond() {
    local role=$1 db=$2 log=$3
    shift 3
    "${COUPOND_BENCH_COUPOND:-$BUILD/coupond}" "${sets[@]}" --set "$(conninfo "$db")" "$@" \
        --role "$role" >>"$log" 2>&1 &
    cpid=$!
    pids+=("$cpid")
}

stop_coupond() { # stop_coupond PID: SIGTERM, then wait for it (and forget its id)
    local p keep=()
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# wait_sql DB QUERY WANT SECONDS: polls every 0.5 s until the query prints WANT.
wait_sql() {
    local got="" deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        got=$(sql "$1" "$2" 2>/dev/null || true)
        [[ $got == "$3" ]] && return 0
        sleep 0.5
    done
    log "error: gave up after $4 s: '$2' is '$got', want '$3'"
    return 1
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
pg_backend() { sql "$1" "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND application_name = 'coupond' LIMIT 1"; }

# rate DB PREFIX: "count|first-to-last seconds|payments/s" of the payments whose payment_id
# starts with PREFIX, by payments.created_at (the start of each order's issuing transaction).
rate() {
    sql "$1" "SELECT count(*), round(extract(epoch FROM max(created_at) - min(created_at))::numeric, 3),
                     round((count(*) - 1) / nullif(extract(epoch FROM max(created_at) - min(created_at)), 0))
              FROM payments WHERE payment_id LIKE '$2-%'"
}

# latency DB PREFIX: "count|p50 ms|p99 ms|max ms" of created_at - paid_at.
latency() {
    sql "$1" "SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                     round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
                     round(max(ms)::numeric, 1)
              FROM (SELECT extract(epoch FROM created_at - paid_at) * 1000 AS ms
                    FROM payments WHERE payment_id LIKE '$2-%') x"
}

delete_queues() { # delete_queues NAME...: outside any measurement (rabbitmqctl is slow)
    local q
    for q in "$@"; do $COUPOND_RABBITMQCTL delete_queue "$q" >/dev/null 2>&1 || true; done
}

# publish FILE LABEL [ARGS...]: couponctl publish; prints its summary; fails unless every
# notification was accepted by both lanes.
publish() {
    local file=$1 label=$2 summary
    shift 2
    ctl "$@" publish "$file" >"$tmp/publish.out" 2>"$tmp/publish.err" || true
    summary=$(grep '^publish:' "$tmp/publish.err" || true)
    log "$label: ${summary#publish: }"
    if [[ $summary != *" $(grep -c . "$file") accepted by both lanes"* ]]; then
        log "error: not every notification was accepted by both lanes"
        tail -n 5 "$tmp/publish.err" >&2
        exit 1
    fi
}

lane_args() { # lane_args DEFAULT_N ARGS...: parses -n N [-r RATE] [-T SECONDS]
    n=$1 rate=5000 secs=20
    shift
    while (($#)); do
        case $1 in
        -n) n=${2:?-n needs a number}; shift 2 ;;
        -r) rate=${2:?-r needs a rate}; shift 2 ;;
        -T) secs=${2:?-T needs seconds}; shift 2 ;;
        -h | --help) usage 0 1 ;;
        *) log "unknown option '$1'"; usage 2 ;;
        esac
    done
    [[ $n =~ ^[1-9][0-9]*$ && $rate =~ ^[1-9][0-9]*$ && $secs =~ ^[1-9][0-9]*$ ]] ||
        { log "-n, -r and -T take positive integers"; exit 2; }
}

# ---------------------------------------------------------------- lane-l
bench_lane_l() {
    local l_db s_db topic start parts notes batch log t0 el b0 rss_now pgpid pg0 hwm1 hwm2 cpu_c cpu_pg busy span
    local thr ceil lat1 lat2 half load1 load2 ceiling_out got
    lane_args 100000 "$@"
    prepare coupond couponctl bench_store bench_load
    machine
    lane_init l
    l_db=coupond_${run}_l
    s_db=coupond_${run}_s
    log=$tmp/l.log
    batch=$("$BUILD/couponctl" config get issue.batch_size)
    new_db "$l_db"
    new_db "$s_db"
    # The local Kafka host keeps about 5 MB per partition in memory and cannot delete topics:
    # runs share one topic of 20 partitions (room for about 250,000 notifications), and this
    # run's consumer group starts at its end. A larger N gets a topic of its own, left behind.
    topic=coupond.bench.lane-l
    parts=20
    if ((n > 200000)); then
        topic=$run.l
        parts=$(((n + 9999) / 10000))
    fi
    "$COUPOND_KAFKAHOST" --ctl "$COUPOND_KAFKA_CONTROL" topic "$topic" "$parts" >/dev/null 2>&1 || true
    sets+=(--set "lanes.l.kafka.topic=$topic")
    start=$("$BUILD/tests/bench/bench_load" "${sets[@]}" -E) || { log "error: cannot use topic $topic"; exit 3; }
    log "${start#bench_load: }"
    notes=$tmp/notes.jsonl
    "$BUILD/tests/bench/bench_load" -g "$n" -P "$run" >"$notes"
    log "lane-l: run $run, $n notifications, topic $topic, batches of $batch"

    # 1. Pre-publish N; W's queues (delay 10 min, so nothing moves) are deleted at once.
    publish "$notes" "pre-publish" --set lanes.w.delay_ms=600000
    delete_queues "$run.w.delay" "$run.w.work"

    # 2. The L lane drains them: first issued to N-th issued.
    start_coupond l "$l_db" "$log"
    b0=$(busy_ticks)
    t0=$SECONDS
    for _ in {1..100}; do pgpid=$(pg_backend "$l_db"); [[ -n $pgpid ]] && break; sleep 0.1; done
    pg0=$(cpu_ticks "$pgpid")
    wait_sql "$l_db" "SELECT count(*) FROM payments WHERE state = 'issued'" "$n" $((120 + n / 200)) || exit 1
    cpu_c=$(cpu_ticks "$cpid")
    cpu_pg=$(($(cpu_ticks "$pgpid") - pg0))
    busy=$(($(busy_ticks) - b0))
    hwm1=$(hwm_kib "$cpid")
    el=$((SECONDS - t0))
    ((el > 0)) || el=1
    thr=$(rate "$l_db" "$run")
    span=$(cut -d'|' -f2 <<<"$thr")
    log "L lane: $n issued in $span s (first to last): $(cut -d'|' -f3 <<<"$thr") payments/s; peak RSS $((hwm1 / 1024)) MiB"
    log "  CPU per payment: coupond $((1000000 * cpu_c / CLK_TCK / n)) us, its PostgreSQL backend $((1000000 * cpu_pg / CLK_TCK / n)) us, the whole machine $((1000000 * busy / CLK_TCK / n)) us (over the ${el} s phase the machine was $((100 * busy / CLK_TCK / (el * $(nproc))))% busy)"

    # 3. Latency at a fixed offered load, same consumer, same topic: publish call to issued.
    "$BUILD/tests/bench/bench_load" "${sets[@]}" --set lanes.w.delay_ms=600000 \
        -R "$rate" -T "$secs" -P "${run}a" -O 3000000 >"$tmp/load1.out" || true
    load1=$(head -n 1 "$tmp/load1.out")
    log "load: ${load1#bench_load: }"
    got=$(grep -o 'accepted by L [0-9]*' <<<"$load1" | cut -d' ' -f4)
    [[ -n $got ]] || { log "error: the load run failed"; cat "$tmp/load1.out" >&2; exit 1; }
    wait_sql "$l_db" "SELECT count(*) FROM payments WHERE payment_id LIKE '${run}a-%' AND state = 'issued'" "$got" 600 || exit 1
    lat1=$(latency "$l_db" "${run}a")
    log "latency at $rate/s offered: p50 $(cut -d'|' -f2 <<<"$lat1") ms, p99 $(cut -d'|' -f3 <<<"$lat1") ms, max $(cut -d'|' -f4 <<<"$lat1") ms ($(cut -d'|' -f1 <<<"$lat1") orders)"
    # The same at half the throughput measured above, where the lane is not overloaded.
    half=$(($(cut -d'|' -f3 <<<"$thr") / 2))
    ((half < 100)) && half=100
    "$BUILD/tests/bench/bench_load" "${sets[@]}" --set lanes.w.delay_ms=600000 \
        -R "$half" -T 10 -P "${run}b" -O 5000000 >"$tmp/load2.out" || true
    load2=$(head -n 1 "$tmp/load2.out")
    log "load: ${load2#bench_load: }"
    got=$(grep -o 'accepted by L [0-9]*' <<<"$load2" | cut -d' ' -f4)
    [[ -n $got ]] || { log "error: the load run failed"; cat "$tmp/load2.out" >&2; exit 1; }
    wait_sql "$l_db" "SELECT count(*) FROM payments WHERE payment_id LIKE '${run}b-%' AND state = 'issued'" "$got" 300 || exit 1
    lat2=$(latency "$l_db" "${run}b")
    log "latency at $half/s offered: p50 $(cut -d'|' -f2 <<<"$lat2") ms, p99 $(cut -d'|' -f3 <<<"$lat2") ms, max $(cut -d'|' -f4 <<<"$lat2") ms"
    hwm2=$(hwm_kib "$cpid")
    rss_now=$(awk '/^VmRSS:/ { print $2 }' "/proc/$cpid/status")
    log "coupond peak RSS (VmHWM) $((hwm2 / 1024)) MiB; RSS now, after the lighter load: $((rss_now / 1024)) MiB"
    stop_coupond "$cpid"
    delete_queues "$run.w.delay" "$run.w.work"

    # 4. The store's own ceiling: the same N rows, store_issue_batch, same batch size.
    ceiling_out=$("$BUILD/tests/bench/bench_store" "${sets[@]}" --set "$(conninfo "$s_db")" -b "$batch" "$notes")
    log "${ceiling_out}"
    ceil=$(rate "$s_db" "$run")
    log "store ceiling: $n issued in $(cut -d'|' -f2 <<<"$ceil") s (first to last): $(cut -d'|' -f3 <<<"$ceil") payments/s"

    # Report.
    local r_l r_c
    r_l=$(cut -d'|' -f3 <<<"$thr")
    r_c=$(cut -d'|' -f3 <<<"$ceil")
    printf '\n| lane-l, %s notifications, batch %s | value | target | |\n| --- | ---: | ---: | --- |\n' "$n" "$batch"
    awk -v l="$r_l" -v c="$r_c" -v p99="$(cut -d'|' -f3 <<<"$lat1")" -v p50="$(cut -d'|' -f2 <<<"$lat1")" \
        -v off="$(grep -o '= [0-9]*/s' <<<"$load1" | head -n 1 | tr -dc 0-9)" -v rate="$rate" \
        -v hp50="$(cut -d'|' -f2 <<<"$lat2")" -v hp99="$(cut -d'|' -f3 <<<"$lat2")" -v half="$half" \
        -v rss="$((hwm1 > hwm2 ? hwm1 : hwm2))" 'BEGIN {
        printf "| L lane, payments/s sustained | %d | >= 20,000 | %s |\n", l, (l >= 20000 ? "met" : "MISSED")
        printf "| store ceiling, payments/s (store_issue_batch) | %d | | |\n", c
        printf "| L / ceiling | %.2f | >= 0.50 | %s |\n", l / c, (l / c >= 0.5 ? "met" : "MISSED")
        printf "| latency p50 / p99 at %s/s offered (achieved %s/s) | %s / %s ms | p99 <= 50 ms | %s |\n", rate, off, p50, p99, (p99 <= 50 ? "met" : "MISSED")
        printf "| latency p50 / p99 at %s/s offered (half the L rate) | %s / %s ms | | |\n", half, hp50, hp99
        printf "| coupond peak RSS (VmHWM) | %.1f MiB | <= 64 MiB | %s |\n", rss / 1024, (rss <= 65536 ? "met" : "MISSED")
    }'
}

# ---------------------------------------------------------------- lane-w
bench_lane_w() {
    local db notes log raw rawd w_all lat hwm cpu0 t0 span chk_rate nref refq
    lane_args 20000 "$@"
    prepare coupond couponctl bench_load bench_amqp_consume
    machine
    lane_init w
    db=coupond_${run}_w
    log=$tmp/w.log
    new_db "$db"
    notes=$tmp/notes.jsonl
    "$BUILD/tests/bench/bench_load" -g "$n" -P "$run" >"$notes"
    # No L consumer in this benchmark: the L lane goes to a queue of this run's on RabbitMQ
    # (deleted at once) instead of leaving topics behind in the Kafka host.
    sets+=(--set lanes.l.transport=amqp --set lanes.w.delay_ms=100)
    log "lane-w: run $run, $n notifications, W prefetch $("$BUILD/couponctl" config get lanes.w.amqp.prefetch), batches of $("$BUILD/couponctl" config get issue.batch_size)"

    # 1. The raw ceilings: a bare rabbitmq-c consumer, same prefetch and batches, multiple ack,
    # draining messages published straight into its queue (direct), and draining them as the
    # W work queue holds them: dead-lettered out of a delay queue, with their x-death headers
    # (W's ceiling: RabbitMQ delivers those at a fraction of the rate).
    raw=$("$BUILD/tests/bench/bench_amqp_consume" "${sets[@]}" -q "$run.raw" -r 3 "$notes" | tee "$tmp/raw.out" | sed -n 's/^raw_ceiling_msgs_per_s //p')
    sed -n 's/^round/raw rabbitmq consume (direct): round/p' "$tmp/raw.out" | while read -r l; do log "$l"; done
    log "raw ceiling, direct (median of 3): $raw msgs/s"
    rawd=$("$BUILD/tests/bench/bench_amqp_consume" "${sets[@]}" -q "$run.rawd" -r 3 -d "$notes" | tee "$tmp/rawd.out" | sed -n 's/^raw_ceiling_msgs_per_s //p')
    sed -n 's/^round/raw rabbitmq consume (dead-lettered): round/p' "$tmp/rawd.out" | while read -r l; do log "$l"; done
    log "raw ceiling, dead-lettered as in the W work queue (median of 3): $rawd msgs/s"

    # 2. W issues everything (no L): published first, then W drains the work queue.
    publish "$notes" "publish"
    delete_queues "$run.l"
    for _ in {1..60}; do [[ $(queue_ready "$run.w.work") == "$n" ]] && break; sleep 0.5; done
    start_coupond w "$db" "$log"
    t0=$SECONDS
    wait_sql "$db" "SELECT count(*) FROM payments WHERE state = 'issued'" "$n" $((120 + n / 100)) || exit 1
    cpu0=$(cpu_ticks "$cpid")
    hwm=$(hwm_kib "$cpid")
    w_all=$(rate "$db" "$run")
    log "W issue-all: $n issued in $(cut -d'|' -f2 <<<"$w_all") s (first to last): $(cut -d'|' -f3 <<<"$w_all") payments/s; coupond CPU $((100 * cpu0 / CLK_TCK / (SECONDS - t0 > 0 ? SECONDS - t0 : 1)))% of a core; peak RSS $((hwm / 1024)) MiB"
    stop_coupond "$cpid"

    # 3. W checks the same N again (all issued: duplicates). A new order just before them and
    # one just after mark the start and the end in the store (the queue is FIFO).
    "$BUILD/tests/bench/bench_load" -g 1 -P "${run}h" -O 7000000 >"$tmp/head.jsonl"
    "$BUILD/tests/bench/bench_load" -g 1 -P "${run}t" -O 7100000 >"$tmp/tail.jsonl"
    publish "$tmp/head.jsonl" "publish (start marker)"
    publish "$notes" "publish again"
    publish "$tmp/tail.jsonl" "publish (end marker)"
    delete_queues "$run.l"
    for _ in {1..60}; do [[ $(queue_ready "$run.w.work") == "$((n + 2))" ]] && break; sleep 0.5; done
    start_coupond w "$db" "$log"
    t0=$SECONDS
    wait_sql "$db" "SELECT count(*) FROM payments WHERE payment_id LIKE '${run}t-%' AND state = 'issued'" 1 $((120 + n / 100)) || exit 1
    span=$(sql "$db" "SELECT round(extract(epoch FROM t.created_at - h.created_at)::numeric, 3) FROM payments h, payments t WHERE h.payment_id LIKE '${run}h-%' AND t.payment_id LIKE '${run}t-%'")
    chk_rate=$(awk -v n="$n" -v s="$span" 'BEGIN { printf "%d", (n + 1) / s }')
    cpu0=$(cpu_ticks "$cpid")
    hwm=$(( $(hwm_kib "$cpid") > hwm ? $(hwm_kib "$cpid") : hwm ))
    log "W check-only: $n duplicates checked in $span s (start marker to end marker): $chk_rate payments/s; coupond CPU $((100 * cpu0 / CLK_TCK / (SECONDS - t0 > 0 ? SECONDS - t0 : 1)))% of a core"
    stop_coupond "$cpid"

    # 4. Refund punctuality: 2000 orders for an inactive deal, deadline 10 s, retries
    # 0.5/1/2 s, delay 1 s (fresh queues: the delay is part of their declaration).
    nref=2000
    refq=(--set "lanes.w.amqp.queue=$run.r.work" --set "lanes.w.amqp.delay_queue=$run.r.delay"
          --set lanes.w.delay_ms=1000 --set issue.refund_after_s=10
          --set "issue.retry_delays_ms=[500,1000,2000]")
    start_coupond w "$db" "$log" "${refq[@]}"
    sleep 1
    "$BUILD/tests/bench/bench_load" -g "$nref" -P "${run}r" -O 8000000 -d 100 -k 1 >"$tmp/refunds.jsonl"
    publish "$tmp/refunds.jsonl" "publish (inactive deal)" "${refq[@]}"
    wait_sql "$db" "SELECT count(*) FROM payments WHERE payment_id LIKE '${run}r-%' AND state = 'refunded'" "$nref" 120 || exit 1
    lat=$(sql "$db" "SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 3),
                            round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 3),
                            round(max(s)::numeric, 3), round(min(s)::numeric, 3),
                            sum(CASE WHEN reason LIKE '%sweeper%' THEN 1 ELSE 0 END)
                     FROM (SELECT extract(epoch FROM r.created_at - (p.paid_at + interval '10 seconds')) AS s, r.reason
                           FROM payments p JOIN refund_log r USING (order_id)
                           WHERE p.payment_id LIKE '${run}r-%') x")
    hwm=$(( $(hwm_kib "$cpid") > hwm ? $(hwm_kib "$cpid") : hwm ))
    log "refund lateness after the deadline: p50 $(cut -d'|' -f2 <<<"$lat") s, p99 $(cut -d'|' -f3 <<<"$lat") s, max $(cut -d'|' -f4 <<<"$lat") s, min $(cut -d'|' -f5 <<<"$lat") s ($(cut -d'|' -f1 <<<"$lat") refunds, $(cut -d'|' -f6 <<<"$lat") by the sweeper)"
    stop_coupond "$cpid"

    printf '\n| lane-w, %s notifications | value | target | |\n| --- | ---: | ---: | --- |\n' "$n"
    awk -v raw="$raw" -v rawd="$rawd" -v all="$(cut -d'|' -f3 <<<"$w_all")" -v chk="$chk_rate" \
        -v p50="$(cut -d'|' -f2 <<<"$lat")" -v p99="$(cut -d'|' -f3 <<<"$lat")" -v rss="$hwm" 'BEGIN {
        printf "| raw RabbitMQ consume-and-ack, direct, msgs/s | %d | | |\n", raw
        printf "| raw RabbitMQ consume-and-ack, dead-lettered (the W work queue), msgs/s | %d | | |\n", rawd
        printf "| W check-only, payments/s (vs dead-lettered raw) | %d (%.2f) | >= 0.60 of raw | %s |\n", chk, chk / rawd, (chk / rawd >= 0.6 ? "met" : "MISSED")
        printf "| W check-only vs direct raw | %.2f | | |\n", chk / raw
        printf "| W issue-all, payments/s (vs dead-lettered raw) | %d (%.2f) | | |\n", all, all / rawd
        printf "| refund lateness p50 / p99 | %s / %s s | p99 <= 5 s | %s |\n", p50, p99, (p99 <= 5 ? "met" : "MISSED")
        printf "| coupond (W) peak RSS (VmHWM) | %.1f MiB | | |\n", rss / 1024
    }'
}

queue_ready() { # queue_ready NAME: messages ready in a RabbitMQ queue
    $COUPOND_RABBITMQCTL list_queues -q name messages_ready 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}

# ---------------------------------------------------------------- refund export

# time_v FILE: "SECONDS KIB" (wall time, peak RSS) from a GNU `time -v` report.
time_v() {
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0
                   for (i = 1; i <= n; i++) s = s * 60 + t[i] }
                 /Maximum resident set size/ { kib = $2 }
                 END { printf "%.2f %d\n", s, kib }' "$1"
}

bench_export() {
    local n=1000000 db t0 gen ex vf rows
    while (($#)); do
        case $1 in
        -n) n=$2; shift 2 ;;
        -h | --help) usage 0 1 ;;
        *) log "unknown option '$1'"; usage 2 ;;
        esac
    done
    prepare couponctl
    machine
    lane_init x
    db=${run}_export
    new_db "$db"
    log "writing $n refunds with their chain (tests/bench/bulk_refunds.sql)"
    t0=$(date +%s.%N)
    psql -X -q -d "$db" -v n="$n" -f "$REPO/tests/bench/bulk_refunds.sql" >/dev/null
    gen=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    log "written in $gen s; exporting"
    /usr/bin/time -v -o "$tmp/export.time" "$BUILD/couponctl" "${sets[@]}" --set "$(conninfo "$db")" \
        refunds export --output "$tmp/refunds.csv" 2>"$tmp/export.err" || { cat "$tmp/export.err" >&2; exit 1; }
    sed 's/^/    /' "$tmp/export.err" >&2
    rows=$(($(wc -l <"$tmp/refunds.csv") - 1))
    ex=$(time_v "$tmp/export.time")
    log "verifying"
    /usr/bin/time -v -o "$tmp/verify.time" "$BUILD/couponctl" "${sets[@]}" --set "$(conninfo "$db")" \
        refunds verify >&2 || exit 1
    vf=$(time_v "$tmp/verify.time")
    printf '\n| refunds, %s rows (CSV %s MiB) | wall time | rows/s | peak RSS | target | |\n| --- | ---: | ---: | ---: | ---: | --- |\n' \
        "$rows" "$(($(stat -c %s "$tmp/refunds.csv") / 1048576))"
    awk -v rows="$rows" -v ex="$ex" -v vf="$vf" 'BEGIN {
        split(ex, e, " "); split(vf, v, " ")
        printf "| couponctl refunds export | %.1f s | %d | %.1f MiB | < 32 MiB | %s |\n", e[1], rows / e[1], e[2] / 1024, (e[2] < 32768 ? "met" : "MISSED")
        printf "| couponctl refunds verify | %.1f s | %d | %.1f MiB | | |\n", v[1], rows / v[1], v[2] / 1024
    }'
}

case ${1:-} in
publish)
    shift
    bench_publish "$@"
    ;;
lane-l)
    shift
    bench_lane_l "$@"
    ;;
lane-w)
    shift
    bench_lane_w "$@"
    ;;
export)
    shift
    bench_export "$@"
    ;;
-h | --help | help) usage 0 1 ;;
*)
    [[ -n ${1:-} ]] && log "unknown benchmark '$1'"
    usage 2
    ;;
esac
