/* store_int.h: what store.c shares with the other store modules
 * (store_dlq.c, store_ops.c): one-off parameterised queries that get the store's
 * connection handling and error classification. */
#ifndef COUPOND_STORE_INT_H
#define COUPOND_STORE_INT_H

#include <libpq-fe.h>

#include "store.h"

/* RFC 3339 UTC with milliseconds, as to_char formats it. */
#define SQL_TIME(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Runs sql (one statement, parameters $1..$nparams as text; a NULL entry is
 * SQL NULL) on st's connection, reconnecting first if the backoff allows.
 * Not prepared: for operators' commands, not for hot paths. On STORE_OK *out
 * holds the result (the caller PQclears it); otherwise *out is NULL and err
 * says why, starting with what: STORE_E_UNAVAILABLE (connection lost),
 * STORE_E_SCHEMA (a table or function is missing: not migrated), or
 * STORE_E_QUERY (with the server's message and SQLSTATE). */
store_rc_t store_query(store_t *st, const char *what, const char *sql, int nparams,
                       const char *const *params, PGresult **out, char *err,
                       size_t errlen) CP_MUSTCHECK;

/* store_query inside the transaction that an earlier store_query opened
 * ("BEGIN ..."): never reconnects nor rolls back first. STORE_E_UNAVAILABLE
 * when the connection or the transaction is gone. For cursors. */
store_rc_t store_query_tx(store_t *st, const char *what, const char *sql, int nparams,
                          const char *const *params, PGresult **out, char *err,
                          size_t errlen) CP_MUSTCHECK;

#endif
