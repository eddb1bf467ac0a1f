/* transport_amqp.c: the AMQP 0-9-1 transport (rabbitmq-c) for RabbitMQ:
 * quorum queues, persistent messages, publisher confirms. */
#define _GNU_SOURCE
#include <amqp.h>
#include <errno.h>
#include <inttypes.h>
#include <cjson/cJSON.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "transport_int.h"

#define AMQP_CHANNEL   1
#define CONFIRM_WINDOW 2048 /* unconfirmed publishes in flight */

typedef struct amqp_pub {
    amqp_connection_state_t conn;
    bool up;
    uint64_t next_tag;  /* delivery tag of the next publish on the channel */
    const char *target; /* queue the lane's publishers send to */
    uint64_t base;      /* delivery tag of the batch's first message */
    size_t sent;        /* how many of the batch are written */
} amqp_pub_t;

/* Describes a failed RPC in one line. */
static void reply_text(amqp_rpc_reply_t r, const char *what, char *err, size_t errlen)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(err, errlen, "%s: ok", what);
        break;
    case AMQP_RESPONSE_NONE:
        snprintf(err, errlen, "%s: no reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *c = r.reply.decoded;
            snprintf(err, errlen, "%s: server closed the connection: %u %.*s", what, c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *c = r.reply.decoded;
            snprintf(err, errlen, "%s: %u %.*s", what, c->reply_code, (int)c->reply_text.len,
                     (const char *)c->reply_text.bytes);
        } else {
            snprintf(err, errlen, "%s: server error (method 0x%08x)", what, r.reply.id);
        }
        break;
    }
}

/* A channel error (e.g. 406 PRECONDITION_FAILED) is a configuration problem;
 * anything else means the broker is out of reach. */
static int reply_rc(amqp_rpc_reply_t r)
{
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
        return CP_EXIT_USAGE;
    return CP_EXIT_UNAVAIL;
}

/* Declares a durable quorum queue with extra arguments (may be NULL). A queue
 * that exists with other arguments makes the broker close the channel with
 * 406 PRECONDITION_FAILED, which is reported and never papered over. */
static int declare_queue(amqp_connection_state_t conn, const char *name, amqp_table_entry_t *extra,
                         int nextra, char *err, size_t errlen)
{
    amqp_table_entry_t entries[8];
    amqp_table_t args;
    amqp_rpc_reply_t r;
    char what[300];
    int n = 0;

    entries[n].key = amqp_cstring_bytes("x-queue-type");
    entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[n].value.value.bytes = amqp_cstring_bytes("quorum");
    n++;
    for (int i = 0; i < nextra && n < 8; i++)
        entries[n++] = extra[i];
    args.num_entries = n;
    args.entries = entries;
    amqp_queue_declare(conn, AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(what, sizeof what, "declaring queue %s", name);
        reply_text(r, what, err, errlen);
        return reply_rc(r);
    }
    return 0;
}

static amqp_table_entry_t entry_str(const char *key, const char *value)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(value);
    return e;
}

static amqp_table_entry_t entry_i64(const char *key, int64_t value)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = value;
    return e;
}

/* The lane's queues: the work queue and, for a lane with a delay, the delay
 * queue whose queue-level TTL dead-letters (at least once) into it. */
static int declare_delay_queue(amqp_connection_state_t conn, const cfg_lane_t *lane,
                               const char *name, int ttl_ms, char *err, size_t errlen)
{
    amqp_table_entry_t delay[5];
    delay[0] = entry_i64("x-message-ttl", ttl_ms);
    delay[1] = entry_str("x-dead-letter-exchange", "");
    delay[2] = entry_str("x-dead-letter-routing-key", lane->amqp.queue);
    delay[3] = entry_str("x-dead-letter-strategy", "at-least-once");
    delay[4] = entry_str("x-overflow", "reject-publish");
    return declare_queue(conn, name, delay, 5, err, errlen);
}

