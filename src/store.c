/* store.c: the PostgreSQL store: connection, migrations, issue and refund calls. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <libpq-fe.h>

#include "store_int.h"
#include "textbuf.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS   5000
/* Orders sent per pipeline round trip: small enough that the results never
 * fill the socket buffers while we are still sending. */
#define BATCH_CHUNK 64
/* pg_advisory_xact_lock key of store_migrate: "coupond" in ASCII. */
#define MIGRATE_LOCK_KEY "27988572882562660"
/* pg_try_advisory_lock key of the sweeper (session level): "csweep" in ASCII. */
#define SWEEP_LOCK_KEY "109347575522672"
/* The size of store_outbox_row_t.payload, as SQL text. */
#define OUTBOX_PAYLOAD_SIZE "1024"
_Static_assert(sizeof(((store_outbox_row_t *)0)->payload) == 1024,
               "OUTBOX_PAYLOAD_SIZE must match store_outbox_row_t.payload");

enum stmt_id {
    STMT_ISSUE,
    STMT_ISSUE_BATCH,
    STMT_REFUND,
    STMT_DEAL_SET,
    STMT_ORDER_GET,
    STMT_DEAD_LETTER,
    STMT_REFUND_PAYMENT,
    STMT_SWEEP_LOCK,
    STMT_SWEEP,
    STMT_SWEEP_UNLOCK,
    STMT_OUTBOX_TAKE,
    STMT_OUTBOX_SENT,
    STMT_FINISHED,
    STMT_COUNT
};

/* The prepared statements, prepared on first use on each connection. */
// clang-format off
static const struct {
    const char *name;
    int nparams;
    const char *sql;
} stmts[STMT_COUNT] = {
    [STMT_ISSUE] = {"coupond_issue", 10,
        "SELECT outcome, state, error FROM coupond_issue($1::bigint, $2::text, $3::bigint, "
        "$4::bigint, $5::integer, $6::bigint, $7::text, "
        "timestamptz 'epoch' + $8::bigint * interval '1 microsecond', $9::text[], $10::text)"},
    [STMT_ISSUE_BATCH] = {"coupond_issue_batch", 11,
        "SELECT idx, outcome, state, error FROM coupond_issue_batch($1::bigint[], $2::text[], "
        "$3::bigint[], $4::bigint[], $5::integer[], $6::bigint[], $7::text[], $8::bigint[], "
        "$9::text[], $10::integer[], $11::text)"},
    [STMT_REFUND] = {"coupond_refund", 2,
        "SELECT outcome, state, error, refund_seq FROM coupond_refund($1::bigint, $2::text)"},
    [STMT_DEAL_SET] = {"coupond_deal_set", 4,
        "INSERT INTO deals (deal_id, price_cents, currency, active) "
        "VALUES ($1::bigint, $2::bigint, $3::text, $4::boolean) "
        "ON CONFLICT (deal_id) DO UPDATE SET price_cents = EXCLUDED.price_cents, "
        "currency = EXCLUDED.currency, active = EXCLUDED.active, updated_at = now()"},
    [STMT_ORDER_GET] = {"coupond_order_get", 1,
        "SELECT p.payment_id, p.user_id, p.deal_id, p.quantity, p.amount_cents, p.currency, "
        "(extract(epoch FROM p.paid_at) * 1000000)::bigint, " SQL_TIME("p.paid_at") ", "
        "p.state, p.attempts, coalesce(p.last_error, ''), "
        SQL_TIME("p.created_at") ", " SQL_TIME("p.updated_at") ", "
        "c.n, coalesce(c.issued_by, ''), coalesce(r.seq, 0), coalesce(r.reason, ''), "
        "coalesce(" SQL_TIME("r.created_at") ", '') "
        "FROM payments p "
        "CROSS JOIN LATERAL (SELECT count(*) AS n, min(issued_by) AS issued_by "
        "FROM coupons WHERE order_id = p.order_id) c "
        "LEFT JOIN refund_log r ON r.order_id = p.order_id "
        "WHERE p.order_id = $1::bigint"},
    [STMT_DEAD_LETTER] = {"coupond_dead_letter", 5,
        "SELECT id, seen_count FROM coupond_dead_letter($1::text, $2::text, $3::text, "
        "$4::jsonb, decode($5::text, 'hex'))"},
    [STMT_REFUND_PAYMENT] = {"coupond_refund_payment", 9,
        "SELECT outcome, state, error, refund_seq FROM coupond_refund_payment($1::bigint, "
        "$2::text, $3::bigint, $4::bigint, $5::integer, $6::bigint, $7::text, "
        "timestamptz 'epoch' + $8::bigint * interval '1 microsecond', $9::text)"},
    [STMT_SWEEP_LOCK] = {"coupond_sweep_lock", 0,
        "SELECT pg_try_advisory_lock(" SWEEP_LOCK_KEY ")"},
    /* Due: paid_at + refund_after_s <= now(); stale: updated_at <= now() -
     * stale_ms. Each condition can use its partial index (payments_pending_*). */
    [STMT_SWEEP] = {"coupond_sweep", 3,
        "SELECT order_id, payment_id, user_id, deal_id, quantity, amount_cents, currency, "
        "(extract(epoch FROM paid_at) * 1000000)::bigint, " SQL_TIME("paid_at") ", "
        "paid_at <= now() - $1::integer * interval '1 second' "
        "FROM payments WHERE state = 'pending' "
        "AND (paid_at <= now() - $1::integer * interval '1 second' "
        "OR updated_at <= now() - $2::integer * interval '1 millisecond') "
        "ORDER BY paid_at, order_id LIMIT $3::bigint"},
    [STMT_SWEEP_UNLOCK] = {"coupond_sweep_unlock", 0,
        "SELECT pg_advisory_unlock(" SWEEP_LOCK_KEY ")"},
    /* A payload too long for store_outbox_row_t gets its reason shortened
     * (the refund log keeps it whole). */
    [STMT_OUTBOX_TAKE] = {"coupond_outbox_take", 1,
        "SELECT id, order_id, CASE WHEN octet_length(payload::text) < " OUTBOX_PAYLOAD_SIZE " "
        "THEN payload::text ELSE jsonb_set(payload, '{reason}', "
        "to_jsonb(left(coalesce(payload->>'reason', ''), 100)))::text END "
        "FROM refund_outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1::bigint"},
    [STMT_OUTBOX_SENT] = {"coupond_outbox_sent", 1,
        "UPDATE refund_outbox SET sent_at = now(), attempts = attempts + 1 "
        "WHERE id = ANY($1::bigint[]) AND sent_at IS NULL"},
    [STMT_FINISHED] = {"coupond_finished", 1,
        "SELECT order_id FROM payments WHERE order_id = ANY($1::bigint[]) AND state <> 'pending'"},
};
// clang-format on

struct store {
    PGconn *conn; /* NULL while disconnected */
    char *conninfo;
    char *password; /* NULL: libpq's own sources */
    int statement_timeout_ms;
    bool async_commit; /* synchronous_commit = off on this session */
    bool prepared[STMT_COUNT];
    bool sweep_locked;          /* this session holds the sweeper's advisory lock */
    int backoff_ms;             /* 0 while healthy */
    int64_t next_try_ms;        /* monotonic: no automatic reconnect before this */
    char last_error[CP_ERRLEN]; /* why the last connect failed */
};

