/* publish.h: the payment system's side: validate, sign and fan a batch of
 * notifications out to both lanes.
 *
 * A notification is accepted when at least one lane has durably taken it
 * (Kafka: acks=all on an idempotent producer; RabbitMQ: a publisher confirm).
 * Both lanes are published to at once, so a batch costs the slower lane's
 * time, and a lane that is down costs at most publish.timeout_ms. */
#ifndef COUPOND_PUBLISH_H
#define COUPOND_PUBLISH_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "message.h"
#include "transport.h"

typedef struct publisher publisher_t;

enum { PUB_LANE_L = 0, PUB_LANE_W = 1, PUB_LANES = 2 };

/* One notification body (a JSON object; the exact bytes are signed). */
typedef struct pub_note {
    const void *body;
    size_t len;
} pub_note_t;

typedef struct pub_result {
    msg_status_t status; /* MSG_OK, or why it was not sent */
    char detail[256];    /* for a status other than MSG_OK */
    int64_t order_id;    /* when the body parsed */
    char payment_id[MSG_PAYMENT_ID_MAX + 1];
    tp_status_t lane[PUB_LANES];     /* ACCEPTED or REFUSED; REFUSED when not sent */
    char lane_error[PUB_LANES][128]; /* why a lane refused */
} pub_result_t;

/* Opens a publisher for cfg's two lanes, signing with security.sign_with.
 * A lane whose broker is unreachable does not fail the open: its messages are
 * reported refused and it is reconnected on a later batch. Returns 0, or
 * CP_EXIT_USAGE (no signing key, a declaration mismatch) with err set.
 * cfg must outlive the publisher. */
int pub_open(publisher_t **out, const cfg_t *cfg, char *err, size_t errlen) CP_MUSTCHECK;

/* Validates, signs and publishes notes[0..n), filling res[0..n). Invalid
 * notes are not sent. Returns how many were accepted by at least one lane. */
size_t pub_send(publisher_t *pub, const pub_note_t *notes, size_t n, pub_result_t *res);

/* True when r was accepted by at least one lane. */
bool pub_accepted(const pub_result_t *r);

void pub_close(publisher_t *pub);

#endif
