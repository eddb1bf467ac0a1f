/* store.h: the PostgreSQL store: connection, migrations, issuing and refunding.
 *
 * The database enforces the invariants itself (triggers and constraints, see
 * src/sql/); this module is the typed door to it. Every function that talks to
 * the server returns STORE_OK or a negative store_rc_t and writes a one-line
 * explanation into err (err may be NULL; errlen CP_ERRLEN is plenty). A
 * connection lost during a call is reported as STORE_E_UNAVAILABLE; the next
 * call reconnects once (no more often than the backoff of store_ensure allows).
 *
 * A store_t is one connection: use it from one thread at a time. Issue and
 * refund calls are atomic on the server: each one commits or has no effect. */
#ifndef COUPOND_STORE_H
#define COUPOND_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "message.h"

typedef struct store store_t;

typedef enum store_rc {
    STORE_OK = 0,
    STORE_NOT_FOUND = 1,      /* a lookup found nothing */
    STORE_E_UNAVAILABLE = -1, /* cannot reach the server / connection lost */
    STORE_E_QUERY = -2,       /* the server refused the statement */
    STORE_E_SCHEMA = -3,      /* the schema is older or newer than this build */
    STORE_E_INVALID = -4,     /* bad arguments */
} store_rc_t;

/* One compiled-in migration, generated from src/sql/NNN_name.sql: version NNN,
 * name "NNN_name" (recorded in schema_migrations). */
typedef struct store_migration {
    int version;
    const char *name;
    const char *sql;
} store_migration_t;
extern const store_migration_t store_migrations[];
extern const size_t store_migrations_count;

/* Outcome classes of one issue or refund attempt (DESIGN: Outcome). */
typedef enum store_outcome {
    STORE_ISSUED = 0, /* ok: coupons inserted */
    STORE_DUPLICATE,  /* already issued or refunded: nothing changed */
    STORE_TRANSIENT,  /* deal unknown or inactive, store error, timeout */
    STORE_REJECTED,   /* amount != price x quantity, currency mismatch */
    STORE_REFUNDED,   /* a refund was recorded (store_refund) */
} store_outcome_t;

const char *store_outcome_name(store_outcome_t o);

typedef struct store_result {
    store_outcome_t outcome;
    char state[12];  /* the payment's state after the call ("" if not stored) */
    char error[256]; /* for TRANSIENT / REJECTED: why ("rejected: ..." for REJECTED) */
    /* REJECTED because the notification contradicts a stored payment (this
     * order is stored with another payment, or this payment_id belongs to
     * another order). Nothing was recorded; refunding the order would refund
     * the stored payment, not this one: dead-letter it instead. error starts
     * with "rejected: conflict: ". */
    bool conflict;
    int64_t refund_seq; /* store_refund: the refund's seq (REFUNDED, or a
                           DUPLICATE of a refund); 0 otherwise */
    store_rc_t rc;      /* the call's status for this order (store_issue_batch) */
} store_result_t;

/* Connects with conninfo (libpq keyword/value or URI; "" means the PG*
 * environment). password may be NULL (then libpq's usual sources apply); it is
 * passed to libpq apart from conninfo and never appears in messages.
 * application_name defaults to "coupond" and connect_timeout to 5 s (conninfo
 * may override both); client_encoding is always UTF8.
 * statement_timeout_ms bounds every statement (0: none).
 * Returns STORE_OK and *out, STORE_E_UNAVAILABLE (*out is NULL), or
 * STORE_E_INVALID (conninfo malformed, NULL out, negative timeout). */
store_rc_t store_open(store_t **out, const char *conninfo, const char *password,
                      int statement_timeout_ms, char *err, size_t errlen) CP_MUSTCHECK;
/* Closes the connection and frees st (NULL is fine); wipes the password copy. */
void store_close(store_t *st);

/* Makes sure the connection is up, reconnecting with capped exponential
 * backoff (100 ms doubling to 5 s) for at most max_wait_ms (0: try once, at
 * once). A connection that looks healthy is not probed: a call that finds it
 * dead reports STORE_E_UNAVAILABLE and drops it. A reconnected session gets
 * its settings again and re-prepares its statements on first use.
 * Returns STORE_OK or STORE_E_UNAVAILABLE (err: the last connect error). */
