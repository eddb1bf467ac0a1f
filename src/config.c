/* config.c: the settings table, libconfig parsing, overrides, secrets and
 * checks of combinations. */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

typedef enum cfg_type {
    T_STR,     /* char * */
    T_INT,     /* int, within [min, max] */
    T_BOOL,    /* bool */
    T_ENUM,    /* int: index into choices */
    T_INTLIST, /* int * + count (the count field follows the pointer's offset in `aux`) */
    T_SECRET,  /* char *: resolved from "file:PATH" or "env:NAME" */
} cfg_type_t;

enum {
    F_RELOAD = 1, /* may change on SIGHUP */
    F_FILEOK = 2, /* a T_STR that may be given as "file:PATH" (contents, trimmed) */
};

typedef struct cfg_def {
    const char *path;
    cfg_type_t type;
    size_t off;
    const char *def; /* default, as it would be written after --set path= */
    long min, max;   /* T_INT, and each element of T_INTLIST */
    const char *const *choices;
    int (*check)(const char *value, char *why, size_t whylen);
    unsigned flags;
    size_t aux; /* T_INTLIST: offset of the int count */
} cfg_def_t;

static const char *const transports[] = {"kafka", "amqp", NULL};
static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const formats[] = {"json", "text", NULL};

static int check_cluster(const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len == 0 || len > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-_") != len) {
        snprintf(why, n, "must be 1-32 characters of [a-z0-9_-]");
        return -1;
    }
    return 0;
}

static int check_amqp_url(const char *v, char *why, size_t n)
{
    if (strncmp(v, "amqp://", 7) != 0 && strncmp(v, "amqps://", 8) != 0) {
        snprintf(why, n, "must start with amqp:// or amqps://");
        return -1;
    }
    return 0;
}

static int check_listen(const char *v, char *why, size_t n)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port;
    if (*v == '\0')
        return 0; /* disabled */
    if (!colon || colon == v) {
        snprintf(why, n, "must be HOST:PORT, or \"\" to disable");
        return -1;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) {
        snprintf(why, n, "port must be 1-65535");
        return -1;
    }
    return 0;
}

static int check_name(const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len > 200 ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_:") != len) {
        snprintf(why, n, "must be at most 200 characters of [A-Za-z0-9.:_-]");
        return -1;
    }
    return 0;
}

#define OFF(f) offsetof(cfg_t, f)
#define STR(p, f, d, chk, fl)                                                                      \
    {                                                                                              \
        p, T_STR, OFF(f), d, 0, 0, NULL, chk, fl, 0                                                \
    }
#define INT(p, f, d, lo, hi, fl)                                                                   \
    {                                                                                              \
        p, T_INT, OFF(f), d, lo, hi, NULL, NULL, fl, 0                                             \
    }
#define ENUM(p, f, d, ch, fl)                                                                      \
    {                                                                                              \
        p, T_ENUM, OFF(f), d, 0, 0, ch, NULL, fl, 0                                                \
    }
#define SECRET(p, f)                                                                               \
    {                                                                                              \
        p, T_SECRET, OFF(f), "", 0, 0, NULL, NULL, 0, 0                                            \
    }

/* Both lanes have both transports' settings, so either lane can run on
 * either broker; only the selected transport's group is checked as complete. */
#define LANE(L, F, tr, dtopic, dgroup, dqueue, ddelayq)                                            \
    ENUM("lanes." L ".transport", F.transport, tr, transports, 0),                                 \
        STR("lanes." L ".kafka.brokers", F.kafka.brokers, "localhost:9092", NULL, F_FILEOK),       \
        STR("lanes." L ".kafka.topic", F.kafka.topic, dtopic, check_name, 0),                      \
        STR("lanes." L ".kafka.group", F.kafka.group, dgroup, check_name, 0),                      \
        INT("lanes." L ".kafka.session_timeout_ms", F.kafka.session_timeout_ms, "10000", 1000,     \
            300000, 0),                                                                            \
        INT("lanes." L ".kafka.max_in_flight", F.kafka.max_in_flight, "5", 1, 5, 0),               \
        INT("lanes." L ".kafka.fetch_wait_max_ms", F.kafka.fetch_wait_max_ms, "500", 1, 60000, 0), \
        STR("lanes." L ".amqp.url", F.amqp.url, "amqp://guest@localhost:5672/%2f", check_amqp_url, \
            0),                                                                                    \
        SECRET("lanes." L ".amqp.password", F.amqp.password),                                      \
        STR("lanes." L ".amqp.queue", F.amqp.queue, dqueue, check_name, 0),                        \
        STR("lanes." L ".amqp.delay_queue", F.amqp.delay_queue, ddelayq, check_name, 0),           \
        INT("lanes." L ".amqp.prefetch", F.amqp.prefetch, "1000", 1, 65535, 0)

