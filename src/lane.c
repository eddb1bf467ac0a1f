/* lane.c: what the L and W consumers share: signals, reload, the store
 * connection, verification and dead letters. */
#include "lane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "signature.h"

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
    if (cfg_load(&next, lc->config_path, lc->sets, lc->nsets, err, sizeof err) != 0) {
        log_error("reload failed, the old settings stay: %s", err);
        return;
    }
    cfg_apply_reload(lc->cfg, &next, note, sizeof note);
    cfg_free(&next);
    log_init(lc->cfg->cluster, lc->role, (log_level_t)lc->cfg->log.level, lc->cfg->log.format == 0);
    if (note[0])
        log_warn("reloaded; these settings changed but need a restart: %s", note);
    else
        log_info("reloaded");
}

int lane_store_wait(lane_ctx_t *lc)
{
    char err[CP_ERRLEN];
    bool said = false;

    while (!lane_stop) {
        store_rc_t rc;
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
                log_error("store: %s (run: couponctl db migrate)", err);
                return CP_EXIT_USAGE;
            }
        }
        if (rc == STORE_OK) {
            if (said)
                log_info("store: reachable again");
            return 0;
        }
        if (!said)
            log_warn("store unavailable, waiting: %s", err);
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

    if (rc == STORE_OK)
        log_warn("dead letter %lld (%s, seen %d time%s): %s", (long long)id, reason, seen,
                 seen == 1 ? "" : "s", detail);
    else
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
