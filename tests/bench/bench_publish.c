/* bench_publish.c: the publish benchmark. Publishes N notifications through
 * coupond's publisher (pub_send: validation, signing, fan-out to both lanes)
 * and, in the same run and on the same machine, measures the raw ceiling of
 * each broker with a bare client:
 *
 *   raw kafka     a bare librdkafka producer (idempotent, acks=all, linger.ms
 *                 as the project sets it) producing the same bodies with key
 *                 and signature header, then flush;
 *   raw rabbitmq  a bare rabbitmq-c publisher with confirms: persistent
 *                 messages to a fresh W delay queue declared with the
 *                 project's arguments, confirms pipelined with the
 *                 transport's window;
 *   coupond       pub_send in batches (couponctl publish's batch size) of all
 *                 N to both lanes at once.
 *
 * Each is measured once per round, in that order; the report gives the
 * median of the rounds and the ratio coupond / min(raw kafka, raw rabbitmq).
 * Every queue the benchmark creates is fresh and deleted at the end of its
 * measurement, so the W delay never dumps the messages into a work queue
 * that lingers. Kafka topics cannot be deleted on the local mock cluster (it
 * does not answer DeleteTopics) and it keeps each topic's log in memory, up to
 * 5 MB per partition: so the benchmark reuses two topics (KAFKA_TOPIC_RAW,
 * KAFKA_TOPIC_L) rather than leaking about 20 MB per fresh topic into the
 * shared Kafka host. Not a test: no timed assertions, nothing registered with
 * CTest. Needs the local services (deploy/local/bench.sh publish).
 *
 * Exit: 0 when every message was accepted, 1 when one was not, 2 usage or
 * configuration error, 3 a broker unavailable. */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_framing.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "config.h"
#include "log.h"
#include "message.h"
#include "publish.h"
#include "signature.h"

#define BODY_MAX        512
#define DEFAULT_N       100000
#define DEFAULT_ROUNDS  3
#define PUBLISH_BATCH   1000 /* couponctl publish: src/couponctl.c */
#define CONFIRM_WINDOW  2048 /* src/transport_amqp.c */
#define KAFKA_LINGER_MS "2"  /* src/transport_kafka.c */
#define WAIT_MS         120000
#define MAX_ROUNDS      BENCH_MAX_ROUNDS
#define KAFKA_TOPIC_RAW "coupond.bench.raw"
#define KAFKA_TOPIC_L   "coupond.bench.l"

enum { M_KAFKA, M_AMQP, M_COUPOND, M_COUNT };
static const char *const mname[M_COUNT] = {"raw kafka", "raw rabbitmq", "coupond (both lanes)"};
static const char *const mkey[M_COUNT] = {"kafka", "rabbitmq", "coupond"};

typedef struct result {
    double secs;    /* wall time from the first publish to the last settlement */
    double cpu;     /* CPU time of this process (all its threads) meanwhile */
    double machine; /* busy CPU time of the whole machine (brokers included) meanwhile */
    size_t ok;      /* accepted (coupond: by both lanes) */
    size_t one;     /* coupond: accepted by one lane only */
    size_t deleted; /* messages still in the queues when they were deleted */
} result_t;

typedef struct bench {
    size_t n, batch;
    int rounds;
    bool want[M_COUNT]; /* measurements to run (-m) */
    const char *config;
    cfg_t cfg; /* the configuration as loaded (lane names not overridden) */
    const cfg_lane_t *kafka_lane, *amqp_lane;
    char run[64];                     /* unique per run: names of topics and queues */
    char *bodies;                     /* n * BODY_MAX */
    size_t *lens;                     /* body lengths */
    char (*keys)[24];                 /* decimal order ids (Kafka keys) */
    char (*sigs)[SIG_HEADER_MAX + 1]; /* signature headers, for the raw clients */
    pub_note_t *notes;
    size_t body_bytes;
} bench_t;

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Busy CPU seconds of the whole machine since boot (/proc/stat: all but
 * idle and iowait); -1 when unreadable. */
