/* lane_w.c: the W lane: after the delay, check each order, issue what L did
 * not, retry on the tier ladder, refund at the deadline. A batch is
 * acknowledged only once everything it caused is committed or confirmed; a
 * crash means a redelivery, which idempotency makes harmless. Each W
 * consumer also relays refund requests from the outbox and sweeps for
 * pending payments whose W message never came. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lane.h"
#include "log.h"

#define W_FETCH_WAIT_MS 200
#define SWEEP_MAX       500
#define RELAY_MAX       500

typedef struct w_item {
    msg_payment_t p;
    size_t dv;   /* index of its delivery */
    int attempt; /* W attempts so far (header) */
    char sig[SIG_HEADER_MAX + 1];
} w_item_t;

typedef struct w_lane {
    lane_ctx_t *lc;
    transport_t *in;  /* the work queue */
    transport_t *out; /* retry tiers and the refunds queue (confirms) */
    tp_delivery_t *dv;
    w_item_t *items;
    msg_payment_t *ps;
    store_result_t *res;
    tp_msg_t *retries;
    char (*retry_dest)[256];
    int64_t *ids;
    bool *finished;
    size_t cap;
    int64_t next_sweep_ms;
} w_lane_t;

static int64_t wall_ms(void)
{
    return cp_clock_us(CLOCK_REALTIME) / 1000;
}

static int grow(w_lane_t *w, size_t n)
{
    void *p;
    if (n <= w->cap)
        return 0;
#define GROW(f)                                                                                    \
    do {                                                                                           \
        if (!(p = realloc(w->f, n * sizeof *w->f)))                                                \
            return -1;                                                                             \
        w->f = p;                                                                                  \
    } while (0)
    GROW(dv);
    GROW(items);
    GROW(ps);
    GROW(res);
    GROW(retries);
    GROW(retry_dest);
    GROW(ids);
    GROW(finished);
#undef GROW
    w->cap = n;
    return 0;
}

/* Refunds one order (recording its payment if the store never saw it).
 * Returns false when the store failed: the batch must not be acknowledged. */
static bool refund(w_lane_t *w, const w_item_t *it, mx_refund_t why, const char *reason)
{
    char err[CP_ERRLEN];
    store_result_t r;
    store_rc_t rc = store_refund_payment(w->lc->store, &it->p, reason, &r, err, sizeof err);

    if (rc != STORE_OK) {
        log_warn_o(it->p.order_id, "refund failed, will come again: %s", err);
        return false;
    }
    if (r.conflict)
        return lane_dead_letter(w->lc, w->in, &w->dv[it->dv], "conflict", r.error) == STORE_OK;
    if (r.outcome == STORE_REFUNDED) {
        metrics_refund(why, lane_age_s(&it->p));
        log_info_o(it->p.order_id, "refunded (seq %" PRId64 "): %s", r.refund_seq, reason);
    } else
        log_debug_o(it->p.order_id, "refund not needed: already %s", r.state);
    return true;
}

/* Works one batch of deliveries. Returns 0 when it may be acknowledged, -1
 * when the store failed, -2 when a retry was not confirmed. */