store_rc_t store_ensure(store_t *st, int max_wait_ms, char *err, size_t errlen) CP_MUSTCHECK;

/* Applies the compiled-in migrations not yet applied, each in its own
 * transaction (statement_timeout off), serialised across processes by an
 * advisory lock and recorded in schema_migrations(version, name, applied_at).
 * *applied (may be NULL) gets how many ran (0 when the schema was current),
 * including when a later one fails: the ones before it stay applied.
 * Returns STORE_OK, STORE_E_SCHEMA when the database is newer than this build,
 * STORE_E_QUERY (err names the migration), or STORE_E_UNAVAILABLE. */
store_rc_t store_migrate(store_t *st, int *applied, char *err, size_t errlen) CP_MUSTCHECK;

/* Returns STORE_OK when the schema version equals this build's newest
 * migration, STORE_E_SCHEMA otherwise (with the versions in err; also when
 * the database was never migrated), or STORE_E_UNAVAILABLE. */
store_rc_t store_check_schema(store_t *st, char *err, size_t errlen) CP_MUSTCHECK;

/* Creates or updates a deal. deal_id and price_cents > 0; currency is three
 * upper-case letters (else STORE_E_INVALID). */
store_rc_t store_deal_set(store_t *st, int64_t deal_id, int64_t price_cents, const char *currency,
                          bool active, char *err, size_t errlen) CP_MUSTCHECK;

/* The story of one order, for `couponctl status`. Times are RFC 3339 UTC
 * with milliseconds ("2026-11-21T10:00:00.000Z"); long texts are truncated. */
typedef struct store_order {
    msg_payment_t payment; /* paid_at and paid_at_us as stored; version 1 */
    char state[12];
    int attempts;
    char last_error[256]; /* "" when none */
    char created_at[40], updated_at[40];
    int ncoupons;
    char issued_by[8];  /* of the coupons; "" when none */
    int64_t refund_seq; /* 0 when no refund */
    char refund_reason[256];
    char refunded_at[40]; /* the refund's created_at; "" when no refund */
} store_order_t;

/* Fills *out. Returns STORE_OK, STORE_NOT_FOUND (out zeroed), or an error. */
store_rc_t store_order_get(store_t *st, int64_t order_id, store_order_t *out, char *err,
                           size_t errlen) CP_MUSTCHECK;

/* One attempt to issue p's coupons, in one transaction (SQL coupond_issue):
 * records the payment if new, then, if it is still pending, checks the deal
 * (exists and active: else TRANSIENT; price x quantity == amount and
 * currency: else REJECTED) and either records the failed attempt (attempts + 1,
 * last_error) or moves pending -> issued (attempts + 1) and inserts
 * p->quantity coupons with fresh CSPRNG codes (store_coupon_code).
 * issued_by is "l", "w" or "replay". DUPLICATE when the order was already
 * issued or refunded; REJECTED with res->conflict when p contradicts a stored
 * payment. Uses p->paid_at_us (not the paid_at text).
 * Returns STORE_OK with res filled; STORE_E_INVALID when p breaks a rule of
 * the notification table or issued_by is unknown (nothing sent);
 * STORE_E_SCHEMA when the store is not migrated; or STORE_E_QUERY /
 * STORE_E_UNAVAILABLE (the attempt was rolled back; the lanes count these as
 * TRANSIENT). */
store_rc_t store_issue(store_t *st, const msg_payment_t *p, const char *issued_by,
                       store_result_t *res, char *err, size_t errlen) CP_MUSTCHECK;

/* What store_issue would answer for p now, read-only (SQL
 * coupond_issue_preview, for `couponctl dlq replay --dry-run`): res as
 * store_issue fills it (outcome ISSUED, DUPLICATE, TRANSIENT, or REJECTED
 * with conflict), but nothing is recorded or locked. Returns STORE_OK, or an
 * error as store_issue. */