static const cfg_def_t defs[] = {
    STR("cluster", cluster, "local", check_cluster, 0),
    STR("store.conninfo", store.conninfo, "", NULL, 0),
    SECRET("store.password", store.password),
    INT("store.statement_timeout_ms", store.statement_timeout_ms, "5000", 0, 600000, 0),
    LANE("l", lane_l, "kafka", "coupond.l", "coupond-l", "coupond.l", ""),
    LANE("w", lane_w, "amqp", "coupond.w", "coupond-w", "coupond.w.work", "coupond.w.delay"),
    INT("lanes.w.delay_ms", lane_w.delay_ms, "10000", 0, 3600000, 0),
    STR("lanes.w.amqp.refunds_queue", refunds_queue, "coupond.refunds", check_name, 0),
    INT("issue.refund_after_s", issue.refund_after_s, "1800", 1, 7 * 86400, F_RELOAD),
    {"issue.retry_delays_ms", T_INTLIST, OFF(issue.retry_delays_ms),
     "1000,5000,30000,120000,600000", 1, 86400000, NULL, NULL,
     0 /* the tiers' queues are declared at start */, OFF(issue.nretry_delays)},
    INT("issue.batch_size", issue.batch_size, "500", 1, 10000, F_RELOAD),
    INT("issue.sweep_interval_ms", issue.sweep_interval_ms, "1000", 100, 3600000, F_RELOAD),
    INT("issue.batch_wait_ms", issue.batch_wait_ms, "5", 0, 10000, F_RELOAD),
    INT("message.max_version", message.max_version, "1", 1, 1000, F_RELOAD),
    STR("security.sign_with", security.sign_with, "", NULL, 0),
    {"security.require_signature", T_BOOL, OFF(security.require_signature), "true", 0, 0, NULL,
     NULL, 0, 0},
    INT("publish.timeout_ms", publish.timeout_ms, "5000", 1000, 600000, F_RELOAD),
    INT("dlq.max_replays", dlq.max_replays, "5", 1, 1000, 0),
    INT("reconcile.grace_s", reconcile.grace_s, "60", 0, 86400, 0),
    STR("metrics.listen", metrics.listen, "127.0.0.1:9464", check_listen, 0),
    INT("metrics.stall_timeout_s", metrics.stall_timeout_s, "60", 1, 3600, F_RELOAD),
    INT("metrics.pending_interval_s", metrics.pending_interval_s, "15", 1, 3600, F_RELOAD),
    ENUM("log.level", log.level, "info", levels, F_RELOAD),
    ENUM("log.format", log.format, "json", formats, F_RELOAD),
};
#define NDEFS CP_ARRAY_SIZE(defs)

/* security.keys is a list of groups, read apart from the table. */
static const char *const KEYS_PATH = "security.keys";

/* Where a setting's value came from, for messages that cite file:line. */
/* Where each setting's value came from ("FILE:LINE: PATH", "--set PATH" or
 * "FILE: PATH (default)"), for the messages of later checks; one string per
 * setting, allocated as it is met. */
typedef char *origin_t;

static int origin(origin_t *o, const char *fmt, ...) CP_PRINTF(2, 3);
static int origin(origin_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vasprintf(o, fmt, ap);
    va_end(ap);
    if (n < 0)
        *o = NULL;
    return n < 0 ? -1 : 0;
}

static const cfg_def_t *find_def(const char *path)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(defs[i].path, path) == 0)
            return &defs[i];
    return NULL;
}

static void *field(cfg_t *cfg, const cfg_def_t *d)
{
    return (char *)cfg + d->off;
}

static const void *cfield(const cfg_t *cfg, const cfg_def_t *d)
{
    return (const char *)cfg + d->off;
}