static int work(w_lane_t *w, size_t n)
{
    const cfg_t *cfg = w->lc->cfg;
    char detail[256], err[CP_ERRLEN];
    size_t nitems = 0, nretries = 0;
    int64_t now = wall_ms();
    store_rc_t rc;

    /* Verify; dead-letter what is bad; refund what is past its deadline. */
    for (size_t i = 0; i < n; i++) {
        w_item_t *it = &w->items[nitems];
        msg_status_t st = lane_verify(cfg, &w->dv[i], &it->p, detail, sizeof detail);
        if (st != MSG_OK) {
            if (lane_dead_letter(w->lc, w->in, &w->dv[i], msg_status_code(st), detail) != STORE_OK)
                return -1;
            continue;
        }
        it->dv = i;
        it->attempt = w->dv[i].attempt;
        snprintf(it->sig, sizeof it->sig, "%.*s", (int)w->dv[i].siglen,
                 w->dv[i].signature ? w->dv[i].signature : "");
        if (now >= lane_deadline_ms(cfg, &it->p)) {
            char reason[128];
            snprintf(reason, sizeof reason, "deadline: no coupons %d s after payment",
                     cfg->issue.refund_after_s);
            if (!refund(w, it, MX_REFUND_DEADLINE, reason))
                return -1;
            continue;
        }
        w->ids[nitems++] = it->p.order_id;
    }
    if (nitems == 0)
        return 0;

    /* Most orders were issued by L long ago: find those in one lock-free
     * round trip (issued and refunded are final) and leave only the rest. */
    if (store_finished(w->lc->store, w->ids, nitems, w->finished, err, sizeof err) != STORE_OK) {
        log_warn("store failed during a batch; it will be delivered again: %s", err);
        return -1;
    }
    {
        size_t kept = 0;
        for (size_t k = 0; k < nitems; k++) {
            if (w->finished[k]) {
                metrics_outcome(MX_DUPLICATE, 0);
                continue;
            }
            w->items[kept] = w->items[k];
            w->ps[kept++] = w->items[k].p;
        }
        nitems = kept;
    }
    if (nitems == 0)
        return 0;

    /* Issue the rest in one batch (store_issue_batch). */
    rc = store_issue_batch(w->lc->store, w->ps, nitems, "w", w->res, err, sizeof err);
    if (rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA) {
        log_warn("store failed during a batch; it will be delivered again: %s", err);
        return -1;
    }
    for (size_t k = 0; k < nitems; k++) {
        const store_result_t *r = &w->res[k];
        w_item_t *it = &w->items[k];
        int64_t oid = it->p.order_id, remaining;
        bool retry = false;

        lane_count(&it->p, r);
        if (r->rc != STORE_OK) {
            log_warn_o(oid, "attempt failed: %s", r->error[0] ? r->error : err);
            retry = true;
        } else if (r->conflict) {
            if (lane_dead_letter(w->lc, w->in, &w->dv[it->dv], "conflict", r->error) != STORE_OK)
                return -1;
        } else if (r->outcome == STORE_REJECTED) {
            if (!refund(w, it, MX_REFUND_REJECTED, r->error))
                return -1;
        } else if (r->outcome == STORE_TRANSIENT) {
            log_info_o(oid, "not issued yet (attempt %d): %s", it->attempt + 1, r->error);
            retry = true;
        } else if (r->outcome == STORE_ISSUED) {
            log_debug_o(oid, "issued %d coupons", it->p.quantity);
        }
        if (!retry)
            continue;
        remaining = lane_deadline_ms(cfg, &it->p) - wall_ms();
        {
            int delay = lane_retry_tier(cfg, it->attempt, remaining);
            tp_retry_queue(&cfg->lane_w, delay, w->retry_dest[nretries],
                           sizeof w->retry_dest[nretries]);
            w->retries[nretries] = (tp_msg_t){.body = w->dv[it->dv].body,
                                              .len = w->dv[it->dv].len,
                                              .signature = it->sig[0] ? it->sig : NULL,
                                              .dest = w->retry_dest[nretries],
                                              .attempt = it->attempt + 1};
            metrics_retry(delay);
            log_debug_o(oid, "retry in %d ms", delay);
            nretries++;
        }
    }
    if (nretries) {
        size_t ok;
        tp_publish_begin(w->out, w->retries, nretries);
        ok = tp_publish_end(w->out, w->retries, nretries, tp_now_ms() + cfg->publish.timeout_ms);
        metrics_publish(MX_PUB_RETRY, ok, nretries - ok);
        if (ok < nretries) {
            log_warn("%zu of %zu retries not confirmed; the batch will be delivered again",
                     nretries - ok, nretries);
            return -2;
        }
    }
    return 0;
}

/* Publishes refund requests waiting in the outbox and marks the confirmed
 * ones sent. A crash in between resends them: the payment system keys them
 * by order_id and refund_seq. */
