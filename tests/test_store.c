/* test_store.c: integration tests of the store against a real PostgreSQL.
 *
 * The server comes from the standard libpq environment (PGHOST, PGPORT,
 * PGUSER, PGPASSWORD or PGPASSFILE, PGDATABASE). The test connects to
 * PGDATABASE, creates a fresh database coupond_test_<pid>_<time> (and a second
 * one for the concurrent migration), works there, and drops them at exit. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "check.h"
#include "store.h"

#define GENESIS    "0000000000000000000000000000000000000000000000000000000000000000"
#define PAID_AT_US INT64_C(1795255200000000) /* 2026-11-21T10:00:00Z */

static char test_db[64], test_db2[80];
static PGconn *admin; /* to PGDATABASE: creates and drops the test databases */
static PGconn *db;    /* to the test database, for raw SQL */

/* ---- fixture ---------------------------------------------------------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_store: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1); /* atexit drops the databases */
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Connects to database name (NULL: PGDATABASE), other settings from PG*. */
static PGconn *connect_db(const char *name)
{
    const char *keys[] = {"client_encoding", name ? "dbname" : NULL, NULL};
    const char *vals[] = {"UTF8", name, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(c) != CONNECTION_OK)
        die("cannot connect to %s: %s", name ? name : "PGDATABASE", PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static void drop_db(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PGresult *r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "test_store: %s: %s", sql, PQerrorMessage(admin));
    PQclear(r);
}

static void create_db(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
             name);
    PGresult *r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("%s: %s", sql, PQerrorMessage(admin));
    PQclear(r);
}

static void drop_databases(void)
{
    if (db) {
        PQfinish(db);
        db = NULL;
    }
    if (!admin)
        return;
    if (test_db[0])
        drop_db(test_db);
    if (test_db2[0])
        drop_db(test_db2);
    test_db[0] = test_db2[0] = '\0';
    PQfinish(admin);
    admin = NULL;
}

/* ---- raw SQL helpers -------------------------------------------------- */

static PGresult *sql(const char *fmt, ...) CP_PRINTF(1, 2);
static PGresult *sql(const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    return PQexec(db, q);
}

/* The first value of a query, as an integer (-1 on error). */
static int64_t sql_int(const char *fmt, ...) CP_PRINTF(1, 2);
static int64_t sql_int(const char *fmt, ...)
{
    char q[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(db, q);
    int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "test_store: %s: %s", q, PQerrorMessage(db));
    PQclear(r);
    return v;
}

/* Runs q, which must fail with an error containing want. */
static bool sql_fails(const char *q, const char *want)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType s = PQresultStatus(r);
    const char *msg = PQresultErrorMessage(r);
    bool ok = s == PGRES_FATAL_ERROR && strstr(msg, want) != NULL;
    if (!ok)
        fprintf(stderr, "test_store: expected \"%s\" to fail with \"%s\", got %s: %s\n", q, want,
                PQresStatus(s), msg);
    PQclear(r);
    return ok;
}

static bool sql_ok(const char *q)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "test_store: %s: %s", q, PQerrorMessage(db));
    PQclear(r);
    return ok;
}

static store_t *open_store(const char *name)
{
    char conninfo[128], err[CP_ERRLEN];
    snprintf(conninfo, sizeof conninfo, "dbname=%s", name);
    store_t *st = NULL;
    store_rc_t rc = store_open(&st, conninfo, NULL, 30000, err, sizeof err);
    if (rc != STORE_OK)
        die("store_open: %s", err);
    return st;
}

/* A valid notification: order n*100+7 of user 7. */
static msg_payment_t payment(int64_t n, int64_t deal_id, int quantity, int64_t amount,
                             const char *currency)
{
    msg_payment_t p;
    memset(&p, 0, sizeof p);
    p.order_id = n * 100 + 7;
    p.user_id = 7;
    snprintf(p.payment_id, sizeof p.payment_id, "pay-%" PRId64, p.order_id);
    p.deal_id = deal_id;
    p.quantity = quantity;
    p.amount_cents = amount;
    snprintf(p.currency, sizeof p.currency, "%s", currency);
    p.paid_at_us = PAID_AT_US + 123000; /* .123 */
    snprintf(p.paid_at, sizeof p.paid_at, "2026-11-21T10:00:00.123Z");
    p.version = 1;
    return p;
}

static int64_t coupons_of(int64_t order_id)
{
    return sql_int("SELECT count(*) FROM coupons WHERE order_id = %" PRId64, order_id);
}

static int64_t refunds_of(int64_t order_id)
{
    return sql_int("SELECT count(*) FROM refund_log WHERE order_id = %" PRId64, order_id);
}

/* The refund hash as src/sql/001_init.sql documents it, recomputed in C. */
static void refund_hash(const char *seq, const char *order_id, const char *payment_id,
                        const char *amount, const char *currency, const char *reason,
                        const char *created_us, const char *prev, char out[65])
{
    char buf[2048];
    int len = snprintf(buf, sizeof buf, "%s\n%s\n%s\n%s\n%s\n%zu:%s\n%s\n%s", seq, order_id,
                       payment_id, amount, currency, strlen(reason), reason, created_us, prev);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)buf, (size_t)len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Walks the whole refund log: seq 1..N, each prev_hash the previous hash,
 * each hash recomputed in C. Returns the number of rows, or -1. */
static int64_t verify_chain(void)
{
    PGresult *r = sql("SELECT seq, order_id, payment_id, amount_cents, currency, reason, "
                      "(extract(epoch FROM created_at) * 1000000)::bigint, prev_hash, hash "
                      "FROM refund_log ORDER BY seq");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return -1;
    }
    char prev[65] = GENESIS;
    int64_t n = PQntuples(r), bad = 0;
    for (int i = 0; i < n; i++) {
        char h[65];
        refund_hash(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                    PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                    PQgetvalue(r, i, 6), PQgetvalue(r, i, 7), h);
        if (strtoll(PQgetvalue(r, i, 0), NULL, 10) != i + 1 ||
            strcmp(PQgetvalue(r, i, 7), prev) != 0 || strcmp(PQgetvalue(r, i, 8), h) != 0) {
            fprintf(stderr, "test_store: refund chain breaks at seq %s\n", PQgetvalue(r, i, 0));
            bad++;
        }
        snprintf(prev, sizeof prev, "%s", PQgetvalue(r, i, 8));
    }
    PQclear(r);
    return bad ? -1 : n;
}

/* ---- migrations ------------------------------------------------------- */

static void test_migrate(store_t *st)
{
    char err[CP_ERRLEN];
    int applied = -1;
    CHECK(store_check_schema(st, err, sizeof err) == STORE_E_SCHEMA);
    CHECK_MSG(strstr(err, "migrate") != NULL, "%s", err);
    CHECK(store_migrate(st, &applied, err, sizeof err) == STORE_OK);
    CHECK_MSG(applied == (int)store_migrations_count, "applied %d", applied);
    CHECK(store_check_schema(st, err, sizeof err) == STORE_OK);
    CHECK(store_migrate(st, &applied, err, sizeof err) == STORE_OK);
    CHECK(applied == 0);
    CHECK(sql_int("SELECT count(*) FROM schema_migrations") == (int64_t)store_migrations_count);
    CHECK(sql_int("SELECT min(version) FROM schema_migrations") == store_migrations[0].version);
}

struct migrate_arg {
    pthread_barrier_t *barrier;
    store_rc_t rc;
    int applied;
    char err[CP_ERRLEN];
};

static void *migrate_thread(void *p)
{
    struct migrate_arg *a = p;
    store_t *st = open_store(test_db2);
    pthread_barrier_wait(a->barrier);
    a->rc = store_migrate(st, &a->applied, a->err, sizeof a->err);
    store_close(st);
    return NULL;
}