store_rc_t store_issue_preview(store_t *st, const msg_payment_t *p, store_result_t *res, char *err,
                               size_t errlen) CP_MUSTCHECK;

/* store_issue for a batch. The batch goes to the store as one statement (SQL
 * coupond_issue_batch: orders seen for the first time are recorded, judged
 * and issued set-based, the others one by one) in one transaction; if that
 * statement fails (an order the database refuses, a deadlock, a timeout) it
 * is rolled back and the batch runs again with each order its own
 * transaction (libpq pipeline mode), so one bad order cannot fail the others.
 * res[i] gets order i's result, with res[i].rc STORE_OK (outcome valid),
 * STORE_E_INVALID or STORE_E_QUERY (error says why; that order's attempt was
 * rolled back). Returns STORE_OK when every order has its res[i];
 * STORE_E_UNAVAILABLE when the connection broke: orders whose res[i].rc is
 * STORE_E_UNAVAILABLE have an unknown fate (committed or not); or, with every
 * res[i].rc the same, an error found before anything was sent (issued_by
 * unknown: STORE_E_INVALID; no connection; schema missing: STORE_E_SCHEMA). */
store_rc_t store_issue_batch(store_t *st, const msg_payment_t *ps, size_t n, const char *issued_by,
                             store_result_t *res, char *err, size_t errlen) CP_MUSTCHECK;

/* Refunds order_id in one transaction (SQL coupond_refund): pending ->
 * refunded, refund_log append (the database chains its hash), refund outbox
 * row. res->outcome is REFUNDED (res->refund_seq the new seq), or DUPLICATE
 * when the order was already issued or refunded. reason may be NULL ("").
 * Returns STORE_OK, STORE_NOT_FOUND when the order is not stored, or an error
 * (nothing changed). */
store_rc_t store_refund(store_t *st, int64_t order_id, const char *reason, store_result_t *res,
                        char *err, size_t errlen) CP_MUSTCHECK;

/* Refunds p's order, recording the payment first when the store has never
 * seen it (its L attempt and W attempts may all have been lost), in one
 * transaction (SQL coupond_refund_payment: coupond_record_payment, then
 * coupond_refund). res->outcome is REFUNDED (res->refund_seq the new seq) or
 * DUPLICATE (already issued or refunded; refund_seq the existing refund's, or
 * 0); REJECTED with res->conflict when p contradicts a stored payment
 * (nothing changed; error starts with "rejected: conflict: ").
 * reason may be NULL (""). Uses p->paid_at_us (not the paid_at text).
 * Returns STORE_OK; STORE_E_INVALID when p breaks a rule of the notification
 * table (nothing sent); or an error (nothing changed). */
store_rc_t store_refund_payment(store_t *st, const msg_payment_t *p, const char *reason,
                                store_result_t *res, char *err, size_t errlen) CP_MUSTCHECK;

/* The sweeper's work list: up to max pending payments that are either past
 * their deadline (paid_at + refund_after_s <= now) or untouched (updated_at)
 * for at least stale_ms, oldest paid first. Fills ps[0..*n) (every field,
 * paid_at as RFC 3339 UTC with milliseconds, version 1) and, for each,
 * due[i] = true when past the deadline (due may be NULL). Only one sweeper
 * across all processes gets rows at a time: a session-level advisory lock
 * (pg_try_advisory_lock) taken here and held by this connection until
 * store_sweep_done, or until the session ends; the others get *n = 0 and
 * STORE_OK. Taking again while holding it is fine (it is not stacked).
 * Returns STORE_OK; STORE_E_INVALID (NULL n, NULL ps with max > 0, a
 * negative refund_after_s or stale_ms); or an error (*n = 0). Call
 * store_sweep_done after each round, whatever take returned. */
store_rc_t store_sweep_take(store_t *st, int refund_after_s, int stale_ms, msg_payment_t *ps,
                            bool *due, size_t max, size_t *n, char *err,
                            size_t errlen) CP_MUSTCHECK;
/* Releases the sweeper lock if this connection holds it (else does
 * nothing). If it cannot be released, the session is dropped, which
 * releases it; the next call reconnects. */
