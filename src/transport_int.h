/* transport_int.h: what the transport dispatcher and its two
 * implementations (transport_kafka.c, transport_amqp.c) share. */
#ifndef COUPOND_TRANSPORT_INT_H
#define COUPOND_TRANSPORT_INT_H

#include "transport.h"

typedef struct tp_ops {
    const char *kind; /* "kafka", "amqp" */
    /* Connects and declares; fills tp->impl. Returns 0, CP_EXIT_UNAVAIL or CP_EXIT_USAGE. */
    int (*open_publisher)(transport_t *tp, char *err, size_t errlen);
    void (*publish_begin)(transport_t *tp, tp_msg_t *msgs, size_t n);
    void (*publish_end)(transport_t *tp, tp_msg_t *msgs, size_t n, int64_t deadline_ms);
    int (*open_consumer)(transport_t *tp, char *err, size_t errlen);
    int (*fetch)(transport_t *tp, tp_delivery_t *out, size_t max, int wait_ms, int batch_wait_ms,
                 char *err, size_t errlen);
    int (*ack)(transport_t *tp, char *err, size_t errlen);
    void (*release)(transport_t *tp);
    char *(*headers_json)(const transport_t *tp, const tp_delivery_t *d);
    void (*close)(transport_t *tp);
    bool (*connected)(transport_t *tp);
} tp_ops_t;

struct transport {
    const tp_ops_t *ops;
    tp_lane_desc_t desc;
    bool consumer;
    char name[32]; /* "l/kafka" */
    void *impl;
};

extern const tp_ops_t tp_kafka_ops;
extern const tp_ops_t tp_amqp_ops;

/* For the headers JSON of dead letters, which the store takes only as valid
 * UTF-8 without NUL: bytes that are, as a JSON string; any other bytes, as
 * {"hex": "..."} (lossless). NULL when out of memory. */
struct cJSON *tp_json_bytes(const void *p, size_t n);

/* A header name as a JSON key: as is when it is valid UTF-8 without NUL,
 * otherwise with each offending byte written \xNN. The caller frees it. */
char *tp_json_key(const void *p, size_t n);

/* Adds v to the object o under the header name name[0..n) (tp_json_key);
 * takes v, also when it cannot be added. */
void tp_json_add(struct cJSON *o, const void *name, size_t n, struct cJSON *v);

/* A Kafka message's headers (hdrs may be NULL), key (NULL: none), topic
 * (NULL: none), partition and offset as the dead letters' JSON object
 * (transport_kafka.c; apart from the message so that it can be tested and
 * fuzzed). The caller frees the string; NULL when out of memory. */
struct rd_kafka_headers_s;
char *tp_kafka_json(const struct rd_kafka_headers_s *hdrs, const void *key, size_t key_len,
                    const char *topic, int32_t partition, int64_t offset);

/* Marks every message of msgs[0..n) still PENDING as REFUSED with why. */
void tp_refuse_pending(tp_msg_t *msgs, size_t n, const char *why);

#endif
