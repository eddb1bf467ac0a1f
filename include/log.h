/* log.h: levelled logging as JSON lines or plain text on stderr.
 *
 * The level is tested before anything is formatted. Each line carries the
 * time, level, cluster, role and message, and the order id when known, so one
 * order's story can be grepped end to end. Secrets registered with
 * log_redact() are replaced by "****" wherever they would appear. */
#ifndef COUPOND_LOG_H
#define COUPOND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef enum log_level {
    LOG_ERROR = 0,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
} log_level_t;

extern volatile int log_current_level;

/* Sets the fields every line carries and the format. Strings are copied. */
void log_init(const char *cluster, const char *role, log_level_t level, bool json);
void log_set_level(log_level_t level);
/* Sends lines to fd instead of stderr (tests). */
void log_set_fd(int fd);

/* Parses "error", "warn", "info" or "debug"; returns -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(log_level_t level);

/* Registers a secret that must never appear in a line (copied; at most 32;
 * secrets shorter than 4 bytes are ignored). */
void log_redact(const void *secret, size_t len);
void log_redact_clear(void);

/* Formats and writes one line. order_id 0 means "no order". Use the macros. */
void log_write(log_level_t level, int64_t order_id, const char *fmt, ...) CP_PRINTF(3, 4);

#define log_enabled(lvl) ((int)(lvl) <= log_current_level)
#define LOG_AT(lvl, oid, ...)                                                                      \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_write((lvl), (oid), __VA_ARGS__);                                                  \
    } while (0)

#define log_error(...) LOG_AT(LOG_ERROR, 0, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, 0, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, 0, __VA_ARGS__)
/* Variants that carry the order id. */
#define log_error_o(oid, ...) LOG_AT(LOG_ERROR, (oid), __VA_ARGS__)
#define log_warn_o(oid, ...)  LOG_AT(LOG_WARN, (oid), __VA_ARGS__)
#define log_info_o(oid, ...)  LOG_AT(LOG_INFO, (oid), __VA_ARGS__)
#define log_debug_o(oid, ...) LOG_AT(LOG_DEBUG, (oid), __VA_ARGS__)

#endif