/* Reads a whole small file (at most 64 KiB) into a NUL-terminated string. */
static char *read_small_file(const char *path, bool secret, char *why, size_t whylen)
{
    struct stat sb;
    char *buf = NULL;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", path);
        goto out;
    }
    if (secret && (sb.st_mode & (S_IRWXG | S_IRWXO))) {
        snprintf(why, whylen,
                 "secret file %s is accessible by group or others (mode %04o); run: chmod 600 %s",
                 path, (unsigned)(sb.st_mode & 07777), path);
        goto out;
    }
    if (sb.st_size > 65536) {
        snprintf(why, whylen, "%s is larger than 64 KiB", path);
        goto out;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    n = read(fd, buf, (size_t)sb.st_size);
    if (n < 0) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
    /* Trailing newlines are an editor's, not part of the value. */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
out:
    close(fd);
    return buf;
}

static char *resolve_path(const cfg_t *cfg, const char *p)
{
    char *out;
    if (p[0] == '/' || !cfg->dir)
        return strdup(p);
    if (asprintf(&out, "%s/%s", cfg->dir, p) < 0)
        return NULL;
    return out;
}

/* Reads "file:PATH" or "env:NAME". "" means unset (NULL). */
static int resolve_secret(const cfg_t *cfg, const char *ref, char **out, char *why, size_t n)
{
    *out = NULL;
    if (*ref == '\0')
        return 0;
    if (strncmp(ref, "file:", 5) == 0) {
        char *path = resolve_path(cfg, ref + 5);
        if (!path) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        *out = read_small_file(path, true, why, n);
        free(path);
        if (!*out)
            return -1;
    } else if (strncmp(ref, "env:", 4) == 0) {
        const char *v = getenv(ref + 4);
        if (!v || !*v) {
            snprintf(why, n, "environment variable %s is not set", ref + 4);
            return -1;
        }
        *out = strdup(v);
    } else {
        snprintf(why, n,
                 "secrets are read from a file or the environment: write \"file:PATH\" "
                 "or \"env:NAME\"");
        return -1;
    }
    if (!*out || !**out) {
        snprintf(why, n, "the secret is empty");
        free(*out);
        *out = NULL;
        return -1;
    }
    log_redact(*out, strlen(*out));
    return 0;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    return (errno || end == s || *end) ? -1 : 0;
}

/* Stores text (already unquoted) into d's field. */
static int set_value(cfg_t *cfg, const cfg_def_t *d, const char *text, char *why, size_t n)
{
    void *f = field(cfg, d);
    long v;

    switch (d->type) {
    case T_STR:
    case T_SECRET: {
        char *copy;
        if (d->type == T_STR && d->check && d->check(text, why, n) != 0)
            if (!((d->flags & F_FILEOK) && strncmp(text, "file:", 5) == 0))
                return -1;
        copy = strdup(text);
        if (!copy) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        free(*(char **)f);
        *(char **)f = copy;
        return 0;
    }
    case T_INT:
        if (parse_long(text, &v) != 0) {
            snprintf(why, n, "expected an integer, got \"%.40s\"", text);
            return -1;
        }
        if (v < d->min || v > d->max) {
            snprintf(why, n, "must be between %ld and %ld, got %ld", d->min, d->max, v);
            return -1;
        }
        *(int *)f = (int)v;
        return 0;
    case T_BOOL:
        if (strcmp(text, "true") == 0)
            *(bool *)f = true;
        else if (strcmp(text, "false") == 0)
            *(bool *)f = false;
        else {
            snprintf(why, n, "expected true or false, got \"%.40s\"", text);
            return -1;
        }
        return 0;
    case T_ENUM:
        for (int i = 0; d->choices[i]; i++) {
            if (strcmp(text, d->choices[i]) == 0) {
                *(int *)f = i;
                return 0;
            }
        }
        snprintf(why, n, "unknown value \"%.40s\"", text);
        for (int i = 0; d->choices[i]; i++)
            snprintf(why + strlen(why), n - strlen(why), "%s%s",
                     i ? ", " : "; one of: ", d->choices[i]);
        return -1;
    case T_INTLIST: {
        int *list = NULL, count = 0;
        char *copy = strdup(text), *save = NULL, *tok;
        if (!copy) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        for (char *p = copy; *p; p++)
            if (*p == '[' || *p == ']')
                *p = ' ';
        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int *grown;
            while (isspace((unsigned char)*tok))
                tok++;
            if (parse_long(tok, &v) != 0 || v < d->min || v > d->max) {
                snprintf(why, n,
                         "each element must be an integer between %ld and %ld, got \"%.40s\"",
                         d->min, d->max, tok);
                goto list_fail;
            }
            grown = realloc(list, sizeof *list * (size_t)(count + 1));
            if (!grown) {
                snprintf(why, n, "out of memory");
                goto list_fail;
            }
            list = grown;
            list[count++] = (int)v;
        }
        if (count == 0) {
            snprintf(why, n, "must not be empty");
            goto list_fail;
        }
        free(copy);
        free(*(int **)f);
        *(int **)f = list;
        *(int *)((char *)cfg + d->aux) = count;
        return 0;
    list_fail:
        free(copy);
        free(list);
        return -1;
    }
    }
    return -1;
}

