#!/usr/bin/env bash
# services.sh: starts, stops and describes coupond's local PostgreSQL, RabbitMQ and Kafka host.
#
# Usage: deploy/local/services.sh up|down|status|env
#                                 |start-pg|stop-pg|start-rabbitmq|stop-rabbitmq|start-kafka|stop-kafka
#
#   up       install missing packages (deps.sh), start what is not running, wait until each
#            service answers, create the database, roles, users and secrets that are missing.
#            Idempotent; existing data and secrets are kept.
#   down     stop all three (idempotent).
#   status   one line per service; exit 0 when all three answer, 1 otherwise.
#   env      `export` lines for eval "$(deploy/local/services.sh env)":
#            PGHOST PGPORT PGDATABASE PGUSER PGPASSFILE (psql reaches the store), COUPOND_CONFIG,
#            COUPOND_RUN_DIR, COUPOND_KAFKA_BROKERS, COUPOND_KAFKA_CONTROL (the mock cluster's
#            control socket: coupond-kafkahost --ctl "$COUPOND_KAFKA_CONTROL" down all),
#            COUPOND_KAFKAHOST (that binary), COUPOND_AMQP_URL, and COUPOND_RABBITMQCTL, a command
#            prefix that reaches the local node: $COUPOND_RABBITMQCTL list_queues
#            (word-split on purpose: keep the run directory free of spaces to use it).
#   start-X / stop-X   one service only (tests use them to simulate outages). RabbitMQ and
#            PostgreSQL keep their data; the Kafka host keeps messages in memory only, so a
#            restart loses them and changes the broker ports (re-run `env`).
#
# Environment: COUPOND_RUN_DIR (default <repo>/.run), COUPOND_BUILD_DIR (default <repo>/build),
# COUPOND_PG_PORT (55432), COUPOND_AMQP_PORT (55672), COUPOND_AMQP_DIST_PORT (55673),
# COUPOND_EPMD_PORT (55674).
#
# Layout under the run directory: pg/{data,log,sock}, rabbitmq/{mnesia,log,...} (also its HOME,
# with its own .erlang.cookie), kafka/{bootstrap,control.sock,kafkahost.log,kafkahost.pid},
# secrets/{pg.password,amqp.password,k1.key,pgpass} (0700 / 0600, generated once).
set -euo pipefail