/* ---- small helpers ---------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Squeezes line breaks and tabs (libpq's messages have them) into single
 * spaces and trims the ends, so every message is one line. */
static void one_line(char *s)
{
    char *w = s;
    bool space = true; /* drops leading blanks */
    for (const char *r = s; *r; r++) {
        char c = *r;
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            if (!space)
                *w++ = ' ';
            space = true;
            continue;
        }
        *w++ = c;
        space = false;
    }
    while (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) CP_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    one_line(err);
}

/* Copies src into dst[size], truncating at a UTF-8 character boundary. */
static void copy_utf8(char *dst, size_t size, const char *src)
{
    if (size == 0)
        return;
    size_t len = strlen(src);
    if (len < size) {
        memcpy(dst, src, len + 1);
        return;
    }
    size_t n = size - 1;
    /* Drop continuation bytes, then the lead byte of the cut character. */
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
        n--;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Copies src into dst[size], truncating. */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    while (src && n + 1 < size && src[n]) {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
}

static int64_t get_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* ---- connection ------------------------------------------------------- */

static void disconnect(store_t *st)
{
    if (st->conn)
        PQfinish(st->conn);
    st->conn = NULL;
    memset(st->prepared, 0, sizeof st->prepared);
    st->sweep_locked = false; /* a session lock ends with its session */
}

static void note_connect_failure(store_t *st)
{
    st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (st->backoff_ms > BACKOFF_MAX_MS)
        st->backoff_ms = BACKOFF_MAX_MS;
    st->next_try_ms = now_ms() + st->backoff_ms;
}

/* One connection attempt, with the session set up. */
static store_rc_t connect_once(store_t *st, char *err, size_t errlen)
{
    const char *keys[7], *vals[7];
    int n = 0;
    /* Defaults first, so that conninfo (expanded from dbname) overrides them;
     * then what conninfo must not override. */
    keys[n] = "connect_timeout", vals[n++] = "5";
    keys[n] = "application_name", vals[n++] = "coupond";
    keys[n] = "dbname", vals[n++] = st->conninfo;
    keys[n] = "client_encoding", vals[n++] = "UTF8";
    if (st->password)
        keys[n] = "password", vals[n++] = st->password;
    keys[n] = NULL, vals[n] = NULL;

    disconnect(st);
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        set_err(st->last_error, sizeof st->last_error, "cannot connect to the store: %s",
                conn ? PQerrorMessage(conn) : "out of memory");
        if (conn)
            PQfinish(conn);
        note_connect_failure(st);
        set_err(err, errlen, "%s", st->last_error);
        return STORE_E_UNAVAILABLE;
    }
    PQsetNoticeProcessor(conn, quiet_notices, NULL);

    char sql[128];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d; SET synchronous_commit = %s",
             st->statement_timeout_ms, st->async_commit ? "off" : "on");
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        set_err(st->last_error, sizeof st->last_error, "cannot set up the store session: %s",
                PQerrorMessage(conn));
        PQclear(r);
        PQfinish(conn);
        note_connect_failure(st);
        set_err(err, errlen, "%s", st->last_error);
        return STORE_E_UNAVAILABLE;
    }
    PQclear(r);
    st->conn = conn;
    st->backoff_ms = 0;
    st->next_try_ms = 0;
    st->last_error[0] = '\0';
    return STORE_OK;
}

/* Before each call: a usable, idle connection, reconnecting once if the
 * backoff allows. */
static store_rc_t ready(store_t *st, char *err, size_t errlen)
{
    if (st->conn && PQstatus(st->conn) != CONNECTION_OK)
        disconnect(st);
    if (!st->conn) {
        if (now_ms() < st->next_try_ms) {
            set_err(err, errlen, "store unavailable (reconnecting in %d ms): %s",
                    (int)(st->next_try_ms - now_ms()), st->last_error);
            return STORE_E_UNAVAILABLE;
        }
        return connect_once(st, err, errlen);
    }
    if (PQpipelineStatus(st->conn) != PQ_PIPELINE_OFF ||
        PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        /* A call failed half-way: start over from a clean session. */
        PGresult *r = PQexec(st->conn, "ROLLBACK");
        bool ok =
            PQresultStatus(r) == PGRES_COMMAND_OK && PQtransactionStatus(st->conn) == PQTRANS_IDLE;
        PQclear(r);
        if (!ok)
            return connect_once(st, err, errlen);
    }
    return STORE_OK;
}

static bool sqlstate_is(const char *state, const char *want)
{
    return state && strcmp(state, want) == 0;
}

/* Classifies a failed result (r may be NULL) and writes err. */
static store_rc_t failed(store_t *st, const PGresult *r, const char *what, char *err, size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        msg = st->conn ? PQerrorMessage(st->conn) : "no connection";

    /* Connection failures (class 08), server shutdown (57P01-57P03), and a
     * read-only server (25006: we reached a standby after a failover) all
     * mean: reconnect. */
    bool lost = !st->conn || PQstatus(st->conn) != CONNECTION_OK ||
                (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0 ||
                           strcmp(state, "25006") == 0));
    if (lost) {
        set_err(err, errlen, "%s: store connection lost: %s", what, msg);
        disconnect(st);
        return STORE_E_UNAVAILABLE;
    }
    /* An unknown function or table: the schema is missing or old (but not
     * while migrating, where it is a bug of the migration). */
    if ((sqlstate_is(state, "42883") || sqlstate_is(state, "42P01")) &&
        strncmp(what, "migration", 9) != 0) {
        set_err(err, errlen, "%s: %s (is the store migrated? couponctl db migrate)", what, msg);
        return STORE_E_SCHEMA;
    }
    set_err(err, errlen, "%s: %s (SQLSTATE %s)", what, msg, state ? state : "?");
    return STORE_E_QUERY;
}

static store_rc_t prepare(store_t *st, enum stmt_id id, char *err, size_t errlen)
{
    if (st->prepared[id])
        return STORE_OK;
    PGresult *r = PQprepare(st->conn, stmts[id].name, stmts[id].sql, stmts[id].nparams, NULL);
    store_rc_t rc = STORE_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = failed(st, r, "prepare", err, errlen);
    else
        st->prepared[id] = true;
    PQclear(r);
    return rc;
}

/* Runs a prepared statement; *out gets the result on STORE_OK. */
static store_rc_t run(store_t *st, enum stmt_id id, const char *const *params, const char *what,
                      PGresult **out, char *err, size_t errlen)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        store_rc_t rc = ready(st, err, errlen);
        if (rc == STORE_OK)
            rc = prepare(st, id, err, errlen);
        if (rc != STORE_OK)
            return rc;
        PGresult *r =
            PQexecPrepared(st->conn, stmts[id].name, stmts[id].nparams, params, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
            *out = r;
            return STORE_OK;
        }
        /* 26000: the statement vanished (DISCARD ALL behind a pooler): prepare again. */
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (attempt == 0 && sqlstate_is(state, "26000")) {
            PQclear(r);
            memset(st->prepared, 0, sizeof st->prepared);
            continue;
        }
        rc = failed(st, r, what, err, errlen);
        PQclear(r);
        return rc;
    }
}

