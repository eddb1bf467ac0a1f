/* store_dlq.c: the dead letters as operators work them: selecting and
 * reading letters, the audit trail of replays and resolves, and the
 * read-only issue preview for dry runs (SQL in src/sql/002_*.sql). */
#include "store_dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* The columns of a letter, in the order fill_letter reads them; `body` is
 * the expression for the body's bytes. */
// clang-format off
#define DL_COLUMNS(body)                                                                           \
    "id, array_to_string(lanes, ','), reason, fingerprint, seen_count, replay_count, "            \
    SQL_TIME("received_at") ", " SQL_TIME("last_seen_at") ", "                                     \
    "coalesce(" SQL_TIME("last_replay_at") ", ''), coalesce(" SQL_TIME("resolved_at") ", ''), "    \
    "coalesce(detail, ''), coalesce(headers::text, '{}'), coalesce(resolved_by, ''), "             \
    "coalesce(resolution, ''), coalesce(resolution_note, ''), " body ", octet_length(body)"
// clang-format on
#define DL_NCOLUMNS 17

// clang-format off
static const char SQL_LIST[] =
    "SELECT " DL_COLUMNS("substring(body FROM 1 FOR $7::integer)") ", count(*) OVER () "
    "FROM dead_letters "
    "WHERE ($1::text IS NULL OR reason = $1::text) "
    "AND ($2::text IS NULL OR $2::text = ANY (lanes)) "
    "AND ($3::timestamptz IS NULL OR last_seen_at >= $3::timestamptz) "
    "AND (NOT $4::boolean OR resolved_at IS NULL) "
    "AND ($5::bigint[] IS NULL OR id = ANY ($5::bigint[])) AND id > $8::bigint "
    "ORDER BY id LIMIT $6::bigint";

static const char SQL_GET[] =
    "SELECT " DL_COLUMNS("body") " FROM dead_letters WHERE id = $1::bigint";

static const char SQL_RECORD[] =
    "SELECT coupond_dlq_record($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, "
    "$7::boolean, $8::bigint, $9::boolean, $10::text, $11::text, $12::boolean)";

/* The newest $3 rows (all when NULL), returned oldest first. */
static const char SQL_AUDIT[] =
    "SELECT * FROM (SELECT id, letter_id, coalesce(order_id, 0), " SQL_TIME("at") ", action, "
    "result, resigned, os_user, host, db_user, coalesce(detail, '') FROM dlq_actions "
    "WHERE ($1::bigint IS NULL OR letter_id = $1::bigint) "
    "AND ($2::timestamptz IS NULL OR at >= $2::timestamptz) "
    "ORDER BY id DESC LIMIT $3::bigint) a ORDER BY id";

static const char SQL_PURGE[] =
    "SELECT id, reason, " SQL_TIME("resolved_at") ", resolution, resolved_by "
    "FROM coupond_dlq_purge(justify_interval($1::bigint * interval '1 second'), $2::text, $3::text, $4::boolean)";
