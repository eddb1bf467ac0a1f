/* metrics.c: a lane's counters (C11 atomics), their Prometheus text
 * exposition, and the HTTP server (libmicrohttpd) for /metrics, /healthz and
 * /readyz. */
#include "metrics.h"

#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "message.h"

/* ---- exposition --------------------------------------------------------- */

/* Escapes backslash and newline, and the double quote too when quote. */
static void put_escaped(mx_buf_t *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            textbuf_puts(b, "\\\\");
        else if (*s == '\n')
            textbuf_puts(b, "\\n");
        else if (*s == '"' && quote)
            textbuf_puts(b, "\\\"");
        else
            textbuf_put(b, s, 1);
    }
}

static void put_value(mx_buf_t *b, double v)
{
    char num[40];
    if (isnan(v))
        snprintf(num, sizeof num, "NaN");
    else if (isinf(v))
        snprintf(num, sizeof num, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        snprintf(num, sizeof num, "%.0f", v);
    else if (snprintf(num, sizeof num, "%.15g", v), strtod(num, NULL) != v)
        snprintf(num, sizeof num, "%.17g", v); /* the shortest that reads back exactly */
    textbuf_puts(b, num);
}

void mx_family(mx_buf_t *b, const char *name, const char *type, const char *help)
{
    textbuf_puts(b, "# HELP ");
    textbuf_puts(b, name);
    textbuf_puts(b, " ");
    put_escaped(b, help, false);
    textbuf_puts(b, "\n# TYPE ");
    textbuf_puts(b, name);
    textbuf_puts(b, " ");
    textbuf_puts(b, type);
    textbuf_puts(b, "\n");
}

/* name{labels[,extra="value"]} value */
static void sample_ex(mx_buf_t *b, const char *name, const char *suffix, const mx_label_t *labels,
                      size_t nlabels, const char *extra, const char *extra_value, double value)
{
    size_t n = 0;
    textbuf_puts(b, name);
    textbuf_puts(b, suffix);
    for (size_t i = 0; i < nlabels + (extra != NULL); i++) {
        const mx_label_t l = i < nlabels ? labels[i] : (mx_label_t){extra, extra_value};
        textbuf_puts(b, n++ ? "," : "{");
        textbuf_puts(b, l.name);
        textbuf_puts(b, "=\"");
        put_escaped(b, l.value, true);
        textbuf_puts(b, "\"");
    }
    if (n)
        textbuf_puts(b, "}");
    textbuf_puts(b, " ");
    put_value(b, value);
    textbuf_puts(b, "\n");
}

void mx_sample(mx_buf_t *b, const char *name, const mx_label_t *labels, size_t nlabels,
               double value)
{
    sample_ex(b, name, "", labels, nlabels, NULL, NULL, value);
}

void mx_histogram(mx_buf_t *b, const char *name, const mx_label_t *labels, size_t nlabels,
                  const double *bounds, size_t nbounds, const uint64_t *counts, double sum)
{
    uint64_t cum = 0;
    char le[40];
    for (size_t i = 0; i <= nbounds; i++) {
        cum += counts[i];
        if (i < nbounds)
            snprintf(le, sizeof le, "%g", bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        sample_ex(b, name, "_bucket", labels, nlabels, "le", le, (double)cum);
    }
    sample_ex(b, name, "_sum", labels, nlabels, NULL, NULL, sum);
    sample_ex(b, name, "_count", labels, nlabels, NULL, NULL, (double)cum);
}

/* ---- the counters --------------------------------------------------------- */

#define MX_MAX_BUCKETS 16

typedef struct mx_hist {
    _Atomic uint64_t counts[MX_MAX_BUCKETS + 1];
    _Atomic uint64_t sum; /* in units of 1/scale */
} mx_hist_t;

static const double batch_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000};
static const double latency_bounds[] = {0.05, 0.1, 0.25, 0.5, 1,   2.5,  5,   10,
                                        15,   30,  60,   300, 900, 1800, 3600};
#define LATENCY_SCALE 1000000.0 /* sums kept in microseconds */

/* Dead-letter reasons: message.h's codes, then these. */
#define DL_CONFLICT (MSG_STATUS_COUNT)
#define DL_OTHER    (MSG_STATUS_COUNT + 1)
#define DL_COUNT    (MSG_STATUS_COUNT + 2)

static const char *const refund_names[MX_REFUND_COUNT] = {"deadline", "rejected"};
static const char *const publish_names[MX_PUB_COUNT] = {"retry", "refund_request"};

static struct {
    char cluster[40], lane[8];
    int tiers[MX_MAX_TIERS], ntiers;
    _Atomic uint64_t received;
    _Atomic uint64_t outcomes[MX_OUTCOME_COUNT];
    _Atomic uint64_t dead_letters[DL_COUNT];
    _Atomic uint64_t retries[MX_MAX_TIERS + 1]; /* the last: a delay that is no tier */
    _Atomic uint64_t refunds[MX_REFUND_COUNT];
    _Atomic uint64_t publishes[MX_PUB_COUNT][2]; /* accepted, refused */
    mx_hist_t batch;
    mx_hist_t latency[2]; /* issued, refunded */
    atomic_bool broker_up, store_up, started;
    _Atomic int64_t oldest_pending_ms; /* < 0: unknown */
    _Atomic int64_t last_tick_ms;
    atomic_int stall_timeout_s;
} mx;

static int64_t mono_ms(void)
{
    return cp_clock_us(CLOCK_MONOTONIC) / 1000;
}

#define ADD(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
#define GET(field)    atomic_load_explicit(&(field), memory_order_relaxed)

void metrics_init(const char *cluster, const char *lane, const int *tiers_ms, int ntiers)
{
    memset(&mx, 0, sizeof mx);
    snprintf(mx.cluster, sizeof mx.cluster, "%s", cluster);
    snprintf(mx.lane, sizeof mx.lane, "%s", lane);
    mx.ntiers = ntiers < MX_MAX_TIERS ? ntiers : MX_MAX_TIERS;
    for (int i = 0; i < mx.ntiers; i++)
        mx.tiers[i] = tiers_ms[i];
    atomic_store(&mx.oldest_pending_ms, -1);
    atomic_store(&mx.last_tick_ms, mono_ms());
    atomic_store(&mx.stall_timeout_s, 60);
}

static void observe(mx_hist_t *h, const double *bounds, size_t nbounds, double v, double scale)
{
    size_t i = 0;
    while (i < nbounds && v > bounds[i])
        i++;
    ADD(h->counts[i], 1);
    ADD(h->sum, (uint64_t)(v > 0 ? v * scale + 0.5 : 0));
}

void metrics_received(uint64_t n)
{
    ADD(mx.received, n);
}

void metrics_outcome(mx_outcome_t o, double latency_s)
{
    if ((unsigned)o >= MX_OUTCOME_COUNT)
        return;
    ADD(mx.outcomes[o], 1);
    if (o == MX_ISSUED)
        observe(&mx.latency[0], latency_bounds, CP_ARRAY_SIZE(latency_bounds), latency_s,
                LATENCY_SCALE);
}

void metrics_dead_letter(const char *reason)
{
    msg_status_t st = msg_status_from_code(reason);
    size_t i = st != MSG_STATUS_COUNT                      ? (size_t)st
               : reason && strcmp(reason, "conflict") == 0 ? DL_CONFLICT
                                                           : DL_OTHER;
    ADD(mx.dead_letters[i], 1);
}

void metrics_retry(int delay_ms)
{
    int i = 0;
    while (i < mx.ntiers && mx.tiers[i] != delay_ms)
        i++;
    ADD(mx.retries[i], 1);
}

void metrics_refund(mx_refund_t why, double latency_s)
{
    if ((unsigned)why >= MX_REFUND_COUNT)
        return;
    ADD(mx.refunds[why], 1);
    observe(&mx.latency[1], latency_bounds, CP_ARRAY_SIZE(latency_bounds), latency_s,
            LATENCY_SCALE);
}

void metrics_publish(mx_publish_t what, uint64_t accepted, uint64_t refused)
{
    if ((unsigned)what >= MX_PUB_COUNT)
        return;
    ADD(mx.publishes[what][0], accepted);
    ADD(mx.publishes[what][1], refused);
}

void metrics_batch(size_t n)
{
    observe(&mx.batch, batch_bounds, CP_ARRAY_SIZE(batch_bounds), (double)n, 1);
}

void metrics_broker_up(bool up)
{
    atomic_store(&mx.broker_up, up);
}

void metrics_store_up(bool up)
{
    atomic_store(&mx.store_up, up);
}

void metrics_oldest_pending(double age_s)
{
    atomic_store(&mx.oldest_pending_ms, age_s < 0 ? -1 : (int64_t)(age_s * 1000));
}

void metrics_tick(void)
{
    atomic_store(&mx.last_tick_ms, mono_ms());
}

void metrics_started(bool on)
{
    atomic_store(&mx.started, on);
}

void metrics_set_stall_timeout(int stall_timeout_s)
{
    atomic_store(&mx.stall_timeout_s, stall_timeout_s);
}

bool metrics_alive(int64_t stall_timeout_ms)
{
    return mono_ms() - atomic_load(&mx.last_tick_ms) <= stall_timeout_ms;
}

bool metrics_ready(void)
{
    return atomic_load(&mx.started) && atomic_load(&mx.broker_up) && atomic_load(&mx.store_up);
}

static void hist_out(mx_buf_t *b, const char *name, const mx_label_t *labels, size_t nlabels,
                     const mx_hist_t *h, const double *bounds, size_t nbounds, double scale)
{
    uint64_t counts[MX_MAX_BUCKETS + 1];
    for (size_t i = 0; i <= nbounds; i++)
        counts[i] = GET(h->counts[i]);
    mx_histogram(b, name, labels, nlabels, bounds, nbounds, counts, (double)GET(h->sum) / scale);
}

void metrics_format(mx_buf_t *b)
{
    mx_label_t l[4] = {{"cluster", mx.cluster}, {"lane", mx.lane}};
    char tier[16];
    int64_t oldest = atomic_load(&mx.oldest_pending_ms);

    mx_family(b, "coupond_notifications_received_total", "counter",
              "Notifications taken from the lane's broker.");
    mx_sample(b, "coupond_notifications_received_total", l, 2, (double)GET(mx.received));

    mx_family(b, "coupond_issued_total", "counter", "Orders whose coupons this lane issued.");
    mx_sample(b, "coupond_issued_total", l, 2, (double)GET(mx.outcomes[MX_ISSUED]));
    mx_family(b, "coupond_duplicates_total", "counter",
              "Notifications of orders already issued or refunded.");
    mx_sample(b, "coupond_duplicates_total", l, 2, (double)GET(mx.outcomes[MX_DUPLICATE]));
    mx_family(b, "coupond_transient_failures_total", "counter",
              "Issue attempts that failed for now (deal unknown or inactive, store error).");
    mx_sample(b, "coupond_transient_failures_total", l, 2, (double)GET(mx.outcomes[MX_TRANSIENT]));
    mx_family(b, "coupond_rejected_total", "counter",
              "Issue attempts rejected (amount or currency does not match the deal).");
    mx_sample(b, "coupond_rejected_total", l, 2, (double)GET(mx.outcomes[MX_REJECTED]));

    mx_family(b, "coupond_dead_letters_total", "counter", "Dead letters recorded, by reason.");
    for (size_t i = 0; i < DL_COUNT; i++) {
        l[2] = (mx_label_t){"reason", i < MSG_STATUS_COUNT ? msg_status_code((msg_status_t)i)
                                      : i == DL_CONFLICT   ? "conflict"
                                                           : "other"};
        if (i == MSG_OK)
            continue;
        mx_sample(b, "coupond_dead_letters_total", l, 3, (double)GET(mx.dead_letters[i]));
    }

    mx_family(b, "coupond_retries_total", "counter",
              "W retries sent, by tier (its delay in milliseconds).");
    for (int i = 0; i <= mx.ntiers; i++) {
        if (i < mx.ntiers)
            snprintf(tier, sizeof tier, "%d", mx.tiers[i]);
        else
            snprintf(tier, sizeof tier, "other");
        l[2] = (mx_label_t){"tier_ms", tier};
        if (i < mx.ntiers || GET(mx.retries[i]))
            mx_sample(b, "coupond_retries_total", l, 3, (double)GET(mx.retries[i]));
    }

    mx_family(b, "coupond_refunds_total", "counter", "Refunds recorded, by reason.");
    for (int i = 0; i < MX_REFUND_COUNT; i++) {
        l[2] = (mx_label_t){"reason", refund_names[i]};
        mx_sample(b, "coupond_refunds_total", l, 3, (double)GET(mx.refunds[i]));
    }

    mx_family(b, "coupond_publishes_total", "counter",
              "Messages this lane published, by kind and result.");
    for (int i = 0; i < MX_PUB_COUNT; i++) {
        for (int r = 0; r < 2; r++) {
            l[2] = (mx_label_t){"kind", publish_names[i]};
            l[3] = (mx_label_t){"result", r ? "refused" : "accepted"};
            mx_sample(b, "coupond_publishes_total", l, 4, (double)GET(mx.publishes[i][r]));
        }
    }

    mx_family(b, "coupond_batch_size", "histogram", "Messages per batch taken from the broker.");
    hist_out(b, "coupond_batch_size", l, 2, &mx.batch, batch_bounds, CP_ARRAY_SIZE(batch_bounds),
             1);

    mx_family(b, "coupond_outcome_latency_seconds", "histogram",
              "Time from paid_at to the order's outcome (coupons issued or refund recorded).");
    for (int i = 0; i < 2; i++) {
        l[2] = (mx_label_t){"outcome", i ? "refunded" : "issued"};
        hist_out(b, "coupond_outcome_latency_seconds", l, 3, &mx.latency[i], latency_bounds,
                 CP_ARRAY_SIZE(latency_bounds), LATENCY_SCALE);
    }

    mx_family(b, "coupond_broker_up", "gauge", "1 when the lane's broker connection is up.");
    mx_sample(b, "coupond_broker_up", l, 2, atomic_load(&mx.broker_up));
    mx_family(b, "coupond_store_up", "gauge", "1 when the store answers.");
    mx_sample(b, "coupond_store_up", l, 2, atomic_load(&mx.store_up));
    mx_family(b, "coupond_ready", "gauge", "1 when /readyz answers 200.");
    mx_sample(b, "coupond_ready", l, 2, metrics_ready());
    mx_family(b, "coupond_loop_tick_age_seconds", "gauge",
              "Seconds since the lane's loop last went round.");
    mx_sample(b, "coupond_loop_tick_age_seconds", l, 2,
              (double)(mono_ms() - atomic_load(&mx.last_tick_ms)) / 1000.0);
    if (oldest >= 0) {
        mx_family(b, "coupond_oldest_pending_seconds", "gauge",
                  "Age (now - paid_at) of the oldest pending payment in the store.");
        mx_sample(b, "coupond_oldest_pending_seconds", l, 2, (double)oldest / 1000.0);
    }
}

/* ---- the HTTP server ------------------------------------------------------ */

static struct MHD_Daemon *daemon_;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *body, size_t len,
                             bool owned, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    if (!r) {
        if (owned)
            free((void *)body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    static const char text[] = "text/plain; charset=utf-8";
    (void)cls;
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", 19, false, text);
    if (strcmp(url, "/metrics") == 0) {
        mx_buf_t b = {0};
        metrics_format(&b);
        if (b.oom) {
            textbuf_free(&b);
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", 14, false, text);
        }
        return reply(c, MHD_HTTP_OK, b.s, b.len, true, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (strcmp(url, "/healthz") == 0) {
        if (metrics_alive((int64_t)atomic_load(&mx.stall_timeout_s) * 1000))
            return reply(c, MHD_HTTP_OK, "ok\n", 3, false, text);
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stalled: the lane's loop stopped\n", 33,
                     false, text);
    }
    if (strcmp(url, "/readyz") == 0) {
        const char *why;
        if (metrics_ready())
            return reply(c, MHD_HTTP_OK, "ready\n", 6, false, text);
        why = !atomic_load(&mx.started)    ? "not ready: starting\n"
              : !atomic_load(&mx.store_up) ? "not ready: store unreachable\n"
                                           : "not ready: broker unreachable\n";
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, why, strlen(why), false, text);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n", 43, false,
                 text);
}

int metrics_start(const char *listen, int stall_timeout_s, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    sigset_t all, old;
    int rc;

    metrics_set_stall_timeout(stall_timeout_s);
    if (!listen[0])
        return 0;
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err, errlen, "metrics.listen %s: must be HOST:PORT", listen);
        return -1;
    }
    /* "[::1]:9464": the brackets are not part of the host */
    if (listen[0] == '[' && colon[-1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen - 2), listen + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if ((rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai)) != 0) {
        snprintf(err, errlen, "metrics.listen %s: %s", listen, gai_strerror(rc));
        return -1;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The server's thread takes no signals: they go to the lane's thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                               ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (!daemon_) {
        snprintf(err, errlen, "metrics.listen %s: cannot listen (address in use?)", listen);
        return -1;
    }
    return 0;
}

void metrics_stop(void)
{
    if (daemon_)
        MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