/* Runs one-off SQL (possibly several statements) outside prepared statements. */
static store_rc_t exec_sql(store_t *st, const char *sql, const char *what, PGresult **out,
                           char *err, size_t errlen)
{
    PGresult *r = PQexec(st->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        if (out)
            *out = r;
        else
            PQclear(r);
        return STORE_OK;
    }
    store_rc_t rc = failed(st, r, what, err, errlen);
    PQclear(r);
    return rc;
}

static void rollback_quietly(store_t *st)
{
    if (st->conn && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        PQclear(PQexec(st->conn, "ROLLBACK"));
}

store_rc_t store_open(store_t **out, const char *conninfo, const char *password,
                      int statement_timeout_ms, char *err, size_t errlen)
{
    if (!out || statement_timeout_ms < 0) {
        set_err(err, errlen, "store_open: invalid arguments");
        return STORE_E_INVALID;
    }
    *out = NULL;
    /* A malformed conninfo is a configuration error, not an outage. A bare
     * word is a database name, which libpq's parser would not accept. */
    if (conninfo && (strchr(conninfo, '=') || strncmp(conninfo, "postgres://", 11) == 0 ||
                     strncmp(conninfo, "postgresql://", 13) == 0)) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (!opts) {
            set_err(err, errlen, "store conninfo: %s", perr ? perr : "out of memory");
            PQfreemem(perr);
            return STORE_E_INVALID;
        }
        PQconninfoFree(opts);
    }
    store_t *st = calloc(1, sizeof *st);
    if (!st)
        goto oom;
    st->conninfo = strdup(conninfo ? conninfo : "");
    if (!st->conninfo)
        goto oom;
    if (password) {
        st->password = strdup(password);
        if (!st->password)
            goto oom;
    }
    st->statement_timeout_ms = statement_timeout_ms;

    store_rc_t rc = connect_once(st, err, errlen);
    if (rc != STORE_OK) {
        store_close(st);
        return rc;
    }
    *out = st;
    return STORE_OK;

oom:
    store_close(st);
    set_err(err, errlen, "store_open: out of memory");
    return STORE_E_UNAVAILABLE;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    disconnect(st);
    if (st->password) {
        explicit_bzero(st->password, strlen(st->password));
        free(st->password);
    }
    free(st->conninfo);
    free(st);
}

store_rc_t store_ensure(store_t *st, int max_wait_ms, char *err, size_t errlen)
{
    if (!st) {
        set_err(err, errlen, "store_ensure: no store");
        return STORE_E_INVALID;
    }
    if (st->conn && PQstatus(st->conn) == CONNECTION_OK)
        return STORE_OK;
    int64_t deadline = now_ms() + (max_wait_ms > 0 ? max_wait_ms : 0);
    for (;;) {
        store_rc_t rc = connect_once(st, err, errlen);
        if (rc == STORE_OK)
            return STORE_OK;
        int64_t now = now_ms();
        if (now >= deadline)
            return rc;
        int64_t wait = st->next_try_ms - now;
        if (wait > deadline - now)
            wait = deadline - now;
        if (wait > 0)
            sleep_ms(wait);
    }
}

/* ---- schema ----------------------------------------------------------- */

static int newest_migration(void)
{
    int v = 0;
    for (size_t i = 0; i < store_migrations_count; i++)
        if (store_migrations[i].version > v)
            v = store_migrations[i].version;
    return v;
}

/* Applies one migration in its own transaction, unless it is recorded.
 * *ran tells whether it was applied now. */
static store_rc_t migrate_one(store_t *st, const store_migration_t *m, bool *ran, char *err,
                              size_t errlen)
{
    char what[128];
    snprintf(what, sizeof what, "migration %s", m->name);
    *ran = false;

    /* Under the lock, a second migrate waits, then sees what the first did. */
    store_rc_t rc = exec_sql(st,
                             "BEGIN; SET LOCAL statement_timeout = 0; "
                             "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY "); "
                             "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " version integer PRIMARY KEY,"
                             " name text NOT NULL,"
                             " applied_at timestamptz NOT NULL DEFAULT now())",
                             what, NULL, err, errlen);
    if (rc != STORE_OK)
        goto fail;

    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[2] = {version, m->name};
    PGresult *r = PQexecParams(st->conn,
                               "SELECT coalesce(max(version), 0), "
                               "coalesce(bool_or(version = $1::integer), false) "
                               "FROM schema_migrations",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = failed(st, r, what, err, errlen);
        PQclear(r);
        goto fail;
    }
    int current = (int)get_i64(r, 0, 0);
    bool done = strcmp(get_str(r, 0, 1), "t") == 0;
    PQclear(r);
    if (current > newest_migration()) {
        set_err(err, errlen,
                "the store schema is version %d, newer than this build's %d: upgrade coupond",
                current, newest_migration());
        rc = STORE_E_SCHEMA;
        goto fail;
    }
    if (done)
        return exec_sql(st, "COMMIT", what, NULL, err, errlen);

    rc = exec_sql(st, m->sql, what, NULL, err, errlen);
    if (rc != STORE_OK)
        goto fail;
    r = PQexecParams(st->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = failed(st, r, what, err, errlen);
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    rc = exec_sql(st, "COMMIT", what, NULL, err, errlen);
    if (rc != STORE_OK)
        goto fail;
    *ran = true;
    return STORE_OK;

fail:
    rollback_quietly(st);
    return rc;
}

store_rc_t store_migrate(store_t *st, int *applied, char *err, size_t errlen)
{
    if (applied)
        *applied = 0;
    if (!st) {
        set_err(err, errlen, "store_migrate: no store");
        return STORE_E_INVALID;
    }
    store_rc_t rc = ready(st, err, errlen);
    if (rc != STORE_OK)
        return rc;
    for (size_t i = 0; i < store_migrations_count; i++) {
        bool ran;
        rc = migrate_one(st, &store_migrations[i], &ran, err, errlen);
        if (rc != STORE_OK)
            return rc;
        if (ran && applied)
            (*applied)++;
    }
    /* Statements prepared against the old schema are planned again by the
     * server; nothing to do here. */
    return STORE_OK;
}

store_rc_t store_check_schema(store_t *st, char *err, size_t errlen)
{
    if (!st) {
        set_err(err, errlen, "store_check_schema: no store");
        return STORE_E_INVALID;
    }
    store_rc_t rc = ready(st, err, errlen);
    if (rc != STORE_OK)
        return rc;
    PGresult *r = NULL;
    rc = exec_sql(st, "SELECT to_regclass('schema_migrations') IS NOT NULL", "schema check", &r,
                  err, errlen);
    if (rc != STORE_OK)
        return rc;
    bool present = strcmp(get_str(r, 0, 0), "t") == 0;
    PQclear(r);
    int want = newest_migration();
    if (!present) {
        set_err(err, errlen,
                "the store schema is missing (this build expects version %d): run couponctl db "
                "migrate",
                want);
        return STORE_E_SCHEMA;
    }
    rc = exec_sql(st, "SELECT coalesce(max(version), 0) FROM schema_migrations", "schema check", &r,
                  err, errlen);
    if (rc != STORE_OK)
        return rc;
    int have = (int)get_i64(r, 0, 0);
    PQclear(r);
    if (have < want) {
        set_err(err, errlen,
                "the store schema is version %d, this build expects %d: run couponctl db migrate",
                have, want);
        return STORE_E_SCHEMA;
    }
    if (have > want) {
        set_err(err, errlen,
                "the store schema is version %d, newer than this build's %d: upgrade coupond", have,
                want);
        return STORE_E_SCHEMA;
    }
    return STORE_OK;
}

