/* lane.c: what the L and W consumers share: signals, reload, the store
 * connection, verification and dead letters. */
#include "lane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "signature.h"

#define LANE_PING_MS 1000

volatile sig_atomic_t lane_stop, lane_reload;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        lane_reload = 1;
    else
        lane_stop = 1;
}

void lane_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking wait returns early and the loop looks at the flags. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void lane_apply_reload(lane_ctx_t *lc)
{
    char err[CP_ERRLEN], note[CP_ERRLEN];
    cfg_t next;

    lane_reload = 0;
    notify_reloading();
    if (cfg_load(&next, lc->config_path, lc->sets, lc->nsets, err, sizeof err) != 0) {
        log_error("reload failed, the old settings stay: %s", err);
        notify_ready("reload failed, the old settings stay");
        return;
    }
    cfg_apply_reload(lc->cfg, &next, note, sizeof note);
    cfg_free(&next);
    log_init(lc->cfg->cluster, lc->role, (log_level_t)lc->cfg->log.level, lc->cfg->log.format == 0);
    metrics_set_stall_timeout(lc->cfg->metrics.stall_timeout_s);
    if (note[0])
        log_warn("reloaded; these settings changed but need a restart: %s", note);
    else
        log_info("reloaded");
    notify_ready("reloaded");
}

int lane_store_wait(lane_ctx_t *lc)
{
    char err[CP_ERRLEN];
    bool said = false;

    while (!lane_stop) {
        store_rc_t rc;
        /* Waiting is healthy (alive, not ready). */
        metrics_tick();
        notify_watchdog();
        if (!lc->store) {
            rc = store_open(&lc->store, lc->cfg->store.conninfo, lc->cfg->store.password,
                            lc->cfg->store.statement_timeout_ms, err, sizeof err);
            if (rc == STORE_E_INVALID) {
                log_error("store: %s", err);
                return CP_EXIT_USAGE;
            }
        } else {
            rc = store_ensure(lc->store, 1000, err, sizeof err);
        }
        if (rc == STORE_OK) {
            rc = store_check_schema(lc->store, err, sizeof err);
            if (rc == STORE_E_SCHEMA) {
                log_error("store: %s", err);
                return CP_EXIT_USAGE;
            }
        }
        metrics_store_up(rc == STORE_OK);
        if (rc == STORE_OK) {
            if (said) {
                log_info("store: reachable again");
                notify_status("%s lane: store reachable again", lc->role);
            }
            return 0;
        }
        if (!said) {
            log_warn("store unavailable, waiting: %s", err);
            notify_status("%s lane: waiting for the store", lc->role);
        }
        said = true;
        if (!lc->store)
            sleep(1);
    }
    return -1;
}

msg_status_t lane_verify(const cfg_t *cfg, const tp_delivery_t *d, msg_payment_t *p, char *detail,
                         size_t detlen)
{
    /* Size first (the parser's own check and wording): no HMAC over a huge body. */
    if (d->len > MSG_MAX_BYTES)
        return msg_parse(d->body, d->len, cfg->message.max_version, p, detail, detlen);
    if (d->signature || cfg->security.require_signature) {
        sig_keyring_t ring = cfg_keyring(cfg);
        msg_status_t st =
            sig_verify(&ring, d->signature, d->siglen, d->body, d->len, detail, detlen);
        if (st != MSG_OK)
            return st;
    }
    return msg_parse(d->body, d->len, cfg->message.max_version, p, detail, detlen);
}

store_rc_t lane_dead_letter(lane_ctx_t *lc, const transport_t *tp, const tp_delivery_t *d,
                            const char *reason, const char *detail)
{
    char err[CP_ERRLEN];
    char *headers = tp_headers_json(tp, d);
    store_letter_t dl = {lc->role, reason, detail, headers, d->body, d->len};
    int64_t id = 0;
    int seen = 0;
    store_rc_t rc = store_dead_letter(lc->store, &dl, &id, &seen, err, sizeof err);
    char note[CP_ERRLEN * 2];

    if (rc == STORE_E_QUERY && headers) {
        /* The store refused what the headers became: the letter itself, raw
         * body and all, must still be kept, or the lane would stop on it. */
        log_warn("dead letter refused with its headers (%s); recording it without them", err);
        snprintf(note, sizeof note, "%s (headers not recorded: %s)", detail ? detail : "", err);
        dl.headers_json = NULL;
        dl.detail = note;
        rc = store_dead_letter(lc->store, &dl, &id, &seen, err, sizeof err);
    }
    if (rc == STORE_OK) {
        metrics_dead_letter(reason);
        log_warn("dead letter %lld (%s, seen %d time%s): %s", (long long)id, reason, seen,
                 seen == 1 ? "" : "s", detail);
    } else
        log_error("dead letter not recorded (%s: %s): %s", reason, detail, err);
    free(headers);
    return rc;
}