static void test_migrate_concurrent(void)
{
    create_db(test_db2);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    struct migrate_arg a[2] = {{.barrier = &barrier}, {.barrier = &barrier}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, migrate_thread, &a[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    CHECK_MSG(a[0].rc == STORE_OK, "%s", a[0].err);
    CHECK_MSG(a[1].rc == STORE_OK, "%s", a[1].err);
    CHECK_MSG(a[0].applied + a[1].applied == (int)store_migrations_count, "%d + %d", a[0].applied,
              a[1].applied);

    PGconn *saved = db;
    db = connect_db(test_db2);
    CHECK(sql_int("SELECT count(*) FROM schema_migrations") == (int64_t)store_migrations_count);
    CHECK(sql_int("SELECT count(*) FROM refund_chain_head") == 1);
    PQfinish(db);
    db = saved;
    drop_db(test_db2);
    test_db2[0] = '\0';
}

/* ---- issue ------------------------------------------------------------ */

static void test_issue(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    CHECK(store_deal_set(st, 1, 500, "EUR", true, err, sizeof err) == STORE_OK);
    CHECK(store_deal_set(st, 1, 500, "eur", true, err, sizeof err) == STORE_E_INVALID);
    CHECK(store_deal_set(st, 0, 500, "EUR", true, err, sizeof err) == STORE_E_INVALID);

    /* Happy path. */
    msg_payment_t p = payment(1, 1, 3, 1500, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK_MSG(res.outcome == STORE_ISSUED, "%s %s", store_outcome_name(res.outcome), res.error);
    CHECK_STR(res.state, "issued");
    CHECK(!res.conflict);
    CHECK(coupons_of(p.order_id) == 3);
    CHECK(sql_int("SELECT count(*) FROM coupons WHERE order_id = %" PRId64
                  " AND issued_by = 'l' AND code ~ '^[0-9A-HJKMNP-TV-Z]{16}$'",
                  p.order_id) == 3);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = %" PRId64, p.order_id) == 1);

    store_order_t o;
    CHECK(store_order_get(st, p.order_id, &o, err, sizeof err) == STORE_OK);
    CHECK_STR(o.state, "issued");
    CHECK(o.ncoupons == 3);
    CHECK_STR(o.issued_by, "l");
    CHECK(o.attempts == 1);
    CHECK(o.refund_seq == 0);
    CHECK_STR(o.refunded_at, "");
    CHECK_STR(o.payment.payment_id, p.payment_id);
    CHECK(o.payment.user_id == 7 && o.payment.deal_id == 1 && o.payment.quantity == 3);
    CHECK(o.payment.amount_cents == 1500);
    CHECK_STR(o.payment.currency, "EUR");
    CHECK(o.payment.paid_at_us == p.paid_at_us);
    CHECK_STR(o.payment.paid_at, "2026-11-21T10:00:00.123Z");
    CHECK_MSG(strlen(o.created_at) == 24 && o.created_at[10] == 'T' && o.created_at[23] == 'Z',
              "%s", o.created_at);

    /* Again, from the other lane: duplicate, still exactly 3 coupons. */
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK_STR(res.state, "issued");
    CHECK(coupons_of(p.order_id) == 3);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = %" PRId64, p.order_id) == 1);

    /* Unknown order. */
    CHECK(store_order_get(st, 999999907, &o, err, sizeof err) == STORE_NOT_FOUND);

    /* Bad arguments never reach the server. */
    msg_payment_t bad = payment(2, 1, 1, 500, "EUR");
    bad.user_id = 8; /* shard mismatch */
    CHECK(store_issue(st, &bad, "l", &res, err, sizeof err) == STORE_E_INVALID);
    bad = payment(2, 1, 0, 500, "EUR");
    CHECK(store_issue(st, &bad, "l", &res, err, sizeof err) == STORE_E_INVALID);
    bad = payment(2, 1, 1, 500, "EUR");
    CHECK(store_issue(st, &bad, "x", &res, err, sizeof err) == STORE_E_INVALID);
    snprintf(bad.payment_id, sizeof bad.payment_id, "pay 2");
    CHECK(store_issue(st, &bad, "l", &res, err, sizeof err) == STORE_E_INVALID);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 207") == 0);
}

static void test_transient(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    CHECK(store_deal_set(st, 2, 250, "EUR", false, err, sizeof err) == STORE_OK);
    msg_payment_t p = payment(3, 2, 2, 500, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_TRANSIENT);
    CHECK_STR(res.state, "pending");
    CHECK_MSG(strstr(res.error, "inactive") != NULL, "%s", res.error);
    store_order_t o;
    CHECK(store_order_get(st, p.order_id, &o, err, sizeof err) == STORE_OK);
    CHECK(o.attempts == 1);
    CHECK_STR(o.last_error, "deal 2 is inactive");
    CHECK_STR(o.state, "pending");
    CHECK(o.ncoupons == 0);

    CHECK(store_deal_set(st, 2, 250, "EUR", true, err, sizeof err) == STORE_OK);
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_ISSUED);
    CHECK(store_order_get(st, p.order_id, &o, err, sizeof err) == STORE_OK);
    CHECK(o.attempts == 2);
    CHECK(o.ncoupons == 2);
    CHECK_STR(o.issued_by, "w");

    /* An unknown deal is transient too. */
    p = payment(4, 404, 1, 500, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_TRANSIENT);
    CHECK_MSG(strstr(res.error, "unknown") != NULL, "%s", res.error);
}

static void test_rejected(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    msg_payment_t p = payment(5, 1, 2, 999, "EUR"); /* 2 x 500 != 999 */
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED);
    CHECK(!res.conflict);
    CHECK_STR(res.state, "pending");
    CHECK_MSG(strncmp(res.error, "rejected", 8) == 0, "%s", res.error);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = %" PRId64
                  " AND last_error LIKE 'rejected: %%'",
                  p.order_id) == 1);
    CHECK(coupons_of(p.order_id) == 0);

    p = payment(6, 1, 2, 1000, "USD");
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED);
    CHECK_MSG(strstr(res.error, "currency") != NULL, "%s", res.error);

    /* Conflicts: this order with another payment, this payment on another order. */
    msg_payment_t q = payment(1, 1, 3, 1500, "EUR");
    snprintf(q.payment_id, sizeof q.payment_id, "other-payment");
    CHECK(store_issue(st, &q, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK_STR(res.state, "issued");
    CHECK_MSG(strncmp(res.error, "rejected: conflict: ", 20) == 0, "%s", res.error);
    q = payment(7, 1, 3, 1500, "EUR");
    snprintf(q.payment_id, sizeof q.payment_id, "pay-107"); /* order 107's */
    CHECK(store_issue(st, &q, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK_STR(res.state, "");
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 707") == 0);
    q = payment(1, 1, 3, 1500, "EUR");
    q.paid_at_us += 1;
    CHECK(store_issue(st, &q, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = 107") == 1);
}

/* ---- refunds ---------------------------------------------------------- */

static void test_refund(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    /* A pending order: deal 3 is inactive. */
    CHECK(store_deal_set(st, 3, 700, "EUR", false, err, sizeof err) == STORE_OK);
    msg_payment_t p = payment(10, 3, 1, 700, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_TRANSIENT);

    /* The test vector of src/sql/001_init.sql. */
    char v[65];
    refund_hash("1", "4201", "pay-1", "1500", "EUR", "deadline", "1795255200000000", GENESIS, v);
    CHECK_STR(v, "fe19e7487a21846d99e4403a4b776a584e02e68851f74ea8042de7d332e84110");

    const char *reason = "deadline passed\nnot issued: \xc3\xa4 (a-umlaut)";
    CHECK(store_refund(st, p.order_id, reason, &res, err, sizeof err) == STORE_OK);
    CHECK_MSG(res.outcome == STORE_REFUNDED, "%s", store_outcome_name(res.outcome));
    CHECK_STR(res.state, "refunded");
    CHECK(res.refund_seq == 1);
    CHECK(refunds_of(p.order_id) == 1);

    PGresult *r = sql("SELECT seq, order_id, payment_id, amount_cents, currency, reason, "
                      "(extract(epoch FROM created_at) * 1000000)::bigint, prev_hash, hash "
                      "FROM refund_log WHERE order_id = %" PRId64,
                      p.order_id);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        char h[65];
        CHECK_STR(PQgetvalue(r, 0, 0), "1");
        CHECK_STR(PQgetvalue(r, 0, 2), "pay-1007");
        CHECK_STR(PQgetvalue(r, 0, 3), "700");
        CHECK_STR(PQgetvalue(r, 0, 5), reason);
        CHECK_STR(PQgetvalue(r, 0, 7), GENESIS);
        refund_hash(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                    PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5),
                    PQgetvalue(r, 0, 6), PQgetvalue(r, 0, 7), h);
        CHECK_STR(PQgetvalue(r, 0, 8), h);
    }
    PQclear(r);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox WHERE order_id = %" PRId64
                  " AND refund_seq = 1 AND sent_at IS NULL AND payload->>'payment_id' = "
                  "'pay-1007' AND (payload->>'amount_cents')::bigint = 700",
                  p.order_id) == 1);
    CHECK(sql_int("SELECT count(*) FROM coupond_refund_verify()") == 0);

    store_order_t o;
    CHECK(store_order_get(st, p.order_id, &o, err, sizeof err) == STORE_OK);
    CHECK_STR(o.state, "refunded");
    CHECK(o.refund_seq == 1);
    CHECK_STR(o.refund_reason, reason);
    CHECK(o.refunded_at[0] != '\0');
    CHECK(o.ncoupons == 0);

    /* Twice: duplicate, one row. Then issue: duplicate, no coupons. */
    CHECK(store_refund(st, p.order_id, "again", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK(res.refund_seq == 1);
    CHECK(refunds_of(p.order_id) == 1);
    CHECK(store_deal_set(st, 3, 700, "EUR", true, err, sizeof err) == STORE_OK);
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK_STR(res.state, "refunded");
    CHECK(coupons_of(p.order_id) == 0);

    /* Refund after issue: duplicate, no refund row. */
    CHECK(store_refund(st, 107, "late", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK_STR(res.state, "issued");
    CHECK(res.refund_seq == 0);
    CHECK(refunds_of(107) == 0);
    CHECK(coupons_of(107) == 3);

    /* A rejected order can be refunded at once. */
    CHECK(store_refund(st, 507, "rejected: amount", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REFUNDED && res.refund_seq == 2);

    CHECK(store_refund(st, 999999907, "x", &res, err, sizeof err) == STORE_NOT_FOUND);
    CHECK(verify_chain() == 2);
}

/* ---- what the database refuses ---------------------------------------- */

static void test_refusals(void)
{
    /* Invariant 5: the refund log is append-only. */
    CHECK(sql_fails("UPDATE refund_log SET reason = 'x'", "refund_log is append-only: UPDATE"));
    CHECK(sql_fails("DELETE FROM refund_log", "refund_log is append-only: DELETE"));
    CHECK(sql_fails("TRUNCATE refund_log", "refund_outbox")); /* the foreign key */
    CHECK(sql_fails("TRUNCATE refund_log CASCADE", "refund_log is append-only: TRUNCATE"));
    CHECK(sql_fails("TRUNCATE payments CASCADE", "payments are never deleted"));
    CHECK(sql_fails("UPDATE refund_chain_head SET seq = seq + 1", "refund_chain_head"));
    CHECK(sql_fails("DELETE FROM refund_chain_head", "append-only"));
    CHECK(sql_fails("INSERT INTO refund_log (order_id, payment_id, amount_cents, currency, "
                    "reason) VALUES (407, 'pay-407', 500, 'EUR', 'x')",
                    "order 407 is pending"));
    CHECK(sql_fails("INSERT INTO refund_log (order_id, payment_id, amount_cents, currency, "
                    "reason) VALUES (107, 'pay-107', 1500, 'EUR', 'x')",
                    "is issued"));

    /* Coupons only for issued orders, never more than quantity, never changed. */
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('0000000000000001', 407, 'l')",
                    "order 407 is pending"));
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('0000000000000002', 1007, 'l')",
                    "order 1007 is refunded"));
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('0000000000000003', 107, 'l')",
                    "would hold 4 of 3 coupons"));
    /* No coupon without its payment (the trigger, not a foreign key: 004). */
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('0000000000000005', 999999907, 'l')",
                    "order 999999907 does not exist"));
    /* The character rules (004 checks them without regular expressions). */
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('000000000000000I', 107, 'l')",
                    "coupons_code_check"));
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('00000000000000006', 107, 'l')",
                    "coupons_code_check"));
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('000000000000000a', 107, 'l')",
                    "coupons_code_check"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2207, 'pay 2207', 7, 1, 1, "
                    "500, 'EUR', now())",
                    "payments_payment_id_check"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2207, 'pay-\xc3\xa9', 7, 1, 1, "
                    "500, 'EUR', now())",
                    "payments_payment_id_check"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2207, '', 7, 1, 1, "
                    "500, 'EUR', now())",
                    "payments_payment_id_check"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2207, 'pay-2207', 7, 1, 1, "
                    "500, 'EUr', now())",
                    "payments_currency_check"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2207, 'pay-2207', 7, 1, 1, "
                    "500, 'EURO', now())",
                    "payments_currency_check"));
    CHECK(sql_ok("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                 "amount_cents, currency, paid_at) VALUES (2207, "
                 "'Az09._-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 7, 1, 1, "
                 "500, 'EUR', now())"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2307, "
                    "'Az09._-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 7, 1, "
                    "1, 500, 'EUR', now())",
                    "payments_payment_id_check"));
    CHECK(sql_fails("UPDATE coupons SET issued_by = 'w'", "coupons is append-only: UPDATE"));
    CHECK(sql_fails("DELETE FROM coupons", "coupons is append-only: DELETE"));
    CHECK(sql_fails("TRUNCATE coupons", "append-only"));

    /* Payments: terminal states stay, identity stays, nothing is deleted. */
    CHECK(sql_fails("UPDATE payments SET state = 'pending' WHERE order_id = 107",
                    "state issued -> pending refused"));
    CHECK(sql_fails("UPDATE payments SET state = 'issued' WHERE order_id = 1007",
                    "state refunded -> issued refused"));
    CHECK(sql_fails("UPDATE payments SET amount_cents = 1 WHERE order_id = 407",
                    "only state, attempts and last_error may change"));
    CHECK(sql_fails("DELETE FROM payments WHERE order_id = 407", "never deleted"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at, state) VALUES (2007, 'pay-2007', 7, 1, 1, "
                    "500, 'EUR', now(), 'issued')",
                    "must be inserted pending, or issued with its 1 coupons"));
    CHECK(sql_fails("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                    "amount_cents, currency, paid_at) VALUES (2008, 'pay-2008', 7, 1, 1, "
                    "500, 'EUR', now())",
                    "payments_shard"));

    /* Fewer coupons than quantity: refused by the statement; issued without
     * them: refused at commit. */
    CHECK(sql_ok("BEGIN"));
    CHECK(sql_ok("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                 "amount_cents, currency, paid_at) VALUES (2107, 'pay-2107', 7, 1, 2, 1000, "
                 "'EUR', now())"));
    CHECK(sql_ok("UPDATE payments SET state = 'issued' WHERE order_id = 2107"));
    CHECK(sql_fails("INSERT INTO coupons (code, order_id, issued_by) "
                    "VALUES ('0000000000000004', 2107, 'l')",
                    "would hold 1 of 2 coupons"));
    CHECK(sql_ok("ROLLBACK"));
    CHECK(sql_ok("BEGIN"));
    CHECK(sql_ok("INSERT INTO payments (order_id, payment_id, user_id, deal_id, quantity, "
                 "amount_cents, currency, paid_at) VALUES (2107, 'pay-2107', 7, 1, 2, 1000, "
                 "'EUR', now())"));
    CHECK(sql_ok("UPDATE payments SET state = 'issued' WHERE order_id = 2107"));
    CHECK(sql_fails("COMMIT", "is issued with 0 of 2 coupons"));
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 2107") == 0);

    /* Refunded without a refund row: refused at commit. */
    CHECK(sql_ok("BEGIN"));
    CHECK(sql_ok("UPDATE payments SET state = 'refunded' WHERE order_id = 407"));
    CHECK(sql_fails("COMMIT", "is refunded with 0 of 1 coupons and 0 refunds"));
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 407 AND state = 'pending'") == 1);
}

