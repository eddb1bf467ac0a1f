/* transport_kafka.c: the Kafka transport (librdkafka): an idempotent
 * producer with acks=all, keyed by order id, with the signature header. */
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
    char timeout[16], cerr[256];
    int rc;

    if (!kp || !conf) {
        snprintf(err, errlen, "out of memory");
        rc = CP_EXIT_FAILURE;
        goto fail;
    }
    snprintf(timeout, sizeof timeout, "%d", tp->desc.timeout_ms);
    if (set(conf, "bootstrap.servers", k->brokers, cerr, sizeof cerr) ||
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
        rd_kafka_resp_err_t e;
        do {
            e = rd_kafka_producev(
                kp->rk, RD_KAFKA_V_RKT(kp->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(m->key, m->key ? strlen(m->key) : 0),
                RD_KAFKA_V_VALUE((void *)m->body, m->len),
                RD_KAFKA_V_HEADER("signature", m->signature, (ssize_t)(m->signature ? -1 : 0)),
                RD_KAFKA_V_OPAQUE(OPAQUE(kp->gen, i)), RD_KAFKA_V_END);
            /* A full local queue drains as deliveries are served. */
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(kp->rk, 10);
        } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        if (e) {
            m->status = TP_REFUSED;
            snprintf(m->error, sizeof m->error, "%s", rd_kafka_err2str(e));
        }
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

static void kafka_close(transport_t *tp)
{
    kafka_pub_t *kp = tp->impl;
    if (!kp)
        return;
    rd_kafka_flush(kp->rk, 1000);
    rd_kafka_topic_destroy(kp->rkt);
    rd_kafka_destroy(kp->rk);
    free(kp);
    tp->impl = NULL;
}

const tp_ops_t tp_kafka_ops = {
    .kind = "kafka",
    .open_publisher = kafka_open_publisher,
    .publish_begin = kafka_publish_begin,
    .publish_end = kafka_publish_end,
    .close = kafka_close,
};
