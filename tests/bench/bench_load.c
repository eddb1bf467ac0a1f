/* bench_load.c: notifications for the lane benchmarks, generated or
 * published at a fixed offered load.
 *
 *   bench_load -g N [-P PREFIX] [-O ORDER_BASE] [-d DEAL] [-k DEALS]
 *       prints N valid notifications, one JSON object per line (about 230
 *       bytes each: the shape of bench_publish's), paid now, for
 *       `couponctl publish` and bench_store: quantity 1-4, deals DEAL ..
 *       DEAL+DEALS-1 (default 1..50) priced 1990 EUR per coupon.
 *
 *   bench_load -R RATE -T SECONDS [-t TICK_MS] [-m MAX_BATCH] [-P ...] [-O ...]
 *              [-c CONFIG] [--set PATH=VALUE]...
 *       publishes RATE notifications/s for SECONDS through coupond's own
 *       publisher (pub_send: validation, signing, fan-out to both lanes), on
 *       a timer: every TICK_MS (default 10) the notifications that are due,
 *       RATE x TICK_MS / 1000 of them when it keeps up (50 at 5,000/s). When
 *       a pub_send call takes longer than a tick, the next call sends
 *       everything due (at most MAX_BATCH, default 1000), so the offered rate
 *       holds as long as the publisher can sustain it at all; the report says
 *       how far behind the schedule it fell and the rate it achieved. Each
 *       notification's paid_at is the wall-clock time (microseconds) at
 *       which its pub_send call started: the benchmark's latency of an order
 *       is payments.created_at - paid_at, publish call to issued, on the
 *       same clock.
 *
 *   bench_load -E [-c CONFIG] [--set PATH=VALUE]...
 *       commits the L lane's consumer group (lanes.l.kafka.group) at the end
 *       of every partition of its topic (lanes.l.kafka.topic), so that a new
 *       group starts after what the topic already holds: the benchmark reuses
 *       one topic rather than leave a fresh one in the local Kafka host (which
 *       cannot delete topics) on every run.
 *
 * Not a test: no timed assertions, nothing registered with CTest.
 * Exit: 0, 1 when a notification was not accepted by the L lane, 2 usage or
 * configuration error, 3 a broker unavailable. */
#define _GNU_SOURCE
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "config.h"
#include "log.h"
#include "message.h"
#include "publish.h"

#define BODY_MAX 512
#define PRICE    1990

typedef struct gen {
    const char *prefix;
    long long order_base;
    int deal, deals;
} gen_t;

/* Wall clock as RFC 3339 UTC with microseconds. */
static void paid_now(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    char day[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%06ldZ", day, ts.tv_nsec / 1000);
}

/* Notification i; every one distinct. */
static size_t make_body(const gen_t *g, size_t i, const char *paid_at, char *out, size_t outlen)
{
    long long user = 100000 + (long long)(i * 7919 % 900000);
    long long order = (g->order_base + (long long)i) * 100 + user % 100;
    int qty = 1 + (int)(i % 4);
    int n = snprintf(out, outlen,
                     "{\"v\":1,\"payment_id\":\"%s-%08zu\",\"order_id\":%lld,\"user_id\":%lld,"
                     "\"deal_id\":%d,\"quantity\":%d,\"amount_cents\":%d,\"currency\":\"EUR\","
                     "\"paid_at\":\"%s\",\"method\":\"card\",\"psp_ref\":\"ch_%012zx\"}",
                     g->prefix, i, order, user, g->deal + (int)(i % (size_t)g->deals), qty,
                     qty * PRICE, paid_at, (size_t)(i * 2654435761u % 0xffffffffffffu));
    return n < 0 ? 0 : (size_t)n;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_load -g N [-P PREFIX] [-O ORDER_BASE] [-d DEAL] [-k DEALS]\n"
            "       bench_load -R RATE -T SECONDS [-t TICK_MS] [-m MAX_BATCH] [-P PREFIX]\n"
            "                  [-O ORDER_BASE] [-d DEAL] [-k DEALS] [-c CONFIG] [--set P=V]...\n"
            "       bench_load -E [-c CONFIG] [--set P=V]...\n"
            "  -g N          print N notifications (JSON lines), paid now\n"
            "  -R, -T        publish RATE notifications/s for SECONDS with pub_send\n"
            "  -t TICK_MS    timer period (default 10); -m MAX_BATCH largest pub_send (1000)\n"
            "  -P PREFIX     payment_id prefix (default bench); -O ORDER_BASE first order\n"
            "                id / 100 (default 1000000)\n"
            "  -d DEAL, -k DEALS  deals DEAL..DEAL+DEALS-1 (default 1, 50), price 1990 EUR\n"
            "  -E            commit lanes.l.kafka.group at the end of lanes.l.kafka.topic\n");
}