/* ---- concurrency ------------------------------------------------------ */

#define RACE_ORDERS 200

/* Two threads, each with its own connection, act on the same order at the
 * same moment, order after order: A issues (as "w"); B refunds, or issues too
 * (as "l") when both_issue. */
struct race {
    pthread_barrier_t barrier;
    int base;
    bool both_issue;
    store_outcome_t a[RACE_ORDERS], b[RACE_ORDERS];
    int errors;
};

struct race_side {
    struct race *race;
    bool is_b;
};

static void *race_thread(void *p)
{
    struct race_side *side = p;
    struct race *rc = side->race;
    store_t *st = open_store(test_db);
    char err[CP_ERRLEN];
    for (int i = 0; i < RACE_ORDERS; i++) {
        msg_payment_t pay = payment(rc->base + i, 10, 2, 1000, "EUR");
        store_result_t res;
        store_rc_t r;
        pthread_barrier_wait(&rc->barrier);
        if (!side->is_b)
            r = store_issue(st, &pay, "w", &res, err, sizeof err);
        else if (rc->both_issue)
            r = store_issue(st, &pay, "l", &res, err, sizeof err);
        else
            r = store_refund(st, pay.order_id, "deadline", &res, err, sizeof err);
        if (r != STORE_OK) {
            fprintf(stderr, "test_store: race: %s\n", err);
            __atomic_add_fetch(&rc->errors, 1, __ATOMIC_SEQ_CST);
        }
        (side->is_b ? rc->b : rc->a)[i] = res.outcome;
    }
    store_close(st);
    return NULL;
}