static double machine_busy_s(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int got;
    if (!f)
        return -1;
    got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got < 8)
        return -1;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* One measured span: wall time, this process's CPU and the machine's. */
typedef struct span {
    double wall, cpu, machine;
} span_t;

static span_t span_begin(void)
{
    return (span_t){bench_now_s(), cpu_s(), machine_busy_s()};
}

static void span_end(const span_t *s, result_t *r)
{
    r->secs = bench_now_s() - s->wall;
    r->cpu = cpu_s() - s->cpu;
    r->machine = s->machine < 0 ? -1 : machine_busy_s() - s->machine;
}

static const char *body(const bench_t *b, size_t i)
{
    return b->bodies + i * BODY_MAX;
}

/* A realistic notification of about 230 bytes; every one distinct. */
static void make_body(const bench_t *b, size_t i, char *out, size_t outlen)
{
    long long user = 100000 + (long long)(i * 7919 % 900000);
    long long order = (5000000LL + (long long)i) * 100 + user % 100;
    int qty = 1 + (int)(i % 4);
    snprintf(out, outlen,
             "{\"v\":1,\"payment_id\":\"pay-%s-%08zu\",\"order_id\":%lld,\"user_id\":%lld,"
             "\"deal_id\":%d,\"quantity\":%d,\"amount_cents\":%d,\"currency\":\"EUR\","
             "\"paid_at\":\"2026-11-22T09:%02zu:%02zu.%03zuZ\",\"method\":\"card\","
             "\"psp_ref\":\"ch_%012zx\"}",
             b->run + 6, i, order, user, 1 + (int)(i % 50), qty, qty * 1990, i / 60 % 60, i % 60,
             i % 1000, (size_t)(i * 2654435761u % 0xffffffffffffu));
}

static int prepare(bench_t *b)
{
    const sig_key_t *key = cfg_sign_key(&b->cfg);
    char detail[256];

    if (!key) {
        fprintf(stderr, "bench_publish: no signing key (security.sign_with)\n");
        return CP_EXIT_USAGE;
    }
    b->bodies = malloc(b->n * BODY_MAX);
    b->lens = malloc(b->n * sizeof *b->lens);
    b->keys = malloc(b->n * sizeof *b->keys);
    b->sigs = malloc(b->n * sizeof *b->sigs);
    b->notes = malloc(b->n * sizeof *b->notes);
    if (!b->bodies || !b->lens || !b->keys || !b->sigs || !b->notes) {
        fprintf(stderr, "bench_publish: out of memory\n");
        return CP_EXIT_FAILURE;
    }
    for (size_t i = 0; i < b->n; i++) {
        char *p = b->bodies + i * BODY_MAX;
        msg_payment_t m;
        make_body(b, i, p, BODY_MAX);
        b->lens[i] = strlen(p);
        b->body_bytes += b->lens[i];
        /* The raw clients send valid, signed notifications too, so that
         * all three carry the same bytes. */
        if (msg_parse(p, b->lens[i], 1, &m, detail, sizeof detail) != MSG_OK) {
            fprintf(stderr, "bench_publish: generated an invalid notification: %s\n%s\n", detail,
                    p);
            return CP_EXIT_FAILURE;
        }
        snprintf(b->keys[i], sizeof b->keys[i], "%lld", (long long)m.order_id);
        if (sig_sign(key, p, b->lens[i], b->sigs[i], sizeof b->sigs[i]) != 0) {
            fprintf(stderr, "bench_publish: signing failed\n");
            return CP_EXIT_FAILURE;
        }
        b->notes[i] = (pub_note_t){p, b->lens[i]};
    }
    return 0;
}

/* ------------------------------------------------------------ raw Kafka */

typedef struct kafka_count {
    size_t ok, failed;
    char first_error[128];
} kafka_count_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_count_t *c = opaque;
    (void)rk;
    if (m->err) {
        if (!c->failed++)
            snprintf(c->first_error, sizeof c->first_error, "%s", rd_kafka_err2str(m->err));
    } else {
        c->ok++;
    }
}

