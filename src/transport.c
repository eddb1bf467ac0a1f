/* transport.c: picks a lane's transport and forwards to it. */
#include "transport_int.h"

#include <stdbool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "message.h"

int64_t tp_now_ms(void)
{
    return cp_clock_us(CLOCK_MONOTONIC) / 1000;
}

void tp_refuse_pending(tp_msg_t *msgs, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].status == TP_PENDING) {
            msgs[i].status = TP_REFUSED;
            snprintf(msgs[i].error, sizeof msgs[i].error, "%s", why);
        }
    }
}

static int tp_open(transport_t **out, const tp_lane_desc_t *desc, bool consumer, char *err,
                   size_t errlen)
{
    transport_t *tp = calloc(1, sizeof *tp);
    int rc;

    *out = NULL;
    if (!tp) {
        snprintf(err, errlen, "out of memory");
        return CP_EXIT_FAILURE;
    }
    tp->desc = *desc;
    tp->ops = desc->cfg->transport == CFG_TRANSPORT_AMQP ? &tp_amqp_ops : &tp_kafka_ops;
    snprintf(tp->name, sizeof tp->name, "%s/%s", desc->lane, tp->ops->kind);
    tp->consumer = consumer;
    rc = consumer ? tp->ops->open_consumer(tp, err, errlen)
                  : tp->ops->open_publisher(tp, err, errlen);
    if (rc != 0) {
        free(tp);
        return rc;
    }
    *out = tp;
    return 0;
}

int tp_publisher_open(transport_t **out, const tp_lane_desc_t *desc, char *err, size_t errlen)
{
    return tp_open(out, desc, false, err, errlen);
}

int tp_consumer_open(transport_t **out, const tp_lane_desc_t *desc, char *err, size_t errlen)
{
    return tp_open(out, desc, true, err, errlen);
}

int tp_fetch(transport_t *tp, tp_delivery_t *out, size_t max, int wait_ms, int batch_wait_ms,
             char *err, size_t errlen)
{
    return tp->ops->fetch(tp, out, max, wait_ms, batch_wait_ms, err, errlen);
}

int tp_ack(transport_t *tp, char *err, size_t errlen)
{
    return tp->ops->ack(tp, err, errlen);
}

void tp_release(transport_t *tp)
{
    tp->ops->release(tp);
}

char *tp_headers_json(const transport_t *tp, const tp_delivery_t *d)
{
    return tp->ops->headers_json(tp, d);
}

void tp_publish_begin(transport_t *tp, tp_msg_t *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        msgs[i].status = TP_PENDING;
        msgs[i].error[0] = '\0';
    }
    tp->ops->publish_begin(tp, msgs, n);
}

size_t tp_publish_end(transport_t *tp, tp_msg_t *msgs, size_t n, int64_t deadline_ms)
{
    size_t accepted = 0;
    tp->ops->publish_end(tp, msgs, n, deadline_ms);
    tp_refuse_pending(msgs, n, "not confirmed in time");
    for (size_t i = 0; i < n; i++)
        accepted += msgs[i].status == TP_ACCEPTED;
    return accepted;
}

void tp_retry_queue(const cfg_lane_t *lane, int delay_ms, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s.retry.%d", lane->amqp.queue, delay_ms);
}

const char *tp_describe(const transport_t *tp)
{
    return tp->name;
}

bool tp_connected(transport_t *tp)
{
    return tp && tp->ops->connected(tp);
}

void tp_close(transport_t *tp)
{
    if (!tp)
        return;
    tp->ops->close(tp);
    free(tp);
}

cJSON *tp_json_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    cJSON *o;
    char *text;

    if (!b)
        n = 0;
    text = malloc(2 * n + 1);
    if (!text)
        return NULL;
    if (msg_utf8_prefix(b, n) == n) {
        memcpy(text, b ? (const char *)b : "", n);
        text[n] = '\0';
        o = cJSON_CreateString(text);
    } else {
        cp_hex(b, n, text);
        o = cJSON_CreateObject();
        if (o && !cJSON_AddStringToObject(o, "hex", text)) {
            cJSON_Delete(o);
            o = NULL;
        }
    }
    free(text);
    return o;
}

char *tp_json_key(const void *p, size_t n)
{
    const unsigned char *b = p;
    char *out = malloc(4 * n + 1);
    size_t o = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t ok = msg_utf8_prefix(b + i, n - i);
        memcpy(out + o, b + i, ok);
        o += ok;
        i += ok;
        if (i < n) {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", b[i]);
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

void tp_json_add(cJSON *o, const void *name, size_t n, cJSON *v)
{
    char *key = tp_json_key(name, n);
    if (key && v && cJSON_AddItemToObject(o, key, v))
        v = NULL;
    cJSON_Delete(v);
    free(key);
}