/* Converts a libconfig setting to the text set_value takes, checking that its
 * type suits the definition. */
static int setting_text(const config_setting_t *s, const cfg_def_t *d, char *out, size_t n,
                        char *why, size_t whylen)
{
    int t = config_setting_type(s);
    switch (d->type) {
    case T_STR:
    case T_SECRET:
    case T_ENUM:
        if (t != CONFIG_TYPE_STRING) {
            snprintf(why, whylen, "expected a string in double quotes");
            return -1;
        }
        snprintf(out, n, "%s", config_setting_get_string(s));
        return 0;
    case T_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
            snprintf(why, whylen, "expected an integer");
            return -1;
        }
        snprintf(out, n, "%lld", config_setting_get_int64(s));
        return 0;
    case T_BOOL:
        if (t != CONFIG_TYPE_BOOL) {
            snprintf(why, whylen, "expected true or false");
            return -1;
        }
        snprintf(out, n, "%s", config_setting_get_bool(s) ? "true" : "false");
        return 0;
    case T_INTLIST: {
        int count;
        size_t used = 0;
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
            snprintf(why, whylen, "expected a list of integers like [ 1000, 5000 ]");
            return -1;
        }
        count = config_setting_length(s);
        out[0] = '\0';
        for (int i = 0; i < count; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int et = config_setting_type(e);
            if (et != CONFIG_TYPE_INT && et != CONFIG_TYPE_INT64) {
                snprintf(why, whylen, "element %d is not an integer", i + 1);
                return -1;
            }
            used += (size_t)snprintf(out + used, used < n ? n - used : 0, "%s%lld", i ? "," : "",
                                     config_setting_get_int64(e));
        }
        return 0;
    }
    }
    return -1;
}

/* Rejects settings the table does not know: a misspelt name must not be
 * silently ignored. */
static int check_unknown(const config_setting_t *s, char *err, size_t errlen, const char *file)
{
    int count = config_setting_length(s);
    for (int i = 0; i < count; i++) {
        const config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
        char path[512];
        const char *name = config_setting_name(c);
        const config_setting_t *p;
        size_t plen;
        bool known = false;

        if (!name)
            continue;
        /* Build the dotted path from the root. */
        path[0] = '\0';
        for (p = c; p && config_setting_name(p); p = config_setting_parent(p)) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s%s%s", config_setting_name(p), path[0] ? "." : "", path);
            snprintf(path, sizeof path, "%s", tmp);
        }
        if (strcmp(path, KEYS_PATH) == 0)
            continue;
        plen = strlen(path);
        for (size_t k = 0; k < NDEFS && !known; k++) {
            if (config_setting_is_group(c))
                known = strncmp(defs[k].path, path, plen) == 0 && defs[k].path[plen] == '.';
            else
                known = strcmp(defs[k].path, path) == 0;
        }
        if (!known) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s'", file,
                     config_setting_source_line(c), path);
            return -1;
        }
        if (config_setting_is_group(c) && check_unknown(c, err, errlen, file) != 0)
            return -1;
    }
    return 0;
}

