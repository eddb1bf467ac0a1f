/* store_ops.c: the store as operators see it at the command line: deals
 * listed and shown, and a pending order refunded by hand (SQL in
 * src/sql/005_operators.sql). */
#include "store_ops.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

// clang-format off
#define DEAL_COLUMNS                                                                               \
    "d.deal_id, d.price_cents, d.currency, d.active, " SQL_TIME("d.created_at") ", "             \
    SQL_TIME("d.updated_at")
// clang-format on

static const char SQL_DEAL_LIST[] = "SELECT " DEAL_COLUMNS " FROM deals d ORDER BY d.deal_id";

static const char SQL_DEAL_GET[] =
    "SELECT " DEAL_COLUMNS ", "
    "(SELECT count(*) FROM payments p WHERE p.deal_id = d.deal_id AND p.state = 'pending'), "
    "(SELECT count(*) FROM payments p WHERE p.deal_id = d.deal_id AND p.state = 'issued'), "
    "(SELECT count(*) FROM payments p WHERE p.deal_id = d.deal_id AND p.state = 'refunded'), "
    "(SELECT coalesce(sum(p.quantity), 0) FROM payments p "
    " WHERE p.deal_id = d.deal_id AND p.state = 'issued'), "
    "(SELECT coalesce(sum(p.amount_cents), 0) FROM payments p "
    " WHERE p.deal_id = d.deal_id AND p.state = 'refunded') "
    "FROM deals d WHERE d.deal_id = $1::bigint";

static const char SQL_OPERATOR_REFUND[] =
    "SELECT outcome, coalesce(state, ''), coalesce(error, ''), coalesce(refund_seq, 0) "
    "FROM coupond_operator_refund($1::bigint, $2::text, $3::text, $4::text)";

static const char SQL_OPERATOR_REFUND_GET[] =
    "SELECT refund_seq, " SQL_TIME("at") ", os_user, host, note FROM operator_refunds "
                                         "WHERE order_id = $1::bigint";

static void set_err(char *err, size_t errlen, const char *fmt, ...) CP_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void col_copy(char *dst, size_t size, const PGresult *r, int row, int col)
{
    snprintf(dst, size, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static void fill_deal(store_deal_t *d, const PGresult *r, int row)
{
    memset(d, 0, sizeof *d);
    d->deal_id = col_i64(r, row, 0);
    d->price_cents = col_i64(r, row, 1);
    col_copy(d->currency, sizeof d->currency, r, row, 2);
    d->active = strcmp(PQgetvalue(r, row, 3), "t") == 0;
    col_copy(d->created_at, sizeof d->created_at, r, row, 4);
    col_copy(d->updated_at, sizeof d->updated_at, r, row, 5);
}

store_rc_t store_deal_list(store_t *st, store_deal_t **out, size_t *n, char *err, size_t errlen)
{
    PGresult *r;
    store_rc_t rc;
    int rows;

    *out = NULL;
    *n = 0;
    rc = store_query(st, "deal list", SQL_DEAL_LIST, 0, NULL, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    rows = PQntuples(r);
    if (rows > 0 && !(*out = calloc((size_t)rows, sizeof **out))) {
        PQclear(r);
        set_err(err, errlen, "deal list: out of memory");
        return STORE_E_INVALID;
    }
    for (int i = 0; i < rows; i++)
        fill_deal(&(*out)[i], r, i);
    *n = (size_t)rows;
    PQclear(r);
    return STORE_OK;
}

store_rc_t store_deal_get(store_t *st, int64_t deal_id, store_deal_t *out, char *err, size_t errlen)
{
    char id[24], what[48];
    PGresult *r;
    store_rc_t rc;

    memset(out, 0, sizeof *out);
    snprintf(id, sizeof id, "%" PRId64, deal_id);
    snprintf(what, sizeof what, "deal %" PRId64, deal_id);
    const char *params[1] = {id};
    rc = store_query(st, what, SQL_DEAL_GET, 1, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0) {
        set_err(err, errlen, "deal %" PRId64 " is unknown", deal_id);
        rc = STORE_NOT_FOUND;
    } else {
        fill_deal(out, r, 0);
        out->pending = col_i64(r, 0, 6);
        out->issued = col_i64(r, 0, 7);
        out->refunded = col_i64(r, 0, 8);
        out->coupons = col_i64(r, 0, 9);
        out->refunded_cents = col_i64(r, 0, 10);
    }
    PQclear(r);
    return rc;
}

store_rc_t store_order_refund_operator(store_t *st, int64_t order_id, const char *os_user,
                                       const char *host, const char *note, store_result_t *res,
                                       char *err, size_t errlen)
{
    char id[24], what[48];
    const char *outcome;
    PGresult *r;
    store_rc_t rc;

    memset(res, 0, sizeof *res);
    if (order_id <= 0 || !os_user || !*os_user || !note || !*note) {
        set_err(err, errlen, "order refund: an order id > 0, a user and a note are needed");
        return STORE_E_INVALID;
    }
    snprintf(id, sizeof id, "%" PRId64, order_id);
    snprintf(what, sizeof what, "order %" PRId64 ": refund", order_id);
    const char *params[4] = {id, os_user, host ? host : "", note};
    rc = store_query(st, what, SQL_OPERATOR_REFUND, 4, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) != 1) {
        set_err(err, errlen, "%s: the store answered %d rows", what, PQntuples(r));
        PQclear(r);
        return STORE_E_QUERY;
    }
    outcome = PQgetvalue(r, 0, 0);
    col_copy(res->state, sizeof res->state, r, 0, 1);
    col_copy(res->error, sizeof res->error, r, 0, 2);
    res->refund_seq = col_i64(r, 0, 3);
    res->rc = STORE_OK;
    if (strcmp(outcome, "refunded") == 0) {
        res->outcome = STORE_REFUNDED;
    } else if (strcmp(outcome, "duplicate") == 0) {
        res->outcome = STORE_DUPLICATE;
    } else if (strcmp(outcome, "not_found") == 0) {
        set_err(err, errlen, "order %" PRId64 " is unknown", order_id);
        rc = STORE_NOT_FOUND;
    } else {
        set_err(err, errlen, "%s: unexpected outcome '%s'", what, outcome);
        rc = STORE_E_QUERY;
    }
    PQclear(r);
    return rc;
}

store_rc_t store_operator_refund_get(store_t *st, int64_t order_id, store_operator_refund_t *out,
                                     char *err, size_t errlen)
{
    char id[24];
    PGresult *r;
    store_rc_t rc;

    memset(out, 0, sizeof *out);
    snprintf(id, sizeof id, "%" PRId64, order_id);
    const char *params[1] = {id};
    rc = store_query(st, "operator refund", SQL_OPERATOR_REFUND_GET, 1, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = STORE_NOT_FOUND;
    } else {
        out->refund_seq = col_i64(r, 0, 0);
        col_copy(out->at, sizeof out->at, r, 0, 1);
        col_copy(out->os_user, sizeof out->os_user, r, 0, 2);
        col_copy(out->host, sizeof out->host, r, 0, 3);
        col_copy(out->note, sizeof out->note, r, 0, 4);
    }
    PQclear(r);
    return rc;
}