static int declare_lane(transport_t *tp, amqp_connection_state_t conn, char *err, size_t errlen)
{
    const cfg_lane_t *lane = tp->desc.cfg;
    char name[256];
    int rc = declare_queue(conn, lane->amqp.queue, NULL, 0, err, errlen);

    if (rc == 0 && *lane->amqp.delay_queue)
        rc = declare_delay_queue(conn, lane, lane->amqp.delay_queue, lane->delay_ms, err, errlen);
    for (int i = 0; rc == 0 && i < tp->desc.nretry; i++) {
        tp_retry_queue(lane, tp->desc.retry_delays_ms[i], name, sizeof name);
        rc = declare_delay_queue(conn, lane, name, tp->desc.retry_delays_ms[i], err, errlen);
    }
    if (rc == 0 && tp->desc.refunds_queue)
        rc = declare_queue(conn, tp->desc.refunds_queue, NULL, 0, err, errlen);
    return rc;
}

/* Connects, logs in, opens the channel (in confirm mode for a publisher) and
 * declares the lane's queues. */
static int amqp_connect(transport_t *tp, amqp_connection_state_t *out, char *err, size_t errlen)
{
    const cfg_amqp_t *a = &tp->desc.cfg->amqp;
    struct amqp_connection_info info;
    amqp_connection_state_t conn = NULL;
    amqp_socket_t *sock;
    amqp_rpc_reply_t r;
    struct timeval tv = {tp->desc.timeout_ms / 1000, (tp->desc.timeout_ms % 1000) * 1000};
    char *url = strdup(a->url);
    int status, rc = CP_EXIT_UNAVAIL;

    *out = NULL;
    if (!url) {
        snprintf(err, errlen, "out of memory");
        return CP_EXIT_FAILURE;
    }
    amqp_default_connection_info(&info);
    if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "%s: cannot parse the AMQP URL", tp->name);
        rc = CP_EXIT_USAGE;
        goto out;
    }
    conn = amqp_new_connection();
    sock = info.ssl ? amqp_ssl_socket_new(conn) : amqp_tcp_socket_new(conn);
    if (!conn || !sock) {
        snprintf(err, errlen, "%s: cannot create a socket", tp->name);
        goto out;
    }
    if (amqp_set_handshake_timeout(conn, &tv) != AMQP_STATUS_OK ||
        amqp_set_rpc_timeout(conn, &tv) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "%s: cannot set timeouts", tp->name);
        goto out;
    }
    status = amqp_socket_open_noblock(sock, info.host, info.port, &tv);
    if (status != AMQP_STATUS_OK) {
        snprintf(err, errlen, "%s: cannot connect to %s:%d: %s", tp->name, info.host, info.port,
                 amqp_error_string2(status));
        goto out;
    }
    r = amqp_login(conn, info.vhost, 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, info.user,
                   a->password ? a->password : info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_text(r, "login", err, errlen);
        goto out;
    }
    amqp_channel_open(conn, AMQP_CHANNEL);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_text(r, "opening a channel", err, errlen);
        goto out;
    }
    if (!tp->consumer) {
        amqp_confirm_select(conn, AMQP_CHANNEL);
        r = amqp_get_rpc_reply(conn);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            reply_text(r, "enabling publisher confirms", err, errlen);
            goto out;
        }
    }
    if ((rc = declare_lane(tp, conn, err, errlen)) != 0)
        goto out;
    *out = conn;
    conn = NULL; /* now the caller's */
    rc = 0;
out:
    if (conn)
        amqp_destroy_connection(conn);
    free(url);
    return rc;
}

static int amqp_open_publisher(transport_t *tp, char *err, size_t errlen)
{
    const cfg_amqp_t *a = &tp->desc.cfg->amqp;
    amqp_pub_t *ap = calloc(1, sizeof *ap);
    int rc;
    if (!ap) {
        snprintf(err, errlen, "out of memory");
        return CP_EXIT_FAILURE;
    }
    rc = amqp_connect(tp, &ap->conn, err, errlen);
    if (rc != 0) {
        free(ap);
        return rc;
    }
    ap->up = true;
    ap->next_tag = 1;
    ap->target = *a->delay_queue ? a->delay_queue : a->queue;
    tp->impl = ap;
    return 0;
}

