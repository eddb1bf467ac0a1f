/* store_ops.h: the store as operators see it at the command line, beside
 * store.h's lanes' calls: deals listed and shown (couponctl deal list|show)
 * and a pending order refunded by hand (couponctl order refund; SQL in
 * src/sql/005_operators.sql).
 *
 * Same conventions as store.h: every call returns STORE_OK, STORE_NOT_FOUND
 * where said, or a negative store_rc_t with a one-line explanation in err
 * (STORE_E_SCHEMA when the store lacks migration 005). */
#ifndef COUPOND_STORE_OPS_H
#define COUPOND_STORE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "store.h"

/* One deal. Times are RFC 3339 UTC with milliseconds. The counts are filled
 * by store_deal_get only (0 in lists). */
typedef struct store_deal {
    int64_t deal_id, price_cents;
    char currency[4];
    bool active;
    char created_at[32], updated_at[32];
    int64_t pending, issued, refunded; /* its orders, by state */
    int64_t coupons;                   /* coupons issued for it */
    int64_t refunded_cents;            /* the refunds' amounts, summed */
} store_deal_t;

/* Every deal, by deal_id. *out (free() it) gets *n rows; on error *out is
 * NULL and *n 0. */
store_rc_t store_deal_list(store_t *st, store_deal_t **out, size_t *n, char *err,
                           size_t errlen) CP_MUSTCHECK;

/* One deal with its orders counted (one pass over payments: an operator's
 * look-up, not a hot path). Returns STORE_OK, STORE_NOT_FOUND (out zeroed)
 * or an error. */
store_rc_t store_deal_get(store_t *st, int64_t deal_id, store_deal_t *out, char *err,
                          size_t errlen) CP_MUSTCHECK;

/* Refunds a pending order now, for an operator (SQL coupond_operator_refund):
 * the same one-transaction refund the W lane makes (pending -> refunded,
 * refund_log append with reason "operator", outbox row) plus an
 * operator_refunds row with os_user, host (NULL: "") and note, all committed
 * together. The payments row lock serialises it with the lanes: an order
 * that a lane issues or refunds first is left alone.
 * res->outcome is STORE_REFUNDED (res->refund_seq the new refund) or
 * STORE_DUPLICATE (already issued or refunded; res->state says which,
 * res->refund_seq the existing refund's, if any). Returns STORE_OK,
 * STORE_NOT_FOUND (no such order), STORE_E_INVALID (order_id <= 0, empty
 * os_user or note) or an error (nothing changed). */
store_rc_t store_order_refund_operator(store_t *st, int64_t order_id, const char *os_user,
                                       const char *host, const char *note, store_result_t *res,
                                       char *err, size_t errlen) CP_MUSTCHECK;

/* Who refunded an order by hand: its operator_refunds row. */
typedef struct store_operator_refund {
    int64_t refund_seq;
    char at[32];
    char os_user[64], host[64], note[256]; /* truncated */
} store_operator_refund_t;

/* Returns STORE_OK, STORE_NOT_FOUND (not refunded by an operator; out
 * zeroed) or an error. */
store_rc_t store_operator_refund_get(store_t *st, int64_t order_id, store_operator_refund_t *out,
                                     char *err, size_t errlen) CP_MUSTCHECK;

#endif