int64_t lane_deadline_ms(const cfg_t *cfg, const msg_payment_t *p)
{
    return p->paid_at_us / 1000 + (int64_t)cfg->issue.refund_after_s * 1000;
}

int lane_retry_tier(const cfg_t *cfg, int attempt, int64_t remaining_ms)
{
    const int *d = cfg->issue.retry_delays_ms;
    int n = cfg->issue.nretry_delays, want = d[attempt < n ? attempt : n - 1];
    if (want <= remaining_ms)
        return want;
    for (int i = n - 1; i >= 0; i--)
        if (d[i] <= remaining_ms)
            return d[i];
    return d[0];
}

int lane_run(lane_ctx_t *lc)
{
    const cfg_t *cfg = lc->cfg;
    char err[CP_ERRLEN];
    int rc;

    metrics_init(cfg->cluster, lc->role, cfg->issue.retry_delays_ms, cfg->issue.nretry_delays);
    if (metrics_start(cfg->metrics.listen, cfg->metrics.stall_timeout_s, err, sizeof err) != 0) {
        log_error("%s", err);
        return CP_EXIT_USAGE;
    }
    if (cfg->metrics.listen[0])
        log_info("metrics on http://%s/metrics (/healthz, /readyz)", cfg->metrics.listen);
    notify_init();
    /* Ready means running: dependencies that are down are waited for, and
     * /readyz tells when they answer. */
    notify_ready(strcmp(lc->role, "l") == 0 ? "L lane starting" : "W lane starting");
    metrics_started(true);
    rc = strcmp(lc->role, "l") == 0 ? lane_l_run(lc) : lane_w_run(lc);
    metrics_started(false);
    metrics_stop();
    return rc;
}

bool lane_tick(lane_ctx_t *lc, bool broker_up)
{
    char err[CP_ERRLEN];
    int64_t now = tp_now_ms();

    metrics_tick();
    metrics_broker_up(broker_up);
    if (now >= lc->next_ping_ms) {
        lc->next_ping_ms = now + LANE_PING_MS;
        if (store_ping(lc->store, err, sizeof err) != STORE_OK) {
            metrics_store_up(false);
            log_warn("store: %s", err);
            return false;
        }
        metrics_store_up(true);
    }
    if (lc->cfg->metrics.listen[0] && now >= lc->next_pending_ms) {
        double age;
        lc->next_pending_ms = now + (int64_t)lc->cfg->metrics.pending_interval_s * 1000;
        if (store_oldest_pending(lc->store, &age, err, sizeof err) == STORE_OK)
            metrics_oldest_pending(age);
    }
    notify_watchdog();
    return true;
}

void lane_stopping(lane_ctx_t *lc)
{
    log_info("%s lane stopping", strcmp(lc->role, "l") == 0 ? "L" : "W");
    notify_stopping(strcmp(lc->role, "l") == 0 ? "L lane stopping" : "W lane stopping");
}

double lane_age_s(const msg_payment_t *p)
{
    return (double)(cp_clock_us(CLOCK_REALTIME) - p->paid_at_us) / 1e6;
}

void lane_count(const msg_payment_t *p, const store_result_t *r)
{
    if (r->rc != STORE_OK) {
        metrics_outcome(MX_TRANSIENT, 0);
        return;
    }
    if (r->conflict)
        return;
    switch (r->outcome) {
    case STORE_ISSUED:
        metrics_outcome(MX_ISSUED, lane_age_s(p));
        break;
    case STORE_DUPLICATE:
        metrics_outcome(MX_DUPLICATE, 0);
        break;
    case STORE_TRANSIENT:
        metrics_outcome(MX_TRANSIENT, 0);
        break;
    case STORE_REJECTED:
        metrics_outcome(MX_REJECTED, 0);
        break;
    default:
        break;
    }
}