static void drop_connection(amqp_pub_t *ap)
{
    if (ap->conn) {
        amqp_connection_close(ap->conn, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(ap->conn);
    }
    ap->conn = NULL;
    ap->up = false;
}

static int publish_one(transport_t *tp, amqp_pub_t *ap, const tp_msg_t *m)
{
    amqp_basic_properties_t props;
    amqp_table_entry_t headers[2];
    amqp_bytes_t body = {m->len, (void *)m->body};
    int nh = 0;

    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    if (m->signature)
        headers[nh++] = entry_str("signature", m->signature);
    if (m->attempt > 0)
        headers[nh++] = entry_i64(TP_ATTEMPT_HEADER, m->attempt);
    if (nh) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = nh;
        props.headers.entries = headers;
    }
    (void)tp;
    return amqp_basic_publish(ap->conn, AMQP_CHANNEL, amqp_empty_bytes,
                              amqp_cstring_bytes(m->dest ? m->dest : ap->target), 0, 0, &props,
                              body);
}

/* Applies one basic.ack or basic.nack to the batch whose first message has
 * delivery tag base. */
static void settle(tp_msg_t *msgs, size_t n, uint64_t base, uint64_t tag, bool multiple, bool ok,
                   size_t *settled)
{
    uint64_t first = multiple ? base : tag, last = tag;
    for (uint64_t t = first; t <= last; t++) {
        size_t i;
        if (t < base || t - base >= n)
            continue;
        i = (size_t)(t - base);
        if (msgs[i].status != TP_PENDING)
            continue;
        msgs[i].status = ok ? TP_ACCEPTED : TP_REFUSED;
        if (!ok)
            snprintf(msgs[i].error, sizeof msgs[i].error, "rejected by the broker (nack)");
        (*settled)++;
    }
}

/* Waits until the socket takes more bytes, at most until deadline_ms.
 * rabbitmq-c's publish waits without a limit for a socket that does not; a
 * broker that stops reading (flow control, a queue without a leader) must
 * cost a bounded wait, not a hang. */
static bool writable(amqp_pub_t *ap, int64_t deadline_ms)
{
    struct pollfd pfd = {.fd = amqp_get_sockfd(ap->conn), .events = POLLOUT};
    for (;;) {
        int64_t left = deadline_ms - tp_now_ms();
        int rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (rc > 0 || (rc < 0 && errno != EINTR))
            return true; /* writable, or an error the publish itself will report */
        if (rc == 0)
            return false;
    }
}

/* Writes the batch's next messages while fewer than CONFIRM_WINDOW are
 * unconfirmed. Returns -1 (all pending refused) when the connection broke or
 * the broker stopped reading until deadline_ms. */
static int send_window(transport_t *tp, amqp_pub_t *ap, tp_msg_t *msgs, size_t n, size_t settled,
                       int64_t deadline_ms)
{
    while (ap->sent < n && ap->sent - settled < CONFIRM_WINDOW) {
        if (!writable(ap, deadline_ms)) {
            log_warn("%s: the broker stopped reading (flow control?); the connection is reset",
                     tp->name);
            drop_connection(ap);
            tp_refuse_pending(msgs, n, "the broker did not take the message in time");
            return -1;
        }
        if (publish_one(tp, ap, &msgs[ap->sent]) != AMQP_STATUS_OK) {
            log_warn("%s: publish failed; the connection is reset", tp->name);
            drop_connection(ap);
            tp_refuse_pending(msgs, n, "connection lost before confirm");
            return -1;
        }
        ap->sent++;
        ap->next_tag++;
    }
    return 0;
}

/* Reconnects if needed and writes the first window, so the broker works on
 * it while the caller starts the other lane. */