static void relay(w_lane_t *w)
{
    static store_outbox_row_t rows[RELAY_MAX];
    tp_msg_t msgs[RELAY_MAX];
    int64_t ids[RELAY_MAX];
    char err[CP_ERRLEN];
    size_t n = 0, nsent = 0;

    if (store_outbox_take(w->lc->store, rows, RELAY_MAX, &n, err, sizeof err) != STORE_OK) {
        log_warn("refund relay: %s", err);
        return;
    }
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        msgs[i] = (tp_msg_t){.body = rows[i].payload,
                             .len = strlen(rows[i].payload),
                             .dest = w->lc->cfg->refunds_queue};
    tp_publish_begin(w->out, msgs, n);
    tp_publish_end(w->out, msgs, n, tp_now_ms() + w->lc->cfg->publish.timeout_ms);
    for (size_t i = 0; i < n; i++)
        if (msgs[i].status == TP_ACCEPTED)
            ids[nsent++] = rows[i].id;
    metrics_publish(MX_PUB_REFUND_REQUEST, nsent, n - nsent);
    if (nsent && store_outbox_sent(w->lc->store, ids, nsent, err, sizeof err) != STORE_OK)
        log_warn("refund relay: %zu sent but not marked (they will be sent again): %s", nsent, err);
    else if (nsent)
        log_info("refund relay: %zu refund request%s sent", nsent, nsent == 1 ? "" : "s");
    if (nsent < n)
        log_warn("refund relay: %zu not confirmed, will retry", n - nsent);
}

/* Finishes pending payments W has not seen for a while (their W message was
 * lost): refund those past the deadline, try to issue the others. */
static void sweep(w_lane_t *w)
{
    const cfg_t *cfg = w->lc->cfg;
    static msg_payment_t ps[SWEEP_MAX];
    static bool due[SWEEP_MAX];
    static store_result_t res[SWEEP_MAX];
    msg_payment_t issue[SWEEP_MAX];
    char err[CP_ERRLEN];
    int stale_ms =
        cfg->lane_w.delay_ms + cfg->issue.retry_delays_ms[cfg->issue.nretry_delays - 1] + 1000;
    size_t n = 0, nissue = 0;

    if (store_sweep_take(w->lc->store, cfg->issue.refund_after_s, stale_ms, ps, due, SWEEP_MAX, &n,
                         err, sizeof err) != STORE_OK) {
        log_warn("sweeper: %s", err);
        store_sweep_done(w->lc->store); /* the lock may be held even so */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        store_result_t r;
        if (!due[i]) {
            issue[nissue++] = ps[i];
            continue;
        }
        if (store_refund(w->lc->store, ps[i].order_id, "deadline: no coupons (sweeper)", &r, err,
                         sizeof err) == STORE_OK &&
            r.outcome == STORE_REFUNDED) {
            metrics_refund(MX_REFUND_DEADLINE, lane_age_s(&ps[i]));
            log_info_o(ps[i].order_id, "sweeper refunded it at the deadline");
        }
    }
    if (nissue &&
        store_issue_batch(w->lc->store, issue, nissue, "w", res, err, sizeof err) == STORE_OK) {
        for (size_t k = 0; k < nissue; k++) {
            store_result_t r;
            lane_count(&issue[k], &res[k]);
            if (res[k].rc != STORE_OK)
                continue;
            if (res[k].outcome == STORE_ISSUED)
                log_info_o(issue[k].order_id, "sweeper issued it");
            else if (res[k].outcome == STORE_REJECTED && !res[k].conflict &&
                     store_refund(w->lc->store, issue[k].order_id, res[k].error, &r, err,
                                  sizeof err) == STORE_OK &&
                     r.outcome == STORE_REFUNDED) {
                metrics_refund(MX_REFUND_REJECTED, lane_age_s(&issue[k]));
                log_info_o(issue[k].order_id, "sweeper refunded it: %s", res[k].error);
            }
        }
    }
    store_sweep_done(w->lc->store);
}

static void close_transports(w_lane_t *w)
{
    tp_close(w->in);
    tp_close(w->out);
    w->in = w->out = NULL;
}