/* ---- deals and orders ------------------------------------------------- */

static bool currency_ok(const char *c)
{
    return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' &&
           c[2] >= 'A' && c[2] <= 'Z';
}

store_rc_t store_deal_set(store_t *st, int64_t deal_id, int64_t price_cents, const char *currency,
                          bool active, char *err, size_t errlen)
{
    if (!st || deal_id <= 0 || price_cents <= 0 || !currency_ok(currency)) {
        set_err(err, errlen,
                "deal set: invalid arguments (deal_id and price_cents > 0, currency like EUR)");
        return STORE_E_INVALID;
    }
    char id[24], price[24];
    snprintf(id, sizeof id, "%" PRId64, deal_id);
    snprintf(price, sizeof price, "%" PRId64, price_cents);
    const char *params[4] = {id, price, currency, active ? "true" : "false"};
    PGresult *r;
    char what[48];
    snprintf(what, sizeof what, "deal %" PRId64, deal_id);
    store_rc_t rc = run(st, STMT_DEAL_SET, params, what, &r, err, errlen);
    if (rc == STORE_OK)
        PQclear(r);
    return rc;
}

store_rc_t store_order_get(store_t *st, int64_t order_id, store_order_t *out, char *err,
                           size_t errlen)
{
    if (!st || !out) {
        set_err(err, errlen, "order get: invalid arguments");
        return STORE_E_INVALID;
    }
    memset(out, 0, sizeof *out);
    char id[24], what[48];
    snprintf(id, sizeof id, "%" PRId64, order_id);
    snprintf(what, sizeof what, "order %" PRId64, order_id);
    const char *params[1] = {id};
    PGresult *r;
    store_rc_t rc = run(st, STMT_ORDER_GET, params, what, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        set_err(err, errlen, "order %" PRId64 " is unknown", order_id);
        return STORE_NOT_FOUND;
    }
    msg_payment_t *p = &out->payment;
    copy_str(p->payment_id, sizeof p->payment_id, get_str(r, 0, 0));
    p->order_id = order_id;
    p->user_id = get_i64(r, 0, 1);
    p->deal_id = get_i64(r, 0, 2);
    p->quantity = (int32_t)get_i64(r, 0, 3);
    p->amount_cents = get_i64(r, 0, 4);
    copy_str(p->currency, sizeof p->currency, get_str(r, 0, 5));
    p->paid_at_us = get_i64(r, 0, 6);
    copy_str(p->paid_at, sizeof p->paid_at, get_str(r, 0, 7));
    p->version = 1;
    copy_str(out->state, sizeof out->state, get_str(r, 0, 8));
    out->attempts = (int)get_i64(r, 0, 9);
    copy_str(out->last_error, sizeof out->last_error, get_str(r, 0, 10));
    copy_str(out->created_at, sizeof out->created_at, get_str(r, 0, 11));
    copy_str(out->updated_at, sizeof out->updated_at, get_str(r, 0, 12));
    out->ncoupons = (int)get_i64(r, 0, 13);
    copy_str(out->issued_by, sizeof out->issued_by, get_str(r, 0, 14));
    out->refund_seq = get_i64(r, 0, 15);
    copy_str(out->refund_reason, sizeof out->refund_reason, get_str(r, 0, 16));
    copy_str(out->refunded_at, sizeof out->refunded_at, get_str(r, 0, 17));
    PQclear(r);
    return STORE_OK;
}

/* ---- issue and refund ------------------------------------------------- */

const char *store_outcome_name(store_outcome_t o)
{
    switch (o) {
    case STORE_ISSUED:
        return "issued";
    case STORE_DUPLICATE:
        return "duplicate";
    case STORE_TRANSIENT:
        return "transient";
    case STORE_REJECTED:
        return "rejected";
    case STORE_REFUNDED:
        return "refunded";
    }
    return "unknown";
}

int store_coupon_code(char out[17])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; /* Crockford */
    unsigned char buf[10];                                             /* 80 bits */
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = getrandom(buf + got, sizeof buf - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            out[0] = '\0';
            return -1;
        }
        got += (size_t)n;
    }
    /* 16 groups of 5 bits, most significant first. */
    unsigned acc = 0, bits = 0;
    int k = 0;
    for (size_t i = 0; i < sizeof buf; i++) {
        acc = (acc << 8) | buf[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[k++] = alphabet[(acc >> bits) & 31];
        }
    }
    out[16] = '\0';
    explicit_bzero(buf, sizeof buf);
    return 0;
}

/* Checks p against the notification rules the database would also refuse. */
static bool payment_ok(const msg_payment_t *p, char *why, size_t whylen)
{
    size_t len = strnlen(p->payment_id, sizeof p->payment_id);
    if (len == 0 || len > MSG_PAYMENT_ID_MAX) {
        set_err(why, whylen, "invalid payment_id length");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = p->payment_id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            set_err(why, whylen, "invalid character in payment_id");
            return false;
        }
    }
    if (p->order_id <= 0 || p->user_id <= 0 || p->deal_id <= 0) {
        set_err(why, whylen, "order_id, user_id and deal_id must be > 0");
        return false;
    }
    if (p->order_id % 100 != p->user_id % 100) {
        set_err(why, whylen, "order_id %% 100 != user_id %% 100");
        return false;
    }
    if (p->quantity < 1 || p->quantity > 100) {
        set_err(why, whylen, "quantity %d not in 1-100", (int)p->quantity);
        return false;
    }
    if (p->amount_cents <= 0) {
        set_err(why, whylen, "amount_cents must be > 0");
        return false;
    }
    if (!currency_ok(p->currency)) {
        set_err(why, whylen, "currency must be three upper-case letters");
        return false;
    }
    return true;
}

static bool issued_by_ok(const char *by)
{
    return by && (strcmp(by, "l") == 0 || strcmp(by, "w") == 0 || strcmp(by, "replay") == 0);
}

/* A payment's numbers as text parameters. */
struct payment_text {
    char order_id[24], user_id[24], deal_id[24], quantity[12], amount[24], paid_at_us[24];
};

static void payment_text_make(struct payment_text *t, const msg_payment_t *p)
{
    snprintf(t->order_id, sizeof t->order_id, "%" PRId64, p->order_id);
    snprintf(t->user_id, sizeof t->user_id, "%" PRId64, p->user_id);
    snprintf(t->deal_id, sizeof t->deal_id, "%" PRId64, p->deal_id);
    snprintf(t->quantity, sizeof t->quantity, "%d", (int)p->quantity);
    snprintf(t->amount, sizeof t->amount, "%" PRId64, p->amount_cents);
    snprintf(t->paid_at_us, sizeof t->paid_at_us, "%" PRId64, p->paid_at_us);
}

/* The parameters of one coupond_issue call, with fresh codes. */
struct issue_params {
    struct payment_text t;
    char codes[100 * 17 + 3]; /* "{CODE,CODE,...}" */
    const char *values[10];
};