static void amqp_publish_begin(transport_t *tp, tp_msg_t *msgs, size_t n)
{
    amqp_pub_t *ap = tp->impl;
    char err[CP_ERRLEN];
    if (!ap->up) {
        if (amqp_connect(tp, &ap->conn, err, sizeof err) == 0) {
            ap->up = true;
            ap->next_tag = 1;
            log_info("%s: reconnected", tp->name);
        } else {
            log_warn("%s: %s", tp->name, err);
        }
    }
    ap->base = ap->next_tag;
    ap->sent = 0;
    if (ap->up)
        (void)send_window(tp, ap, msgs, n, 0, tp_now_ms() + tp->desc.timeout_ms);
}

/* Goes on publishing with at most CONFIRM_WINDOW messages unconfirmed,
 * reading confirms as they come, until all are settled or the deadline. */
static void amqp_publish_end(transport_t *tp, tp_msg_t *msgs, size_t n, int64_t deadline_ms)
{
    amqp_pub_t *ap = tp->impl;
    uint64_t base = ap->base;
    size_t settled = 0;

    if (!ap->up) {
        tp_refuse_pending(msgs, n, "broker unavailable");
        return;
    }
    while (settled < n) {
        amqp_frame_t frame;
        struct timeval tv;
        int64_t left;
        int st;

        if (send_window(tp, ap, msgs, n, settled, deadline_ms) != 0)
            return;
        left = deadline_ms - tp_now_ms();
        if (left <= 0)
            break;
        tv.tv_sec = left / 1000;
        tv.tv_usec = (left % 1000) * 1000;
        st = amqp_simple_wait_frame_noblock(ap->conn, &frame, &tv);
        if (st == AMQP_STATUS_TIMEOUT)
            break;
        if (st != AMQP_STATUS_OK) {
            log_warn("%s: %s; the connection is reset", tp->name, amqp_error_string2(st));
            drop_connection(ap);
            break;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            amqp_basic_ack_t *a = frame.payload.method.decoded;
            settle(msgs, n, base, a->delivery_tag, a->multiple, true, &settled);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            amqp_basic_nack_t *a = frame.payload.method.decoded;
            settle(msgs, n, base, a->delivery_tag, a->multiple, false, &settled);
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            log_warn("%s: the broker closed the %s", tp->name,
                     frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ? "channel"
                                                                          : "connection");
            drop_connection(ap);
            tp_refuse_pending(msgs, n, "the broker closed the connection before confirming");
            return;
        default:
            break;
        }
        amqp_maybe_release_buffers(ap->conn);
    }
    if (settled < n && ap->up) {
        /* Confirms still owed: their tags would be misread by the next
         * batch, so start the next batch on a fresh connection. */
        drop_connection(ap);
    }
    tp_refuse_pending(msgs, n, "not confirmed in time");
}

static void amqp_con_close(transport_t *tp);

static void amqp_close(transport_t *tp)
{
    amqp_pub_t *ap = tp->impl;
    if (tp->consumer) {
        amqp_con_close(tp);
        return;
    }
    if (!ap)
        return;
    drop_connection(ap);
    free(ap);
    tp->impl = NULL;
}

/* ---- consumer ------------------------------------------------------- */

typedef struct amqp_con {
    amqp_connection_state_t conn; /* NULL while disconnected */
    amqp_envelope_t *envs;        /* the last fetch */
    size_t nenvs, cap;
    int64_t retry_at_ms;
    int64_t last_delivery_ms; /* or when the consumer started */
    int64_t last_probe_ms;
    bool probe_open; /* PROBE_CHANNEL is open */
} amqp_con_t;

#define PROBE_CHANNEL 2
#define STALL_MS      5000 /* idle this long with messages ready: the consumer is stuck */