static struct race *race_run(int base, bool both_issue)
{
    struct race *rc = calloc(1, sizeof *rc);
    rc->base = base;
    rc->both_issue = both_issue;
    pthread_barrier_init(&rc->barrier, NULL, 2);
    struct race_side sa = {rc, false}, sb = {rc, true};
    pthread_t a, b;
    pthread_create(&a, NULL, race_thread, &sa);
    pthread_create(&b, NULL, race_thread, &sb);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&rc->barrier);
    CHECK(rc->errors == 0);
    return rc;
}

/* Orders [base, base + RACE_ORDERS) that do not hold exactly one outcome. */
static int64_t race_violations(int base)
{
    return sql_int("SELECT count(*) FROM payments p WHERE order_id BETWEEN %d AND %d AND NOT ("
                   " (state = 'issued' AND (SELECT count(*) FROM coupons c"
                   "   WHERE c.order_id = p.order_id) = quantity"
                   "   AND NOT EXISTS (SELECT 1 FROM refund_log r WHERE r.order_id = p.order_id))"
                   " OR (state = 'refunded' AND (SELECT count(*) FROM refund_log r"
                   "   WHERE r.order_id = p.order_id) = 1"
                   "   AND NOT EXISTS (SELECT 1 FROM coupons c WHERE c.order_id = p.order_id)))",
                   base * 100, (base + RACE_ORDERS) * 100);
}

static void test_race_issue_refund(store_t *st)
{
    enum { BASE = 10000 };
    char err[CP_ERRLEN];
    store_result_t res;
    /* The payments exist and are pending (deal inactive), then the deal opens. */
    CHECK(store_deal_set(st, 10, 500, "EUR", false, err, sizeof err) == STORE_OK);
    int pending = 0;
    for (int i = 0; i < RACE_ORDERS; i++) {
        msg_payment_t p = payment(BASE + i, 10, 2, 1000, "EUR");
        if (store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK &&
            res.outcome == STORE_TRANSIENT)
            pending++;
    }
    CHECK(pending == RACE_ORDERS);
    CHECK(store_deal_set(st, 10, 500, "EUR", true, err, sizeof err) == STORE_OK);

    struct race *rc = race_run(BASE, false);
    int issued = 0, refunded = 0, bad = 0;
    for (int i = 0; i < RACE_ORDERS; i++) {
        if (rc->a[i] == STORE_ISSUED && rc->b[i] == STORE_DUPLICATE)
            issued++;
        else if (rc->a[i] == STORE_DUPLICATE && rc->b[i] == STORE_REFUNDED)
            refunded++;
        else
            bad++;
    }
    free(rc);
    CHECK_MSG(bad == 0, "%d orders with two or no winners", bad);
    printf("# issue/refund race: %d issued first, %d refunded first\n", issued, refunded);

    /* Every order has exactly one outcome, by SQL. */
    CHECK(race_violations(BASE) == 0);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id BETWEEN %d AND %d AND state IN "
                  "('issued', 'refunded')",
                  BASE * 100, (BASE + RACE_ORDERS) * 100) == RACE_ORDERS);
    CHECK(sql_int("SELECT count(*) FROM refund_log WHERE order_id BETWEEN %d AND %d", BASE * 100,
                  (BASE + RACE_ORDERS) * 100) == refunded);
}

/* Both lanes deliver a new order at once: one issues, the other sees a duplicate. */
static void test_race_issue_issue(void)
{
    enum { BASE = 15000 };
    struct race *rc = race_run(BASE, true);
    int bad = 0;
    for (int i = 0; i < RACE_ORDERS; i++)
        if (!((rc->a[i] == STORE_ISSUED && rc->b[i] == STORE_DUPLICATE) ||
              (rc->a[i] == STORE_DUPLICATE && rc->b[i] == STORE_ISSUED)))
            bad++;
    free(rc);
    CHECK_MSG(bad == 0, "%d orders with two or no winners", bad);
    CHECK(race_violations(BASE) == 0);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id BETWEEN %d AND %d AND state = "
                  "'issued' AND attempts = 1",
                  BASE * 100, (BASE + RACE_ORDERS) * 100) == RACE_ORDERS);
}

#define CHAIN_THREADS 4
#define CHAIN_ORDERS  30 /* per thread */
#define CHAIN_BASE    20000

struct chain_arg {
    int thread;
    pthread_barrier_t *barrier;
    int refunded;
};

static void *chain_refunder(void *p)
{
    struct chain_arg *a = p;
    store_t *st = open_store(test_db);
    char err[CP_ERRLEN];
    pthread_barrier_wait(a->barrier);
    for (int i = 0; i < CHAIN_ORDERS; i++) {
        int64_t order = (int64_t)(CHAIN_BASE + a->thread * CHAIN_ORDERS + i) * 100 + 7;
        store_result_t res;
        if (store_refund(st, order, "deadline", &res, err, sizeof err) == STORE_OK &&
            res.outcome == STORE_REFUNDED)
            a->refunded++;
        else
            fprintf(stderr, "test_store: chain refund %" PRId64 ": %s\n", order, err);
    }
    store_close(st);
    return NULL;
}

static void test_chain_concurrent(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    CHECK(store_deal_set(st, 11, 100, "EUR", false, err, sizeof err) == STORE_OK);
    for (int i = 0; i < CHAIN_THREADS * CHAIN_ORDERS; i++) {
        msg_payment_t p = payment(CHAIN_BASE + i, 11, 1, 100, "EUR");
        CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK &&
              res.outcome == STORE_TRANSIENT);
    }
    int64_t before = sql_int("SELECT count(*) FROM refund_log");

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, CHAIN_THREADS);
    struct chain_arg a[CHAIN_THREADS];
    pthread_t t[CHAIN_THREADS];
    for (int i = 0; i < CHAIN_THREADS; i++) {
        a[i] = (struct chain_arg){.thread = i, .barrier = &barrier};
        pthread_create(&t[i], NULL, chain_refunder, &a[i]);
    }
    int refunded = 0;
    for (int i = 0; i < CHAIN_THREADS; i++) {
        pthread_join(t[i], NULL);
        refunded += a[i].refunded;
    }
    pthread_barrier_destroy(&barrier);
    CHECK(refunded == CHAIN_THREADS * CHAIN_ORDERS);

    int64_t total = before + CHAIN_THREADS * CHAIN_ORDERS;
    CHECK_MSG(verify_chain() == total, "chain of %" PRId64 " rows does not verify", total);
    CHECK(sql_int("SELECT count(*) FROM coupond_refund_verify()") == 0);
    CHECK(sql_int("SELECT seq FROM refund_chain_head") == total);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox") == total);
}

