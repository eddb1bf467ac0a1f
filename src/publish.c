/* publish.c: validate, sign and fan notifications out to both lanes. */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "signature.h"

typedef struct pub_lane {
    const char *name;
    tp_lane_desc_t desc;
    transport_t *tp;     /* NULL while down */
    int64_t retry_at_ms; /* when to try to open it again */
    char down_reason[CP_ERRLEN];
} pub_lane_t;

struct publisher {
    const cfg_t *cfg;
    const sig_key_t *key;
    pub_lane_t lanes[PUB_LANES];
    /* Per-batch scratch, grown as needed. */
    tp_msg_t *msgs[PUB_LANES];
    char (*sigs)[SIG_HEADER_MAX + 1];
    char (*keys)[24];
    size_t *index; /* msgs[k] carries notes[index[k]] */
    size_t cap;
};

/* Opens a lane if it is down and its back-off has passed. Returns
 * CP_EXIT_USAGE for errors a retry cannot cure. */
static int lane_ensure(pub_lane_t *lane, int64_t now)
{
    int rc;
    if (lane->tp || now < lane->retry_at_ms)
        return 0;
    rc = tp_publisher_open(&lane->tp, &lane->desc, lane->down_reason, sizeof lane->down_reason);
    if (rc == CP_EXIT_USAGE)
        return rc;
    if (rc != 0) {
        log_warn("publish: lane %s is down: %s", lane->name, lane->down_reason);
        /* Try again after one timeout, so a dead lane costs one bounded wait
         * per interval rather than one per batch. */
        lane->retry_at_ms = tp_now_ms() + lane->desc.timeout_ms;
    }
    return 0;
}

int pub_open(publisher_t **out, const cfg_t *cfg, char *err, size_t errlen)
{
    publisher_t *pub;
    int64_t now = tp_now_ms();

    *out = NULL;
    if (!cfg_sign_key(cfg)) {
        snprintf(err, errlen,
                 "publishing needs a signing key: set security.sign_with to the id of "
                 "one of security.keys");
        return CP_EXIT_USAGE;
    }
    pub = calloc(1, sizeof *pub);
    if (!pub) {
        snprintf(err, errlen, "out of memory");
        return CP_EXIT_FAILURE;
    }
    pub->cfg = cfg;
    pub->key = cfg_sign_key(cfg);
    pub->lanes[PUB_LANE_L] = (pub_lane_t){
        .name = "l",
        .desc = {.lane = "l", .cfg = &cfg->lane_l, .timeout_ms = cfg->publish.timeout_ms}};
    pub->lanes[PUB_LANE_W] = (pub_lane_t){
        .name = "w",
        .desc = {.lane = "w", .cfg = &cfg->lane_w, .timeout_ms = cfg->publish.timeout_ms}};
    for (int l = 0; l < PUB_LANES; l++) {
        if (lane_ensure(&pub->lanes[l], now) == CP_EXIT_USAGE) {
            snprintf(err, errlen, "lane %s: %s", pub->lanes[l].name, pub->lanes[l].down_reason);
            pub_close(pub);
            return CP_EXIT_USAGE;
        }
    }
    *out = pub;
    return 0;
}

static int grow(publisher_t *pub, size_t n)
{
    void *p;
    if (n <= pub->cap)
        return 0;
    for (int l = 0; l < PUB_LANES; l++) {
        if (!(p = realloc(pub->msgs[l], n * sizeof *pub->msgs[l])))
            return -1;
        pub->msgs[l] = p;
    }
    if (!(p = realloc(pub->sigs, n * sizeof *pub->sigs)))
        return -1;
    pub->sigs = p;
    if (!(p = realloc(pub->keys, n * sizeof *pub->keys)))
        return -1;
    pub->keys = p;
    if (!(p = realloc(pub->index, n * sizeof *pub->index)))
        return -1;
    pub->index = p;
    pub->cap = n;
    return 0;
}

bool pub_accepted(const pub_result_t *r)
{
    return r->status == MSG_OK &&
           (r->lane[PUB_LANE_L] == TP_ACCEPTED || r->lane[PUB_LANE_W] == TP_ACCEPTED);
}