static int amqp_con_connect(transport_t *tp, amqp_con_t *ac, char *err, size_t errlen)
{
    const cfg_amqp_t *a = &tp->desc.cfg->amqp;
    amqp_rpc_reply_t r;
    int rc = amqp_connect(tp, &ac->conn, err, errlen);

    if (rc != 0)
        return rc;
    amqp_basic_qos(ac->conn, AMQP_CHANNEL, 0, (uint16_t)a->prefetch, 0);
    r = amqp_get_rpc_reply(ac->conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_basic_consume(ac->conn, AMQP_CHANNEL, amqp_cstring_bytes(a->queue), amqp_empty_bytes,
                           0, 0, 0, amqp_empty_table);
        r = amqp_get_rpc_reply(ac->conn);
    }
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_text(r, "consuming", err, errlen);
        amqp_destroy_connection(ac->conn);
        ac->conn = NULL;
        return reply_rc(r);
    }
    ac->last_delivery_ms = ac->last_probe_ms = tp_now_ms();
    ac->probe_open = false;
    return 0;
}

/* Messages ready in the work queue (a passive declare on a channel of its
 * own), or -1 when the question could not be asked. */
static int64_t ready_messages(transport_t *tp, amqp_con_t *ac)
{
    amqp_queue_declare_ok_t *ok;
    if (!ac->probe_open) {
        if (!amqp_channel_open(ac->conn, PROBE_CHANNEL))
            return -1;
        ac->probe_open = true;
    }
    ok = amqp_queue_declare(ac->conn, PROBE_CHANNEL, amqp_cstring_bytes(tp->desc.cfg->amqp.queue),
                            1, 0, 0, 0, amqp_empty_table);
    if (!ok) {
        ac->probe_open = false; /* a failed declare closes the channel */
        return -1;
    }
    return ok->message_count;
}

static int amqp_open_consumer(transport_t *tp, char *err, size_t errlen)
{
    amqp_con_t *ac = calloc(1, sizeof *ac);
    int rc;
    if (!ac) {
        snprintf(err, errlen, "out of memory");
        return CP_EXIT_FAILURE;
    }
    if ((rc = amqp_con_connect(tp, ac, err, errlen)) != 0) {
        free(ac);
        return rc;
    }
    tp->impl = ac;
    return 0;
}

static void amqp_release(transport_t *tp)
{
    amqp_con_t *ac = tp->impl;
    for (size_t i = 0; i < ac->nenvs; i++)
        amqp_destroy_envelope(&ac->envs[i]);
    ac->nenvs = 0;
    if (ac->conn)
        amqp_maybe_release_buffers(ac->conn);
}

static void amqp_con_drop(amqp_con_t *ac)
{
    if (!ac->conn)
        return;
    amqp_connection_close(ac->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(ac->conn);
    ac->conn = NULL;
}

/* Handles what amqp_consume_message could not (a frame other than a
 * delivery). Returns 0 to go on, -1 when the connection is unusable. */
static int amqp_other_frame(transport_t *tp, amqp_con_t *ac, char *err, size_t errlen)
{
    amqp_frame_t frame;
    struct timeval tv = {0, 0};
    if (amqp_simple_wait_frame_noblock(ac->conn, &frame, &tv) != AMQP_STATUS_OK)
        return 0;
    if (frame.frame_type == AMQP_FRAME_METHOD &&
        (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
         frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
         frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)) {
        snprintf(err, errlen, "%s: the broker closed the consumer", tp->name);
        return -1;
    }
    return 0;
}

/* An integer header's value (0 for other kinds, clamped to 0..1000000). */
static int field_int(const amqp_field_value_t *v)
{
    int64_t x = 0;
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        x = v->value.i8;
        break;
    case AMQP_FIELD_KIND_U8:
        x = v->value.u8;
        break;
    case AMQP_FIELD_KIND_I16:
        x = v->value.i16;
        break;
    case AMQP_FIELD_KIND_U16:
        x = v->value.u16;
        break;
    case AMQP_FIELD_KIND_I32:
        x = v->value.i32;
        break;
    case AMQP_FIELD_KIND_U32:
        x = v->value.u32;
        break;
    case AMQP_FIELD_KIND_I64:
        x = v->value.i64;
        break;
    default:
        break;
    }
    return x < 0 ? 0 : x > 1000000 ? 1000000 : (int)x;
}