// clang-format on

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void col_copy(char *dst, size_t size, const PGresult *r, int row, int col)
{
    snprintf(dst, size, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static char *col_dup(const PGresult *r, int row, int col)
{
    return strdup(PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static void set_oom(char *err, size_t errlen, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: out of memory", what);
}

/* Fills dl from row `row` of r (columns DL_COLUMNS). Returns 0 or -1 (out of
 * memory; dl is then cleared). */
static int fill_letter(store_dl_t *dl, const PGresult *r, int row)
{
    size_t blen = 0;
    unsigned char *b;

    memset(dl, 0, sizeof *dl);
    dl->id = col_i64(r, row, 0);
    col_copy(dl->lane, sizeof dl->lane, r, row, 1);
    col_copy(dl->reason, sizeof dl->reason, r, row, 2);
    col_copy(dl->fingerprint, sizeof dl->fingerprint, r, row, 3);
    dl->seen_count = (int)col_i64(r, row, 4);
    dl->replay_count = (int)col_i64(r, row, 5);
    col_copy(dl->received_at, sizeof dl->received_at, r, row, 6);
    col_copy(dl->last_seen_at, sizeof dl->last_seen_at, r, row, 7);
    col_copy(dl->last_replay_at, sizeof dl->last_replay_at, r, row, 8);
    col_copy(dl->resolved_at, sizeof dl->resolved_at, r, row, 9);
    dl->detail = col_dup(r, row, 10);
    dl->headers = col_dup(r, row, 11);
    dl->resolved_by = col_dup(r, row, 12);
    dl->resolution = col_dup(r, row, 13);
    dl->resolution_note = col_dup(r, row, 14);
    /* Text-format bytea ("\x4142..."): PQunescapeBytea decodes it. */
    b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 15), &blen);
    if (b) {
        dl->body = malloc(blen + 1);
        if (dl->body) {
            memcpy(dl->body, b, blen);
            dl->body[blen] = '\0'; /* convenient, not part of the body */
        }
        PQfreemem(b);
    }
    dl->len = blen;
    dl->body_len = (size_t)col_i64(r, row, 16);
    if (!dl->detail || !dl->headers || !dl->resolved_by || !dl->resolution ||
        !dl->resolution_note || !dl->body) {
        store_dl_clear(dl);
        return -1;
    }
    return 0;
}

void store_dl_clear(store_dl_t *dl)
{
    if (!dl)
        return;
    free(dl->detail);
    free(dl->headers);
    free(dl->resolved_by);
    free(dl->resolution);
    free(dl->resolution_note);
    free(dl->body);
    memset(dl, 0, sizeof *dl);
}

void store_dl_free(store_dl_t *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++)
        store_dl_clear(&rows[i]);
    free(rows);
}

/* "{1,2,3}" for a bigint[] parameter; NULL when n is 0 or out of memory. */
static char *id_array(const int64_t *ids, size_t n)
{
    char *arr, *p;
    if (n == 0 || !(arr = malloc(n * 21 + 3)))
        return NULL;
    p = arr;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%" PRId64, i ? "," : "", ids[i]);
    *p++ = '}';
    *p = '\0';
    return arr;
}

store_rc_t store_dl_list(store_t *st, const store_dl_filter_t *f, store_dl_t **out, size_t *n,
                         int64_t *total, char *err, size_t errlen)
{
    char limit[24], body[24], after[24];
    char *ids = NULL;
    PGresult *r = NULL;
    store_dl_t *rows = NULL;
    store_rc_t rc;
    int nrows;

    *out = NULL;
    *n = 0;
    if (total)
        *total = 0;
    if (f->nids && !(ids = id_array(f->ids, f->nids))) {
        set_oom(err, errlen, "dead letters");
        return STORE_E_INVALID;
    }
    snprintf(limit, sizeof limit, "%ld", f->limit);
    snprintf(body, sizeof body, "%d", STORE_DL_LIST_BODY);
    snprintf(after, sizeof after, "%" PRId64, f->after_id);
    const char *params[8] = {
        f->reason, f->lane, f->since, f->unresolved ? "t" : "f", ids, f->limit > 0 ? limit : NULL,
        body,      after};
    rc = store_query(st, "dead letters", SQL_LIST, 8, params, &r, err, errlen);
    free(ids);
    if (rc != STORE_OK)
        return rc;
    nrows = PQntuples(r);
    if (nrows > 0 && !(rows = calloc((size_t)nrows, sizeof *rows)))
        goto oom;
    for (int i = 0; i < nrows; i++) {
        if (fill_letter(&rows[i], r, i) != 0) {
            store_dl_free(rows, (size_t)i);
            rows = NULL;
            goto oom;
        }
    }
    if (total && nrows > 0)
        *total = col_i64(r, 0, DL_NCOLUMNS);
    PQclear(r);
    *out = rows;
    *n = (size_t)nrows;
    return STORE_OK;
oom:
    PQclear(r);
    set_oom(err, errlen, "dead letters");
    return STORE_E_INVALID;
}

store_rc_t store_dl_get(store_t *st, int64_t id, store_dl_t *out, char *err, size_t errlen)
{
    char idtext[24];
    PGresult *r;
    store_rc_t rc;

    memset(out, 0, sizeof *out);
    snprintf(idtext, sizeof idtext, "%" PRId64, id);
    const char *params[1] = {idtext};
    rc = store_query(st, "dead letter", SQL_GET, 1, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0)
        rc = STORE_NOT_FOUND;
    else if (fill_letter(out, r, 0) != 0) {
        set_oom(err, errlen, "dead letter");
        rc = STORE_E_INVALID;
    }
    PQclear(r);
    return rc;
}

store_rc_t store_dl_record(store_t *st, const store_dl_action_t *a, int64_t *action_id, char *err,
                           size_t errlen)
{
    char id[24], order[24];
    PGresult *r;
    store_rc_t rc;

    if (!a->action || !a->os_user || !a->result) {
        if (err && errlen)
            snprintf(err, errlen, "dead letter %" PRId64 ": action, user and result needed",
                     a->letter_id);
        return STORE_E_INVALID;
    }
    snprintf(id, sizeof id, "%" PRId64, a->letter_id);
    snprintf(order, sizeof order, "%" PRId64, a->order_id);
    const char *params[12] = {id,
                              a->action,
                              a->os_user,
                              a->host,
                              a->result,
                              a->detail,
                              a->resigned ? "t" : "f",
                              a->order_id ? order : NULL,
                              a->replayed ? "t" : "f",
                              a->reason,
                              a->reason ? (a->letter_detail ? a->letter_detail : "") : NULL,
                              a->close ? "t" : "f"};
    rc = store_query(st, "audit", SQL_RECORD, 12, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        rc = STORE_NOT_FOUND;
        if (err && errlen)
            snprintf(err, errlen, "dead letter %" PRId64 " does not exist", a->letter_id);
    } else if (action_id) {
        *action_id = col_i64(r, 0, 0);
    }
    PQclear(r);
    return rc;
}

store_rc_t store_dl_audit(store_t *st, int64_t letter_id, const char *since, long limit,
                          store_dl_audit_t **out, size_t *n, char *err, size_t errlen)
{
    char id[24], lim[24];
    store_dl_audit_t *rows = NULL;
    PGresult *r;
    store_rc_t rc;
    int nrows;

    *out = NULL;
    *n = 0;
    snprintf(id, sizeof id, "%" PRId64, letter_id);
    snprintf(lim, sizeof lim, "%ld", limit);
    const char *params[3] = {letter_id > 0 ? id : NULL, since, limit > 0 ? lim : NULL};
    rc = store_query(st, "audit trail", SQL_AUDIT, 3, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    nrows = PQntuples(r);
    if (nrows > 0 && !(rows = calloc((size_t)nrows, sizeof *rows))) {
        PQclear(r);
        set_oom(err, errlen, "audit trail");
        return STORE_E_INVALID;
    }
    for (int i = 0; i < nrows; i++) {
        store_dl_audit_t *a = &rows[i];
        a->id = col_i64(r, i, 0);
        a->letter_id = col_i64(r, i, 1);
        a->order_id = col_i64(r, i, 2);
        col_copy(a->at, sizeof a->at, r, i, 3);
        col_copy(a->action, sizeof a->action, r, i, 4);
        col_copy(a->result, sizeof a->result, r, i, 5);
        a->resigned = strcmp(PQgetvalue(r, i, 6), "t") == 0;
        a->os_user = col_dup(r, i, 7);
        a->host = col_dup(r, i, 8);
        a->db_user = col_dup(r, i, 9);
        a->detail = col_dup(r, i, 10);
        if (!a->os_user || !a->host || !a->db_user || !a->detail) {
            store_dl_audit_free(rows, (size_t)i + 1);
            PQclear(r);
            set_oom(err, errlen, "audit trail");
            return STORE_E_INVALID;
        }
    }
    PQclear(r);
    *out = rows;
    *n = (size_t)nrows;
    return STORE_OK;
}

void store_dl_audit_free(store_dl_audit_t *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].os_user);
        free(rows[i].host);
        free(rows[i].db_user);
        free(rows[i].detail);
    }
    free(rows);
}

