/* store_health.c: the store's answers for readiness and metrics. */
#include <stdlib.h>

#include "store_int.h"

store_rc_t store_ping(store_t *st, char *err, size_t errlen)
{
    PGresult *r;
    store_rc_t rc = store_query(st, "ping", "SELECT 1", 0, NULL, &r, err, errlen);
    if (rc == STORE_OK)
        PQclear(r);
    return rc;
}

store_rc_t store_oldest_pending(store_t *st, double *age_s, char *err, size_t errlen)
{
    static const char sql[] = "SELECT COALESCE(extract(epoch FROM now() - min(paid_at)), 0) "
                              "FROM payments WHERE state = 'pending'";
    PGresult *r;
    store_rc_t rc = store_query(st, "oldest pending", sql, 0, NULL, &r, err, errlen);

    *age_s = 0;
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        *age_s = strtod(PQgetvalue(r, 0, 0), NULL);
    PQclear(r);
    return STORE_OK;
}
