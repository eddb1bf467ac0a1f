/* transport_kafka.c: the Kafka transport (librdkafka): an idempotent
 * producer with acks=all, keyed by order id, with the signature header. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "transport_int.h"

typedef struct kafka_pub {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    /* The batch being published. Each message's opaque is its index tagged
     * with the batch's generation, so a report that comes after its batch
     * was given up on finds no batch to write to. */
    tp_msg_t *batch;
    size_t nbatch;
    uint32_t gen;
} kafka_pub_t;

#define OPAQUE(gen, i) ((void *)(uintptr_t)(((uint64_t)(gen) << 32) | (uint32_t)(i)))

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    log_debug("kafka %s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Settles one message; called from rd_kafka_poll/flush on this thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_pub_t *kp = opaque;
    uint64_t tag = (uint64_t)(uintptr_t)m->_private;
    size_t i = (uint32_t)tag;
    tp_msg_t *msg;
    (void)rk;
    if ((uint32_t)(tag >> 32) != kp->gen || !kp->batch || i >= kp->nbatch)
        return;
    msg = &kp->batch[i];
    if (m->err) {
        msg->status = TP_REFUSED;
        snprintf(msg->error, sizeof msg->error, "%s", rd_kafka_err2str(m->err));
    } else {
        msg->status = TP_ACCEPTED;
    }
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err, size_t errlen)
{
    return rd_kafka_conf_set(conf, name, value, err, errlen) == RD_KAFKA_CONF_OK ? 0 : -1;
}

/* Makes sure the topic exists (creating it if the cluster does not do so on
 * first use); Kafka has no other declaration to compare. */
