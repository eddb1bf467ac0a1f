/* transport.h: one interface over the two brokers a lane can run on (Kafka
 * through librdkafka, RabbitMQ through rabbitmq-c).
 *
 * A transport is opened for one lane, as a publisher or a consumer. Its
 * destination (topic, or queue with the W lane's delay queue) is declared
 * idempotently when it opens; a declaration that differs from what exists on
 * the broker is an error, never a silent change. */
#ifndef COUPOND_TRANSPORT_H
#define COUPOND_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "config.h"

typedef struct transport transport_t;

/* Per-message result of a publish. */
typedef enum tp_status {
    TP_PENDING = 0, /* not settled yet (only inside a publish) */
    TP_ACCEPTED,    /* the broker durably took it (confirm / acks=all) */
    TP_REFUSED,     /* the broker refused it, or it was not confirmed in time */
} tp_status_t;

/* One message to publish. The transport copies what it needs. */
typedef struct tp_msg {
    const void *body;
    size_t len;
    const char *key;       /* Kafka message key (decimal order id); NULL for none */
    const char *signature; /* `signature` header value; NULL for none */
    const char *dest;      /* AMQP: queue to send to; NULL: the lane's own */
    int attempt;           /* > 0: sent as header x-coupond-attempt (W retries) */
    tp_status_t status;    /* out */
    char error[128];       /* out, when REFUSED */
} tp_msg_t;

typedef struct tp_lane_desc {
    const char *lane; /* "l" or "w" */
    const cfg_lane_t *cfg;
    int timeout_ms; /* connect and confirm bound */
    /* W on AMQP: retry tiers (one delay queue per delay, named by
     * tp_retry_queue) and the queue refund requests go to; a publisher opened
     * with them declares those queues too. */
    const int *retry_delays_ms;
    int nretry;
    const char *refunds_queue;
} tp_lane_desc_t;

/* The name of the retry queue for one tier: "<work queue>.retry.<delay_ms>".
 * Its queue-level TTL dead-letters each message back into the work queue. */
void tp_retry_queue(const cfg_lane_t *lane, int delay_ms, char *out, size_t outlen);

#define TP_ATTEMPT_HEADER "x-coupond-attempt"

/* Opens a publisher for a lane: connects and declares the destination.
 * Returns 0, CP_EXIT_UNAVAIL when the broker cannot be reached in time, or
 * CP_EXIT_USAGE for a declaration mismatch or bad settings; err says why. */
int tp_publisher_open(transport_t **out, const tp_lane_desc_t *desc, char *err,
                      size_t errlen) CP_MUSTCHECK;

/* Publishing is split in two so that both lanes work at once: begin hands
 * msgs[0..n) to the broker client without waiting (Kafka produces
 * asynchronously; AMQP sends a first window), end waits until deadline_ms
 * (CLOCK_MONOTONIC milliseconds, see tp_now_ms) for each to be settled,
 * pipelining confirms. Afterwards every status is ACCEPTED or REFUSED; end
 * returns how many were accepted. msgs must stay valid from begin to end.
 * A broken connection is reopened by the next begin. */
void tp_publish_begin(transport_t *tp, tp_msg_t *msgs, size_t n);
size_t tp_publish_end(transport_t *tp, tp_msg_t *msgs, size_t n, int64_t deadline_ms);

int64_t tp_now_ms(void);

/* One message taken from a lane. Valid until tp_release. */
typedef struct tp_delivery {
    const void *body;
    size_t len;
    const char *signature; /* the `signature` header's bytes; NULL when absent */
    size_t siglen;
    int attempt; /* header x-coupond-attempt; 0 when absent */
    void *raw;   /* the transport's own message (for tp_headers_json) */
} tp_delivery_t;

/* Opens a consumer for a lane (Kafka: joins the consumer group with manual
 * commits; AMQP: declares the queues and consumes the work queue with
 * prefetch). Returns 0, CP_EXIT_UNAVAIL or CP_EXIT_USAGE with err set. */
int tp_consumer_open(transport_t **out, const tp_lane_desc_t *desc, char *err,
                     size_t errlen) CP_MUSTCHECK;

/* Takes up to max messages into out, waiting at most wait_ms for the first.
 * Then it takes what is there, and waits for more only while they keep
 * coming: AMQP at most batch_wait_ms for each further one; Kafka, when
 * nothing more was queued, at most batch_wait_ms in all (a backlog makes its
 * own batch, without a wait). Returns how many (0 on timeout), or
 * -1 when the connection broke (err says why; the next call reconnects).
 * Everything taken must be acknowledged (tp_ack) and released (tp_release)
 * before the next fetch. */
int tp_fetch(transport_t *tp, tp_delivery_t *out, size_t max, int wait_ms, int batch_wait_ms,
             char *err, size_t errlen) CP_MUSTCHECK;

/* Acknowledges everything fetched (Kafka: asynchronous commit of the next
 * offsets, whose failure is logged, and which closing the consumer waits
 * for; AMQP: ack with `multiple` up to the last delivery). Neither waits for
 * the broker. Returns 0, or -1 (the messages will be delivered again;
 * processing is idempotent). */
int tp_ack(transport_t *tp, char *err, size_t errlen) CP_MUSTCHECK;

/* Frees what the last fetch took. */
void tp_release(transport_t *tp);

/* The delivery's headers (and, for Kafka, key, partition and offset) as a
 * JSON object, for dead letters. The caller frees the string. */
char *tp_headers_json(const transport_t *tp, const tp_delivery_t *d);

/* The lane's name and broker kind, for messages ("l/kafka"). */
const char *tp_describe(const transport_t *tp);

/* Whether the transport's broker connection is up, for readiness (NULL:
 * false). AMQP: the connection is open. Kafka: librdkafka has not reported
 * every broker down, or a metadata request (at most every 2 s, 200 ms
 * bound) has since been answered. */
bool tp_connected(transport_t *tp);

void tp_close(transport_t *tp);

#endif