size_t pub_send(publisher_t *pub, const pub_note_t *notes, size_t n, pub_result_t *res)
{
    size_t k = 0, accepted = 0;
    int64_t now = tp_now_ms(), deadline;

    memset(res, 0, n * sizeof *res);
    if (grow(pub, n) != 0) {
        for (size_t i = 0; i < n; i++) {
            res[i].status = MSG_OK;
            for (int l = 0; l < PUB_LANES; l++) {
                res[i].lane[l] = TP_REFUSED;
                snprintf(res[i].lane_error[l], sizeof res[i].lane_error[l], "out of memory");
            }
        }
        return 0;
    }
    /* Validate and sign; only valid notes become messages. */
    for (size_t i = 0; i < n; i++) {
        msg_payment_t p;
        res[i].status = msg_parse(notes[i].body, notes[i].len, pub->cfg->message.max_version, &p,
                                  res[i].detail, sizeof res[i].detail);
        res[i].lane[PUB_LANE_L] = res[i].lane[PUB_LANE_W] = TP_REFUSED;
        if (res[i].status != MSG_OK)
            continue;
        res[i].order_id = p.order_id;
        memcpy(res[i].payment_id, p.payment_id, sizeof res[i].payment_id);
        if (sig_sign(pub->key, notes[i].body, notes[i].len, pub->sigs[k], sizeof pub->sigs[k]) !=
            0) {
            for (int l = 0; l < PUB_LANES; l++)
                snprintf(res[i].lane_error[l], sizeof res[i].lane_error[l], "signing failed");
            continue;
        }
        snprintf(pub->keys[k], sizeof pub->keys[k], "%lld", (long long)p.order_id);
        for (int l = 0; l < PUB_LANES; l++)
            pub->msgs[l][k] = (tp_msg_t){.body = notes[i].body,
                                         .len = notes[i].len,
                                         .key = pub->keys[k],
                                         .signature = pub->sigs[k]};
        pub->index[k++] = i;
    }
    if (k == 0)
        return 0;

    /* Both lanes at once: begin hands everything to both clients, end waits. */
    for (int l = 0; l < PUB_LANES; l++) {
        if (lane_ensure(&pub->lanes[l], now) == 0 && pub->lanes[l].tp)
            tp_publish_begin(pub->lanes[l].tp, pub->msgs[l], k);
    }
    deadline = tp_now_ms() + pub->cfg->publish.timeout_ms;
    for (int l = 0; l < PUB_LANES; l++) {
        pub_lane_t *lane = &pub->lanes[l];
        size_t ok;
        if (!lane->tp) {
            for (size_t j = 0; j < k; j++) {
                pub->msgs[l][j].status = TP_REFUSED;
                snprintf(pub->msgs[l][j].error, sizeof pub->msgs[l][j].error, "lane down: %.100s",
                         lane->down_reason);
            }
            continue;
        }
        ok = tp_publish_end(lane->tp, pub->msgs[l], k, deadline);
        if (ok < k) {
            size_t j = 0;
            while (pub->msgs[l][j].status == TP_ACCEPTED)
                j++;
            log_warn("publish: lane %s refused %zu of %zu: %s", lane->name, k - ok, k,
                     pub->msgs[l][j].error);
        }
    }
    for (size_t j = 0; j < k; j++) {
        pub_result_t *r = &res[pub->index[j]];
        for (int l = 0; l < PUB_LANES; l++) {
            r->lane[l] = pub->msgs[l][j].status;
            if (r->lane[l] != TP_ACCEPTED)
                snprintf(r->lane_error[l], sizeof r->lane_error[l], "%s", pub->msgs[l][j].error);
        }
        accepted += pub_accepted(r);
    }
    return accepted;
}

void pub_close(publisher_t *pub)
{
    if (!pub)
        return;
    for (int l = 0; l < PUB_LANES; l++) {
        tp_close(pub->lanes[l].tp);
        free(pub->msgs[l]);
    }
    free(pub->sigs);
    free(pub->keys);
    free(pub->index);
    free(pub);
}
