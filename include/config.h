/* config.h: coupond's configuration: a declarative table of settings read
 * with libconfig, overridden with --set, checked as a whole after parsing.
 *
 * Relative paths are taken from the configuration file's directory. Secrets
 * are never written in the file itself: a secret setting holds "file:PATH"
 * (the file must not be readable by group or others) or "env:NAME". */
#ifndef COUPOND_CONFIG_H
#define COUPOND_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include "common.h"
#include "signature.h"

typedef enum cfg_transport {
    CFG_TRANSPORT_KAFKA = 0,
    CFG_TRANSPORT_AMQP,
} cfg_transport_t;

typedef struct cfg_kafka {
    char *brokers; /* bootstrap list (read from the file when given as "file:PATH") */
    char *topic;
    char *group;
    int session_timeout_ms;
    int max_in_flight;     /* produce requests in flight per broker connection (1-5) */
    int fetch_wait_max_ms; /* how long a broker may hold an empty fetch */
} cfg_kafka_t;

typedef struct cfg_amqp {
    char *url;         /* amqp://user@host:port/vhost */
    char *password;    /* secret; NULL when the URL carries none */
    char *queue;       /* the lane's work queue */
    char *delay_queue; /* W: the delay queue publishers send to */
    int prefetch;
} cfg_amqp_t;

typedef struct cfg_lane {
    int transport; /* cfg_transport_t */
    int delay_ms;  /* W only: time between publish and the W check */
    cfg_kafka_t kafka;
    cfg_amqp_t amqp;
} cfg_lane_t;

typedef struct cfg {
    char *path; /* absolute path of the file read */
    char *dir;  /* its directory */

    char *cluster;
    struct {
        char *conninfo;
        char *password; /* secret */
        int statement_timeout_ms;
    } store;
    cfg_lane_t lane_l, lane_w;
    char *refunds_queue; /* lanes.w.amqp.refunds_queue: refund requests for the payment system */
    struct {
        int refund_after_s;
        int *retry_delays_ms;
        int nretry_delays;
        int batch_size;
        int batch_wait_ms;
        int sweep_interval_ms;
    } issue;
    struct {
        int max_version;
    } message;
    struct {
        sig_key_t *keys;
        int nkeys;
        char *sign_with;
        bool require_signature;
    } security;
    struct {
        int timeout_ms;
    } publish;
    struct {
        int max_replays; /* replays of one letter before couponctl dlq replay needs --force */
    } dlq;
    struct {
        int grace_s; /* couponctl reconcile: how long past its deadline a pending order may be */
    } reconcile;
    struct {
        char *listen;
        int stall_timeout_s;    /* /healthz fails when the loop has not ticked this long */
        int pending_interval_s; /* how often the oldest pending payment's age is read */
    } metrics;
    struct {
        int level;
        int format; /* 0 json, 1 text */
    } log;
} cfg_t;

/* Finds the configuration file: path when given, else $COUPOND_CONFIG.
 * Returns NULL when neither is set. */
const char *cfg_locate(const char *path);

/* Reads path, applies the overrides sets[0..nsets) ("a.b.c=value"), fills in
 * defaults, reads secrets and checks every setting and their combinations.
 * Returns 0, or -1 with "FILE:LINE: message" (or "--set ...: message") in err;
 * cfg is then empty (cfg_free is still safe). */
int cfg_load(cfg_t *cfg, const char *path, char *const *sets, int nsets, char *err,
             size_t errlen) CP_MUSTCHECK;

void cfg_free(cfg_t *cfg);

/* Writes the effective value of the setting at path in configuration syntax
 * (secrets masked). Returns 0, or -1 when no such setting exists. */
int cfg_format(const cfg_t *cfg, const char *path, char *out, size_t outlen) CP_MUSTCHECK;

/* Prints every setting as "path = value;" (secrets masked). */
void cfg_print(const cfg_t *cfg, FILE *out);

/* Copies the settings that may change on reload from next into cur and
 * reports, in note, those that changed but need a restart. */
void cfg_apply_reload(cfg_t *cur, const cfg_t *next, char *note, size_t notelen);

/* The key named by security.sign_with, or NULL when none is configured. */
const sig_key_t *cfg_sign_key(const cfg_t *cfg);

/* The verification ring over security.keys (valid as long as cfg). */
sig_keyring_t cfg_keyring(const cfg_t *cfg);

const char *cfg_transport_name(int transport);

#endif