static int amqp_fetch(transport_t *tp, tp_delivery_t *out, size_t max, int wait_ms,
                      int batch_wait_ms, char *err, size_t errlen)
{
    amqp_con_t *ac = tp->impl;
    size_t n = 0;

    if (!ac->conn) {
        if (tp_now_ms() < ac->retry_at_ms)
            return 0;
        if (amqp_con_connect(tp, ac, err, errlen) != 0) {
            ac->retry_at_ms = tp_now_ms() + 1000;
            return -1;
        }
        log_info("%s: reconnected", tp->name);
    }
    if (max > ac->cap) {
        amqp_envelope_t *grown = realloc(ac->envs, max * sizeof *grown);
        if (!grown)
            return 0;
        ac->envs = grown;
        ac->cap = max;
    }
    while (n < max) {
        int ms = n == 0 ? wait_ms : batch_wait_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        amqp_rpc_reply_t r = amqp_consume_message(ac->conn, &ac->envs[n], &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            amqp_envelope_t *e = &ac->envs[n];
            const amqp_table_t *h = &e->message.properties.headers;
            const void *sig = NULL;
            size_t siglen = 0;
            int attempt = 0;
            if (e->message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
                for (int i = 0; i < h->num_entries; i++) {
                    const amqp_table_entry_t *t = &h->entries[i];
                    if (t->key.len == 9 && memcmp(t->key.bytes, "signature", 9) == 0 &&
                        (t->value.kind == AMQP_FIELD_KIND_UTF8 ||
                         t->value.kind == AMQP_FIELD_KIND_BYTES)) {
                        sig = t->value.value.bytes.bytes;
                        siglen = t->value.value.bytes.len;
                    } else if (t->key.len == strlen(TP_ATTEMPT_HEADER) &&
                               memcmp(t->key.bytes, TP_ATTEMPT_HEADER, t->key.len) == 0) {
                        attempt = field_int(&t->value);
                    }
                }
            }
            out[n] = (tp_delivery_t){.body = e->message.body.bytes ? e->message.body.bytes : "",
                                     .len = e->message.body.len,
                                     .signature = sig,
                                     .siglen = siglen,
                                     .attempt = attempt,
                                     .raw = e};
            n++;
            ac->nenvs = n;
            ac->last_delivery_ms = tp_now_ms();
            continue;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT) {
            int64_t now = tp_now_ms(), ready;
            if (n > 0 || now - ac->last_delivery_ms < STALL_MS ||
                now - ac->last_probe_ms < STALL_MS)
                break;
            /* A consumer registered while a quorum queue had no leader yet
             * (a broker restart) can stay silent: if messages wait and none
             * come, start over. */
            ac->last_probe_ms = now;
            ready = ready_messages(tp, ac);
            if (ready <= 0)
                break;
            snprintf(err, errlen,
                     "%s: %" PRId64 " messages ready but none delivered for %d s; "
                     "reconnecting",
                     tp->name, ready, (int)((now - ac->last_delivery_ms) / 1000));
        } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            if (amqp_other_frame(tp, ac, err, errlen) == 0)
                continue;
        } else {
            reply_text(r, "consuming", err, errlen);
        }
        /* Unacknowledged deliveries go back to the queue with the connection. */
        amqp_release(tp);
        amqp_con_drop(ac);
        ac->retry_at_ms = tp_now_ms() + 1000;
        return -1;
    }
    return (int)n;
}

static int amqp_ack(transport_t *tp, char *err, size_t errlen)
{
    amqp_con_t *ac = tp->impl;
    if (ac->nenvs == 0)
        return 0;
    if (!ac->conn || amqp_basic_ack(ac->conn, AMQP_CHANNEL, ac->envs[ac->nenvs - 1].delivery_tag,
                                    1) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "%s: ack failed; the connection is reset", tp->name);
        amqp_con_drop(ac);
        return -1;
    }
    return 0;
}

#define FIELD_MAX_DEPTH 8 /* nested tables and arrays shown; deeper ones summarised */

static cJSON *table_json(const amqp_table_t *t, int depth);

/* One header value as JSON, nested tables and arrays included (RabbitMQ's own
 * x-death header is an array of tables). */