static int issue_params_make(struct issue_params *ip, const msg_payment_t *p, const char *issued_by)
{
    payment_text_make(&ip->t, p);
    char *w = ip->codes;
    *w++ = '{';
    for (int i = 0; i < p->quantity; i++) {
        if (i > 0)
            *w++ = ',';
        if (store_coupon_code(w) != 0)
            return -1;
        w += 16;
    }
    *w++ = '}';
    *w = '\0';
    const struct payment_text *t = &ip->t;
    const char *v[10] = {t->order_id, p->payment_id, t->user_id,    t->deal_id, t->quantity,
                         t->amount,   p->currency,   t->paid_at_us, ip->codes,  issued_by};
    memcpy(ip->values, v, sizeof v);
    return 0;
}

/* Sets res->outcome (and rc) from coupond_issue's outcome column. */
static store_rc_t issue_outcome(const char *outcome, store_result_t *res, char *err, size_t errlen)
{
    if (strcmp(outcome, "issued") == 0)
        res->outcome = STORE_ISSUED;
    else if (strcmp(outcome, "duplicate") == 0)
        res->outcome = STORE_DUPLICATE;
    else if (strcmp(outcome, "transient") == 0)
        res->outcome = STORE_TRANSIENT;
    else if (strcmp(outcome, "rejected") == 0)
        res->outcome = STORE_REJECTED;
    else if (strcmp(outcome, "conflict") == 0) {
        res->outcome = STORE_REJECTED;
        res->conflict = true;
    } else {
        set_err(err, errlen, "issue: unknown outcome \"%s\"", outcome);
        return STORE_E_QUERY;
    }
    res->rc = STORE_OK;
    return STORE_OK;
}

/* Fills res from a coupond_issue row. */
static store_rc_t issue_result(const PGresult *r, store_result_t *res, char *err, size_t errlen)
{
    if (PQntuples(r) != 1 || PQnfields(r) != 3) {
        set_err(err, errlen, "issue: unexpected result shape");
        return STORE_E_QUERY;
    }
    copy_str(res->state, sizeof res->state, get_str(r, 0, 1));
    copy_str(res->error, sizeof res->error, get_str(r, 0, 2));
    return issue_outcome(get_str(r, 0, 0), res, err, errlen);
}

static void result_clear(store_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->outcome = STORE_TRANSIENT;
}

store_rc_t store_issue(store_t *st, const msg_payment_t *p, const char *issued_by,
                       store_result_t *res, char *err, size_t errlen)
{
    if (!st || !p || !res) {
        set_err(err, errlen, "issue: invalid arguments");
        return STORE_E_INVALID;
    }
    result_clear(res);
    char why[128];
    if (!issued_by_ok(issued_by)) {
        set_err(err, errlen, "issue: issued_by must be l, w or replay");
        return res->rc = STORE_E_INVALID;
    }
    if (!payment_ok(p, why, sizeof why)) {
        set_err(err, errlen, "issue order %" PRId64 ": %s", p->order_id, why);
        return res->rc = STORE_E_INVALID;
    }
    struct issue_params ip;
    if (issue_params_make(&ip, p, issued_by) != 0) {
        set_err(err, errlen, "issue order %" PRId64 ": the CSPRNG failed: %s", p->order_id,
                strerror(errno));
        return res->rc = STORE_E_QUERY;
    }
    char what[48];
    snprintf(what, sizeof what, "issue order %" PRId64, p->order_id);
    PGresult *r;
    store_rc_t rc = run(st, STMT_ISSUE, ip.values, what, &r, err, errlen);
    if (rc == STORE_OK) {
        rc = issue_result(r, res, err, errlen);
        PQclear(r);
    }
    res->rc = rc;
    return rc;
}

/* Reads one pipelined order's results, up to and including its sync point.
 * Returns the first result (caller clears), or NULL when the connection broke. */
static PGresult *pipeline_take(store_t *st)
{
    PGresult *first = NULL;
    int empty = 0;
    for (;;) {
        PGresult *r = PQgetResult(st->conn);
        if (!r) {
            /* One NULL ends the statement's results; more mean nothing is coming. */
            if (++empty > 2 || PQstatus(st->conn) != CONNECTION_OK)
                break;
            continue;
        }
        empty = 0;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (first)
                return first;
            break;
        }
        if (!first)
            first = r;
        else
            PQclear(r);
    }
    if (first)
        PQclear(first);
    return NULL;
}

static void batch_broken(store_t *st, store_result_t *res, size_t from, size_t to, char *err,
                         size_t errlen)
{
    set_err(err, errlen, "issue batch: store connection lost: %s",
            st->conn ? PQerrorMessage(st->conn) : "no connection");
    for (size_t i = from; i < to; i++) {
        /* Orders not yet answered (invalid ones already are). */
        if (res[i].rc == STORE_OK) {
            res[i].rc = STORE_E_UNAVAILABLE;
            copy_str(res[i].error, sizeof res[i].error, "store connection lost");
        }
    }
    disconnect(st);
}

/* store_issue_batch's fallback: one transaction per order, pipelined. */
static store_rc_t issue_pipeline(store_t *st, const msg_payment_t *ps, size_t n,
                                 const char *issued_by, store_result_t *res, char *err,
                                 size_t errlen)
{
    if (!st || (n > 0 && (!ps || !res))) {
        set_err(err, errlen, "issue batch: invalid arguments");
        return STORE_E_INVALID;
    }
    for (size_t i = 0; i < n; i++)
        result_clear(&res[i]);
    if (n == 0)
        return STORE_OK;
    if (!issued_by_ok(issued_by)) {
        set_err(err, errlen, "issue batch: issued_by must be l, w or replay");
        for (size_t i = 0; i < n; i++) {
            res[i].rc = STORE_E_INVALID;
            copy_str(res[i].error, sizeof res[i].error, "issued_by must be l, w or replay");
        }
        return STORE_E_INVALID;
    }
    store_rc_t rc = ready(st, err, errlen);
    if (rc == STORE_OK)
        rc = prepare(st, STMT_ISSUE, err, errlen);
    if (rc != STORE_OK) {
        for (size_t i = 0; i < n; i++) {
            res[i].rc = rc;
            copy_str(res[i].error, sizeof res[i].error, err);
        }
        return rc;
    }

    struct issue_params *ip = malloc(sizeof *ip);
    bool *sent = malloc(BATCH_CHUNK * sizeof *sent);
    if (!ip || !sent) {
        free(ip);
        free(sent);
        set_err(err, errlen, "issue batch: out of memory");
        for (size_t i = 0; i < n; i++) {
            res[i].rc = STORE_E_QUERY;
            copy_str(res[i].error, sizeof res[i].error, "out of memory");
        }
        return STORE_E_QUERY;
    }
    for (size_t start = 0; start < n; start += BATCH_CHUNK) {
        size_t end = n - start > BATCH_CHUNK ? start + BATCH_CHUNK : n;
        if (!PQenterPipelineMode(st->conn)) {
            batch_broken(st, res, start, n, err, errlen);
            rc = STORE_E_UNAVAILABLE;
            goto out;
        }
        for (size_t i = start; i < end; i++) {
            char why[128];
            sent[i - start] = false;
            if (!payment_ok(&ps[i], why, sizeof why)) {
                res[i].rc = STORE_E_INVALID;
                copy_str(res[i].error, sizeof res[i].error, why);
                continue;
            }
            if (issue_params_make(ip, &ps[i], issued_by) != 0) {
                res[i].rc = STORE_E_QUERY;
                copy_str(res[i].error, sizeof res[i].error, "the CSPRNG failed");
                continue;
            }
            /* A sync after each order: each is its own transaction, and an
             * error aborts only that one. */
            if (!PQsendQueryPrepared(st->conn, stmts[STMT_ISSUE].name, stmts[STMT_ISSUE].nparams,
                                     ip->values, NULL, NULL, 0) ||
                !PQpipelineSync(st->conn)) {
                batch_broken(st, res, start, n, err, errlen);
                rc = STORE_E_UNAVAILABLE;
                goto out;
            }
            sent[i - start] = true;
        }
        for (size_t i = start; i < end; i++) {
            if (!sent[i - start])
                continue;
            PGresult *r = pipeline_take(st);
            if (!r) {
                batch_broken(st, res, i, n, err, errlen);
                rc = STORE_E_UNAVAILABLE;
                goto out;
            }
            ExecStatusType s = PQresultStatus(r);
            if (s == PGRES_TUPLES_OK) {
                char e[CP_ERRLEN];
                if (issue_result(r, &res[i], e, sizeof e) != STORE_OK) {
                    res[i].rc = STORE_E_QUERY;
                    copy_str(res[i].error, sizeof res[i].error, e);
                }
            } else {
                const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
                res[i].rc = STORE_E_QUERY;
                set_err(res[i].error, sizeof res[i].error, "%s (SQLSTATE %s)",
                        msg ? msg : PQerrorMessage(st->conn), state ? state : "?");
            }
            PQclear(r);
        }
        if (!PQexitPipelineMode(st->conn)) {
            batch_broken(st, res, end, n, err, errlen);
            rc = STORE_E_UNAVAILABLE;
            goto out;
        }
    }
    rc = STORE_OK;
out:
    explicit_bzero(ip, sizeof *ip);
    free(ip);
    free(sent);
    return rc;
}