static rd_kafka_t *kafka_new(const bench_t *b, kafka_count_t *count, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    char timeout[16];

    snprintf(timeout, sizeof timeout, "%d", WAIT_MS);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", b->kafka_lane->kafka.brokers, err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", KAFKA_LINGER_MS, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.timeout.ms", timeout, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log.connection.close", "false", err, errlen) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, count);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Waits until the (auto-created) topic has metadata with partitions. */
static int kafka_topic_ready(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *err, size_t errlen)
{
    double until = bench_now_s() + 15;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    do {
        const struct rd_kafka_metadata *md = NULL;
        e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        if (!e) {
            int ok = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0;
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            rd_kafka_metadata_destroy(md);
            if (ok)
                return 0;
        }
        usleep(100000);
    } while (bench_now_s() < until);
    snprintf(err, errlen, "topic not available: %s", rd_kafka_err2str(e));
    return -1;
}

static int raw_kafka(const bench_t *b, const char *topic, result_t *r)
{
    kafka_count_t count = {0};
    char err[256];
    rd_kafka_t *rk = kafka_new(b, &count, err, sizeof err);
    rd_kafka_topic_t *rkt;
    span_t sp;

    if (!rk) {
        fprintf(stderr, "bench_publish: raw kafka: %s\n", err);
        return CP_EXIT_USAGE;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (kafka_topic_ready(rk, rkt, err, sizeof err) != 0) {
        fprintf(stderr, "bench_publish: raw kafka: %s: %s\n", topic, err);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return CP_EXIT_UNAVAIL;
    }
    sp = span_begin();
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(b->keys[i], strlen(b->keys[i])),
                                      RD_KAFKA_V_VALUE((void *)body(b, i), b->lens[i]),
                                      RD_KAFKA_V_HEADER("signature", b->sigs[i], -1),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) {
            if (!count.failed++)
                snprintf(count.first_error, sizeof count.first_error, "%s", rd_kafka_err2str(e));
        }
        if (i % 1000 == 999)
            rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, WAIT_MS);
    span_end(&sp, r);
    r->ok = count.ok;
    if (count.failed)
        fprintf(stderr, "bench_publish: raw kafka: %zu refused: %s\n", count.failed,
                count.first_error);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return 0;
}

/* ------------------------------------------------------------ raw RabbitMQ */

static int amqp_ok(amqp_connection_state_t conn, const char *what)
{
    return bench_amqp_ok("bench_publish", true, conn, what);
}

/* Connects to the AMQP lane's broker and opens channel 1, in confirm mode
 * when confirms is set. */
static amqp_connection_state_t amqp_open(const bench_t *b, bool confirms)
{
    return bench_amqp_open("bench_publish", true, &b->amqp_lane->amqp, confirms);
}

/* The queues the project declares for a lane with a delay
 * (src/transport_amqp.c declare_lane): a quorum work queue, and a quorum
 * delay queue whose TTL dead-letters into it. */
static int declare_lane(const bench_t *b, amqp_connection_state_t conn, const char *work,
                        const char *delay)
{
    amqp_table_entry_t e[6];
    amqp_table_t args;

    e[0] = bench_amqp_entry_str("x-queue-type", "quorum");
    args = (amqp_table_t){1, e};
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(work), 0, 1, 0, 0, args);
    if (amqp_ok(conn, "declaring the work queue") != 0)
        return -1;
    e[1].key = amqp_cstring_bytes("x-message-ttl");
    e[1].value.kind = AMQP_FIELD_KIND_I64;
    e[1].value.value.i64 = b->amqp_lane->delay_ms;
    e[2] = bench_amqp_entry_str("x-dead-letter-exchange", "");
    e[3] = bench_amqp_entry_str("x-dead-letter-routing-key", work);
    e[4] = bench_amqp_entry_str("x-dead-letter-strategy", "at-least-once");
    e[5] = bench_amqp_entry_str("x-overflow", "reject-publish");
    args = (amqp_table_t){6, e};
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(delay), 0, 1, 0, 0, args);
    return amqp_ok(conn, "declaring the delay queue");
}