/* ---- batch, connection, codes ------------------------------------------ */

static void test_batch(store_t *st)
{
    char err[CP_ERRLEN];
    CHECK(store_deal_set(st, 12, 100, "EUR", true, err, sizeof err) == STORE_OK);
    enum { N = 150 }; /* more than one pipeline chunk */
    msg_payment_t *ps = calloc(N, sizeof *ps);
    store_result_t *res = calloc(N, sizeof *res);
    for (int i = 0; i < N; i++)
        ps[i] = payment(30000 + i, 12, 1 + i % 3, 100 * (1 + i % 3), "EUR");
    ps[3].quantity = 0;     /* invalid: never sent */
    ps[4].deal_id = 404;    /* transient */
    ps[5].amount_cents = 1; /* rejected */
    ps[7] = ps[6];          /* the same order twice: duplicate */
    CHECK(store_issue_batch(st, ps, N, "l", res, err, sizeof err) == STORE_OK);
    int issued = 0;
    for (int i = 0; i < N; i++)
        if (res[i].rc == STORE_OK && res[i].outcome == STORE_ISSUED)
            issued++;
    CHECK_MSG(issued == N - 4, "issued %d", issued);
    CHECK(res[3].rc == STORE_E_INVALID);
    CHECK(res[4].rc == STORE_OK && res[4].outcome == STORE_TRANSIENT);
    CHECK(res[5].rc == STORE_OK && res[5].outcome == STORE_REJECTED);
    CHECK(res[6].rc == STORE_OK && res[6].outcome == STORE_ISSUED);
    CHECK(res[7].rc == STORE_OK && res[7].outcome == STORE_DUPLICATE);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id BETWEEN 3000000 AND 3100000") ==
          N - 2);
    CHECK(sql_int("SELECT sum(quantity) FROM payments WHERE order_id BETWEEN 3000000 AND 3100000 "
                  "AND state = 'issued'") ==
          sql_int("SELECT count(*) FROM coupons WHERE order_id BETWEEN 3000000 AND 3100000"));
    /* The connection is usable afterwards, and an empty batch is fine. */
    CHECK(store_issue_batch(st, ps, 0, "l", res, err, sizeof err) == STORE_OK);
    store_order_t o;
    CHECK(store_order_get(st, ps[0].order_id, &o, err, sizeof err) == STORE_OK);

    /* Stored orders go one by one: the transient one is retried (its deal now
     * known) and issued, the issued one is a duplicate; a new order beside them
     * is issued; a payment_id another order holds, and an order stored with
     * other content, are conflicts that record nothing. */
    CHECK(store_deal_set(st, 404, 100, "EUR", true, err, sizeof err) == STORE_OK);
    msg_payment_t again[5] = {ps[4], ps[6], payment(31000, 12, 2, 200, "EUR"), ps[8], ps[9]};
    snprintf(again[3].payment_id, sizeof again[3].payment_id, "pay-other");
    again[3].order_id = 3100107; /* new order, its payment_id taken below */
    snprintf(again[4].payment_id, sizeof again[4].payment_id, "pay-other");
    again[4].order_id = 3100207; /* the same payment_id on another new order */
    CHECK(store_issue_batch(st, again, 5, "w", res, err, sizeof err) == STORE_OK);
    CHECK(res[0].rc == STORE_OK && res[0].outcome == STORE_ISSUED);
    CHECK(res[1].rc == STORE_OK && res[1].outcome == STORE_DUPLICATE);
    CHECK(res[2].rc == STORE_OK && res[2].outcome == STORE_ISSUED);
    CHECK(res[3].rc == STORE_OK && res[3].outcome == STORE_ISSUED);
    CHECK(res[4].rc == STORE_OK && res[4].conflict);
    CHECK(coupons_of(ps[4].order_id) == ps[4].quantity);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = %lld",
                  (long long)ps[4].order_id) == 2);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 3100207") == 0);
    CHECK(sql_int("SELECT count(*) FROM coupons WHERE order_id = %lld AND issued_by = 'w'",
                  (long long)again[2].order_id) == 2);

    /* An order the database refuses fails the set-based statement; the
     * batch runs again one transaction per order, and it fails alone. */
    CHECK(sql_ok("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "IF NEW.order_id = 3200207 THEN RAISE EXCEPTION 'test refuses 3200207'; END IF; "
                 "RETURN NEW; END $$"));
    CHECK(sql_ok("CREATE TRIGGER test_refuse BEFORE INSERT ON payments FOR EACH ROW "
                 "EXECUTE FUNCTION test_refuse()"));
    for (int i = 0; i < 4; i++)
        again[i] = payment(32000 + i, 12, 1, 100, "EUR");
    CHECK(store_issue_batch(st, again, 4, "l", res, err, sizeof err) == STORE_OK);
    CHECK(res[0].rc == STORE_OK && res[0].outcome == STORE_ISSUED);
    CHECK(res[1].rc == STORE_OK && res[1].outcome == STORE_ISSUED);
    CHECK(res[2].rc == STORE_E_QUERY && strstr(res[2].error, "test refuses 3200207"));
    CHECK(res[3].rc == STORE_OK && res[3].outcome == STORE_ISSUED);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id BETWEEN 3200000 AND 3200399") == 3);
    CHECK(sql_ok("DROP TRIGGER test_refuse ON payments"));
    free(ps);
    free(res);
}

/* ---- refund of a notification, sweeper, outbox ------------------------- */

/* One value of a one-parameter query on the test database ("" on error). */
static void sql_param(char *out, size_t size, const char *q, const char *param)
{
    const char *params[1] = {param};
    PGresult *r = PQexecParams(db, q, 1, NULL, params, NULL, NULL, 0);
    out[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "test_store: %s: %s", q, PQerrorMessage(db));
    PQclear(r);
}

