/* store_dlq.h: the dead letters as operators work them (couponctl dlq):
 * selecting and reading letters, recording each replay and resolve in the
 * audit trail together with its effect on the letter, and reading that
 * trail. (The read-only issue preview of dry runs is store_issue_preview in
 * store.h.)
 *
 * Same conventions as store.h: every call returns STORE_OK or a negative
 * store_rc_t with a one-line explanation in err (STORE_E_UNAVAILABLE when the
 * connection is lost, STORE_E_SCHEMA when the store lacks migration 002). */
#ifndef COUPOND_STORE_DLQ_H
#define COUPOND_STORE_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "message.h"
#include "store.h"

/* Which letters: every condition given must hold. */
typedef struct store_dl_filter {
    const char *reason; /* reason code; NULL: any */
    const char *lane;   /* "l", "w": letters that lane dead-lettered; NULL: any */
    const char *since;  /* timestamp text PostgreSQL reads; NULL: any. Letters
                           last seen at or after it */
    bool unresolved;    /* open letters only */
    const int64_t *ids; /* nids > 0: these letters only */
    size_t nids;
    int64_t after_id; /* > 0: letters with a higher id only (paging) */
    long limit;       /* at most this many, lowest id first; 0: no limit */
} store_dl_filter_t;

/* One letter. Times are RFC 3339 UTC with milliseconds, "" when not set.
 * The strings and body are owned by the letter (store_dl_clear). */
typedef struct store_dl {
    int64_t id;
    char lane[16]; /* the lanes that dead-lettered it: "l", "w", "w,l" (first first) */
    char reason[48];
    char fingerprint[65];
    int seen_count, replay_count;
    char received_at[32], last_seen_at[32], last_replay_at[32], resolved_at[32];
    char *detail;          /* "" when none */
    char *headers;         /* the message's headers: a JSON object, "{}" when none */
    char *resolved_by;     /* "" while open */
    char *resolution;      /* issued, refunded, duplicate, handed_to_w, resolved; "" while open */
    char *resolution_note; /* "" when none */
    unsigned char *body;   /* len bytes (a prefix only in lists); never NULL after a fill */
    size_t len;
    size_t body_len; /* the whole body's length */
} store_dl_t;

/* Bytes of each body that store_dl_list reads: enough for any valid
 * notification, and to tell that a longer one is too large. */
#define STORE_DL_LIST_BODY (MSG_MAX_BYTES + 1)

/* Letters matching f, lowest id first, with at most STORE_DL_LIST_BODY bytes
 * of each body. *out (free with store_dl_free) gets *n rows; *total (may be
 * NULL) how many match without f->limit (0 when none is returned). On error
 * *out is NULL, *n 0. */
store_rc_t store_dl_list(store_t *st, const store_dl_filter_t *f, store_dl_t **out, size_t *n,
                         int64_t *total, char *err, size_t errlen) CP_MUSTCHECK;

/* One letter, whole body included. Returns STORE_OK, STORE_NOT_FOUND (out
 * zeroed) or an error. Release out with store_dl_clear. */
store_rc_t store_dl_get(store_t *st, int64_t id, store_dl_t *out, char *err,
                        size_t errlen) CP_MUSTCHECK;

/* Frees what one letter owns (not the struct; NULL is fine) / an array. */
void store_dl_clear(store_dl_t *dl);
void store_dl_free(store_dl_t *rows, size_t n);

/* One action on one letter, for store_dl_record. */
typedef struct store_dl_action {
    int64_t letter_id;
    const char *action;        /* "replay" or "resolve" */
    const char *os_user;       /* who */
    const char *host;          /* where; NULL: "" */
    const char *result;        /* issued, refunded, duplicate, handed_to_w, invalid, refused,
                                  failed, resolved */
    const char *detail;        /* what happened, or the operator's note; may be NULL */
    bool resigned;             /* replayed under a new signature */
    int64_t order_id;          /* 0: none */
    bool replayed;             /* the letter went through a replay: replay_count + 1 */
    const char *reason;        /* non-NULL: the letter's new reason ... */
    const char *letter_detail; /* ... and detail */
    bool close;                /* the action closes the letter (resolution = result) */
} store_dl_action_t;

/* Appends the action to the audit trail (dlq_actions) and applies its effect
 * to the letter, in one transaction. *action_id (may be NULL) gets the new
 * row's id. Returns STORE_OK, STORE_NOT_FOUND (no such letter; nothing
 * recorded), STORE_E_INVALID (a NULL field that is required) or an error. */
store_rc_t store_dl_record(store_t *st, const store_dl_action_t *a, int64_t *action_id, char *err,
                           size_t errlen) CP_MUSTCHECK;

/* One row of the audit trail. Owned strings: free with store_dl_audit_free. */
typedef struct store_dl_audit {
    int64_t id, letter_id, order_id; /* order_id 0: none */
    char at[32];
    char action[16], result[16];
    bool resigned;
    char *os_user, *host, *db_user, *detail;
} store_dl_audit_t;

/* The audit trail, oldest first: of one letter (letter_id > 0) or all, since
 * a time (NULL: all), the newest `limit` rows (0: all). *out gets *n rows. */
store_rc_t store_dl_audit(store_t *st, int64_t letter_id, const char *since, long limit,
                          store_dl_audit_t **out, size_t *n, char *err, size_t errlen) CP_MUSTCHECK;
void store_dl_audit_free(store_dl_audit_t *rows, size_t n);

/* One letter a purge removed (or, in a dry run, would remove). */
typedef struct store_dl_purged {
    int64_t id;
    char reason[48];
    char resolved_at[32];
    char resolution[16];
    char resolved_by[64]; /* truncated */
} store_dl_purged_t;

/* Retention (SQL coupond_dlq_purge, migration 005): deletes the letters
 * resolved more than older_than_s seconds ago, never an open one, and
 * records one "purge" row per letter in the audit trail (dlq_actions keeps
 * its rows of purged letters), in one transaction. dry_run: deletes and
 * records nothing, answers what would go. *out (free() it) gets the *n
 * letters, lowest id first. Returns STORE_OK, STORE_E_INVALID (negative
 * older_than_s, empty os_user) or an error (nothing purged). */
store_rc_t store_dl_purge(store_t *st, int64_t older_than_s, const char *os_user, const char *host,
                          bool dry_run, store_dl_purged_t **out, size_t *n, char *err,
                          size_t errlen) CP_MUSTCHECK;

#endif