static int declare_topic(transport_t *tp, kafka_pub_t *kp, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    const cfg_kafka_t *k = &tp->desc.cfg->kafka;
    rd_kafka_resp_err_t e;
    int rc = 0;

    e = rd_kafka_metadata(kp->rk, 0, kp->rkt, &md, tp->desc.timeout_ms);
    if (e) {
        snprintf(err, errlen, "%s: cannot reach the brokers %s: %s", tp->name, k->brokers,
                 rd_kafka_err2str(e));
        return CP_EXIT_UNAVAIL;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, errlen, "%s: topic %s is not available: %s", tp->name, k->topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
        rc = CP_EXIT_UNAVAIL;
    } else {
        log_debug("%s: topic %s has %d partitions", tp->name, k->topic,
                  md->topics[0].partition_cnt);
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

static int kafka_open_publisher(transport_t *tp, char *err, size_t errlen)
{
    const cfg_kafka_t *k = &tp->desc.cfg->kafka;
    kafka_pub_t *kp = calloc(1, sizeof *kp);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char timeout[16], inflight[8], cerr[256];
    int rc;

    if (!kp || !conf) {
        snprintf(err, errlen, "out of memory");
        rc = CP_EXIT_FAILURE;
        goto fail;
    }
    snprintf(timeout, sizeof timeout, "%d", tp->desc.timeout_ms);
    snprintf(inflight, sizeof inflight, "%d", k->max_in_flight);
    if (set(conf, "bootstrap.servers", k->brokers, cerr, sizeof cerr) ||
        set(conf, "max.in.flight.requests.per.connection", inflight, cerr, sizeof cerr) ||
        set(conf, "enable.idempotence", "true", cerr, sizeof cerr) ||
        set(conf, "acks", "all", cerr, sizeof cerr) ||
        set(conf, "message.timeout.ms", timeout, cerr, sizeof cerr) ||
        set(conf, "linger.ms", "2", cerr, sizeof cerr) ||
        set(conf, "socket.connection.setup.timeout.ms", timeout, cerr, sizeof cerr) ||
        set(conf, "log.connection.close", "false", cerr, sizeof cerr)) {
        snprintf(err, errlen, "%s: %s", tp->name, cerr);
        rc = CP_EXIT_USAGE;
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, kp);
    kp->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, cerr, sizeof cerr);
    if (!kp->rk) {
        snprintf(err, errlen, "%s: %s", tp->name, cerr);
        rc = CP_EXIT_USAGE;
        goto fail;
    }
    conf = NULL; /* now owned by kp->rk */
    kp->rkt = rd_kafka_topic_new(kp->rk, k->topic, NULL);
    if (!kp->rkt) {
        snprintf(err, errlen, "%s: topic %s: %s", tp->name, k->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        rc = CP_EXIT_USAGE;
        goto fail;
    }
    tp->impl = kp;
    if ((rc = declare_topic(tp, kp, err, errlen)) != 0) {
        tp->impl = NULL;
        goto fail;
    }
    return 0;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (kp) {
        if (kp->rkt)
            rd_kafka_topic_destroy(kp->rkt);
        if (kp->rk)
            rd_kafka_destroy(kp->rk);
        free(kp);
    }
    return rc;
}

static void kafka_publish_begin(transport_t *tp, tp_msg_t *msgs, size_t n)
{
    kafka_pub_t *kp = tp->impl;
    kp->batch = msgs;
    kp->nbatch = n;
    for (size_t i = 0; i < n; i++) {
        tp_msg_t *m = &msgs[i];
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
        rd_kafka_resp_err_t e;
        char attempt[16];

        if (m->signature)
            rd_kafka_header_add(hdrs, "signature", -1, m->signature, -1);
        if (m->attempt > 0) {
            snprintf(attempt, sizeof attempt, "%d", m->attempt);
            rd_kafka_header_add(hdrs, TP_ATTEMPT_HEADER, -1, attempt, -1);
        }
        do {
            e = rd_kafka_producev(
                kp->rk, RD_KAFKA_V_RKT(kp->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(m->key, m->key ? strlen(m->key) : 0),
                RD_KAFKA_V_VALUE((void *)m->body, m->len), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_OPAQUE(OPAQUE(kp->gen, i)), RD_KAFKA_V_END);
            /* A full local queue drains as deliveries are served. */
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(kp->rk, 10);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (e) {
            rd_kafka_headers_destroy(hdrs); /* not taken on failure */
            m->status = TP_REFUSED;
            snprintf(m->error, sizeof m->error, "%s", rd_kafka_err2str(e));
        }
        /* On success the message owns hdrs. */
    }
    rd_kafka_poll(kp->rk, 0);
}

static void kafka_publish_end(transport_t *tp, tp_msg_t *msgs, size_t n, int64_t deadline_ms)
{
    kafka_pub_t *kp = tp->impl;
    int64_t left = deadline_ms - tp_now_ms();

    rd_kafka_flush(kp->rk, left > 0 ? (int)left : 0);
    if (rd_kafka_outq_len(kp->rk) > 0) {
        /* Out of time: take back what is left; it is reported refused. */
        rd_kafka_purge(kp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(kp->rk, 0);
    }
    kp->gen++;
    kp->batch = NULL;
    kp->nbatch = 0;
    (void)msgs;
    (void)n;
}

static void kafka_con_close(transport_t *tp);

static void kafka_close(transport_t *tp)
{
    kafka_pub_t *kp = tp->impl;
    if (tp->consumer) {
        kafka_con_close(tp);
        return;
    }
    if (!kp)
        return;
    rd_kafka_flush(kp->rk, 1000);
    rd_kafka_topic_destroy(kp->rkt);
    rd_kafka_destroy(kp->rk);
    free(kp);
    tp->impl = NULL;
}

/* ---- consumer ------------------------------------------------------- */

typedef struct kafka_con {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    rd_kafka_message_t **msgs; /* the last fetch */
    size_t nmsgs, cap;
    bool all_down; /* librdkafka said every broker is down; cleared by a probe */
    int64_t probe_at_ms;
} kafka_con_t;

static void on_con_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_con_t *kc = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        kc->all_down = true;
    on_error(rk, err, reason, opaque);
}

/* The result of an asynchronous commit (tp_ack). A failed one only means
 * that its messages may be delivered again, after a restart or a rebalance;
 * the lanes process them idempotently. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)offsets;
    (void)opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_warn("%s: offset commit failed (its messages may come again): %s", rd_kafka_name(rk),
                 rd_kafka_err2str(err));
}

static int kafka_open_consumer(transport_t *tp, char *err, size_t errlen)
{
    const cfg_kafka_t *k = &tp->desc.cfg->kafka;
    kafka_con_t *kc = calloc(1, sizeof *kc);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs = NULL;
    char session[16], fetch_wait[16], cerr[256];
    rd_kafka_resp_err_t e;
    int rc;

    if (!kc || !conf) {
        snprintf(err, errlen, "out of memory");
        rc = CP_EXIT_FAILURE;
        goto fail;
    }
    snprintf(session, sizeof session, "%d", k->session_timeout_ms);
    snprintf(fetch_wait, sizeof fetch_wait, "%d", k->fetch_wait_max_ms);
    /* Offsets are committed by tp_ack only, after the lane decided to. */
    if (set(conf, "bootstrap.servers", k->brokers, cerr, sizeof cerr) ||
        set(conf, "group.id", k->group, cerr, sizeof cerr) ||
        set(conf, "enable.auto.commit", "false", cerr, sizeof cerr) ||
        set(conf, "enable.auto.offset.store", "false", cerr, sizeof cerr) ||
        set(conf, "auto.offset.reset", "earliest", cerr, sizeof cerr) ||
        set(conf, "session.timeout.ms", session, cerr, sizeof cerr) ||
        set(conf, "fetch.wait.max.ms", fetch_wait, cerr, sizeof cerr) ||
        /* A batch or two is all the lane needs buffered, not librdkafka's 64 MiB. */
        set(conf, "queued.max.messages.kbytes", "4096", cerr, sizeof cerr) ||
        set(conf, "log.connection.close", "false", cerr, sizeof cerr)) {
        snprintf(err, errlen, "%s: %s", tp->name, cerr);
        rc = CP_EXIT_USAGE;
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_con_error);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_opaque(conf, kc);
    kc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, cerr, sizeof cerr);
    if (!kc->rk) {
        snprintf(err, errlen, "%s: %s", tp->name, cerr);
        rc = CP_EXIT_USAGE;
        goto fail;
    }
    conf = NULL; /* now owned by kc->rk */
    rd_kafka_poll_set_consumer(kc->rk);
    kc->queue = rd_kafka_queue_get_consumer(kc->rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, k->topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(kc->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        snprintf(err, errlen, "%s: subscribing to %s: %s", tp->name, k->topic, rd_kafka_err2str(e));
        rc = CP_EXIT_UNAVAIL;
        goto fail;
    }
    tp->impl = kc;
    return 0;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (kc) {
        if (kc->queue)
            rd_kafka_queue_destroy(kc->queue);
        if (kc->rk)
            rd_kafka_destroy(kc->rk);
        free(kc);
    }
    return rc;
}

static void kafka_release(transport_t *tp)
{
    kafka_con_t *kc = tp->impl;
    for (size_t i = 0; i < kc->nmsgs; i++)
        rd_kafka_message_destroy(kc->msgs[i]);
    kc->nmsgs = 0;
}

static int kafka_fetch(transport_t *tp, tp_delivery_t *out, size_t max, int wait_ms,
                       int batch_wait_ms, char *err, size_t errlen)
{
    kafka_con_t *kc = tp->impl;
    size_t n = 0;
    ssize_t got;

    (void)err;
    (void)errlen;
    if (max > kc->cap) {
        rd_kafka_message_t **grown = realloc(kc->msgs, max * sizeof *grown);
        if (!grown)
            return 0;
        kc->msgs = grown;
        kc->cap = max;
    }
    /* Wait for one message only (a batch call would wait its whole timeout
     * for a full batch), then take what is queued, topping up for at most
     * batch_wait_ms. */
    got = rd_kafka_consume_batch_queue(kc->queue, wait_ms, kc->msgs, 1);
    if (got > 0 && max > 1) {
        ssize_t more =
            rd_kafka_consume_batch_queue(kc->queue, 0, kc->msgs + got, max - (size_t)got);
        if (more == 0 && batch_wait_ms > 0)
            more = rd_kafka_consume_batch_queue(kc->queue, batch_wait_ms, kc->msgs + got,
                                                max - (size_t)got);
        if (more > 0)
            got += more;
    }
    if (got < 0)
        return 0;
    kc->nmsgs = (size_t)got;
    for (size_t i = 0; i < kc->nmsgs; i++) {
        rd_kafka_message_t *m = kc->msgs[i];
        rd_kafka_headers_t *hdrs = NULL;
        const void *sig = NULL;
        size_t siglen = 0;
        if (m->err) {
            /* Consumer errors arrive as messages; the client recovers by itself. */
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("%s: %s", tp->name, rd_kafka_message_errstr(m));
            continue;
        }
        int attempt = 0;
        if (rd_kafka_message_headers(m, &hdrs) == 0) {
            const void *a = NULL;
            size_t alen = 0;
            if (rd_kafka_header_get_last(hdrs, "signature", &sig, &siglen) != 0)
                sig = NULL;
            if (rd_kafka_header_get_last(hdrs, TP_ATTEMPT_HEADER, &a, &alen) == 0 && a &&
                alen < 8) {
                char buf[8];
                memcpy(buf, a, alen);
                buf[alen] = '\0';
                attempt = atoi(buf);
            }
        }
        kc->all_down = false;
        out[n++] = (tp_delivery_t){.body = m->payload ? m->payload : "",
                                   .len = m->len,
                                   .signature = sig,
                                   .siglen = sig ? siglen : 0,
                                   .attempt = attempt,
                                   .raw = m};
    }
    return (int)n;
}

/* Commits, per partition, the offset after the last message fetched. */
static int kafka_ack(transport_t *tp, char *err, size_t errlen)
{
    kafka_con_t *kc = tp->impl;
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_resp_err_t e;

    if (kc->nmsgs == 0)
        return 0;
    offsets = rd_kafka_topic_partition_list_new((int)kc->nmsgs);
    for (size_t i = 0; i < kc->nmsgs; i++) {
        rd_kafka_message_t *m = kc->msgs[i];
        rd_kafka_topic_partition_t *p;
        if (m->err || !m->rkt)
            continue;
        p = rd_kafka_topic_partition_list_find(offsets, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(offsets, rd_kafka_topic_name(m->rkt),
                                                  m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
    /* Asynchronous: the commit is on its way before the batch is worked,
     * without a round trip in the lane's path; on_commit reports a failure,
     * and closing the consumer waits for the commits in flight. */
    e = offsets->cnt ? rd_kafka_commit(kc->rk, offsets, 1) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(offsets);
    if (e) {
        snprintf(err, errlen, "%s: commit: %s", tp->name, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* The pure part of kafka_headers_json (transport_int.h). */
char *tp_kafka_json(const rd_kafka_headers_t *hdrs, const void *key, size_t key_len,
                    const char *topic, int32_t partition, int64_t offset)
{
    cJSON *o = cJSON_CreateObject(), *h;
    char *text = NULL;

    if (!o)
        return NULL;
    h = cJSON_AddObjectToObject(o, "headers");
    if (hdrs) {
        const char *name;
        const void *value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == 0; i++) {
            tp_json_add(h, name, strlen(name),
                        value ? tp_json_bytes(value, size) : cJSON_CreateNull());
        }
    }
    if (key)
        cJSON_AddItemToObject(o, "key", tp_json_bytes(key, key_len));
    if (topic)
        cJSON_AddStringToObject(o, "topic", topic);
    cJSON_AddNumberToObject(o, "partition", partition);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static char *kafka_headers_json(const transport_t *tp, const tp_delivery_t *d)
{
    const rd_kafka_message_t *m = d->raw;
    rd_kafka_headers_t *hdrs = NULL;
    (void)tp;

    if (rd_kafka_message_headers(m, &hdrs) != 0)
        hdrs = NULL;
    return tp_kafka_json(hdrs, m->key, m->key_len, m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                         m->partition, m->offset);
}

static void kafka_con_close(transport_t *tp)
{
    kafka_con_t *kc = tp->impl;
    if (!kc)
        return;
    kafka_release(tp);
    /* Leaves the group, so the partitions move on at once. */
    rd_kafka_consumer_close(kc->rk);
    rd_kafka_queue_destroy(kc->queue);
    rd_kafka_destroy(kc->rk);
    free(kc->msgs);
    free(kc);
    tp->impl = NULL;
}

static bool kafka_connected(transport_t *tp)
{
    kafka_con_t *kc = tp->impl;
    const struct rd_kafka_metadata *md;
    if (!tp->consumer || !kc->all_down)
        return true;
    if (tp_now_ms() < kc->probe_at_ms)
        return false;
    kc->probe_at_ms = tp_now_ms() + 2000;
    if (rd_kafka_metadata(kc->rk, 0, NULL, &md, 200) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    rd_kafka_metadata_destroy(md);
    kc->all_down = false;
    return true;
}

const tp_ops_t tp_kafka_ops = {
    .kind = "kafka",
    .open_publisher = kafka_open_publisher,
    .publish_begin = kafka_publish_begin,
    .publish_end = kafka_publish_end,
    .open_consumer = kafka_open_consumer,
    .fetch = kafka_fetch,
    .ack = kafka_ack,
    .release = kafka_release,
    .headers_json = kafka_headers_json,
    .close = kafka_close,
    .connected = kafka_connected,
};