static void test_refund_payment(store_t *st)
{
    char err[CP_ERRLEN], v[256];
    store_result_t res;
    CHECK(store_deal_set(st, 13, 700, "EUR", false, err, sizeof err) == STORE_OK);
    int64_t before = sql_int("SELECT count(*) FROM refund_log");

    /* Never seen: recorded, then refunded, in one go. */
    msg_payment_t p = payment(40, 13, 2, 1400, "EUR");
    CHECK(store_refund_payment(st, &p, "deadline", &res, err, sizeof err) == STORE_OK);
    CHECK_MSG(res.outcome == STORE_REFUNDED, "%s: %s", store_outcome_name(res.outcome), err);
    CHECK_STR(res.state, "refunded");
    CHECK(!res.conflict);
    CHECK(res.refund_seq == before + 1);
    CHECK(refunds_of(p.order_id) == 1);
    CHECK(coupons_of(p.order_id) == 0);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 4007 AND payment_id = 'pay-4007' "
                  "AND user_id = 7 AND deal_id = 13 AND quantity = 2 AND amount_cents = 1400 AND "
                  "currency = 'EUR' AND state = 'refunded' AND attempts = 0 AND "
                  "(extract(epoch FROM paid_at) * 1000000)::bigint = %" PRId64,
                  p.paid_at_us) == 1);
    CHECK(sql_int("SELECT count(*) FROM refund_log WHERE order_id = 4007 AND payment_id = "
                  "'pay-4007' AND amount_cents = 1400 AND currency = 'EUR' AND reason = "
                  "'deadline' AND seq = %" PRId64,
                  res.refund_seq) == 1);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox o JOIN refund_log r USING (order_id) "
                  "WHERE o.order_id = 4007 AND o.sent_at IS NULL AND o.refund_seq = r.seq AND "
                  "(o.payload->>'order_id')::bigint = 4007 AND o.payload->>'payment_id' = "
                  "'pay-4007' AND (o.payload->>'user_id')::bigint = 7 AND "
                  "(o.payload->>'amount_cents')::bigint = 1400 AND o.payload->>'currency' = "
                  "'EUR' AND o.payload->>'reason' = 'deadline' AND "
                  "(o.payload->>'refund_seq')::bigint = r.seq AND o.payload->>'refund_hash' = "
                  "r.hash AND o.payload->>'refunded_at' LIKE '20__-__-__T__:__:__.______Z'") == 1);
    store_order_t o;
    CHECK(store_order_get(st, p.order_id, &o, err, sizeof err) == STORE_OK);
    CHECK_STR(o.state, "refunded");
    CHECK_STR(o.payment.paid_at, "2026-11-21T10:00:00.123Z");
    CHECK(o.refund_seq == res.refund_seq);
    int64_t seq = res.refund_seq;

    /* Again: a duplicate of that refund. Then an issue attempt: duplicate too. */
    CHECK(store_refund_payment(st, &p, "again", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK_STR(res.state, "refunded");
    CHECK(res.refund_seq == seq);
    CHECK(refunds_of(p.order_id) == 1);
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);

    /* Pending (deal inactive): refunded; its attempt count stays. */
    p = payment(41, 13, 1, 700, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_TRANSIENT);
    CHECK(store_refund_payment(st, &p, NULL, &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REFUNDED);
    CHECK_STR(res.state, "refunded");
    CHECK(res.refund_seq == seq + 1);
    CHECK(sql_int("SELECT attempts FROM payments WHERE order_id = 4107 AND state = 'refunded'") ==
          1);
    CHECK(sql_int("SELECT count(*) FROM refund_log WHERE order_id = 4107 AND reason = ''") == 1);

    /* Issued: duplicate, no refund row, the coupons stay. */
    p = payment(1, 1, 3, 1500, "EUR");
    CHECK(store_refund_payment(st, &p, "deadline", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
    CHECK_STR(res.state, "issued");
    CHECK(res.refund_seq == 0);
    CHECK(refunds_of(107) == 0);
    CHECK(coupons_of(107) == 3);

    /* Conflicts change nothing: another payment for a stored order ... */
    int64_t refunds = sql_int("SELECT count(*) FROM refund_log");
    msg_payment_t q = payment(1, 1, 3, 1500, "EUR");
    snprintf(q.payment_id, sizeof q.payment_id, "other-payment");
    CHECK(store_refund_payment(st, &q, "deadline", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK_STR(res.state, "issued");
    CHECK_MSG(strncmp(res.error, "rejected: conflict: ", 20) == 0, "%s", res.error);
    CHECK(res.refund_seq == 0);
    /* ... a pending order with another amount ... */
    p = payment(43, 13, 1, 700, "EUR");
    CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_TRANSIENT);
    q = p;
    q.amount_cents = 701;
    CHECK(store_refund_payment(st, &q, "deadline", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK_STR(res.state, "pending");
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 4307 AND state = 'pending' AND "
                  "amount_cents = 700 AND attempts = 1") == 1);
    /* ... this payment_id on another order. */
    q = payment(42, 13, 1, 700, "EUR");
    snprintf(q.payment_id, sizeof q.payment_id, "pay-4107");
    CHECK(store_refund_payment(st, &q, "deadline", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_REJECTED && res.conflict);
    CHECK_STR(res.state, "");
    CHECK_MSG(strstr(res.error, "belongs to order 4107") != NULL, "%s", res.error);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 4207") == 0);
    CHECK(sql_int("SELECT count(*) FROM refund_log") == refunds);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox") == refunds);

    /* Bad notifications never reach the server. */
    q = payment(44, 13, 0, 700, "EUR");
    CHECK(store_refund_payment(st, &q, "x", &res, err, sizeof err) == STORE_E_INVALID);
    q = payment(44, 13, 1, 700, "EUR");
    q.user_id = 8;
    CHECK(store_refund_payment(st, &q, "x", &res, err, sizeof err) == STORE_E_INVALID);
    CHECK(store_refund_payment(st, NULL, "x", &res, err, sizeof err) == STORE_E_INVALID);
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 4407") == 0);

    /* coupond_issue still records a refunded notification as a duplicate. */
    sql_param(v, sizeof v,
              "SELECT outcome FROM coupond_issue(4107, 'pay-4107', 7, 13, 1, 700, "
              "'EUR', timestamptz 'epoch' + $1::bigint * interval '1 microsecond', "
              "ARRAY['0000000000000009'], 'w')",
              "1795255200123000");
    CHECK_STR(v, "duplicate");
    CHECK(verify_chain() == refunds);
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* RFC 3339 UTC with milliseconds of us (a whole number of milliseconds). */
static void format_us(char out[40], int64_t us)
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%03dZ", day, (int)(us % 1000000 / 1000));
}

#define SWEEP_MAX 64

/* One store_sweep_take of up to SWEEP_MAX rows; returns how many (0 on error). */
static size_t sweep(store_t *st, int refund_after_s, int stale_ms, msg_payment_t *ps, bool *due)
{
    char err[CP_ERRLEN];
    size_t n = 99;
    store_rc_t rc =
        store_sweep_take(st, refund_after_s, stale_ms, ps, due, SWEEP_MAX, &n, err, sizeof err);
    CHECK_MSG(rc == STORE_OK, "%s", err);
    return rc == STORE_OK ? n : 0;
}

static const msg_payment_t *sweep_find(const msg_payment_t *ps, size_t n, int64_t order_id,
                                       size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (ps[i].order_id == order_id) {
            *at = i;
            return &ps[i];
        }
    return NULL;
}

static void test_sweep(store_t *st)
{
    char err[CP_ERRLEN];
    store_result_t res;
    static msg_payment_t ps[SWEEP_MAX];
    static bool due[SWEEP_MAX];
    CHECK(store_deal_set(st, 14, 100, "EUR", false, err, sizeof err) == STORE_OK);
    CHECK(store_deal_set(st, 15, 100, "EUR", true, err, sizeof err) == STORE_OK);
    int64_t now = wall_us() / 1000 * 1000; /* whole milliseconds */

    /* Orders 50000-50002: paid an hour ago and more, pending (due). 50010-50011:
     * paid 20 s ago, untouched for 10 minutes (stale). 50020-50021: paid 20 s
     * ago, just tried (neither). 50030: paid 2 hours ago but issued. */
    for (int i = 0; i < 3; i++) {
        msg_payment_t p = payment(50000 + i, 14, 1, 100, "EUR");
        p.paid_at_us = now - INT64_C(3600000000) - i * INT64_C(1000000);
        CHECK(store_issue(st, &p, "l", &res, err, sizeof err) == STORE_OK &&
              res.outcome == STORE_TRANSIENT);
    }
    for (int i = 0; i < 2; i++) {
        msg_payment_t p = payment(50010 + i, 14, 1, 100, "EUR");
        p.paid_at_us = now - INT64_C(20000000) - i * INT64_C(1000);
        CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK &&
              res.outcome == STORE_TRANSIENT);
        p = payment(50020 + i, 14, 1, 100, "EUR");
        p.paid_at_us = now - INT64_C(20000000) - i * INT64_C(1000);
        CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK &&
              res.outcome == STORE_TRANSIENT);
    }
    msg_payment_t issued = payment(50030, 15, 1, 100, "EUR");
    issued.paid_at_us = now - INT64_C(7200000000);
    CHECK(store_issue(st, &issued, "l", &res, err, sizeof err) == STORE_OK &&
          res.outcome == STORE_ISSUED);

    /* payments_guard stamps updated_at on every update, so an UPDATE cannot
     * backdate it; the test does, with the trigger off for a moment. */
    CHECK(sql_ok("UPDATE payments SET updated_at = now() - interval '10 minutes' "
                 "WHERE order_id = 5001007"));
    CHECK(sql_int("SELECT count(*) FROM payments WHERE order_id = 5001007 AND updated_at > now() "
                  "- interval '1 minute'") == 1);
    CHECK(sql_ok("BEGIN; ALTER TABLE payments DISABLE TRIGGER payments_guard; "
                 "UPDATE payments SET updated_at = now() - interval '10 minutes' "
                 "WHERE order_id IN (5001007, 5001107); "
                 "ALTER TABLE payments ENABLE TRIGGER payments_guard; COMMIT"));

    /* Everything the sweeper should see, by SQL (other tests left pending
     * orders paid on 2026-11-21: due too). */
    int64_t want = sql_int("SELECT count(*) FROM payments WHERE state = 'pending' AND (paid_at <= "
                           "now() - interval '60 seconds' OR updated_at <= now() - interval "
                           "'60 seconds')");
    CHECK_MSG(want >= 5 && want <= SWEEP_MAX, "%" PRId64, want);

    size_t n = sweep(st, 60, 60000, ps, due);
    CHECK_MSG((int64_t)n == want, "%zu rows, want %" PRId64, n, want);
    bool sorted = true;
    for (size_t i = 1; i < n; i++)
        if (ps[i - 1].paid_at_us > ps[i].paid_at_us)
            sorted = false;
    CHECK(sorted);
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        const msg_payment_t *p = sweep_find(ps, n, (50000 + i) * 100 + 7, &at);
        CHECK_MSG(p && due[at], "order %d", (50000 + i) * 100 + 7);
    }
    const msg_payment_t *p = sweep_find(ps, n, 5000107, &at);
    CHECK(p != NULL);
    if (p) {
        char when[40];
        format_us(when, now - INT64_C(3601000000));
        CHECK_STR(p->payment_id, "pay-5000107");
        CHECK(p->user_id == 7 && p->deal_id == 14 && p->quantity == 1);
        CHECK(p->amount_cents == 100);
        CHECK_STR(p->currency, "EUR");
        CHECK(p->paid_at_us == now - INT64_C(3601000000));
        CHECK_STR(p->paid_at, when);
        CHECK(p->version == 1);
    }
    /* The oldest of the three comes first among them. */
    size_t a0 = 0, a2 = 0;
    CHECK(sweep_find(ps, n, 5000007, &a0) && sweep_find(ps, n, 5000207, &a2) && a2 < a0);
    CHECK(sweep_find(ps, n, 5001007, &at) && !due[at]);
    CHECK(sweep_find(ps, n, 5001107, &at) && !due[at]);
    CHECK(!sweep_find(ps, n, 5002007, &at));
    CHECK(!sweep_find(ps, n, 5002107, &at));
    CHECK(!sweep_find(ps, n, 5003007, &at));

    /* While this session holds the lock, another sweeper gets nothing. */
    store_t *st2 = open_store(test_db);
    CHECK(sweep(st2, 60, 60000, ps, due) == 0);
    CHECK(sweep(st2, 0, 0, ps, due) == 0);
    /* The holder may take again (the lock is not stacked: one done frees it). */
    CHECK(sweep(st, 60, 60000, ps, due) == (size_t)want);
    store_sweep_done(st);
    CHECK(sql_int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                  "(SELECT oid FROM pg_database WHERE datname = current_database())") == 0);
    CHECK(sweep(st2, 60, 60000, ps, due) == (size_t)want);
    CHECK(sweep(st, 60, 60000, ps, due) == 0);
    store_sweep_done(st); /* not holding it: nothing to do */
    CHECK(sweep(st, 60, 60000, ps, due) == 0);
    store_sweep_done(st2);
    store_sweep_done(st2);

    /* stale_ms 0: every pending order is stale; refund_after_s 2 hours: only
     * the older orders are due. */
    n = sweep(st, 7200, 0, ps, due);
    CHECK(sweep_find(ps, n, 5002007, &at) && !due[at]);
    CHECK(sweep_find(ps, n, 5000007, &at) && !due[at]);
    CHECK(sweep_find(ps, n, 5001007, &at) && !due[at]);
    CHECK(n == (size_t)sql_int("SELECT count(*) FROM payments WHERE state = 'pending'"));
    /* max bounds the list, oldest paid first. */
    size_t m = 99;
    CHECK(store_sweep_take(st, 60, 60000, ps, due, 2, &m, err, sizeof err) == STORE_OK);
    CHECK(m == 2);
    if (m == 2)
        CHECK(ps[0].paid_at_us <= ps[1].paid_at_us);
    CHECK(store_sweep_take(st, 60, 60000, ps, due, 0, &m, err, sizeof err) == STORE_OK && m == 0);
    CHECK(store_sweep_take(st, -1, 0, ps, due, 2, &m, err, sizeof err) == STORE_E_INVALID);
    CHECK(store_sweep_take(st, 60, 0, NULL, due, 2, &m, err, sizeof err) == STORE_E_INVALID);
    store_sweep_done(st);

    /* A refunded order leaves the list. */
    msg_payment_t r = payment(50000, 14, 1, 100, "EUR");
    r.paid_at_us = now - INT64_C(3600000000);
    CHECK(store_refund_payment(st2, &r, "deadline", &res, err, sizeof err) == STORE_OK &&
          res.outcome == STORE_REFUNDED);
    n = sweep(st2, 60, 60000, ps, due);
    CHECK(n == (size_t)want - 1);
    CHECK(!sweep_find(ps, n, 5000007, &at));
    store_sweep_done(st2);

    /* A session that ends takes its lock along. */
    CHECK(sweep(st2, 60, 60000, ps, due) > 0);
    store_close(st2);
    for (int i = 0; i < 100 && sql_int("SELECT count(*) FROM pg_locks WHERE locktype = "
                                       "'advisory'") != 0;
         i++)
        usleep(20 * 1000);
    CHECK(sweep(st, 60, 60000, ps, due) > 0);
    store_sweep_done(st);
}

static void test_outbox(store_t *st)
{
    char err[CP_ERRLEN], v[256];
    enum { MAX = 16 };
    static store_outbox_row_t rows[MAX];
    int64_t unsent = sql_int("SELECT count(*) FROM refund_outbox WHERE sent_at IS NULL");
    CHECK(unsent > MAX);

    /* The first rows, oldest first. */
    size_t n = 99;
    CHECK(store_outbox_take(st, rows, 3, &n, err, sizeof err) == STORE_OK);
    CHECK(n == 3);
    CHECK(rows[0].id == sql_int("SELECT min(id) FROM refund_outbox WHERE sent_at IS NULL"));
    CHECK(rows[0].id < rows[1].id && rows[1].id < rows[2].id);
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, rows[i].id);
        sql_param(v, sizeof v, "SELECT order_id FROM refund_outbox WHERE id = $1::bigint", id);
        CHECK(strtoll(v, NULL, 10) == rows[i].order_id);
        /* The payload is the stored JSON. */
        char q[160];
        snprintf(q, sizeof q,
                 "SELECT ($1::jsonb = payload)::text FROM refund_outbox WHERE id = %" PRId64,
                 rows[i].id);
        sql_param(v, sizeof v, q, rows[i].payload);
        CHECK_STR(v, "true");
    }
    /* Taking again without marking: the same rows. */
    int64_t first = rows[0].id;
    CHECK(store_outbox_take(st, rows, 1, &n, err, sizeof err) == STORE_OK && n == 1 &&
          rows[0].id == first);

    /* Drain: take, mark sent, until nothing is left. */
    int64_t taken = 0, last = 0;
    bool ordered = true;
    int failures = 0;
    for (int rounds = 0; rounds < 1000; rounds++) {
        if (store_outbox_take(st, rows, MAX, &n, err, sizeof err) != STORE_OK) {
            fprintf(stderr, "test_store: outbox take: %s\n", err);
            failures++;
            break;
        }
        if (n == 0)
            break;
        int64_t ids[MAX];
        for (size_t i = 0; i < n; i++) {
            if (rows[i].id <= last)
                ordered = false;
            last = rows[i].id;
            ids[i] = rows[i].id;
        }
        taken += (int64_t)n;
        if (store_outbox_sent(st, ids, n, err, sizeof err) != STORE_OK) {
            fprintf(stderr, "test_store: outbox sent: %s\n", err);
            failures++;
        }
    }
    CHECK(failures == 0);
    CHECK(ordered);
    CHECK_MSG(taken == unsent, "%" PRId64 " of %" PRId64, taken, unsent);
    CHECK(store_outbox_take(st, rows, MAX, &n, err, sizeof err) == STORE_OK && n == 0);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox WHERE sent_at IS NULL") == 0);
    CHECK(sql_int("SELECT count(*) FROM refund_outbox WHERE attempts = 1") == unsent);

    /* Marking again changes nothing; an empty list is fine. */
    int64_t again[2] = {first, 999999999};
    CHECK(store_outbox_sent(st, again, 2, err, sizeof err) == STORE_OK);
    CHECK(sql_int("SELECT attempts FROM refund_outbox WHERE id = %" PRId64, first) == 1);
    CHECK(store_outbox_sent(st, NULL, 0, err, sizeof err) == STORE_OK);
    CHECK(store_outbox_sent(st, NULL, 1, err, sizeof err) == STORE_E_INVALID);
    CHECK(store_outbox_take(st, NULL, 1, &n, err, sizeof err) == STORE_E_INVALID);

    /* A new refund with a very long reason: its payload still fits, as JSON. */
    char reason[4000];
    size_t w = 0;
    while (w + 3 < sizeof reason) {
        memcpy(reason + w, "\xc3\xa4\n", 3); /* a-umlaut and a line feed */
        w += 3;
    }
    reason[w] = '\0';
    store_result_t res;
    msg_payment_t p = payment(45, 13, 1, 700, "EUR");
    CHECK(store_refund_payment(st, &p, reason, &res, err, sizeof err) == STORE_OK &&
          res.outcome == STORE_REFUNDED);
    CHECK(store_outbox_take(st, rows, MAX, &n, err, sizeof err) == STORE_OK && n == 1);
    if (n == 1) {
        CHECK(rows[0].order_id == 4507);
        CHECK(strlen(rows[0].payload) < sizeof rows[0].payload);
        sql_param(v, sizeof v,
                  "SELECT ($1::jsonb->>'order_id') || ' ' || ($1::jsonb->>'refund_seq')",
                  rows[0].payload);
        char want[64];
        snprintf(want, sizeof want, "4507 %" PRId64, res.refund_seq);
        CHECK_STR(v, want);
        sql_param(v, sizeof v, "SELECT length($1::jsonb->>'reason')::text", rows[0].payload);
        CHECK_STR(v, "100");
        CHECK(store_outbox_sent(st, &rows[0].id, 1, err, sizeof err) == STORE_OK);
    }
    CHECK(sql_int("SELECT length(reason) FROM refund_log WHERE order_id = 4507") ==
          (int64_t)(w / 3 * 2));
    CHECK(store_outbox_take(st, rows, MAX, &n, err, sizeof err) == STORE_OK && n == 0);
}

