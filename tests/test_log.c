/* test_log.c: level gating before formatting, JSON lines, order ids,
 * redaction of registered secrets. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

static int evaluated;

static const char *costly(void)
{
    evaluated++;
    return "costly";
}

/* Runs fn with the log sent to a pipe and returns what it wrote. */
static void capture(void (*fn)(void), char *out, size_t outlen)
{
    int fds[2];
    ssize_t n;
    if (pipe(fds) != 0) {
        out[0] = '\0';
        return;
    }
    log_set_fd(fds[1]);
    fn();
    close(fds[1]);
    n = read(fds[0], out, outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    log_set_fd(2);
}

static void emit_levels(void)
{
    log_debug("debug %s", costly());
    log_info("info line");
    log_warn_o(4200000000000000042LL, "order line \"quoted\"\n");
}

static void emit_secret(void)
{
    log_error("connecting with password s3cr3t-value and again s3cr3t-value.");
}

int main(void)
{
    char out[8192];
    cJSON *j;
    char *nl;

    CHECK(log_level_parse("warn") == LOG_WARN);
    CHECK(log_level_parse("loud") == -1);
    CHECK_STR(log_level_name(LOG_DEBUG), "debug");

    log_init("dc1", "l", LOG_INFO, true);
    capture(emit_levels, out, sizeof out);
    CHECK_MSG(evaluated == 0, "arguments of a disabled level were evaluated");
    nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (nl) {
        *nl = '\0';
        j = cJSON_Parse(out);
        CHECK_MSG(j != NULL, "not JSON: %s", out);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "info");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "cluster")), "dc1");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "role")), "l");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "msg")), "info line");
        CHECK(cJSON_GetObjectItem(j, "order_id") == NULL);
        CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts")) != NULL &&
              strlen(cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts"))) == 24);
        cJSON_Delete(j);
        j = cJSON_Parse(nl + 1);
        CHECK_MSG(j != NULL, "not JSON: %s", nl + 1);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "order_id")), "4200000000000000042");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "msg")), "order line \"quoted\"\n");
        cJSON_Delete(j);
    }

    log_set_level(LOG_DEBUG);
    capture(emit_levels, out, sizeof out);
    CHECK(evaluated == 1);
    CHECK(strstr(out, "debug costly") != NULL);

    log_init("dc1", "w", LOG_INFO, false);
    log_redact("s3cr3t-value", strlen("s3cr3t-value"));
    capture(emit_secret, out, sizeof out);
    CHECK_MSG(strstr(out, "s3cr3t") == NULL, "secret leaked: %s", out);
    CHECK(strstr(out, "password **** and again ****.") != NULL);
    CHECK(strstr(out, "error [dc1/w]") != NULL);
    log_redact_clear();
    return check_done("test_log");
}
