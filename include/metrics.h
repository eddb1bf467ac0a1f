/* metrics.h: what a coupond lane counts, served in the Prometheus text
 * format with its health (/metrics, /healthz, /readyz) on metrics.listen.
 *
 * One process runs one lane, so the counters are process-wide. The lane
 * thread updates them with C11 atomics (no locks); the HTTP server's thread
 * reads them when it is scraped. Every series carries the labels cluster and
 * lane. Formatting is a pure function of a snapshot (metrics_format), so it
 * can be tested without a server. */
#ifndef COUPOND_METRICS_H
#define COUPOND_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "textbuf.h"

/* ---- exposition: the text format, one piece at a time --------------- */

/* The page is assembled in a textbuf_t; an oom buffer makes the server
 * answer 500. */
typedef textbuf_t mx_buf_t;

typedef struct mx_label {
    const char *name, *value;
} mx_label_t;

/* "# HELP name help" (backslash and newline escaped) and "# TYPE name type"
 * (type: counter, gauge or histogram). */
void mx_family(mx_buf_t *b, const char *name, const char *type, const char *help);

/* One sample: name{l1="v1",...} value. Label values have backslash, double
 * quote and newline escaped; no labels writes no braces. Integral values are
 * written without a fraction, others with 15 significant digits, or 17 when
 * 15 would not read back exactly. */
void mx_sample(mx_buf_t *b, const char *name, const mx_label_t *labels, size_t nlabels,
               double value);

/* A histogram's samples: name_bucket{...,le="B"} for each upper bound in
 * bounds[0..nbounds) (ascending) and le="+Inf", cumulative, then name_sum and
 * name_count. counts[0..nbounds] are the per-bucket (not cumulative) counts,
 * counts[nbounds] those above the last bound. */
void mx_histogram(mx_buf_t *b, const char *name, const mx_label_t *labels, size_t nlabels,
                  const double *bounds, size_t nbounds, const uint64_t *counts, double sum);

/* ---- what a lane counts --------------------------------------------- */

/* Outcomes of one issue attempt (DESIGN: Outcome), as counted. */
typedef enum mx_outcome {
    MX_ISSUED = 0,
    MX_DUPLICATE,
    MX_TRANSIENT,
    MX_REJECTED,
    MX_OUTCOME_COUNT,
} mx_outcome_t;

/* Why a refund was made. */
typedef enum mx_refund {
    MX_REFUND_DEADLINE = 0, /* no coupons by paid_at + issue.refund_after_s */
    MX_REFUND_REJECTED,     /* amount or currency does not match the deal */
    MX_REFUND_COUNT,
} mx_refund_t;

/* What the W lane publishes itself. */
typedef enum mx_publish {
    MX_PUB_RETRY = 0,      /* a retry into a tier's delay queue */
    MX_PUB_REFUND_REQUEST, /* a refund request for the payment system */
    MX_PUB_COUNT,
} mx_publish_t;

#define MX_MAX_TIERS 32

/* Names this process's series (cluster, lane "l" or "w") and its retry tiers
 * (issue.retry_delays_ms; at most MX_MAX_TIERS are kept). Resets every
 * counter. Call once, before the server starts. */
void metrics_init(const char *cluster, const char *lane, const int *tiers_ms, int ntiers);

void metrics_received(uint64_t n);
/* One order's outcome; for MX_ISSUED, latency_s (now - paid_at) goes into
 * the latency histogram. */
void metrics_outcome(mx_outcome_t o, double latency_s);
/* A dead letter recorded with reason (a message.h reason code or
 * "conflict"; anything else is counted as "other"). */
void metrics_dead_letter(const char *reason);
/* A retry sent to the tier of delay_ms. */
void metrics_retry(int delay_ms);
/* A refund recorded; latency_s (now - paid_at) goes into the histogram. */
void metrics_refund(mx_refund_t why, double latency_s);
void metrics_publish(mx_publish_t what, uint64_t accepted, uint64_t refused);
void metrics_batch(size_t n);
void metrics_broker_up(bool up);
void metrics_store_up(bool up);
/* Age of the oldest pending payment, in seconds (0: none pending); a
 * negative value means unknown (not exported). */
void metrics_oldest_pending(double age_s);
/* The lane's loop went round: /healthz is alive while this happens at least
 * every stall_timeout_s. */
void metrics_tick(void);
/* Whether the lane has started its loop (readiness needs it). */
void metrics_started(bool on);

/* Appends the whole exposition of the current values to b. */
void metrics_format(mx_buf_t *b);

/* /healthz: the loop ticked within stall_timeout_ms. */
bool metrics_alive(int64_t stall_timeout_ms);
/* /readyz: started, broker and store up. */
bool metrics_ready(void);

/* Starts the HTTP server (libmicrohttpd, its own thread) on listen
 * ("HOST:PORT"; "" starts nothing and returns 0). stall_timeout_s is read
 * again on every /healthz (metrics_set_stall_timeout). Returns 0, or -1
 * with err set (bad address, port in use). */
int metrics_start(const char *listen, int stall_timeout_s, char *err, size_t errlen) CP_MUSTCHECK;
void metrics_set_stall_timeout(int stall_timeout_s);
/* Stops the server (if started) and waits for its thread. */
void metrics_stop(void);

#endif