static void test_connection(store_t *st)
{
    char err[CP_ERRLEN];
    store_t *bad = (store_t *)1;
    CHECK(store_open(&bad, "host=127.0.0.1 port=1 dbname=x connect_timeout=2", "s3cret-pw", 0, err,
                     sizeof err) == STORE_E_UNAVAILABLE);
    CHECK(bad == NULL);
    CHECK_MSG(strstr(err, "s3cret-pw") == NULL && strchr(err, '\n') == NULL && err[0], "%s", err);
    CHECK(store_open(&bad, "postgresql://127.0.0.1:1/x?connect_timeout=2", "s3cret-pw", 0, err,
                     sizeof err) == STORE_E_UNAVAILABLE);
    CHECK_MSG(strstr(err, "s3cret-pw") == NULL && strchr(err, '\n') == NULL, "%s", err);

    CHECK(store_open(&bad, "host=127.0.0.1 bogus_option=1", NULL, 0, err, sizeof err) ==
          STORE_E_INVALID);
    CHECK_MSG(strstr(err, "bogus_option") != NULL, "%s", err);
    CHECK(store_open(&bad, "postgresql://[::1", NULL, 0, err, sizeof err) == STORE_E_INVALID);

    /* Kill the store's session: the next call reports it, the one after reconnects. */
    CHECK(sql_int("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND application_name = 'coupond'") >= 1);
    usleep(100 * 1000);
    store_order_t o;
    store_rc_t rc = store_order_get(st, 107, &o, err, sizeof err);
    CHECK_MSG(rc == STORE_E_UNAVAILABLE, "rc %d: %s", rc, err);
    CHECK_MSG(strchr(err, '\n') == NULL, "%s", err);
    CHECK(store_order_get(st, 107, &o, err, sizeof err) == STORE_OK);
    CHECK(o.ncoupons == 3);

    /* store_ensure brings a killed session back too. */
    CHECK(sql_int("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND application_name = 'coupond'") >= 1);
    usleep(100 * 1000);
    rc = store_order_get(st, 107, &o, err, sizeof err); /* notices the loss */
    CHECK(rc == STORE_E_UNAVAILABLE);
    CHECK(store_ensure(st, 2000, err, sizeof err) == STORE_OK);
    msg_payment_t p = payment(1, 1, 3, 1500, "EUR");
    store_result_t res;
    CHECK(store_issue(st, &p, "w", &res, err, sizeof err) == STORE_OK);
    CHECK(res.outcome == STORE_DUPLICATE);
}