/* Appends one element to an array literal: '{' before the first, ',' between. */
static void tb_elem(textbuf_t *b, const char *s)
{
    textbuf_put(b, b->len ? "," : "{", 1);
    textbuf_put(b, s, strlen(s));
}

static void tb_elem_i64(textbuf_t *b, int64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%" PRId64, v);
    tb_elem(b, t);
}

/* The parameters of one coupond_issue_batch call. Text elements are quoted;
 * the rules payment_ok checks leave nothing in them to escape. */
enum {
    BA_ORDER,
    BA_PAYMENT,
    BA_USER,
    BA_DEAL,
    BA_QTY,
    BA_AMOUNT,
    BA_CUR,
    BA_PAID,
    BA_CODES,
    BA_CODE_IDX,
    BA_COUNT
};

static void batch_arrays_free(textbuf_t *a)
{
    for (int k = 0; k < BA_COUNT; k++) {
        if (a[k].s)
            explicit_bzero(a[k].s, a[k].cap);
        free(a[k].s);
    }
}

store_rc_t store_issue_batch(store_t *st, const msg_payment_t *ps, size_t n, const char *issued_by,
                             store_result_t *res, char *err, size_t errlen)
{
    /* One order alone, or a bad call: the per-order path says it all. */
    if (!st || n < 2 || !ps || !res || !issued_by_ok(issued_by))
        return issue_pipeline(st, ps, n, issued_by, res, err, errlen);

    textbuf_t a[BA_COUNT] = {{0}};
    size_t *pos = malloc(n * sizeof *pos), m = 0;
    if (!pos) {
        set_err(err, errlen, "issue batch: out of memory");
        return issue_pipeline(st, ps, n, issued_by, res, err, errlen);
    }
    for (size_t i = 0; i < n; i++) {
        char why[128], quoted[MSG_PAYMENT_ID_MAX + 3], code[17];
        result_clear(&res[i]);
        if (!payment_ok(&ps[i], why, sizeof why)) {
            res[i].rc = STORE_E_INVALID;
            copy_str(res[i].error, sizeof res[i].error, why);
            continue;
        }
        pos[m++] = i;
        tb_elem_i64(&a[BA_ORDER], ps[i].order_id);
        snprintf(quoted, sizeof quoted, "\"%s\"", ps[i].payment_id);
        tb_elem(&a[BA_PAYMENT], quoted);
        tb_elem_i64(&a[BA_USER], ps[i].user_id);
        tb_elem_i64(&a[BA_DEAL], ps[i].deal_id);
        tb_elem_i64(&a[BA_QTY], ps[i].quantity);
        tb_elem_i64(&a[BA_AMOUNT], ps[i].amount_cents);
        tb_elem(&a[BA_CUR], ps[i].currency);
        tb_elem_i64(&a[BA_PAID], ps[i].paid_at_us);
        for (int q = 0; q < ps[i].quantity; q++) {
            if (store_coupon_code(code) != 0) {
                set_err(err, errlen, "issue batch: the CSPRNG failed: %s", strerror(errno));
                batch_arrays_free(a);
                free(pos);
                return issue_pipeline(st, ps, n, issued_by, res, err, errlen);
            }
            tb_elem(&a[BA_CODES], code);
            tb_elem_i64(&a[BA_CODE_IDX], (int64_t)m);
        }
    }
    bool oom = false;
    for (int k = 0; k < BA_COUNT; k++) {
        textbuf_put(&a[k], a[k].len ? "}" : "{}", a[k].len ? 1 : 2);
        oom |= a[k].oom;
    }
    store_rc_t rc = STORE_OK;
    if (m == 0 || oom) {
        if (oom) {
            set_err(err, errlen, "issue batch: out of memory");
            rc = issue_pipeline(st, ps, n, issued_by, res, err, errlen);
        }
        goto out;
    }

    const char *values[BA_COUNT + 1];
    for (int k = 0; k < BA_COUNT; k++)
        values[k] = a[k].s;
    values[BA_COUNT] = issued_by;
    PGresult *r;
    rc = run(st, STMT_ISSUE_BATCH, values, "issue batch", &r, err, errlen);
    if (rc == STORE_OK) {
        size_t answered = 0;
        for (int row = 0; row < PQntuples(r) && PQnfields(r) == 4; row++) {
            int64_t idx = get_i64(r, row, 0);
            if (idx < 1 || (size_t)idx > m)
                continue;
            store_result_t *one = &res[pos[idx - 1]];
            char e[CP_ERRLEN];
            const char *outcome = get_str(r, row, 1);
            copy_str(one->state, sizeof one->state, get_str(r, row, 2));
            copy_str(one->error, sizeof one->error, get_str(r, row, 3));
            if (issue_outcome(outcome, one, e, sizeof e) == STORE_OK)
                answered++;
        }
        PQclear(r);
        if (answered != m) { /* a bug, not a store condition: say so for each */
            set_err(err, errlen, "issue batch: %zu answers for %zu orders", answered, m);
            for (size_t k = 0; k < m; k++) {
                res[pos[k]].rc = STORE_E_QUERY;
                copy_str(res[pos[k]].error, sizeof res[pos[k]].error, err);
            }
        }
    } else if (rc == STORE_E_UNAVAILABLE) {
        /* Committed or not: unknown, as for a broken pipeline. */
        for (size_t k = 0; k < m; k++) {
            res[pos[k]].rc = STORE_E_UNAVAILABLE;
            copy_str(res[pos[k]].error, sizeof res[pos[k]].error, "store connection lost");
        }
    } else if (rc != STORE_E_SCHEMA) {
        /* Something in the batch failed and rolled it all back (an order
         * the database refused, a deadlock, a timeout): one transaction per
         * order, so that it fails alone. */
        rc = issue_pipeline(st, ps, n, issued_by, res, err, errlen);
    } else {
        for (size_t k = 0; k < m; k++) {
            res[pos[k]].rc = rc;
            copy_str(res[pos[k]].error, sizeof res[pos[k]].error, err);
        }
    }
out:
    batch_arrays_free(a);
    free(pos);
    return rc;
}