/* Deletes queues; adds the messages they still held to *deleted. */
static void amqp_delete_queues(const bench_t *b, const char **queues, int nqueues, size_t *deleted)
{
    amqp_connection_state_t conn = amqp_open(b, false);
    if (!conn) {
        fprintf(stderr, "bench_publish: cannot delete the benchmark's queues\n");
        return;
    }
    for (int i = 0; i < nqueues; i++) {
        amqp_queue_delete_ok_t *ok =
            amqp_queue_delete(conn, 1, amqp_cstring_bytes(queues[i]), 0, 0);
        if (amqp_ok(conn, queues[i]) != 0) {
            amqp_destroy_connection(conn);
            return;
        }
        if (ok && deleted)
            *deleted += ok->message_count;
    }
    bench_amqp_close(conn);
}

static int raw_amqp(const bench_t *b, const char *work, const char *delay, result_t *r)
{
    amqp_connection_state_t conn = amqp_open(b, true);
    unsigned char *done = calloc(b->n, 1);
    size_t sent = 0, settled = 0, nacked = 0;
    uint64_t floor = 1;
    int rc = 0;
    span_t sp;

    if (!conn || !done) {
        free(done);
        if (conn)
            amqp_destroy_connection(conn);
        return CP_EXIT_UNAVAIL;
    }
    if (declare_lane(b, conn, work, delay) != 0) {
        rc = CP_EXIT_USAGE;
        goto out;
    }
    sp = span_begin();
    while (settled < b->n) {
        amqp_frame_t frame;
        struct timeval tv = {WAIT_MS / 1000, 0};
        int st;

        while (sent < b->n && sent - settled < CONFIRM_WINDOW) {
            amqp_basic_properties_t props;
            amqp_table_entry_t header = bench_amqp_entry_str("signature", b->sigs[sent]);
            amqp_bytes_t bytes = {b->lens[sent], (void *)body(b, sent)};

            bench_amqp_note_props(&props, &header);
            if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(delay), 0, 0,
                                   &props, bytes) != AMQP_STATUS_OK) {
                fprintf(stderr, "bench_publish: raw rabbitmq: publish failed\n");
                rc = CP_EXIT_UNAVAIL;
                goto out;
            }
            sent++;
        }
        st = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
        if (st != AMQP_STATUS_OK) {
            fprintf(stderr, "bench_publish: raw rabbitmq: waiting for confirms: %s\n",
                    amqp_error_string2(st));
            rc = CP_EXIT_UNAVAIL;
            goto out;
        }
        if (frame.frame_type == AMQP_FRAME_METHOD) {
            if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
                amqp_basic_ack_t *a = frame.payload.method.decoded;
                bench_settle(done, b->n, &floor, a->delivery_tag, a->multiple, &settled);
            } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
                amqp_basic_nack_t *a = frame.payload.method.decoded;
                size_t before = settled;
                bench_settle(done, b->n, &floor, a->delivery_tag, a->multiple, &settled);
                nacked += settled - before;
            } else if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                       frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
                fprintf(stderr, "bench_publish: raw rabbitmq: the broker closed the channel\n");
                rc = CP_EXIT_UNAVAIL;
                goto out;
            }
        }
        amqp_maybe_release_buffers(conn);
    }
    span_end(&sp, r);
    r->ok = settled - nacked;
    if (nacked)
        fprintf(stderr, "bench_publish: raw rabbitmq: %zu nacked\n", nacked);
out:
    if (rc == 0)
        bench_amqp_close(conn);
    else
        amqp_destroy_connection(conn);
    free(done);
    return rc;
}

/* ------------------------------------------------------------ coupond */

