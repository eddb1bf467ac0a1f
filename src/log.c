/* log.c: levelled JSON-lines or text logging with secret redaction. */
#define _GNU_SOURCE
#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX    4096
#define LOG_MAX_SECRETS 32

volatile int log_current_level = LOG_INFO;

static struct {
    char cluster[64];
    char role[16];
    bool json;
    int fd;
    pthread_mutex_t lock; /* guards secrets */
    struct {
        char *bytes;
        size_t len;
    } secrets[LOG_MAX_SECRETS];
    size_t nsecrets;
} lg = {.cluster = "", .role = "", .json = false, .fd = 2, .lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *cluster, const char *role, log_level_t level, bool json)
{
    snprintf(lg.cluster, sizeof lg.cluster, "%s", cluster ? cluster : "");
    snprintf(lg.role, sizeof lg.role, "%s", role ? role : "");
    lg.json = json;
    log_current_level = level;
}

void log_set_level(log_level_t level)
{
    log_current_level = level;
}

void log_set_fd(int fd)
{
    lg.fd = fd;
}

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < CP_ARRAY_SIZE(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *log_level_name(log_level_t level)
{
    return (unsigned)level < CP_ARRAY_SIZE(level_names) ? level_names[level] : "?";
}

void log_redact(const void *secret, size_t len)
{
    if (len < 4)
        return;
    pthread_mutex_lock(&lg.lock);
    if (lg.nsecrets < LOG_MAX_SECRETS) {
        char *copy = malloc(len);
        if (copy) {
            memcpy(copy, secret, len);
            lg.secrets[lg.nsecrets].bytes = copy;
            lg.secrets[lg.nsecrets].len = len;
            lg.nsecrets++;
        }
    }
    pthread_mutex_unlock(&lg.lock);
}

void log_redact_clear(void)
{
    pthread_mutex_lock(&lg.lock);
    for (size_t i = 0; i < lg.nsecrets; i++)
        free(lg.secrets[i].bytes);
    lg.nsecrets = 0;
    pthread_mutex_unlock(&lg.lock);
}

/* Overwrites every registered secret in msg (in place; "****" then the rest
 * of the secret's bytes are dropped). */
static void redact(char *msg)
{
    pthread_mutex_lock(&lg.lock);
    for (size_t i = 0; i < lg.nsecrets; i++) {
        char *hit;
        while ((hit = memmem(msg, strlen(msg), lg.secrets[i].bytes, lg.secrets[i].len))) {
            size_t tail = strlen(hit + lg.secrets[i].len);
            memcpy(hit, "****", 4);
            memmove(hit + 4, hit + lg.secrets[i].len, tail + 1);
        }
    }
    pthread_mutex_unlock(&lg.lock);
}

static void format_now(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

void log_write(log_level_t level, int64_t order_id, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX], ts[40], line[LOG_LINE_MAX * 2];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    redact(msg);
    format_now(ts, sizeof ts);

    if (lg.json) {
        cJSON *o = cJSON_CreateObject();
        char *text;
        if (!o)
            return;
        cJSON_AddStringToObject(o, "ts", ts);
        cJSON_AddStringToObject(o, "level", log_level_name(level));
        if (lg.cluster[0])
            cJSON_AddStringToObject(o, "cluster", lg.cluster);
        if (lg.role[0])
            cJSON_AddStringToObject(o, "role", lg.role);
        if (order_id) {
            char oid[24];
            /* A string, so int64 ids survive JSON readers that use doubles. */
            snprintf(oid, sizeof oid, "%" PRId64, order_id);
            cJSON_AddStringToObject(o, "order_id", oid);
        }
        cJSON_AddStringToObject(o, "msg", msg);
        text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!text)
            return;
        n = snprintf(line, sizeof line, "%s\n", text);
        cJSON_free(text);
    } else if (order_id) {
        n = snprintf(line, sizeof line, "%s %-5s [%s/%s] order=%" PRId64 " %s\n", ts,
                     log_level_name(level), lg.cluster, lg.role, order_id, msg);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s [%s/%s] %s\n", ts, log_level_name(level),
                     lg.cluster, lg.role, msg);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    /* One write per line so concurrent writers never interleave a line. */
    write_all(lg.fd, line, (size_t)n);
}
