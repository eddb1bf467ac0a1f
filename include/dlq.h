/* dlq.h: the operators' dead-letter commands (couponctl dlq list, show,
 * replay, resolve, audit, purge) and the pieces they are made of.
 *
 * A replay re-validates a letter with the current code and configuration and
 * sends a valid one down the W lane's path: past its deadline it is refunded;
 * otherwise it is issued (issued_by "replay"), refunded at once when the deal
 * rejects it, or handed to the W lane's first retry tier when the deal is
 * unknown or inactive, so that W retries it and refunds it at the deadline.
 * Every replay and resolve is recorded in the audit trail (dlq_actions) with
 * the OS user, the time and the result; a dry run changes nothing at all. */
#ifndef COUPOND_DLQ_H
#define COUPOND_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "config.h"

/* What happened to one letter (dlq_actions.result). */
typedef enum dlq_result {
    DLQ_ISSUED = 0,  /* its coupons were issued */
    DLQ_REFUNDED,    /* refunded: past its deadline, or rejected by the deal */
    DLQ_DUPLICATE,   /* its order was already issued or refunded: nothing changed */
    DLQ_HANDED_TO_W, /* deal unknown or inactive: on the W lane's retry ladder */
    DLQ_INVALID,     /* still invalid (reason and detail updated), or a conflict */
    DLQ_REFUSED,     /* not replayed: a signature failure without --resign, or
                        replayed dlq.max_replays times already without --force */
    DLQ_FAILED,      /* the store or the W broker failed for this letter */
    DLQ_RESOLVED,    /* closed by hand (dlq resolve) */
    DLQ_RESULT_COUNT
} dlq_result_t;

/* "issued", "refunded", "duplicate", "handed_to_w", "invalid", "refused",
 * "failed", "resolved"; "unknown" outside the enum. */
const char *dlq_result_name(dlq_result_t r);

/* True for results that count as replayed fine (exit code 0). */
bool dlq_result_ok(dlq_result_t r);

/* The commands. argv[0] names the command (for getopt), its options and
 * arguments follow; json is couponctl's global --json (each command also
 * takes --json itself). cfg must be loaded. Each returns the process exit
 * code: 0 success; 1 some letters stayed invalid, were refused or failed (or
 * show/resolve named no such letter); 2 usage; 3 the store (or, for replay,
 * nothing else) is unavailable. Output goes to stdout, diagnostics and the
 * replay summary and progress bar to stderr. */
int dlq_cmd_list(const cfg_t *cfg, bool json, int argc, char **argv);
int dlq_cmd_show(const cfg_t *cfg, bool json, int argc, char **argv);
int dlq_cmd_replay(const cfg_t *cfg, bool json, int argc, char **argv);
int dlq_cmd_resolve(const cfg_t *cfg, bool json, int argc, char **argv);
int dlq_cmd_audit(const cfg_t *cfg, bool json, int argc, char **argv);
/* dlq purge --resolved --older-than DURATION [--dry-run]: retention. Deletes
 * the letters resolved longer ago than DURATION, never an open one, each
 * recorded in the audit trail (which keeps its rows of purged letters). */
int dlq_cmd_purge(const cfg_t *cfg, bool json, int argc, char **argv);

/* ---- pieces, exposed for tests ----------------------------------------- */

/* The order id and payment id a body names, when it is a JSON object with
 * an integer order_id (and a payment_id of [A-Za-z0-9._-]{1,64}, else "").
 * Returns true when an order id was found. */
bool dlq_body_ids(const void *body, size_t len, int64_t *order_id, char *payment_id, size_t plen);

#endif