/* Fills res from a coupond_refund or coupond_refund_payment row. Returns
 * STORE_OK, STORE_NOT_FOUND (the order is not stored) or STORE_E_QUERY. */
static store_rc_t refund_result(const PGresult *r, const char *what, store_result_t *res, char *err,
                                size_t errlen)
{
    if (PQntuples(r) != 1 || PQnfields(r) != 4) {
        set_err(err, errlen, "%s: unexpected result shape", what);
        return STORE_E_QUERY;
    }
    const char *outcome = get_str(r, 0, 0);
    copy_str(res->state, sizeof res->state, get_str(r, 0, 1));
    copy_str(res->error, sizeof res->error, get_str(r, 0, 2));
    res->refund_seq = get_i64(r, 0, 3);
    if (strcmp(outcome, "refunded") == 0) {
        res->outcome = STORE_REFUNDED;
    } else if (strcmp(outcome, "duplicate") == 0) {
        res->outcome = STORE_DUPLICATE;
    } else if (strcmp(outcome, "conflict") == 0) {
        res->outcome = STORE_REJECTED;
        res->conflict = true;
    } else if (strcmp(outcome, "not_found") == 0) {
        set_err(err, errlen, "%s", res->error);
        return STORE_NOT_FOUND;
    } else {
        set_err(err, errlen, "%s: unknown outcome \"%s\"", what, outcome);
        return STORE_E_QUERY;
    }
    return STORE_OK;
}

store_rc_t store_refund(store_t *st, int64_t order_id, const char *reason, store_result_t *res,
                        char *err, size_t errlen)
{
    if (!st || !res) {
        set_err(err, errlen, "refund: invalid arguments");
        return STORE_E_INVALID;
    }
    result_clear(res);
    char id[24], what[48];
    snprintf(id, sizeof id, "%" PRId64, order_id);
    snprintf(what, sizeof what, "refund order %" PRId64, order_id);
    const char *params[2] = {id, reason ? reason : ""};
    PGresult *r;
    store_rc_t rc = run(st, STMT_REFUND, params, what, &r, err, errlen);
    if (rc != STORE_OK)
        return res->rc = rc;
    rc = refund_result(r, what, res, err, errlen);
    PQclear(r);
    return res->rc = rc;
}

store_rc_t store_refund_payment(store_t *st, const msg_payment_t *p, const char *reason,
                                store_result_t *res, char *err, size_t errlen)
{
    if (!st || !p || !res) {
        set_err(err, errlen, "refund payment: invalid arguments");
        return STORE_E_INVALID;
    }
    result_clear(res);
    char why[128];
    if (!payment_ok(p, why, sizeof why)) {
        set_err(err, errlen, "refund order %" PRId64 ": %s", p->order_id, why);
        return res->rc = STORE_E_INVALID;
    }
    struct payment_text t;
    payment_text_make(&t, p);
    const char *params[9] = {t.order_id,  p->payment_id, t.user_id,
                             t.deal_id,   t.quantity,    t.amount,
                             p->currency, t.paid_at_us,  reason ? reason : ""};
    char what[48];
    snprintf(what, sizeof what, "refund order %" PRId64, p->order_id);
    PGresult *r;
    store_rc_t rc = run(st, STMT_REFUND_PAYMENT, params, what, &r, err, errlen);
    if (rc != STORE_OK)
        return res->rc = rc;
    rc = refund_result(r, what, res, err, errlen);
    if (rc == STORE_NOT_FOUND) { /* coupond_refund_payment records the order first */
        set_err(err, errlen, "%s: unexpected not_found: %s", what, res->error);
        rc = STORE_E_QUERY;
    }
    PQclear(r);
    return res->rc = rc;
}

/* ---- sweeper ---------------------------------------------------------- */

store_rc_t store_sweep_take(store_t *st, int refund_after_s, int stale_ms, msg_payment_t *ps,
                            bool *due, size_t max, size_t *n, char *err, size_t errlen)
{
    if (n)
        *n = 0;
    if (!st || !n || (max > 0 && !ps) || refund_after_s < 0 || stale_ms < 0) {
        set_err(err, errlen, "sweep: invalid arguments");
        return STORE_E_INVALID;
    }
    if (max == 0)
        return STORE_OK;
    PGresult *r;
    store_rc_t rc;
    if (!st->sweep_locked) {
        rc = run(st, STMT_SWEEP_LOCK, NULL, "sweep lock", &r, err, errlen);
        if (rc != STORE_OK)
            return rc;
        bool got = PQntuples(r) == 1 && strcmp(get_str(r, 0, 0), "t") == 0;
        PQclear(r);
        if (!got)
            return STORE_OK; /* another sweeper is at work */
        st->sweep_locked = true;
    }

    char after[16], stale[16], limit[24];
    snprintf(after, sizeof after, "%d", refund_after_s);
    snprintf(stale, sizeof stale, "%d", stale_ms);
    snprintf(limit, sizeof limit, "%zu", max);
    const char *params[3] = {after, stale, limit};
    rc = run(st, STMT_SWEEP, params, "sweep", &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (!st->sweep_locked) {
        /* The session was replaced on the way: the lock went with it. */
        PQclear(r);
        return STORE_OK;
    }
    if (PQnfields(r) != 10 || (size_t)PQntuples(r) > max) {
        PQclear(r);
        set_err(err, errlen, "sweep: unexpected result shape");
        return STORE_E_QUERY;
    }
    size_t rows = (size_t)PQntuples(r);
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        msg_payment_t *p = &ps[i];
        memset(p, 0, sizeof *p);
        p->order_id = get_i64(r, row, 0);
        copy_str(p->payment_id, sizeof p->payment_id, get_str(r, row, 1));
        p->user_id = get_i64(r, row, 2);
        p->deal_id = get_i64(r, row, 3);
        p->quantity = (int32_t)get_i64(r, row, 4);
        p->amount_cents = get_i64(r, row, 5);
        copy_str(p->currency, sizeof p->currency, get_str(r, row, 6));
        p->paid_at_us = get_i64(r, row, 7);
        copy_str(p->paid_at, sizeof p->paid_at, get_str(r, row, 8));
        p->version = 1;
        if (due)
            due[i] = strcmp(get_str(r, row, 9), "t") == 0;
    }
    PQclear(r);
    *n = rows;
    return STORE_OK;
}

void store_sweep_done(store_t *st)
{
    if (!st || !st->sweep_locked)
        return;
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK) {
        disconnect(st); /* the lock went with the session */
        return;
    }
    PGresult *r;
    char err[CP_ERRLEN];
    store_rc_t rc = run(st, STMT_SWEEP_UNLOCK, NULL, "sweep unlock", &r, err, sizeof err);
    bool released = rc == STORE_OK && PQntuples(r) == 1 && strcmp(get_str(r, 0, 0), "t") == 0;
    if (rc == STORE_OK)
        PQclear(r);
    if (!released && st->sweep_locked) {
        /* Cannot say whether this session still holds it: ending the
         * session releases it for sure (the next call reconnects). */
        disconnect(st);
    }
    st->sweep_locked = false;
}