static int load_keys(cfg_t *cfg, const config_setting_t *list, const char *file, char *err,
                     size_t errlen)
{
    char why[CP_ERRLEN];
    int count;

    if (!list)
        return 0;
    if (!config_setting_is_list(list) && !config_setting_is_array(list)) {
        snprintf(err, errlen,
                 "%s:%d: security.keys: expected a list of groups like ( { id = \"k1\"; "
                 "secret = \"file:k1.key\"; } )",
                 file, config_setting_source_line(list));
        return -1;
    }
    count = config_setting_length(list);
    cfg->security.keys = calloc((size_t)(count ? count : 1), sizeof *cfg->security.keys);
    if (!cfg->security.keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        const config_setting_t *k = config_setting_get_elem(list, (unsigned)i);
        int line = config_setting_source_line(k);
        const char *id = NULL, *ref = NULL;
        char *secret = NULL;
        sig_key_t *key = &cfg->security.keys[i];
        size_t idlen;

        if (!config_setting_is_group(k) || !config_setting_lookup_string(k, "id", &id) ||
            !config_setting_lookup_string(k, "secret", &ref)) {
            snprintf(err, errlen,
                     "%s:%d: security.keys[%d]: needs id = \"...\" and secret = "
                     "\"file:PATH\" or \"env:NAME\"",
                     file, line, i);
            return -1;
        }
        idlen = strlen(id);
        if (idlen == 0 || idlen > SIG_KEY_ID_MAX ||
            strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
                idlen) {
            snprintf(err, errlen,
                     "%s:%d: security.keys[%d].id: must be 1-%d characters of "
                     "[A-Za-z0-9._-]",
                     file, line, i, SIG_KEY_ID_MAX);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(cfg->security.keys[j].id, id) == 0) {
                snprintf(err, errlen, "%s:%d: security.keys[%d].id: \"%s\" is listed twice", file,
                         line, i, id);
                return -1;
            }
        }
        if (resolve_secret(cfg, ref, &secret, why, sizeof why) != 0 || !secret) {
            snprintf(err, errlen, "%s:%d: security.keys[%d].secret: %s", file, line, i,
                     secret ? "" : why);
            free(secret);
            return -1;
        }
        if (strlen(secret) < 16 || strlen(secret) > SIG_SECRET_MAX) {
            snprintf(err, errlen, "%s:%d: security.keys[%d].secret: must be 16-%d bytes long", file,
                     line, i, SIG_SECRET_MAX);
            explicit_bzero(secret, strlen(secret));
            free(secret);
            return -1;
        }
        snprintf(key->id, sizeof key->id, "%s", id);
        key->secret_len = strlen(secret);
        memcpy(key->secret, secret, key->secret_len);
        explicit_bzero(secret, key->secret_len);
        free(secret);
        cfg->security.nkeys++;
    }
    return 0;
}

/* Reads "file:PATH" values of F_FILEOK settings (e.g. a Kafka bootstrap list
 * written by a local broker host). */
static int resolve_fileok(cfg_t *cfg, const cfg_def_t *d, char *why, size_t n)
{
    char **f = field(cfg, d), *path, *text;
    if (!(d->flags & F_FILEOK) || strncmp(*f, "file:", 5) != 0)
        return 0;
    path = resolve_path(cfg, *f + 5);
    if (!path) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    text = read_small_file(path, false, why, n);
    free(path);
    if (!text)
        return -1;
    free(*f);
    *f = text;
    return 0;
}

static int check_combinations(cfg_t *cfg, const origin_t *orig, char *err, size_t errlen);

const char *cfg_locate(const char *path)
{
    if (path && *path)
        return path;
    path = getenv("COUPOND_CONFIG");
    return (path && *path) ? path : NULL;
}