static int run_coupond(const bench_t *b, const char *topic, const char *work, const char *delay,
                       result_t *r)
{
    char set_topic[200], set_work[200], set_delay[200], err[CP_ERRLEN];
    char *sets[] = {set_topic, set_work, set_delay};
    const char *tpath = b->kafka_lane == &b->cfg.lane_l ? "lanes.l" : "lanes.w";
    const char *qpath = b->amqp_lane == &b->cfg.lane_l ? "lanes.l" : "lanes.w";
    pub_result_t *res = calloc(b->batch, sizeof *res);
    publisher_t *pub = NULL;
    cfg_t cfg;
    int rc;
    span_t sp;

    snprintf(set_topic, sizeof set_topic, "%s.kafka.topic=%s", tpath, topic);
    snprintf(set_work, sizeof set_work, "%s.amqp.queue=%s", qpath, work);
    snprintf(set_delay, sizeof set_delay, "%s.amqp.delay_queue=%s", qpath, delay);
    if (!res)
        return CP_EXIT_FAILURE;
    if (cfg_load(&cfg, b->cfg.path, sets, 3, err, sizeof err) != 0) {
        fprintf(stderr, "bench_publish: %s\n", err);
        free(res);
        return CP_EXIT_USAGE;
    }
    rc = pub_open(&pub, &cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "bench_publish: coupond: %s\n", err);
        goto out;
    }
    sp = span_begin();
    for (size_t off = 0; off < b->n; off += b->batch) {
        size_t k = b->n - off < b->batch ? b->n - off : b->batch;
        pub_send(pub, b->notes + off, k, res);
        for (size_t i = 0; i < k; i++) {
            bool l = res[i].lane[PUB_LANE_L] == TP_ACCEPTED;
            bool w = res[i].lane[PUB_LANE_W] == TP_ACCEPTED;
            if (res[i].status == MSG_OK && l && w)
                r->ok++;
            else if (pub_accepted(&res[i]))
                r->one++;
        }
    }
    span_end(&sp, r);
out:
    pub_close(pub);
    cfg_free(&cfg);
    free(res);
    return rc;
}

/* ------------------------------------------------------------ report */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_publish [-c CONFIG] [-n N] [-r ROUNDS] [-b BATCH] [-m LIST]\n"
            "  -c CONFIG  configuration file (default: $COUPOND_CONFIG)\n"
            "  -n N       notifications per measurement (default %d)\n"
            "  -r ROUNDS  rounds; the report gives the median (default %d, at most %d)\n"
            "  -b BATCH   notifications per pub_send call (default %d, as couponctl publish)\n"
            "  -m LIST    only these measurements, comma-separated: kafka,rabbitmq,coupond\n"
            "             (default all three; the ratio needs all three; e.g. -m coupond to\n"
            "             profile coupond alone)\n"
            "Measures, per round: a bare librdkafka producer, a bare rabbitmq-c publisher with\n"
            "confirms, and coupond's pub_send to both lanes; prints msgs/s and the ratio\n"
            "coupond / min(raw kafka, raw rabbitmq).\n",
            DEFAULT_N, DEFAULT_ROUNDS, MAX_ROUNDS, PUBLISH_BATCH);
}

/* Parses -m's comma-separated list of measurements. */
static int parse_list(const char *s, bool *want)
{
    memset(want, 0, M_COUNT * sizeof *want);
    while (*s) {
        size_t len = strcspn(s, ",");
        int m;
        for (m = 0; m < M_COUNT; m++)
            if (strlen(mkey[m]) == len && strncmp(s, mkey[m], len) == 0)
                break;
        if (m == M_COUNT)
            return -1;
        want[m] = true;
        s += len + (s[len] == ',');
    }
    return want[M_KAFKA] || want[M_AMQP] || want[M_COUPOND] ? 0 : -1;
}

