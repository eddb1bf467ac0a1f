/* lane_l.c: the L lane: take a batch, acknowledge it, then issue it once in
 * a few round trips. Whatever fails here is left to the W lane. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lane.h"
#include "log.h"

typedef struct l_batch {
    tp_delivery_t *dv;   /* deliveries of the fetch */
    msg_payment_t *ps;   /* the valid ones, parsed */
    size_t *from;        /* ps[k] came from dv[from[k]] */
    store_result_t *res; /* store results for ps */
    size_t cap;
} l_batch_t;

static int batch_grow(l_batch_t *b, size_t n)
{
    void *p;
    if (n <= b->cap)
        return 0;
    if (!(p = realloc(b->dv, n * sizeof *b->dv)))
        return -1;
    b->dv = p;
    if (!(p = realloc(b->ps, n * sizeof *b->ps)))
        return -1;
    b->ps = p;
    if (!(p = realloc(b->from, n * sizeof *b->from)))
        return -1;
    b->from = p;
    if (!(p = realloc(b->res, n * sizeof *b->res)))
        return -1;
    b->res = p;
    b->cap = n;
    return 0;
}

static void batch_free(l_batch_t *b)
{
    free(b->dv);
    free(b->ps);
    free(b->from);
    free(b->res);
}

/* Verifies, dead-letters what is bad, issues the rest. Returns false when the
 * store became unreachable. */
static bool process(lane_ctx_t *lc, transport_t *tp, l_batch_t *b, size_t n)
{
    char detail[256], err[CP_ERRLEN];
    size_t nvalid = 0;
    store_rc_t rc;

    for (size_t i = 0; i < n; i++) {
        msg_status_t st = lane_verify(lc->cfg, &b->dv[i], &b->ps[nvalid], detail, sizeof detail);
        if (st != MSG_OK) {
            if (lane_dead_letter(lc, tp, &b->dv[i], msg_status_code(st), detail) ==
                STORE_E_UNAVAILABLE)
                return false;
            continue;
        }
        b->from[nvalid++] = i;
    }
    if (nvalid == 0)
        return true;
    rc = store_issue_batch(lc->store, b->ps, nvalid, "l", b->res, err, sizeof err);
    for (size_t k = 0; k < nvalid; k++) {
        const store_result_t *r = &b->res[k];
        int64_t oid = b->ps[k].order_id;
        lane_count(&b->ps[k], r);
        if (r->rc != STORE_OK) {
            log_warn_o(oid, "not issued, left to W: %s",
                       r->rc == STORE_E_UNAVAILABLE ? err : r->error);
            continue;
        }
        if (r->conflict) {
            if (lane_dead_letter(lc, tp, &b->dv[b->from[k]], "conflict", r->error) ==
                STORE_E_UNAVAILABLE)
                return false;
            continue;
        }
        switch (r->outcome) {
        case STORE_ISSUED:
            log_debug_o(oid, "issued %d coupons", b->ps[k].quantity);
            break;
        case STORE_DUPLICATE:
            log_debug_o(oid, "duplicate: already %s", r->state);
            break;
        case STORE_TRANSIENT:
        case STORE_REJECTED:
            log_info_o(oid, "not issued, left to W: %s", r->error);
            break;
        default:
            break;
        }
    }
    if (rc == STORE_E_UNAVAILABLE) {
        log_warn("store unavailable during a batch; its orders are left to W: %s", err);
        return false;
    }
    return true;
}

int lane_l_run(lane_ctx_t *lc)
{
    char err[CP_ERRLEN];
    tp_lane_desc_t desc = {.lane = "l", .cfg = &lc->cfg->lane_l, .timeout_ms = 10000};
    transport_t *tp = NULL;
    l_batch_t b = {0};
    int rc = CP_EXIT_OK;

    if ((rc = lane_store_wait(lc)) != 0)
        return rc < 0 ? CP_EXIT_OK : rc;
    /* L acknowledged first and W re-checks every order: a commit lost to a
     * database crash is one more failure W covers, so L need not wait for
     * the WAL flush. */
    store_set_async_commit(lc->store, true);
    log_info("L lane starting: %s %s, batches of %d", cfg_transport_name(lc->cfg->lane_l.transport),
             lc->cfg->lane_l.transport == CFG_TRANSPORT_KAFKA ? lc->cfg->lane_l.kafka.topic
                                                              : lc->cfg->lane_l.amqp.queue,
             lc->cfg->issue.batch_size);
    while (!lane_stop) {
        int n;
        if (lane_reload)
            lane_apply_reload(lc);
        if (!lane_tick(lc, tp_connected(tp)))
            goto store_lost;
        if (!tp) {
            rc = tp_consumer_open(&tp, &desc, err, sizeof err);
            if (rc == CP_EXIT_USAGE) {
                log_error("%s", err);
                break;
            }
            if (rc != 0) {
                log_warn("broker unavailable, retrying: %s", err);
                tp = NULL;
                rc = CP_EXIT_OK;
                sleep(1);
                continue;
            }
        }
        if (batch_grow(&b, (size_t)lc->cfg->issue.batch_size) != 0) {
            log_error("out of memory");
            rc = CP_EXIT_FAILURE;
            break;
        }
        n = tp_fetch(tp, b.dv, (size_t)lc->cfg->issue.batch_size, 500, lc->cfg->issue.batch_wait_ms,
                     err, sizeof err);
        if (n < 0) {
            log_warn("%s", err);
            continue;
        }
        if (n == 0)
            continue;
        metrics_received((uint64_t)n);
        metrics_batch((size_t)n);
        /* Acknowledge first: L never retries, W has its own copy. */
        if (tp_ack(tp, err, sizeof err) != 0)
            log_warn("%s", err);
        if (process(lc, tp, &b, (size_t)n)) {
            tp_release(tp);
            continue;
        }
    store_lost:
        /* Stop taking messages until the store answers again: leaving the
         * group (or closing the channel) hands them to no one. */
        tp_close(tp);
        tp = NULL;
        metrics_broker_up(false);
        if ((rc = lane_store_wait(lc)) != 0) {
            rc = rc < 0 ? CP_EXIT_OK : rc;
            break;
        }
    }
    lane_stopping(lc);
    tp_close(tp);
    batch_free(&b);
    return rc;
}
