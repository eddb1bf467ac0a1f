/* test_publish.c: the fan-out publisher against the real RabbitMQ node and
 * the Kafka host: bytes, keys and signatures on both lanes, the W delay, and
 * invalid notes not sent. Needs the local services (services.sh up + env). */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "publish.h"
#include "signature.h"

#define N        200
#define DELAY_MS 1000

static cfg_t cfg;
static char topic[64], work[80], delay[80];
static char bodies[N][512];

static void note_body(int i, char *out, size_t n)
{
    long long user = 1000 + i, order = 7000000 + i * 100 + user % 100;
    snprintf(out, n,
             "{\"payment_id\":\"pub-%d-%d\",\"order_id\":%lld,\"user_id\":%lld,\"deal_id\":1,"
             "\"quantity\":1,\"amount_cents\":100,\"currency\":\"EUR\","
             "\"paid_at\":\"2026-11-21T10:00:00.000Z\",\"extra\":\"caf\\u00e9 %d\"}",
             (int)getpid(), i, order, user, i);
}

/* Reads every message of the topic back with a fresh consumer group and
 * checks bytes, key and signature. */
static void check_kafka(void)
{
    char err[256], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs;
    sig_keyring_t ring = cfg_keyring(&cfg);
    rd_kafka_t *rk;
    int seen[N] = {0}, got = 0;
    time_t until = time(NULL) + 30;

    snprintf(group, sizeof group, "test-publish-%d", (int)getpid());
    rd_kafka_conf_set(conf, "bootstrap.servers", cfg.lane_l.kafka.brokers, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    CHECK_MSG(rk != NULL, "%s", err);
    if (!rk)
        return;
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    while (got < N && time(NULL) < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *hdrs = NULL;
        const void *sig = NULL;
        size_t siglen = 0;
        char detail[256];
        int i;
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (rd_kafka_message_headers(m, &hdrs) == 0)
            rd_kafka_header_get_last(hdrs, "signature", &sig, &siglen);
        CHECK(sig != NULL);
        CHECK(sig_verify(&ring, sig, siglen, m->payload, m->len, detail, sizeof detail) == MSG_OK);
        for (i = 0; i < N; i++)
            if (strlen(bodies[i]) == m->len && memcmp(bodies[i], m->payload, m->len) == 0)
                break;
        CHECK_MSG(i < N, "unexpected body on the L lane");
        if (i < N) {
            msg_payment_t p;
            char key[24];
            CHECK(msg_parse(m->payload, m->len, 1, &p, detail, sizeof detail) == MSG_OK);
            snprintf(key, sizeof key, "%lld", (long long)p.order_id);
            CHECK(m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0);
            CHECK_MSG(!seen[i], "message %d twice on the L lane", i);
            seen[i] = 1;
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    CHECK_MSG(got == N, "L lane: %d of %d messages", got, N);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static amqp_connection_state_t amqp_open(void)
{
    struct amqp_connection_info info;
    char *url = strdup(cfg.lane_w.amqp.url);
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    amqp_parse_url(url, &info);
    CHECK(amqp_socket_open(sock, info.host, info.port) == AMQP_STATUS_OK);
    CHECK(amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                     cfg.lane_w.amqp.password)
              .reply_type == AMQP_RESPONSE_NORMAL);
    amqp_channel_open(conn, 1);
    CHECK(amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL);
    free(url);
    return conn;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Polls the W work queue: every message arrives after the delay, within
 * delay + 1 s of its publish, with its signature header. */
static void check_amqp(double published_at, double confirmed_at)
{
    amqp_connection_state_t conn = amqp_open();
    sig_keyring_t ring = cfg_keyring(&cfg);
    int seen[N] = {0}, got = 0;
    double first = 0, last = 0;

    while (got < N && now_s() - published_at < DELAY_MS / 1000.0 + 10) {
        amqp_rpc_reply_t r = amqp_basic_get(conn, 1, amqp_cstring_bytes(work), 1);
        amqp_message_t msg;
        amqp_basic_get_ok_t *ok;
        char detail[256];
        int i;

        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            CHECK_MSG(0, "basic.get failed");
            break;
        }
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
            usleep(10000);
            continue;
        }
        ok = r.reply.decoded;
        (void)ok;
        if (amqp_read_message(conn, 1, &msg, 0).reply_type != AMQP_RESPONSE_NORMAL) {
            CHECK_MSG(0, "reading a message failed");
            break;
        }
        if (!got)
            first = now_s();
        last = now_s();
        CHECK(msg.properties.delivery_mode == AMQP_DELIVERY_PERSISTENT);
        {
            const amqp_table_t *h = &msg.properties.headers;
            const void *sig = NULL;
            size_t siglen = 0;
            for (int e = 0; e < h->num_entries; e++) {
                if (h->entries[e].key.len == 9 &&
                    memcmp(h->entries[e].key.bytes, "signature", 9) == 0 &&
                    h->entries[e].value.kind == AMQP_FIELD_KIND_UTF8) {
                    sig = h->entries[e].value.value.bytes.bytes;
                    siglen = h->entries[e].value.value.bytes.len;
                }
            }
            CHECK(sig != NULL);
            CHECK(sig_verify(&ring, sig, siglen, msg.body.bytes, msg.body.len, detail,
                             sizeof detail) == MSG_OK);
        }
        for (i = 0; i < N; i++)
            if (strlen(bodies[i]) == msg.body.len &&
                memcmp(bodies[i], msg.body.bytes, msg.body.len) == 0)
                break;
        CHECK_MSG(i < N, "unexpected body on the W lane");
        if (i < N) {
            CHECK_MSG(!seen[i], "message %d twice on the W lane", i);
            seen[i] = 1;
            got++;
        }
        amqp_destroy_message(&msg);
    }
    CHECK_MSG(got == N, "W lane: %d of %d messages", got, N);
    /* No sooner than the delay after publishing began; the last no later than
     * the delay + 1 s after its confirm. */
    CHECK_MSG(first - published_at >= DELAY_MS / 1000.0 - 0.005,
              "first arrived %.3f s after publish", first - published_at);
    CHECK_MSG(last - confirmed_at <= DELAY_MS / 1000.0 + 1.0, "last arrived %.3f s after confirm",
              last - confirmed_at);
    printf("W delay: first %.3f s after publish, last %.3f s after confirm\n", first - published_at,
           last - confirmed_at);
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(work), 0, 0);
    amqp_queue_delete(conn, 1, amqp_cstring_bytes(delay), 0, 0);
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* The settings of this run: its topic and queues, and the services' RabbitMQ
 * port (services.sh may run on other ports than the configuration's). */
static char set_topic[160], set_work[160], set_dq[160], set_delay[64], set_url[160];
static char *sets[] = {set_topic, set_work, set_dq, set_delay, set_url};
#define NSETS ((int)(sizeof sets / sizeof *sets))

static void make_sets(int delay_ms)
{
    const char *url = getenv("COUPOND_AMQP_URL"), *port = url ? strrchr(url, ':') : NULL;
    snprintf(set_topic, sizeof set_topic, "lanes.l.kafka.topic=%s", topic);
    snprintf(set_work, sizeof set_work, "lanes.w.amqp.queue=%s", work);
    snprintf(set_dq, sizeof set_dq, "lanes.w.amqp.delay_queue=%s", delay);
    snprintf(set_delay, sizeof set_delay, "lanes.w.delay_ms=%d", delay_ms);
    snprintf(set_url, sizeof set_url, "lanes.w.amqp.url=amqp://coupond@127.0.0.1:%d/%%2f",
             port ? atoi(port + 1) : 5672);
}

/* Declaring the delay queue again with another TTL is an error naming the
 * argument, never a silent change. */
static void check_mismatch(void)
{
    char err[CP_ERRLEN];
    publisher_t *pub = NULL;
    cfg_t other;
    make_sets(DELAY_MS * 2);
    CHECK(cfg_load(&other, cfg_locate(NULL), sets, NSETS, err, sizeof err) == 0);
    CHECK(pub_open(&pub, &other, err, sizeof err) == CP_EXIT_USAGE);
    CHECK_MSG(strstr(err, "PRECONDITION_FAILED") && strstr(err, delay), "%s", err);
    pub_close(pub);
    cfg_free(&other);
}

int main(void)
{
    char err[CP_ERRLEN];
    pub_note_t notes[N + 2];
    pub_result_t res[N + 2];
    publisher_t *pub;
    double t0, t1;
    size_t accepted;

    log_init("test", "publish", LOG_WARN, false);
    snprintf(topic, sizeof topic, "test.publish.%d.%ld", (int)getpid(), (long)time(NULL));
    snprintf(work, sizeof work, "%s.work", topic);
    snprintf(delay, sizeof delay, "%s.delay", topic);
    make_sets(DELAY_MS);
    if (!cfg_locate(NULL) || cfg_load(&cfg, cfg_locate(NULL), sets, NSETS, err, sizeof err) != 0) {
        fprintf(stderr, "test_publish: needs COUPOND_CONFIG (services.sh env): %s\n",
                cfg_locate(NULL) ? err : "unset");
        return 1;
    }
    CHECK(pub_open(&pub, &cfg, err, sizeof err) == 0);

    /* N valid notes with an invalid one at each end. */
    notes[0] = (pub_note_t){"{\"payment_id\":\"x\"}", 18};
    for (int i = 0; i < N; i++) {
        note_body(i, bodies[i], sizeof bodies[i]);
        notes[i + 1] = (pub_note_t){bodies[i], strlen(bodies[i])};
    }
    notes[N + 1] = (pub_note_t){"not json", 8};
    t0 = now_s();
    accepted = pub_send(pub, notes, N + 2, res);
    t1 = now_s();
    CHECK_MSG(accepted == N, "accepted %zu of %d", accepted, N);
    CHECK(res[0].status == MSG_E_ORDER_ID || res[0].status != MSG_OK);
    CHECK(!pub_accepted(&res[0]) && !pub_accepted(&res[N + 1]));
    CHECK(res[N + 1].status == MSG_E_JSON);
    for (int i = 1; i <= N; i++) {
        CHECK(res[i].status == MSG_OK);
        CHECK(res[i].lane[PUB_LANE_L] == TP_ACCEPTED);
        CHECK(res[i].lane[PUB_LANE_W] == TP_ACCEPTED);
    }
    pub_close(pub);

    check_mismatch();
    check_amqp(t0, t1);
    check_kafka();
    cfg_free(&cfg);
    return check_done("test_publish");
}