static int parse_size(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    bench_t b = {.n = DEFAULT_N,
                 .batch = PUBLISH_BATCH,
                 .rounds = DEFAULT_ROUNDS,
                 .want = {true, true, true}};
    double rate[M_COUNT][MAX_ROUNDS], cpu[M_COUNT][MAX_ROUNDS], mcpu[M_COUNT][MAX_ROUNDS];
    double busy[M_COUNT][MAX_ROUNDS], med[M_COUNT], slower;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int c, rc = CP_EXIT_OK, failed = 0;
    long v;

    while ((c = getopt(argc, argv, "c:n:r:b:m:h")) != -1) {
        switch (c) {
        case 'c':
            b.config = optarg;
            break;
        case 'n':
            if (parse_size(optarg, 1, 10000000, &v) != 0)
                goto bad;
            b.n = (size_t)v;
            break;
        case 'r':
            if (parse_size(optarg, 1, MAX_ROUNDS, &v) != 0)
                goto bad;
            b.rounds = (int)v;
            break;
        case 'b':
            if (parse_size(optarg, 1, 100000, &v) != 0)
                goto bad;
            b.batch = (size_t)v;
            break;
        case 'm':
            if (parse_list(optarg, b.want) != 0)
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

    log_init("bench", "publish", LOG_WARN, false);
    if (bench_cfg_load(&b.cfg, "bench_publish", b.config, NULL, 0,
                       "no configuration: give -c CONFIG or set COUPOND_CONFIG "
                       "(eval \"$(deploy/local/services.sh env)\")") != 0)
        return CP_EXIT_USAGE;
    b.kafka_lane = b.cfg.lane_l.transport == CFG_TRANSPORT_KAFKA   ? &b.cfg.lane_l
                   : b.cfg.lane_w.transport == CFG_TRANSPORT_KAFKA ? &b.cfg.lane_w
                                                                   : NULL;
    b.amqp_lane = b.cfg.lane_w.transport == CFG_TRANSPORT_AMQP   ? &b.cfg.lane_w
                  : b.cfg.lane_l.transport == CFG_TRANSPORT_AMQP ? &b.cfg.lane_l
                                                                 : NULL;
    if (!b.kafka_lane || !b.amqp_lane || !*b.amqp_lane->amqp.delay_queue) {
        fprintf(stderr, "bench_publish: needs one lane on Kafka and one on RabbitMQ with a delay "
                        "queue (the default configuration)\n");
        cfg_free(&b.cfg);
        return CP_EXIT_USAGE;
    }
    snprintf(b.run, sizeof b.run, "bench-%06x%04x", (unsigned)(time(NULL) & 0xffffff),
             (unsigned)(getpid() & 0xffff));
    if ((rc = prepare(&b)) != 0)
        goto out;

    printf("bench_publish: %zu notifications (%.0f bytes each on average), batch %zu, %d "
           "round%s, %ld CPUs; run %s\n",
           b.n, (double)b.body_bytes / (double)b.n, b.batch, b.rounds, b.rounds == 1 ? "" : "s",
           ncpu, b.run);
    printf("%-6s %-22s %8s %9s %11s %12s %9s\n", "round", "measurement", "seconds", "msgs/s",
           "client CPU", "machine CPU", "machine");
    printf("%-6s %-22s %8s %9s %11s %12s %9s\n", "", "", "", "", "us/msg", "us/msg", "busy");
    fflush(stdout);
    for (int round = 0; round < b.rounds && !failed; round++) {
        const char *tk = KAFKA_TOPIC_RAW, *tc = KAFKA_TOPIC_L;
        char rw[96], rd[96], cw[96], cd[96];
        result_t r[M_COUNT];
        const char *rawq[] = {rd, rw}, *cq[] = {cd, cw};

        memset(r, 0, sizeof r);
        snprintf(rw, sizeof rw, "%s.r%d.raww.work", b.run, round + 1);
        snprintf(rd, sizeof rd, "%s.r%d.raww.delay", b.run, round + 1);
        snprintf(cw, sizeof cw, "%s.r%d.w.work", b.run, round + 1);
        snprintf(cd, sizeof cd, "%s.r%d.w.delay", b.run, round + 1);

        if (b.want[M_KAFKA])
            rc = raw_kafka(&b, tk, &r[M_KAFKA]);
        if (rc == 0 && b.want[M_AMQP]) {
            rc = raw_amqp(&b, rw, rd, &r[M_AMQP]);
            /* Deleted at once: the delay must not move them to the work
             * queue (broker work) while coupond is being measured. */
            amqp_delete_queues(&b, rawq, 2, &r[M_AMQP].deleted);
        }
        if (rc == 0 && b.want[M_COUPOND]) {
            rc = run_coupond(&b, tc, cw, cd, &r[M_COUPOND]);
            amqp_delete_queues(&b, cq, 2, &r[M_COUPOND].deleted);
        }
        if (rc != 0)
            goto out;
        for (int m = 0; m < M_COUNT; m++) {
            if (!b.want[m])
                continue;
            rate[m][round] = (double)b.n / r[m].secs;
            cpu[m][round] = r[m].cpu / (double)b.n * 1e6;
            mcpu[m][round] = r[m].machine / (double)b.n * 1e6;
            busy[m][round] = 100 * r[m].machine / (r[m].secs * (double)ncpu);
            printf("%-6d %-22s %8.3f %9.0f %11.1f %12.1f %8.0f%%\n", round + 1, mname[m], r[m].secs,
                   rate[m][round], cpu[m][round], mcpu[m][round], busy[m][round]);
            if (r[m].ok != b.n) {
                fprintf(stderr,
                        "bench_publish: round %d: %s: %zu of %zu accepted%s (%zu by one "
                        "lane only)\n",
                        round + 1, mname[m], r[m].ok, b.n, m == M_COUPOND ? " by both lanes" : "",
                        r[m].one);
                failed = 1;
            }
            if (m != M_KAFKA && r[m].deleted != b.n)
                fprintf(stderr,
                        "bench_publish: round %d: %s: %zu messages were in its queues when "
                        "they were deleted (expected %zu)\n",
                        round + 1, mname[m], r[m].deleted, b.n);
        }
        fflush(stdout);
    }
    if (failed) {
        rc = CP_EXIT_FAILURE;
        goto out;
    }

    if (!b.want[M_KAFKA] || !b.want[M_AMQP] || !b.want[M_COUPOND]) {
        for (int m = 0; m < M_COUNT; m++)
            if (b.want[m])
                printf("median %s: %.0f msgs/s\n", mname[m], bench_median(rate[m], b.rounds));
        goto out;
    }
    for (int m = 0; m < M_COUNT; m++)
        med[m] = bench_median(rate[m], b.rounds);
    slower = med[M_KAFKA] < med[M_AMQP] ? med[M_KAFKA] : med[M_AMQP];
    printf("\nmedian of %d round%s (%zu notifications each):\n", b.rounds, b.rounds == 1 ? "" : "s",
           b.n);
    printf("| measurement | msgs/s | vs slower raw lane | client CPU us/msg | machine CPU us/msg "
           "| machine busy |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (int m = 0; m < M_COUNT; m++)
        printf("| %s | %.0f | %.2f | %.1f | %.1f | %.0f%% |\n", mname[m], med[m], med[m] / slower,
               bench_median(cpu[m], b.rounds), bench_median(mcpu[m], b.rounds),
               bench_median(busy[m], b.rounds));
    printf("\nratio coupond / min(raw kafka, raw rabbitmq) = %.0f / %.0f = %.2f (target >= 0.80: "
           "%s)\n",
           med[M_COUPOND], slower, med[M_COUPOND] / slower,
           med[M_COUPOND] / slower >= 0.8 ? "met" : "MISSED");
out:
    free(b.bodies);
    free(b.lens);
    free(b.keys);
    free(b.sigs);
    free(b.notes);
    cfg_free(&b.cfg);
    return rc;
bad:
    usage(stderr);
    return CP_EXIT_USAGE;
}