store_rc_t store_dl_purge(store_t *st, int64_t older_than_s, const char *os_user, const char *host,
                          bool dry_run, store_dl_purged_t **out, size_t *n, char *err,
                          size_t errlen)
{
    char secs[24];
    store_dl_purged_t *rows = NULL;
    PGresult *r;
    store_rc_t rc;
    int nrows;

    *out = NULL;
    *n = 0;
    if (older_than_s < 0 || !os_user || !*os_user) {
        if (err && errlen)
            snprintf(err, errlen, "purge: a retention >= 0 and a user are needed");
        return STORE_E_INVALID;
    }
    snprintf(secs, sizeof secs, "%" PRId64, older_than_s);
    const char *params[4] = {secs, os_user, host ? host : "", dry_run ? "t" : "f"};
    rc = store_query(st, "purge", SQL_PURGE, 4, params, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    nrows = PQntuples(r);
    if (nrows > 0 && !(rows = calloc((size_t)nrows, sizeof *rows))) {
        PQclear(r);
        set_oom(err, errlen, "purge");
        return STORE_E_INVALID;
    }
    for (int i = 0; i < nrows; i++) {
        rows[i].id = col_i64(r, i, 0);
        col_copy(rows[i].reason, sizeof rows[i].reason, r, i, 1);
        col_copy(rows[i].resolved_at, sizeof rows[i].resolved_at, r, i, 2);
        col_copy(rows[i].resolution, sizeof rows[i].resolution, r, i, 3);
        col_copy(rows[i].resolved_by, sizeof rows[i].resolved_by, r, i, 4);
    }
    PQclear(r);
    *out = rows;
    *n = (size_t)nrows;
    return STORE_OK;
}