/* A database migrated by a newer build is refused. Runs last. */
static void test_schema_newer(store_t *st)
{
    char err[CP_ERRLEN];
    int applied = -1;
    CHECK(sql_ok("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')"));
    CHECK(store_check_schema(st, err, sizeof err) == STORE_E_SCHEMA);
    CHECK_MSG(strstr(err, "newer") != NULL, "%s", err);
    CHECK(store_migrate(st, &applied, err, sizeof err) == STORE_E_SCHEMA);
    CHECK(applied == 0);
}

static int cmp_code(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_codes(void)
{
    enum { N = 2000 };
    static char codes[N][17];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (store_coupon_code(codes[i]) != 0 || strlen(codes[i]) != 16 ||
            strspn(codes[i], "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != 16)
            bad++;
    }
    CHECK(bad == 0);
    qsort(codes, N, sizeof codes[0], cmp_code);
    int dup = 0;
    for (int i = 1; i < N; i++)
        if (strcmp(codes[i - 1], codes[i]) == 0)
            dup++;
    CHECK(dup == 0);
    CHECK_STR(store_outcome_name(STORE_ISSUED), "issued");
    CHECK_STR(store_outcome_name(STORE_DUPLICATE), "duplicate");
    CHECK_STR(store_outcome_name(STORE_TRANSIENT), "transient");
    CHECK_STR(store_outcome_name(STORE_REJECTED), "rejected");
    CHECK_STR(store_outcome_name(STORE_REFUNDED), "refunded");
}

int main(void)
{
    test_codes();

    admin = connect_db(NULL);
    snprintf(test_db, sizeof test_db, "coupond_test_%d_%ld", (int)getpid(), (long)time(NULL));
    snprintf(test_db2, sizeof test_db2, "%s_b", test_db);
    atexit(drop_databases);
    create_db(test_db);
    db = connect_db(test_db);

    store_t *st = open_store(test_db);
    test_migrate(st);
    test_migrate_concurrent();
    test_issue(st);
    test_transient(st);
    test_rejected(st);
    test_refund(st);
    test_refusals();
    test_race_issue_refund(st);
    test_race_issue_issue();
    test_chain_concurrent(st);
    test_batch(st);
    test_refund_payment(st);
    test_sweep(st);
    test_outbox(st);
    test_connection(st);
    test_schema_newer(st);
    store_close(st);

    drop_databases();
    return check_done("test_store");
}