usage() {
    sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
    exit 2
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=${COUPOND_RUN_DIR:-$REPO/.run}
[[ $RUN == /* ]] || RUN=$PWD/$RUN
BUILD=${COUPOND_BUILD_DIR:-$REPO/build}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
PG_PORT=${COUPOND_PG_PORT:-55432}
AMQP_PORT=${COUPOND_AMQP_PORT:-55672}
DIST_PORT=${COUPOND_AMQP_DIST_PORT:-55673}
EPMD_PORT=${COUPOND_EPMD_PORT:-55674}

SECRETS=$RUN/secrets
PG_DIR=$RUN/pg
PG_BIN=/usr/lib/postgresql/15/bin
RMQ_DIR=$RUN/rabbitmq
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_NODE=coupond@localhost
KAFKA_DIR=$RUN/kafka
KAFKAHOST=$BUILD/coupond-kafkahost

log() { printf 'services: %s\n' "$*" >&2; }

# fail MESSAGE [LOGFILE]: reports a failure with the end of the relevant log, then exits.
fail() {
    log "error: $1"
    if [[ -n ${2:-} && -f $2 ]]; then
        log "last lines of $2:"
        tail -n 30 "$2" | sed 's/^/    /' >&2
    fi
    exit 1
}

# ---------------------------------------------------------------- secrets

# secret NAME BYTES: prints the secret, generating BYTES random bytes (hex) once.
secret() {
    local file=$SECRETS/$1
    if [[ ! -s $file ]]; then
        (umask 077 && mkdir -p "$SECRETS" &&
            head -c "$2" /dev/urandom | od -An -vtx1 | tr -d ' \n' >"$file.tmp" &&
            mv "$file.tmp" "$file")
    fi
    cat "$file"
}

ensure_secrets() {
    (umask 077 && mkdir -p "$SECRETS")
    chmod 700 "$SECRETS"
    secret pg.password 16 >/dev/null
    secret amqp.password 16 >/dev/null
    secret k1.key 32 >/dev/null
    chmod 600 "$SECRETS"/*
}

# ---------------------------------------------------------------- PostgreSQL

# The OS user that owns the cluster and administers it over the socket (peer auth).
if ((EUID == 0)); then PG_ADMIN=postgres; else PG_ADMIN=$(id -un); fi

as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() {
    [[ -f $PG_DIR/data/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

pg_admin_sql() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/sock" -p "$PG_PORT" -U "$PG_ADMIN" \
        -d postgres "$@"
}

pg_init() {
    mkdir -p "$PG_DIR"
    if ((EUID == 0)); then
        chmod o+x "$RUN"
        chown postgres: "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
    as_pg test -w "$PG_DIR" ||
        fail "user $PG_ADMIN cannot reach $PG_DIR (a parent directory is not traversable); set COUPOND_RUN_DIR, e.g. to /tmp/coupond-run"
    as_pg mkdir -p "$PG_DIR/log" "$PG_DIR/sock"
    [[ -f $PG_DIR/data/PG_VERSION ]] && return 0
    log "initialising PostgreSQL in $PG_DIR/data"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_ADMIN" --no-locale -E UTF8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/log/initdb.log" 2>&1 ||
        fail "initdb failed" "$PG_DIR/log/initdb.log"
    as_pg tee "$PG_DIR/data/pg_hba.conf" >/dev/null <<EOF
# coupond local: only the administering OS user on the socket, passwords over loopback TCP.
local all $PG_ADMIN peer
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128      scram-sha-256
EOF
}

start_pg() {
    pg_init
    if ! pg_running; then
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log/postgresql.log" -w -t 60 \
            -o "-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1" start >/dev/null ||
            fail "PostgreSQL did not start" "$PG_DIR/log/postgresql.log"
    fi
    local pw
    pw=$(secret pg.password 16)
    # Applied on every `up`, so the role always matches the secret; the password travels on
    # stdin, never on a command line.
    pg_admin_sql -v pw="$pw" >/dev/null <<'EOF' || fail "cannot create the coupond role" "$PG_DIR/log/postgresql.log"
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coupond') AS missing \gset
\if :missing
CREATE ROLE coupond LOGIN SUPERUSER;
\endif
ALTER ROLE coupond PASSWORD :'pw';
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'coupond') AS missing \gset
\if :missing
CREATE DATABASE coupond OWNER coupond;
\endif
EOF
    (umask 077 && printf '127.0.0.1:%s:*:coupond:%s\nlocalhost:%s:*:coupond:%s\n' \
        "$PG_PORT" "$pw" "$PG_PORT" "$pw" >"$SECRETS/pgpass")
    pg_ready || fail "PostgreSQL does not answer queries as coupond" "$PG_DIR/log/postgresql.log"
}

# A real query over TCP with the coupond password: what the daemons will do.
pg_ready() {
    PGPASSFILE=$SECRETS/pgpass PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -tA -h 127.0.0.1 \
        -p "$PG_PORT" -U coupond -d coupond -c 'SELECT 1' 2>/dev/null | grep -qx 1
}

stop_pg() {
    if pg_running; then
        log "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null
    fi
}

# ---------------------------------------------------------------- RabbitMQ

# Runs a RabbitMQ script against our node only: its own HOME (cookie), epmd, config and data.
rmq_env() {
    env HOME="$RMQ_DIR" ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_NODENAME="$RMQ_NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" RABBITMQ_CONFIG_FILES="$RMQ_DIR/conf.d" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
        RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$@"
}

rabbitmqctl() {
    rmq_env "$RMQ_BIN/rabbitmqctl" -n "$RMQ_NODE" "$@"
}

amqp_url() {
    printf 'amqp://coupond:%s@127.0.0.1:%s/%%2f' "$(secret amqp.password 16)" "$AMQP_PORT"
}

rmq_pid() {
    local pid
    pid=$(cat "$RMQ_DIR/rabbitmq.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && grep -q beam "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

# Logs in as coupond and publishes to the default exchange with a routing key that matches no
# queue: proves the listener, the password and the permissions, and leaves nothing behind.
rmq_ready() {
    amqp-publish -u "$(amqp_url)" -r coupond.probe -b probe 2>&1
}

rmq_ensure_user() {
    local pw
    pw=$(secret amqp.password 16)
    log "creating or repairing the RabbitMQ user coupond"
    if rabbitmqctl -q list_users 2>/dev/null | grep -q '^coupond\b'; then
        rabbitmqctl -q change_password coupond "$pw" >/dev/null
    else
        rabbitmqctl -q add_user coupond "$pw" >/dev/null
    fi
    rabbitmqctl -q set_user_tags coupond administrator >/dev/null
    rabbitmqctl -q set_permissions -p / coupond '.*' '.*' '.*' >/dev/null
}

start_rabbitmq() {
    mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log" "$RMQ_DIR/conf.d"
    chmod 700 "$RMQ_DIR"
    if [[ ! -s $RMQ_DIR/.erlang.cookie ]]; then
        (umask 077 && head -c 15 /dev/urandom | od -An -vtx1 | tr -d ' \n' | tr a-f A-F \
            >"$RMQ_DIR/.erlang.cookie")
    fi
    chmod 400 "$RMQ_DIR/.erlang.cookie"
    echo '[].' >"$RMQ_DIR/enabled_plugins"
    # A fresh node creates coupond as its default user (no guest); rmq_ensure_user repairs it.
    (umask 077 && cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
# generated by deploy/local/services.sh on every start
default_vhost = /
default_user = coupond
default_pass = $(secret amqp.password 16)
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
log.console = false
log.file.level = info
EOF
    )
    local out launched=
    if ! rmq_pid >/dev/null; then
        log "starting RabbitMQ node $RMQ_NODE on 127.0.0.1:$AMQP_PORT (epmd $EPMD_PORT)"
        rm -f "$RMQ_DIR/rabbitmq.pid"
        rmq_env setsid "$RMQ_BIN/rabbitmq-server" >>"$RMQ_DIR/log/startup.log" 2>&1 </dev/null &
        launched=$!
    fi
    local deadline=$((SECONDS + 90)) fixed=0
    until out=$(rmq_ready); do
        if [[ -n $launched ]] && ! alive "$launched"; then
            fail "RabbitMQ exited during start-up" "$RMQ_DIR/log/startup.log"
        fi
        if ((SECONDS > deadline)); then
            fail "RabbitMQ does not answer on 127.0.0.1:$AMQP_PORT: $out" "$RMQ_DIR/log/$RMQ_NODE.log"
        fi
        if [[ $out == *ACCESS_REFUSED* ]] && ((!fixed)); then
            rmq_ensure_user || fail "cannot create the coupond user" "$RMQ_DIR/log/$RMQ_NODE.log"
            fixed=1
            continue
        fi
        sleep 0.5
    done
}

stop_rabbitmq() {
    local pid
    if pid=$(rmq_pid); then
        log "stopping RabbitMQ node $RMQ_NODE"
        if ! rabbitmqctl -q stop "$RMQ_DIR/rabbitmq.pid" >/dev/null 2>&1; then
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # The node started its own epmd on our port; it refuses to die while a node is registered.
    rmq_env epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- Kafka host

kafka_pid() {
    local pid
    pid=$(cat "$KAFKA_DIR/kafkahost.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && grep -q coupond-kafkahost "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

kafka_ready() {
    [[ -s $KAFKA_DIR/bootstrap ]] &&
        kcat -L -b "$(cat "$KAFKA_DIR/bootstrap")" -m 5 2>/dev/null | grep -q '^ 3 brokers:'
}

start_kafka() {
    mkdir -p "$KAFKA_DIR"
    if [[ ! -x $KAFKAHOST || $KAFKAHOST -ot $REPO/src/kafkahost.c ]]; then
        log "building coupond-kafkahost in $BUILD"
        { cmake -S "$REPO" -B "$BUILD" && cmake --build "$BUILD" --target coupond-kafkahost -j2; } \
            >"$KAFKA_DIR/build.log" 2>&1 || fail "cannot build coupond-kafkahost" "$KAFKA_DIR/build.log"
    fi
    if ! kafka_pid >/dev/null; then
        log "starting the Kafka host (mock cluster, 3 brokers)"
        rm -f "$KAFKA_DIR/bootstrap"
        setsid "$KAFKAHOST" --bootstrap-file "$KAFKA_DIR/bootstrap" \
            --control "$KAFKA_DIR/control.sock" >>"$KAFKA_DIR/kafkahost.log" 2>&1 </dev/null &
        echo $! >"$KAFKA_DIR/kafkahost.pid"
    fi
    local deadline=$((SECONDS + 30))
    until kafka_ready; do
        kafka_pid >/dev/null || fail "the Kafka host exited" "$KAFKA_DIR/kafkahost.log"
        ((SECONDS < deadline)) || fail "the Kafka host does not answer metadata" "$KAFKA_DIR/kafkahost.log"
        sleep 0.2
    done
}

stop_kafka() {
    local pid
    if pid=$(kafka_pid); then
        log "stopping the Kafka host"
        kill -TERM "$pid"
        wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_DIR/kafkahost.pid"
}

# alive PID: the process exists and is not a zombie (the init of a container may never reap them).
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# wait_gone PID SECONDS: waits for a process to exit; 1 if it is still there.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- commands

cmd_up() {
    "$HERE/deps.sh"
    mkdir -p "$RUN"
    ensure_secrets
    start_pg
    start_rabbitmq
    start_kafka
    log "all up. Logs: $PG_DIR/log/postgresql.log, $RMQ_DIR/log/$RMQ_NODE.log, $KAFKA_DIR/kafkahost.log"
    log "use them with: eval \"\$($HERE/services.sh env)\"${COUPOND_RUN_DIR:+ (with COUPOND_RUN_DIR=$RUN)}"
}

cmd_down() {
    stop_kafka
    stop_rabbitmq
    stop_pg
}

cmd_status() {
    local ok=0
    if pg_ready; then
        echo "postgresql: running (127.0.0.1:$PG_PORT, database coupond)"
    elif pg_running; then
        echo "postgresql: running but not answering as coupond"; ok=1
    else
        echo "postgresql: stopped"; ok=1
    fi
    if rmq_ready >/dev/null; then
        echo "rabbitmq:   running ($RMQ_NODE, amqp 127.0.0.1:$AMQP_PORT)"
    elif rmq_pid >/dev/null; then
        echo "rabbitmq:   running but not answering on 127.0.0.1:$AMQP_PORT"; ok=1
    else
        echo "rabbitmq:   stopped"; ok=1
    fi
    if kafka_ready; then
        echo "kafka:      running (mock cluster $(cat "$KAFKA_DIR/bootstrap"))"
    elif kafka_pid >/dev/null; then
        echo "kafka:      running but not answering"; ok=1
    else
        echo "kafka:      stopped"; ok=1
    fi
    return $ok
}

cmd_env() {
    local rc=0
    q() { printf "export %s='%s'\n" "$1" "${2//\'/\'\\\'\'}"; } # single-quoted for eval
    q COUPOND_RUN_DIR "$RUN"
    q COUPOND_CONFIG "$REPO/conf/coupond.cfg"
    q PGHOST 127.0.0.1
    q PGPORT "$PG_PORT"
    q PGDATABASE coupond
    q PGUSER coupond
    q PGPASSFILE "$SECRETS/pgpass"
    if [[ -s $SECRETS/amqp.password ]]; then
        q COUPOND_AMQP_URL "$(amqp_url)"
    else
        log "no $SECRETS/amqp.password: run services.sh up first"; rc=1
    fi
    if [[ -s $KAFKA_DIR/bootstrap ]]; then
        q COUPOND_KAFKA_BROKERS "$(cat "$KAFKA_DIR/bootstrap")"
    else
        log "no $KAFKA_DIR/bootstrap: the Kafka host is not running"; rc=1
    fi
    q COUPOND_KAFKA_CONTROL "$KAFKA_DIR/control.sock"
    q COUPOND_KAFKAHOST "$KAFKAHOST"
    q COUPOND_RABBITMQCTL "env HOME=$RMQ_DIR ERL_EPMD_PORT=$EPMD_PORT $RMQ_BIN/rabbitmqctl -n $RMQ_NODE"
    return $rc
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
start-pg) ensure_secrets && start_pg ;;
stop-pg) stop_pg ;;
start-rabbitmq) ensure_secrets && start_rabbitmq ;;
stop-rabbitmq) stop_rabbitmq ;;
start-kafka) start_kafka ;;
stop-kafka) stop_kafka ;;
*) usage ;;
esac