int cfg_load(cfg_t *cfg, const char *path, char *const *sets, int nsets, char *err, size_t errlen)
{
    config_t lc;
    origin_t *orig = NULL;
    const char **overrides = NULL;
    char why[CP_ERRLEN], text[4096];
    char *absolute = NULL, *dircopy = NULL;
    int rc = -1;

    memset(cfg, 0, sizeof *cfg);
    config_init(&lc);
    orig = calloc(NDEFS, sizeof *orig);
    overrides = calloc(NDEFS, sizeof *overrides);
    if (!orig || !overrides) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }

    absolute = realpath(path, NULL);
    if (!absolute) {
        snprintf(err, errlen, "%s: cannot read the configuration: %s", path, strerror(errno));
        goto out;
    }
    cfg->path = absolute;
    dircopy = strdup(absolute);
    if (!dircopy) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    cfg->dir = strdup(dirname(dircopy));
    config_set_include_dir(&lc, cfg->dir);
    if (config_read_file(&lc, absolute) != CONFIG_TRUE) {
        snprintf(err, errlen, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : path,
                 config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    if (check_unknown(config_root_setting(&lc), err, errlen, path) != 0)
        goto out;

    for (int i = 0; i < nsets; i++) {
        const char *eq = strchr(sets[i], '=');
        char name[256];
        const cfg_def_t *d;
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof name) {
            snprintf(err, errlen, "--set %s: expected PATH=VALUE", sets[i]);
            goto out;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - sets[i]), sets[i]);
        d = find_def(name);
        if (!d) {
            snprintf(err, errlen, "--set %s: unknown setting '%s'%s", sets[i], name,
                     strcmp(name, KEYS_PATH) == 0 ? " (keys are set in the file)" : "");
            goto out;
        }
        overrides[d - defs] = eq + 1;
    }

    for (size_t i = 0; i < NDEFS; i++) {
        const cfg_def_t *d = &defs[i];
        const config_setting_t *s = config_lookup(&lc, d->path);
        const char *value = d->def;

        if (overrides[i]) {
            size_t len = strlen(overrides[i]);
            value = overrides[i];
            /* Accept --set a.b="x" as well as --set a.b=x. */
            if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
                snprintf(text, sizeof text, "%.*s", (int)len - 2, value + 1);
                value = text;
            }
            if (origin(&orig[i], "--set %s", d->path) != 0)
                goto oom;
        } else if (s) {
            if (origin(&orig[i], "%s:%d: %s", path, config_setting_source_line(s), d->path) != 0)
                goto oom;
            if (setting_text(s, d, text, sizeof text, why, sizeof why) != 0) {
                snprintf(err, errlen, "%s: %s", orig[i], why);
                goto out;
            }
            value = text;
        } else {
            if (origin(&orig[i], "%s: %s (default)", path, d->path) != 0)
                goto oom;
        }
        if (set_value(cfg, d, value, why, sizeof why) != 0 ||
            (d->type == T_STR && resolve_fileok(cfg, d, why, sizeof why) != 0)) {
            snprintf(err, errlen, "%s: %s", orig[i], why);
            goto out;
        }
        if (d->type == T_SECRET) {
            char **f = field(cfg, d), *secret;
            if (resolve_secret(cfg, *f, &secret, why, sizeof why) != 0) {
                snprintf(err, errlen, "%s: %s", orig[i], why);
                goto out;
            }
            free(*f);
            *f = secret;
        }
    }
    if (load_keys(cfg, config_lookup(&lc, KEYS_PATH), path, err, errlen) != 0)
        goto out;
    if (check_combinations(cfg, orig, err, errlen) != 0)
        goto out;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    config_destroy(&lc);
    for (size_t i = 0; orig && i < NDEFS; i++)
        free(orig[i]);
    free(orig);
    free(overrides);
    free(dircopy);
    if (rc != 0)
        cfg_free(cfg);
    return rc;
}

static const char *where(const origin_t *orig, const char *p)
{
    const cfg_def_t *d = find_def(p);
    return d && orig[d - defs] ? orig[d - defs] : p;
}

static int check_lane(const cfg_t *cfg, const cfg_lane_t *lane, const char *name,
                      const origin_t *orig, char *err, size_t errlen)
{
    char p[128];
    if (lane->transport == CFG_TRANSPORT_KAFKA) {
        snprintf(p, sizeof p, "lanes.%s.kafka.brokers", name);
        if (!*lane->kafka.brokers) {
            snprintf(err, errlen, "%s: the %s lane uses kafka and needs a bootstrap list",
                     where(orig, p), name);
            return -1;
        }
        snprintf(p, sizeof p, "lanes.%s.kafka.topic", name);
        if (!*lane->kafka.topic) {
            snprintf(err, errlen, "%s: the %s lane uses kafka and needs a topic", where(orig, p),
                     name);
            return -1;
        }
    } else {
        snprintf(p, sizeof p, "lanes.%s.amqp.queue", name);
        if (!*lane->amqp.queue) {
            snprintf(err, errlen, "%s: the %s lane uses amqp and needs a queue", where(orig, p),
                     name);
            return -1;
        }
        if (lane == &cfg->lane_w &&
            (!*lane->amqp.delay_queue || strcmp(lane->amqp.delay_queue, lane->amqp.queue) == 0)) {
            snprintf(err, errlen, "%s: the w lane needs a delay queue distinct from its work queue",
                     where(orig, "lanes.w.amqp.delay_queue"));
            return -1;
        }
    }
    return 0;
}