/* -E: the group's committed offsets := the end of each partition. */
static int commit_end(const char *config, char **sets, int nsets)
{
    char err[CP_ERRLEN];
    cfg_t cfg;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t held = 0;
    int rc = CP_EXIT_UNAVAIL;

    if (bench_cfg_load(&cfg, "bench_load", config, sets, nsets, "no configuration") != 0)
        return CP_EXIT_USAGE;
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg.lane_l.kafka.brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", cfg.lane_l.kafka.group, err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
        !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) {
        fprintf(stderr, "bench_load: kafka: %s\n", err);
        rd_kafka_conf_destroy(conf);
        cfg_free(&cfg);
        return CP_EXIT_USAGE;
    }
    rkt = rd_kafka_topic_new(rk, cfg.lane_l.kafka.topic, NULL);
    for (int tries = 0; tries < 150; tries++) { /* the topic may be being created */
        e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
            break;
        if (!e) {
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            rd_kafka_metadata_destroy(md);
            md = NULL;
        }
        usleep(100000);
    }
    if (!md) {
        fprintf(stderr, "bench_load: topic %s: %s\n", cfg.lane_l.kafka.topic, rd_kafka_err2str(e));
        goto out;
    }
    list = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, cfg.lane_l.kafka.topic, part, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "bench_load: %s [%d]: %s\n", cfg.lane_l.kafka.topic, part,
                    rd_kafka_err2str(e));
            goto out;
        }
        rd_kafka_topic_partition_list_add(list, cfg.lane_l.kafka.topic, part)->offset = hi;
        held += hi - lo;
    }
    if ((e = rd_kafka_commit(rk, list, 0))) {
        fprintf(stderr, "bench_load: committing group %s: %s\n", cfg.lane_l.kafka.group,
                rd_kafka_err2str(e));
        goto out;
    }
    printf("bench_load: group %s starts at the end of %s (%d partitions, %lld messages held)\n",
           cfg.lane_l.kafka.group, cfg.lane_l.kafka.topic, list->cnt, (long long)held);
    rc = CP_EXIT_OK;
out:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    cfg_free(&cfg);
    return rc;
}

static int generate(const gen_t *g, size_t n)
{
    char paid[64], body[BODY_MAX];
    paid_now(paid, sizeof paid);
    for (size_t i = 0; i < n; i++) {
        size_t len = make_body(g, i, paid, body, sizeof body);
        fwrite(body, 1, len, stdout);
        fputc('\n', stdout);
    }
    return fflush(stdout) == 0 ? CP_EXIT_OK : CP_EXIT_FAILURE;
}