static cJSON *field_json(const amqp_field_value_t *v, int depth)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return tp_json_bytes(v->value.bytes.bytes, v->value.bytes.len);
    case AMQP_FIELD_KIND_BOOLEAN:
        return cJSON_CreateBool(v->value.boolean);
    case AMQP_FIELD_KIND_I8:
        return cJSON_CreateNumber(v->value.i8);
    case AMQP_FIELD_KIND_U8:
        return cJSON_CreateNumber(v->value.u8);
    case AMQP_FIELD_KIND_I16:
        return cJSON_CreateNumber(v->value.i16);
    case AMQP_FIELD_KIND_U16:
        return cJSON_CreateNumber(v->value.u16);
    case AMQP_FIELD_KIND_I32:
        return cJSON_CreateNumber(v->value.i32);
    case AMQP_FIELD_KIND_U32:
        return cJSON_CreateNumber(v->value.u32);
    case AMQP_FIELD_KIND_I64:
        return cJSON_CreateNumber((double)v->value.i64);
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        return cJSON_CreateNumber((double)v->value.u64);
    case AMQP_FIELD_KIND_F32:
        return cJSON_CreateNumber(v->value.f32);
    case AMQP_FIELD_KIND_F64:
        return cJSON_CreateNumber(v->value.f64);
    case AMQP_FIELD_KIND_VOID:
        return cJSON_CreateNull();
    case AMQP_FIELD_KIND_TABLE:
        if (depth >= FIELD_MAX_DEPTH)
            return cJSON_CreateString("(nested too deep)");
        return table_json(&v->value.table, depth + 1);
    case AMQP_FIELD_KIND_ARRAY: {
        cJSON *a;
        if (depth >= FIELD_MAX_DEPTH)
            return cJSON_CreateString("(nested too deep)");
        if (!(a = cJSON_CreateArray()))
            return NULL;
        for (int i = 0; i < v->value.array.num_entries; i++)
            cJSON_AddItemToArray(a, field_json(&v->value.array.entries[i], depth + 1));
        return a;
    }
    default:
        return cJSON_CreateString("(unsupported header type)");
    }
}

static cJSON *table_json(const amqp_table_t *t, int depth)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < t->num_entries; i++)
        tp_json_add(o, t->entries[i].key.bytes, t->entries[i].key.len,
                    field_json(&t->entries[i].value, depth));
    return o;
}

static char *amqp_headers_json(const transport_t *tp, const tp_delivery_t *d)
{
    const amqp_envelope_t *e = d->raw;
    cJSON *o = cJSON_CreateObject(), *h;
    char *text;
    (void)tp;

    if (!o)
        return NULL;
    h = e->message.properties._flags & AMQP_BASIC_HEADERS_FLAG
            ? table_json(&e->message.properties.headers, 0)
            : cJSON_CreateObject();
    cJSON_AddItemToObject(o, "headers", h);
    cJSON_AddItemToObject(o, "routing_key",
                          tp_json_bytes(e->routing_key.bytes, e->routing_key.len));
    cJSON_AddBoolToObject(o, "redelivered", e->redelivered);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static void amqp_con_close(transport_t *tp)
{
    amqp_con_t *ac = tp->impl;
    if (!ac)
        return;
    amqp_release(tp);
    amqp_con_drop(ac);
    free(ac->envs);
    free(ac);
    tp->impl = NULL;
}

static bool amqp_connected(transport_t *tp)
{
    if (tp->consumer)
        return ((amqp_con_t *)tp->impl)->conn != NULL;
    return ((amqp_pub_t *)tp->impl)->conn != NULL;
}

const tp_ops_t tp_amqp_ops = {
    .kind = "amqp",
    .open_publisher = amqp_open_publisher,
    .publish_begin = amqp_publish_begin,
    .publish_end = amqp_publish_end,
    .open_consumer = amqp_open_consumer,
    .fetch = amqp_fetch,
    .ack = amqp_ack,
    .release = amqp_release,
    .headers_json = amqp_headers_json,
    .close = amqp_close,
    .connected = amqp_connected,
};