/* ---- refund outbox ---------------------------------------------------- */

store_rc_t store_outbox_take(store_t *st, store_outbox_row_t *rows, size_t max, size_t *n,
                             char *err, size_t errlen)
{
    if (n)
        *n = 0;
    if (!st || !n || (max > 0 && !rows)) {
        set_err(err, errlen, "outbox take: invalid arguments");
        return STORE_E_INVALID;
    }
    if (max == 0)
        return STORE_OK;
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", max);
    const char *params[1] = {limit};
    PGresult *r;
    store_rc_t rc = run(st, STMT_OUTBOX_TAKE, params, "outbox take", &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQnfields(r) != 3 || (size_t)PQntuples(r) > max) {
        PQclear(r);
        set_err(err, errlen, "outbox take: unexpected result shape");
        return STORE_E_QUERY;
    }
    size_t got = (size_t)PQntuples(r);
    for (size_t i = 0; i < got; i++) {
        int row = (int)i;
        rows[i].id = get_i64(r, row, 0);
        rows[i].order_id = get_i64(r, row, 1);
        copy_utf8(rows[i].payload, sizeof rows[i].payload, get_str(r, row, 2));
    }
    PQclear(r);
    *n = got;
    return STORE_OK;
}

store_rc_t store_outbox_sent(store_t *st, const int64_t *ids, size_t n, char *err, size_t errlen)
{
    if (!st || (n > 0 && !ids)) {
        set_err(err, errlen, "outbox sent: invalid arguments");
        return STORE_E_INVALID;
    }
    if (n == 0)
        return STORE_OK;
    /* "{1,2,3}": at most 20 digits and a sign or separator per id. */
    if (n > (SIZE_MAX - 3) / 22) {
        set_err(err, errlen, "outbox sent: too many ids");
        return STORE_E_INVALID;
    }
    size_t size = n * 22 + 3;
    char *list = malloc(size);
    if (!list) {
        set_err(err, errlen, "outbox sent: out of memory");
        return STORE_E_INVALID;
    }
    size_t w = 0;
    list[w++] = '{';
    for (size_t i = 0; i < n; i++)
        w += (size_t)snprintf(list + w, size - w, "%s%" PRId64, i ? "," : "", ids[i]);
    list[w++] = '}';
    list[w] = '\0';
    const char *params[1] = {list};
    PGresult *r;
    store_rc_t rc = run(st, STMT_OUTBOX_SENT, params, "outbox sent", &r, err, errlen);
    free(list);
    if (rc == STORE_OK)
        PQclear(r);
    return rc;
}

store_rc_t store_dead_letter(store_t *st, const store_letter_t *dl, int64_t *id, int *seen,
                             char *err, size_t errlen)
{
    size_t len = dl->len > STORE_LETTER_MAX ? STORE_LETTER_MAX : dl->len;
    char *body_hex = malloc(len * 2 + 1);
    PGresult *r;
    store_rc_t rc;

    if (!body_hex) {
        set_err(err, errlen, "dead letter: out of memory");
        return STORE_E_INVALID;
    }
    /* Hex keeps arbitrary bytes (NULs included) intact through a text parameter. */
    cp_hex(dl->body, len, body_hex);
    const char *params[5] = {dl->lane, dl->reason, dl->detail ? dl->detail : "",
                             dl->headers_json ? dl->headers_json : "{}", body_hex};
    rc = run(st, STMT_DEAD_LETTER, params, "dead letter", &r, err, errlen);
    free(body_hex);
    if (rc != STORE_OK)
        return rc;
    if (id)
        *id = PQntuples(r) == 1 ? get_i64(r, 0, 0) : 0;
    if (seen)
        *seen = PQntuples(r) == 1 ? (int)get_i64(r, 0, 1) : 0;
    PQclear(r);
    return STORE_OK;
}

void store_set_async_commit(store_t *st, bool on)
{
    st->async_commit = on;
    if (st->conn) {
        PGresult *r =
            PQexec(st->conn, on ? "SET synchronous_commit = off" : "SET synchronous_commit = on");
        PQclear(r);
    }
}

store_rc_t store_finished(store_t *st, const int64_t *order_ids, size_t n, bool *finished,
                          char *err, size_t errlen)
{
    char *arr, *p;
    PGresult *r;
    store_rc_t rc;

    memset(finished, 0, n * sizeof *finished);
    if (n == 0)
        return STORE_OK;
    arr = malloc(n * 21 + 3);
    if (!arr) {
        set_err(err, errlen, "finished: out of memory");
        return STORE_E_INVALID;
    }
    p = arr;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%" PRId64, i ? "," : "", order_ids[i]);
    *p++ = '}';
    *p = '\0';
    const char *params[1] = {arr};
    rc = run(st, STMT_FINISHED, params, "finished orders", &r, err, errlen);
    free(arr);
    if (rc != STORE_OK)
        return rc;
    /* Few rows, small batches: a nested scan is cheaper than a hash here. */
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t id = get_i64(r, row, 0);
        for (size_t i = 0; i < n; i++)
            if (order_ids[i] == id)
                finished[i] = true;
    }
    PQclear(r);
    return STORE_OK;
}

/* store_query's and store_query_tx's statement, on a usable connection. */
static store_rc_t query_now(store_t *st, const char *what, const char *sql, int nparams,
                            const char *const *params, PGresult **out, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(st->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        *out = r;
        return STORE_OK;
    }
    store_rc_t rc = failed(st, r, what, err, errlen);
    PQclear(r);
    return rc;
}

store_rc_t store_query(store_t *st, const char *what, const char *sql, int nparams,
                       const char *const *params, PGresult **out, char *err, size_t errlen)
{
    *out = NULL;
    store_rc_t rc = ready(st, err, errlen);
    if (rc != STORE_OK)
        return rc;
    return query_now(st, what, sql, nparams, params, out, err, errlen);
}

store_rc_t store_query_tx(store_t *st, const char *what, const char *sql, int nparams,
                          const char *const *params, PGresult **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK ||
        PQtransactionStatus(st->conn) != PQTRANS_INTRANS) {
        set_err(err, errlen, "%s: the transaction was lost", what);
        return STORE_E_UNAVAILABLE;
    }
    return query_now(st, what, sql, nparams, params, out, err, errlen);
}

store_rc_t store_issue_preview(store_t *st, const msg_payment_t *p, store_result_t *res, char *err,
                               size_t errlen)
{
    static const char sql[] =
        "SELECT outcome, state, error FROM coupond_issue_preview($1::bigint, $2::text, "
        "$3::bigint, $4::bigint, $5::integer, $6::bigint, $7::text, "
        "timestamptz 'epoch' + $8::bigint * interval '1 microsecond')";
    struct payment_text t;
    PGresult *r;

    result_clear(res);
    payment_text_make(&t, p);
    const char *v[8] = {t.order_id, p->payment_id, t.user_id,   t.deal_id,
                        t.quantity, t.amount,      p->currency, t.paid_at_us};
    store_rc_t rc = store_query(st, "issue preview", sql, 8, v, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    rc = issue_result(r, res, err, errlen);
    PQclear(r);
    return rc;
}