static int open_transports(w_lane_t *w)
{
    const cfg_t *cfg = w->lc->cfg;
    tp_lane_desc_t in = {.lane = "w", .cfg = &cfg->lane_w, .timeout_ms = 10000};
    tp_lane_desc_t out = {.lane = "w",
                          .cfg = &cfg->lane_w,
                          .timeout_ms = cfg->publish.timeout_ms,
                          .retry_delays_ms = cfg->issue.retry_delays_ms,
                          .nretry = cfg->issue.nretry_delays,
                          .refunds_queue = cfg->refunds_queue};
    char err[CP_ERRLEN];
    int rc = tp_publisher_open(&w->out, &out, err, sizeof err);
    if (rc == 0)
        rc = tp_consumer_open(&w->in, &in, err, sizeof err);
    if (rc != 0) {
        close_transports(w);
        if (rc == CP_EXIT_USAGE) {
            log_error("%s", err);
            return rc;
        }
        log_warn("broker unavailable, retrying: %s", err);
        return -1;
    }
    return 0;
}

int lane_w_run(lane_ctx_t *lc)
{
    w_lane_t w = {.lc = lc};
    char err[CP_ERRLEN];
    int rc;

    if (lc->cfg->lane_w.transport != CFG_TRANSPORT_AMQP) {
        log_error("lanes.w.transport: the W consumer needs \"amqp\" (its delay and retry tiers "
                  "are RabbitMQ queues)");
        return CP_EXIT_USAGE;
    }
    if ((rc = lane_store_wait(lc)) != 0)
        return rc < 0 ? CP_EXIT_OK : rc;
    log_info("W lane starting: %s, delay %d ms, refund after %d s, %d retry tiers",
             lc->cfg->lane_w.amqp.queue, lc->cfg->lane_w.delay_ms, lc->cfg->issue.refund_after_s,
             lc->cfg->issue.nretry_delays);
    rc = CP_EXIT_OK;
    while (!lane_stop) {
        int n, done;
        if (lane_reload)
            lane_apply_reload(lc);
        if (!lane_tick(lc, tp_connected(w.in) && tp_connected(w.out))) {
            done = -1;
            goto unacked;
        }
        if (!w.in) {
            int orc = open_transports(&w);
            if (orc == CP_EXIT_USAGE) {
                rc = orc;
                break;
            }
            if (orc != 0) {
                sleep(1);
                continue;
            }
        }
        if (grow(&w, (size_t)lc->cfg->issue.batch_size) != 0) {
            log_error("out of memory");
            rc = CP_EXIT_FAILURE;
            break;
        }
        if (tp_now_ms() >= w.next_sweep_ms) {
            relay(&w);
            sweep(&w);
            w.next_sweep_ms = tp_now_ms() + lc->cfg->issue.sweep_interval_ms;
        }
        n = tp_fetch(w.in, w.dv, (size_t)lc->cfg->issue.batch_size, W_FETCH_WAIT_MS,
                     lc->cfg->issue.batch_wait_ms, err, sizeof err);
        if (n < 0) {
            log_warn("%s", err);
            continue;
        }
        if (n == 0)
            continue;
        metrics_received((uint64_t)n);
        metrics_batch((size_t)n);
        done = work(&w, (size_t)n);
        if (done == 0) {
            if (tp_ack(w.in, err, sizeof err) != 0)
                log_warn("%s", err);
            tp_release(w.in);
            continue;
        }
    unacked:
        /* Not acknowledged: closing hands the batch back to the queue. */
        close_transports(&w);
        metrics_broker_up(false);
        if (done == -1 && (rc = lane_store_wait(lc)) != 0) {
            rc = rc < 0 ? CP_EXIT_OK : rc;
            break;
        }
        rc = CP_EXIT_OK;
    }
    lane_stopping(lc);
    close_transports(&w);
    free(w.dv);
    free(w.items);
    free(w.ps);
    free(w.res);
    free(w.retries);
    free(w.retry_dest);
    free(w.ids);
    free(w.finished);
    return rc;
}