static int check_combinations(cfg_t *cfg, const origin_t *orig, char *err, size_t errlen)
{
    const cfg_lane_t *l = &cfg->lane_l, *w = &cfg->lane_w;

    if (check_lane(cfg, l, "l", orig, err, errlen) || check_lane(cfg, w, "w", orig, err, errlen))
        return -1;
    /* Two lanes on one destination would not be two lanes. */
    if (l->transport == w->transport &&
        ((l->transport == CFG_TRANSPORT_KAFKA && strcmp(l->kafka.brokers, w->kafka.brokers) == 0 &&
          strcmp(l->kafka.topic, w->kafka.topic) == 0) ||
         (l->transport == CFG_TRANSPORT_AMQP && strcmp(l->amqp.url, w->amqp.url) == 0 &&
          strcmp(l->amqp.queue, w->amqp.queue) == 0))) {
        snprintf(err, errlen, "%s: the l and w lanes point at the same destination",
                 where(orig, "lanes.w.transport"));
        return -1;
    }
    for (int i = 1; i < cfg->issue.nretry_delays; i++) {
        if (cfg->issue.retry_delays_ms[i] <= cfg->issue.retry_delays_ms[i - 1]) {
            snprintf(err, errlen, "%s: delays must be strictly ascending",
                     where(orig, "issue.retry_delays_ms"));
            return -1;
        }
    }
    if ((long long)cfg->issue.refund_after_s * 1000 <= cfg->lane_w.delay_ms) {
        snprintf(err, errlen,
                 "%s: the refund deadline (%d s) must be longer than the w lane's delay "
                 "(%d ms)",
                 where(orig, "issue.refund_after_s"), cfg->issue.refund_after_s,
                 cfg->lane_w.delay_ms);
        return -1;
    }
    if (cfg->security.require_signature && cfg->security.nkeys == 0) {
        snprintf(err, errlen, "%s: signatures are required but security.keys lists no key",
                 where(orig, "security.require_signature"));
        return -1;
    }
    if (*cfg->security.sign_with && !cfg_sign_key(cfg)) {
        snprintf(err, errlen, "%s: no key \"%s\" in security.keys",
                 where(orig, "security.sign_with"), cfg->security.sign_with);
        return -1;
    }
    return 0;
}

void cfg_free(cfg_t *cfg)
{
    for (size_t i = 0; i < NDEFS; i++) {
        void *f = field(cfg, &defs[i]);
        if (defs[i].type == T_SECRET && *(char **)f)
            explicit_bzero(*(char **)f, strlen(*(char **)f));
        if (defs[i].type == T_STR || defs[i].type == T_SECRET || defs[i].type == T_INTLIST) {
            free(*(void **)f);
            *(void **)f = NULL;
        }
    }
    if (cfg->security.keys)
        explicit_bzero(cfg->security.keys,
                       sizeof *cfg->security.keys * (size_t)cfg->security.nkeys);
    free(cfg->security.keys);
    free(cfg->path);
    free(cfg->dir);
    memset(cfg, 0, sizeof *cfg);
}

/* Masks the password of a URL ("amqp://u:pw@h") or a conninfo ("password=pw"). */
static void mask_inline_password(char *s)
{
    char *scheme = strstr(s, "://"), *p;
    if (scheme) {
        char *at = strchr(scheme + 3, '@'), *colon = strchr(scheme + 3, ':');
        if (at && colon && colon < at) {
            memmove(colon + 5, at, strlen(at) + 1);
            memcpy(colon + 1, "****", 4);
        }
    }
    if ((p = strstr(s, "password=")) != NULL) {
        char *end = p + 9;
        while (*end && !isspace((unsigned char)*end))
            end++;
        memmove(p + 13, end, strlen(end) + 1);
        memcpy(p + 9, "****", 4);
    }
}

/* Writes s as a libconfig string literal: quoted, with backslashes, quotes
 * and control characters escaped, so that printed settings read back as
 * they are. A value too long for out is cut, never its closing quote or an
 * escape. */
static void quote(const char *s, char *out, size_t n)
{
    size_t used = 0;
    if (n < 3) {
        if (n)
            out[0] = '\0';
        return;
    }
    out[used++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[5];
        size_t len;
        if (c == '\\' || c == '"')
            len = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
        else if (c == '\n')
            len = (size_t)snprintf(esc, sizeof esc, "\\n");
        else if (c == '\t')
            len = (size_t)snprintf(esc, sizeof esc, "\\t");
        else if (c < 0x20 || c == 0x7f)
            len = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
        else
            esc[0] = (char)c, len = 1;
        if (used + len + 2 > n)
            break;
        memcpy(out + used, esc, len);
        used += len;
    }
    out[used++] = '"';
    out[used] = '\0';
}