void store_sweep_done(store_t *st);

/* One refund request waiting in the outbox for the relay. */
typedef struct store_outbox_row {
    int64_t id;
    int64_t order_id;
    char payload[1024]; /* JSON: order_id, payment_id, user_id, amount_cents,
                           currency, reason, refund_seq, refund_hash, refunded_at */
} store_outbox_row_t;

/* Up to max unsent outbox rows (sent_at IS NULL), oldest (lowest id) first,
 * into rows[0..*n). Taking does not claim them: rows stay unsent until
 * store_outbox_sent, so a relay that dies re-sends them (at least once). A
 * payload that would not fit gets its reason cut to 100 characters (the
 * refund log keeps it whole); it stays valid JSON. Returns STORE_OK,
 * STORE_E_INVALID (NULL n, NULL rows with max > 0), or an error (*n = 0). */
store_rc_t store_outbox_take(store_t *st, store_outbox_row_t *rows, size_t max, size_t *n,
                             char *err, size_t errlen) CP_MUSTCHECK;

/* Marks the given outbox rows sent (after the broker confirmed them):
 * sent_at = now(), attempts + 1. Rows already sent and unknown ids are left
 * alone; n = 0 does nothing. Returns STORE_OK, STORE_E_INVALID (NULL ids
 * with n > 0) or an error. */
store_rc_t store_outbox_sent(store_t *st, const int64_t *ids, size_t n, char *err,
                             size_t errlen) CP_MUSTCHECK;

/* Which of order_ids[0..n) are already issued or refunded (final states:
 * the triggers allow no way back), in one lock-free round trip: finished[i].
 * W checks a batch with it before trying to issue the rest. */
store_rc_t store_finished(store_t *st, const int64_t *order_ids, size_t n, bool *finished,
                          char *err, size_t errlen) CP_MUSTCHECK;

/* Turns synchronous_commit off (or on) for this session, now and after every
 * reconnect. For the L lane only: it acknowledges before it issues and W
 * re-checks every order, so a commit lost to a database crash is a failure W
 * already covers. */
void store_set_async_commit(store_t *st, bool on);

/* A message that cannot be processed: malformed, forged, oversized, or in
 * conflict with a stored payment. */
typedef struct store_letter {
    const char *lane;         /* "l", "w" or "replay" */
    const char *reason;       /* a reason code (msg_status_code, or "conflict") */
    const char *detail;       /* human-readable; may be NULL */
    const char *headers_json; /* the message's headers as a JSON object; NULL: {} */
    const void *body;         /* raw bytes, any content */
    size_t len;
} store_letter_t;

#define STORE_LETTER_MAX (1024 * 1024) /* body bytes kept; the rest is cut */

/* Records a dead letter. The same body dead-lettered again is the same letter
 * with its seen_count raised (and its latest reason and headers).
 * *id and *seen (either may be NULL) get the letter's id and count.
 * Returns STORE_OK or an error (STORE_E_QUERY for headers that are not JSON). */
store_rc_t store_dead_letter(store_t *st, const store_letter_t *dl, int64_t *id, int *seen,
                             char *err, size_t errlen) CP_MUSTCHECK;

/* Writes a new coupon code (16 characters of Crockford base32, 80 bits from
 * the OS CSPRNG) into out[17]. Returns 0 or -1 if the CSPRNG failed. */
int store_coupon_code(char out[17]) CP_MUSTCHECK;

/* Health, for readiness and metrics: a round trip (SELECT 1) on st's
 * connection, reconnecting first if the backoff of store_ensure allows.
 * Returns STORE_OK or STORE_E_UNAVAILABLE with err set. */
store_rc_t store_ping(store_t *st, char *err, size_t errlen) CP_MUSTCHECK;

/* *age_s gets the age (now - paid_at, seconds) of the oldest pending payment,
 * 0 when none is pending (an index scan on payments_pending_paid_at).
 * Returns STORE_OK or an error. */
store_rc_t store_oldest_pending(store_t *st, double *age_s, char *err, size_t errlen) CP_MUSTCHECK;

#endif
