/* message.h: the version-1 payment notification: parsing and validation.
 *
 * Every rule of DESIGN's notification table has its own status, with a stable
 * reason code (msg_status_code) used in dead letters, metrics and publish
 * results, and a human-readable detail written by the parser. */
#ifndef COUPOND_MESSAGE_H
#define COUPOND_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define MSG_MAX_BYTES      (16 * 1024) /* largest accepted body */
#define MSG_PAYMENT_ID_MAX 64

typedef enum msg_status {
    MSG_OK = 0,
    MSG_E_TOO_LARGE,       /* too_large: body over MSG_MAX_BYTES */
    MSG_E_EMPTY,           /* empty: zero-length body */
    MSG_E_NOT_UTF8,        /* not_utf8: invalid UTF-8 or a NUL byte */
    MSG_E_JSON,            /* malformed_json: syntax, truncation, trailing data, nesting */
    MSG_E_NOT_OBJECT,      /* not_object: top level is not an object */
    MSG_E_DUPLICATE_FIELD, /* duplicate_field: a key appears twice */
    MSG_E_VERSION,         /* unsupported_version: v not 1..max_version */
    MSG_E_PAYMENT_ID,      /* invalid_payment_id */
    MSG_E_ORDER_ID,        /* invalid_order_id */
    MSG_E_USER_ID,         /* invalid_user_id */
    MSG_E_SHARD,           /* shard_mismatch: order_id % 100 != user_id % 100 */
    MSG_E_DEAL_ID,         /* invalid_deal_id */
    MSG_E_QUANTITY,        /* invalid_quantity */
    MSG_E_AMOUNT,          /* invalid_amount */
    MSG_E_CURRENCY,        /* invalid_currency */
    MSG_E_PAID_AT,         /* invalid_paid_at */
    MSG_E_SIG_MISSING,     /* missing_signature */
    MSG_E_SIG_FORMAT,      /* malformed_signature */
    MSG_E_SIG_UNKNOWN_KEY, /* unknown_key_id */
    MSG_E_SIG_MISMATCH,    /* bad_signature */
    MSG_STATUS_COUNT
} msg_status_t;

/* A validated notification. Strings are NUL-terminated copies. */
typedef struct msg_payment {
    char payment_id[MSG_PAYMENT_ID_MAX + 1];
    int64_t order_id;
    int64_t user_id;
    int64_t deal_id;
    int32_t quantity;
    int64_t amount_cents;
    char currency[4];
    int64_t paid_at_us; /* microseconds since the Unix epoch, UTC */
    char paid_at[40];   /* as received (at most 30 characters) */
    int version;        /* `v`, 1 when absent */
} msg_payment_t;

/* Parses and validates body (len bytes; need not be NUL-terminated; any
 * bytes are safe). Rules are checked in this order, the first broken one
 * deciding the status:
 *   MSG_E_TOO_LARGE (len > MSG_MAX_BYTES), MSG_E_EMPTY (len 0 or body NULL),
 *   MSG_E_NOT_UTF8 (ill-formed UTF-8: overlongs, surrogates, > U+10FFFF; or a
 *   NUL byte), MSG_E_JSON (syntax, truncation, trailing data, nesting deeper
 *   than 32, a "\u0000" escape), MSG_E_DUPLICATE_FIELD (a key twice in any
 *   object), MSG_E_NOT_OBJECT, MSG_E_VERSION, then the fields in the order of
 *   the enum (payment_id .. paid_at; a missing field fails its own rule), and
 *   last MSG_E_SHARD. Integer fields must be JSON integers (1.0, 1e3 and
 *   numbers outside int64 fail the field's rule); unknown fields are ignored.
 * `v` absent means 1; a present `v` must be an integer from 1 to max_version
 * (the setting message.max_version, 1 unless operators raise it; values
 * below 1 count as 1).
 * Returns MSG_OK and fills out (out may be NULL to validate only), or the
 * first broken rule's status with a one-line explanation in detail, such as
 * "order_id: must be an integer > 0, got 1.5" (out is then unspecified).
 * detail is always NUL-terminated printable ASCII (input excerpts escaped and
 * cut to 40 bytes); it may be NULL when detlen is 0. */
msg_status_t msg_parse(const void *body, size_t len, int max_version, msg_payment_t *out,
                       char *detail, size_t detlen) CP_MUSTCHECK;

/* msg_parse without its fast path for flat bodies of plain strings and
 * integers: every body through jansson. The same results, slower; the
 * reference the fast path is tested against. */
msg_status_t msg_parse_reference(const void *body, size_t len, int max_version, msg_payment_t *out,
                                 char *detail, size_t detlen) CP_MUSTCHECK;

/* The offset of the first byte that is not part of well-formed UTF-8
 * (Unicode table 3-7: no overlongs, no surrogates, nothing above U+10FFFF) or
 * is a NUL byte; len when all of it is. */
size_t msg_utf8_prefix(const void *body, size_t len);

/* Stable snake_case reason code of a status ("ok", "too_large", ...; the
 * codes are listed beside the enum); "unknown" for a value outside the enum. */
const char *msg_status_code(msg_status_t st);

/* Looks a reason code up; returns MSG_STATUS_COUNT when unknown. */
msg_status_t msg_status_from_code(const char *code);

/* Formats microseconds since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-21T10:00:00.000Z"; sub-millisecond digits are dropped, rounding
 * toward the past). out must hold 32 bytes; a shorter out is truncated but
 * still NUL-terminated. */
void msg_format_time(int64_t us, char *out, size_t outlen);

#endif