static int load(const gen_t *g, const char *config, char **sets, int nsets, double rate,
                double seconds, int tick_ms, size_t max_batch)
{
    size_t total = (size_t)(rate * seconds + 0.5), per_tick = (size_t)(rate * tick_ms / 1000.0);
    size_t sent = 0, acc_l = 0, acc_w = 0, nbatch = 0, max_k = 0, max_behind = 0, late_ticks = 0;
    char err[CP_ERRLEN], paid[64];
    char *bodies = malloc(max_batch * BODY_MAX);
    pub_note_t *notes = malloc(max_batch * sizeof *notes);
    pub_result_t *res = malloc(max_batch * sizeof *res);
    double *call_ms = malloc((total + 1) * sizeof *call_ms);
    publisher_t *pub = NULL;
    double t0, last_start = 0, cpu0;
    int rc = CP_EXIT_OK;
    cfg_t cfg;
    struct timespec cts;

    if (per_tick < 1)
        per_tick = 1;
    if (!bodies || !notes || !res || !call_ms) {
        fprintf(stderr, "bench_load: out of memory\n");
        rc = CP_EXIT_FAILURE;
        goto out0;
    }
    if ((rc = bench_cfg_load(&cfg, "bench_load", config, sets, nsets,
                             "no configuration: -c CONFIG or COUPOND_CONFIG")) != 0)
        goto out0;
    if ((rc = pub_open(&pub, &cfg, err, sizeof err)) != 0) {
        fprintf(stderr, "bench_load: %s\n", err);
        goto out;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cts);
    cpu0 = (double)cts.tv_sec + (double)cts.tv_nsec / 1e9;
    t0 = bench_now_s();
    while (sent < total) {
        double now = bench_now_s(), start;
        size_t due = ((size_t)((now - t0) * 1000.0 / tick_ms) + 1) * per_tick, k;
        if (due > total)
            due = total;
        if (due <= sent) {
            /* wait for the tick at which the next notification is due */
            double at = t0 + (double)(sent / per_tick) * tick_ms / 1000.0, d = at - now;
            struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
            if (d > 0)
                nanosleep(&ts, NULL);
            continue;
        }
        k = due - sent;
        if (k > per_tick) {
            late_ticks++;
            if (k - per_tick > max_behind)
                max_behind = k - per_tick;
        }
        if (k > max_batch)
            k = max_batch;
        paid_now(paid, sizeof paid);
        for (size_t i = 0; i < k; i++) {
            char *b = bodies + i * BODY_MAX;
            notes[i] = (pub_note_t){b, make_body(g, sent + i, paid, b, BODY_MAX)};
        }
        start = bench_now_s();
        last_start = start;
        pub_send(pub, notes, k, res);
        call_ms[nbatch++] = (bench_now_s() - start) * 1000;
        for (size_t i = 0; i < k; i++) {
            acc_l += res[i].status == MSG_OK && res[i].lane[PUB_LANE_L] == TP_ACCEPTED;
            acc_w += res[i].status == MSG_OK && res[i].lane[PUB_LANE_W] == TP_ACCEPTED;
        }
        if (k > max_k)
            max_k = k;
        sent += k;
    }
    {
        /* the offered span: up to the start of the last call, plus one tick */
        double span = last_start - t0 + tick_ms / 1000.0, cpu;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cts);
        cpu = (double)cts.tv_sec + (double)cts.tv_nsec / 1e9 - cpu0;
        qsort(call_ms, nbatch, sizeof *call_ms, bench_cmp_double);
        printf("bench_load: target %.0f/s for %.1f s (%zu every %d ms); offered %zu in %.2f s = "
               "%.0f/s; %zu pub_send calls of %.1f on average (max %zu); %zu ticks behind "
               "schedule (at most %zu notifications behind); pub_send ms p50 %.1f p99 %.1f max "
               "%.1f; accepted by L %zu, by W %zu; publisher CPU %.0f%%\n",
               rate, seconds, per_tick, tick_ms, sent, span, (double)sent / span, nbatch,
               (double)sent / (double)nbatch, max_k, late_ticks, max_behind,
               bench_pct(call_ms, nbatch, 0.5), bench_pct(call_ms, nbatch, 0.99),
               call_ms[nbatch - 1], acc_l, acc_w, 100 * cpu / span);
        printf("offered_per_s %.0f\n", (double)sent / span);
    }
    if (acc_l != sent)
        rc = CP_EXIT_FAILURE;
out:
    pub_close(pub);
    cfg_free(&cfg);
out0:
    free(bodies);
    free(notes);
    free(res);
    free(call_ms);
    return rc;
}

int main(int argc, char **argv)
{
    gen_t g = {.prefix = "bench", .order_base = 1000000, .deal = 1, .deals = 50};
    const char *config = NULL;
    char *sets[BENCH_MAX_SETS];
    int nsets = 0, c, tick_ms = 10, end = 0;
    long long gen_n = -1;
    double rate = 0, seconds = 0;
    long max_batch = 1000;

    while ((c = getopt_long(argc, argv, "Eg:P:O:d:k:R:T:t:m:c:h", bench_longopts, NULL)) != -1) {
        switch (c) {
        case 'E':
            end = 1;
            break;
        case 'g':
            gen_n = atoll(optarg);
            if (gen_n < 1)
                goto bad;
            break;
        case 'P':
            g.prefix = optarg;
            break;
        case 'O':
            g.order_base = atoll(optarg);
            if (g.order_base < 1)
                goto bad;
            break;
        case 'd':
            g.deal = atoi(optarg);
            if (g.deal < 1)
                goto bad;
            break;
        case 'k':
            g.deals = atoi(optarg);
            if (g.deals < 1)
                goto bad;
            break;
        case 'R':
            rate = atof(optarg);
            break;
        case 'T':
            seconds = atof(optarg);
            break;
        case 't':
            tick_ms = atoi(optarg);
            if (tick_ms < 1 || tick_ms > 10000)
                goto bad;
            break;
        case 'm':
            max_batch = atol(optarg);
            if (max_batch < 1 || max_batch > 100000)
                goto bad;
            break;
        case 'c':
            config = optarg;
            break;
        case 's':
            if (bench_add_set(sets, &nsets, optarg) != 0)
                goto bad;
            break;
        case 'h':
            usage(stdout);
            return CP_EXIT_OK;
        default:
            goto bad;
        }
    }
    if (optind != argc)
        goto bad;
    log_init("bench", "load", LOG_ERROR, false);
    if (end)
        return commit_end(config, sets, nsets);
    if (gen_n > 0)
        return generate(&g, (size_t)gen_n);
    if (rate <= 0 || seconds <= 0 || rate * seconds > 1e8)
        goto bad;
    return load(&g, config, sets, nsets, rate, seconds, tick_ms, (size_t)max_batch);
bad:
    usage(stderr);
    return CP_EXIT_USAGE;
}