static void format_def(const cfg_t *cfg, const cfg_def_t *d, char *out, size_t n)
{
    const void *f = cfield(cfg, d);
    switch (d->type) {
    case T_STR: {
        const char *s = *(char *const *)f ? *(char *const *)f : "";
        char masked[4000];
        snprintf(masked, sizeof masked, "%s", s);
        mask_inline_password(masked);
        quote(masked, out, n);
        break;
    }
    case T_SECRET:
        snprintf(out, n, "\"%s\"", *(char *const *)f ? "********" : "");
        break;
    case T_INT:
        snprintf(out, n, "%d", *(const int *)f);
        break;
    case T_BOOL:
        snprintf(out, n, "%s", *(const bool *)f ? "true" : "false");
        break;
    case T_ENUM:
        snprintf(out, n, "\"%s\"", d->choices[*(const int *)f]);
        break;
    case T_INTLIST: {
        const int *list = *(int *const *)f;
        int count = *(const int *)((const char *)cfg + d->aux);
        size_t used = (size_t)snprintf(out, n, "[ ");
        for (int i = 0; i < count && used < n; i++)
            used += (size_t)snprintf(out + used, n - used, "%s%d", i ? ", " : "", list[i]);
        if (used < n)
            snprintf(out + used, n - used, " ]");
        break;
    }
    }
}

static void format_keys(const cfg_t *cfg, char *out, size_t n)
{
    size_t used = (size_t)snprintf(out, n, "(");
    for (int i = 0; i < cfg->security.nkeys && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s { id = \"%s\"; secret = \"********\"; }",
                                 i ? "," : "", cfg->security.keys[i].id);
    if (used < n)
        snprintf(out + used, n - used, " )");
}

int cfg_format(const cfg_t *cfg, const char *path, char *out, size_t outlen)
{
    const cfg_def_t *d = find_def(path);
    if (strcmp(path, KEYS_PATH) == 0) {
        format_keys(cfg, out, outlen);
        return 0;
    }
    if (!d)
        return -1;
    format_def(cfg, d, out, outlen);
    return 0;
}

void cfg_print(const cfg_t *cfg, FILE *out)
{
    char buf[4096];
    fprintf(out, "# effective configuration of %s (secrets masked)\n", cfg->path);
    for (size_t i = 0; i < NDEFS; i++) {
        format_def(cfg, &defs[i], buf, sizeof buf);
        fprintf(out, "%s = %s;\n", defs[i].path, buf);
    }
    format_keys(cfg, buf, sizeof buf);
    fprintf(out, "%s = %s;\n", KEYS_PATH, buf);
}

void cfg_apply_reload(cfg_t *cur, const cfg_t *next, char *note, size_t notelen)
{
    char a[4096], b[4096];
    size_t used = 0;
    note[0] = '\0';
    for (size_t i = 0; i < NDEFS; i++) {
        const cfg_def_t *d = &defs[i];
        format_def(cur, d, a, sizeof a);
        format_def(next, d, b, sizeof b);
        if (strcmp(a, b) == 0)
            continue;
        if (!(d->flags & F_RELOAD)) {
            if (used < notelen)
                used += (size_t)snprintf(note + used, notelen - used, "%s%s", used ? ", " : "",
                                         d->path);
            continue;
        }
        if (d->type == T_INTLIST) {
            int count = *(const int *)((const char *)next + d->aux);
            int *copy = malloc(sizeof *copy * (size_t)count);
            if (!copy)
                continue;
            memcpy(copy, *(int *const *)cfield(next, d), sizeof *copy * (size_t)count);
            free(*(int **)field(cur, d));
            *(int **)field(cur, d) = copy;
            *(int *)((char *)cur + d->aux) = count;
        } else if (d->type == T_STR) {
            char *copy = strdup(*(char *const *)cfield(next, d));
            if (!copy)
                continue;
            free(*(char **)field(cur, d));
            *(char **)field(cur, d) = copy;
        } else {
            memcpy(field(cur, d), cfield(next, d), d->type == T_BOOL ? sizeof(bool) : sizeof(int));
        }
    }
}

const sig_key_t *cfg_sign_key(const cfg_t *cfg)
{
    if (!cfg->security.sign_with || !*cfg->security.sign_with)
        return NULL;
    for (int i = 0; i < cfg->security.nkeys; i++)
        if (strcmp(cfg->security.keys[i].id, cfg->security.sign_with) == 0)
            return &cfg->security.keys[i];
    return NULL;
}

sig_keyring_t cfg_keyring(const cfg_t *cfg)
{
    sig_keyring_t ring = {cfg->security.keys, (size_t)cfg->security.nkeys};
    return ring;
}

const char *cfg_transport_name(int transport)
{
    return transport == CFG_TRANSPORT_AMQP ? "amqp" : "kafka";
}
