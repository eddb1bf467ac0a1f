/* lane.h: the lane consumers run by `coupond --role l|w`, and the pieces
 * both lanes share: signals, reload, the store connection, verification and
 * dead letters. */
#ifndef COUPOND_LANE_H
#define COUPOND_LANE_H

#include <signal.h>
#include "config.h"
#include "message.h"
#include "metrics.h"
#include "signature.h"
#include "store.h"
#include "transport.h"

/* What a lane needs to run and to reload itself on SIGHUP. */
typedef struct lane_ctx {
    cfg_t *cfg;
    const char *config_path; /* as given, for reloads */
    char *const *sets;       /* --set overrides, reapplied on reload */
    int nsets;
    const char *role; /* "l" or "w" */
    store_t *store;
    int64_t next_ping_ms, next_pending_ms; /* lane_tick's schedule (tp_now_ms) */
} lane_ctx_t;

/* Set by SIGTERM/SIGINT and SIGHUP; the loops act on them between batches. */
extern volatile sig_atomic_t lane_stop, lane_reload;

/* Installs the signal handlers (they only set the flags above). */
void lane_signals_install(void);

/* Rereads the configuration after SIGHUP; a bad file keeps the old
 * settings. Applies what can change at run time and logs what cannot. */
void lane_apply_reload(lane_ctx_t *lc);

/* Connects the store, waiting (and logging) until it answers, the schema
 * matches this build, or a stop is asked for. Returns 0, CP_EXIT_USAGE when
 * the schema does not match, or -1 when stopped. */
int lane_store_wait(lane_ctx_t *lc);

/* Checks a delivery's signature and parses its body. Returns MSG_OK and
 * fills p, or the reason it is dead, with detail. */
msg_status_t lane_verify(const cfg_t *cfg, const tp_delivery_t *d, msg_payment_t *p, char *detail,
                         size_t detlen);

/* Records a dead letter for d; logs (and loses nothing: the other lane has
 * its own copy) when the store cannot take it. Returns the store's status. */
store_rc_t lane_dead_letter(lane_ctx_t *lc, const transport_t *tp, const tp_delivery_t *d,
                            const char *reason, const char *detail);

/* When p falls due for a refund: paid_at + issue.refund_after_s, in
 * milliseconds since the Unix epoch. */
int64_t lane_deadline_ms(const cfg_t *cfg, const msg_payment_t *p);

/* The W retry tier (a delay in issue.retry_delays_ms) for the attempt after
 * `attempt` W attempts, remaining_ms before the deadline: the tier of this
 * attempt, or the largest that still lands before the deadline, or else the
 * smallest (so a refund is at most the smallest tier late). */
int lane_retry_tier(const cfg_t *cfg, int attempt, int64_t remaining_ms);

/* Runs the lane of lc->role: starts the metrics server (metrics.listen),
 * tells the service manager it is ready (notify.h), runs lane_l_run or
 * lane_w_run, stops the server. Returns the process exit code (2 when the
 * metrics server cannot listen). */
int lane_run(lane_ctx_t *lc);

/* What both loops do on every round: mark the loop alive (/healthz), record
 * whether the broker is up, ping the store (at most every second), read the
 * oldest pending payment's age (every metrics.pending_interval_s) and pet the
 * watchdog. Returns false when the store did not answer the ping: the loop
 * then stops taking messages and waits for it (lane_store_wait). */
bool lane_tick(lane_ctx_t *lc, bool broker_up);

/* The loop is leaving: logs it and tells the service manager STOPPING. */
void lane_stopping(lane_ctx_t *lc);

/* Counts one order's store result (metrics.h); conflicts are counted as
 * dead letters by lane_dead_letter. */
void lane_count(const msg_payment_t *p, const store_result_t *r);

/* Seconds from p's paid_at to now, for the latency histogram. */
double lane_age_s(const msg_payment_t *p);

/* The L lane's consumer: acknowledge first, issue once, in batches. Returns
 * the process exit code. */
int lane_l_run(lane_ctx_t *lc);

/* The W lane's consumer: check after the delay, retry, refund at the
 * deadline; relay refund requests; sweep. Returns the exit code. */
int lane_w_run(lane_ctx_t *lc);

#endif
