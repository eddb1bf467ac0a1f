/* test_display.c: what couponctl shows people (display.c): --since parsing,
 * times, safe display of untrusted bytes, re-indented JSON, the progress bar,
 * tables; and the pure pieces of the dead-letter commands (dlq.c). */
#define _GNU_SOURCE
#include <stdint.h>

#include "check.h"
#include "display.h"
#include "dlq.h"

#define LIT(s) s, sizeof(s) - 1

static const int64_t NOW = 1795255200000000LL; /* 2026-11-21T10:00:00Z */

static void test_since(void)
{
    // clang-format off
    static const struct {
        const char *in;
        int rc;
        const char *want; /* disp_format_us of the result */
    } cases[] = {
        {"2026-11-21T10:00:00Z", 0, "2026-11-21T10:00:00.000000Z"},
        {"2026-11-21T10:00:00.25Z", 0, "2026-11-21T10:00:00.250000Z"},
        {"2026-11-21T10:00:00.123456789Z", 0, "2026-11-21T10:00:00.123456Z"},
        {"2026-11-21t10:00z", 0, "2026-11-21T10:00:00.000000Z"},
        {"2026-11-21 10:00:00", 0, "2026-11-21T10:00:00.000000Z"},
        {"2026-11-21T11:30:00+01:30", 0, "2026-11-21T10:00:00.000000Z"},
        {"2026-11-21T08:00:00-0200", 0, "2026-11-21T10:00:00.000000Z"},
        {"2026-11-21", 0, "2026-11-21T00:00:00.000000Z"},
        {"2024-02-29", 0, "2024-02-29T00:00:00.000000Z"},
        {"1970-01-01", 0, "1970-01-01T00:00:00.000000Z"},
        {"90s", 0, "2026-11-21T09:58:30.000000Z"},
        {"15m", 0, "2026-11-21T09:45:00.000000Z"},
        {"2h", 0, "2026-11-21T08:00:00.000000Z"},
        {"7d", 0, "2026-11-14T10:00:00.000000Z"},
        {"0s", 0, "2026-11-21T10:00:00.000000Z"},
        {"", -1, NULL},
        {"yesterday", -1, NULL},
        {"15", -1, NULL},
        {"15w", -1, NULL},
        {"-5m", -1, NULL},
        {"99999999999d", -1, NULL},
        {"2026-02-29", -1, NULL},
        {"2026-13-01", -1, NULL},
        {"2026-11-31", -1, NULL},
        {"2026-11-21T24:00", -1, NULL},
        {"2026-11-21T10:60", -1, NULL},
        {"2026-11-21T10:00:60Z", -1, NULL},
        {"2026-11-21T10:00:00.Z", -1, NULL},
        {"2026-11-21T10:00:00Zx", -1, NULL},
        {"2026-11-21T10:00+25:00", -1, NULL},
        {"2026-1-21", -1, NULL},
        {"1969-12-31", -1, NULL},
    };
    // clang-format on
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = 0;
        char got[40];
        int rc = disp_parse_since(cases[i].in, NOW, &us);
        CHECK_MSG(rc == cases[i].rc, "\"%s\": rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc != 0 || !cases[i].want)
            continue;
        disp_format_us(us, got, sizeof got);
        CHECK_MSG(strcmp(got, cases[i].want) == 0, "\"%s\": %s, want %s", cases[i].in, got,
                  cases[i].want);
    }
}

/* What out wrote, as a string the caller frees. */
typedef struct capture {
    char *buf;
    size_t size;
    FILE *f;
} capture_t;

static FILE *capture_start(capture_t *c)
{
    c->buf = NULL;
    c->size = 0;
    c->f = open_memstream(&c->buf, &c->size);
    return c->f;
}

static char *capture_end(capture_t *c)
{
    fclose(c->f);
    return c->buf;
}

static void expect_safe(const char *name, const void *in, size_t len, bool lines, const char *want)
{
    capture_t c;
    char *got;

    disp_put_safe(capture_start(&c), in, len, lines, "> ");
    got = capture_end(&c);
    CHECK_MSG(strcmp(got, want) == 0, "%s: \"%s\", want \"%s\"", name, got, want);
    free(got);
}

static void test_safe(void)
{
    expect_safe("plain", LIT("hello, world"), false, "hello, world");
    expect_safe("escape sequence", LIT("\x1b[2Jx"), false, "\\x1b[2Jx");
    expect_safe("backslash doubled", LIT("a\\x41"), false, "a\\\\x41");
    expect_safe("NUL, DEL, C0", LIT("a\0b\x7f\x01"), false, "a\\x00b\\x7f\\x01");
    expect_safe("newline, tab, CR", LIT("a\nb\tc\rd"), false, "a\\nb\\tc\\rd");
    expect_safe("lines", LIT("a\nb"), true, "a\n> b");
    expect_safe("UTF-8 kept", LIT("w\xc3\xa9rld \xe2\x82\xac \xf0\x9f\x98\x80"), false,
                "w\xc3\xa9rld \xe2\x82\xac \xf0\x9f\x98\x80");
    expect_safe("C1 control", LIT("\xc2\x9b"), false, "\\xc2\\x9b");
    expect_safe("right-to-left override",
                LIT("a\xe2\x80\xae"
                    "b"),
                false, "a\\xe2\\x80\\xaeb");
    expect_safe("zero width space", LIT("\xe2\x80\x8b"), false, "\\xe2\\x80\\x8b");
    expect_safe("byte order mark", LIT("\xef\xbb\xbf"), false, "\\xef\\xbb\\xbf");
    expect_safe("invalid byte",
                LIT("a\xff"
                    "b"),
                false, "a\\xffb");
    expect_safe("overlong", LIT("\xc0\xaf"), false, "\\xc0\\xaf");
    expect_safe("surrogate", LIT("\xed\xa0\x80"), false, "\\xed\\xa0\\x80");
    expect_safe("cut sequence", LIT("\xe2\x82"), false, "\\xe2\\x82");
}

static void expect_pretty(const char *name, const char *in, const char *want)
{
    capture_t c;
    char *got;

    disp_put_json_pretty(capture_start(&c), in, strlen(in), "| ");
    got = capture_end(&c);
    CHECK_MSG(strcmp(got, want) == 0, "%s:\n%s\nwant:\n%s", name, got, want);
    free(got);
}

static void test_pretty(void)
{
    expect_pretty("object", "{\"a\":1,\"b\":[true, null],\"c\":{}}",
                  "| {\n|   \"a\": 1,\n|   \"b\": [\n|     true,\n|     null\n|   ],\n"
                  "|   \"c\": {}\n| }\n");
    /* Tokens keep their bytes: numbers, escapes, duplicate keys, order. */
    expect_pretty("tokens as they are", "{\"o\": 4.201e3, \"s\":\"a\\\"b,{\\u0041\", \"o\": -0}",
                  "| {\n|   \"o\": 4.201e3,\n|   \"s\": \"a\\\"b,{\\u0041\",\n|   \"o\": -0\n"
                  "| }\n");
    expect_pretty("raw control in a string", "[\"\x1b[31m\"]", "| [\n|   \"\\x1b[31m\"\n| ]\n");
    expect_pretty("scalar", " 42 ", "| 42\n");
    expect_pretty("empty array", "[ ]", "| []\n");
}

static void test_body_ids(void)
{
    int64_t order_id;
    char pid[MSG_PAYMENT_ID_MAX + 1];

    CHECK(dlq_body_ids(LIT("{\"order_id\":9223372036854775801,\"payment_id\":\"p-1\"}"), &order_id,
                       pid, sizeof pid));
    CHECK(order_id == 9223372036854775801LL);
    CHECK_STR(pid, "p-1");
    CHECK(dlq_body_ids(LIT("{\"order_id\":42,\"payment_id\":\"bad id\"}"), &order_id, pid,
                       sizeof pid));
    CHECK_STR(pid, "");
    CHECK(!dlq_body_ids(LIT("{\"order_id\":\"42\"}"), &order_id, pid, sizeof pid));
    CHECK(order_id == 0);
    CHECK(!dlq_body_ids(LIT("[1,2]"), &order_id, pid, sizeof pid));
    CHECK(!dlq_body_ids(LIT("{\"order_id\":4"), &order_id, pid, sizeof pid));
    CHECK(!dlq_body_ids(LIT("\xff"), &order_id, pid, sizeof pid));
}

static void test_progress(void)
{
    char line[256];

    disp_progress_line(line, sizeof line, 5, 10, "ok", 80);
    CHECK_STR(line, "[####################--------------------] 5/10  ok");
    disp_progress_line(line, sizeof line, 0, 300, "replayed 0", 40);
    CHECK_MSG(strlen(line) <= 40, "%s", line);
    CHECK_MSG(strncmp(line, "[---", 4) == 0, "%s", line);
    disp_progress_line(line, sizeof line, 300, 300, "", 30);
    CHECK_MSG(strstr(line, "] 300/300") && !strchr(line, '-'), "%s", line);
    disp_progress_line(line, 16, 1, 2, "a long tail that does not fit", 200);
    CHECK_MSG(strlen(line) == 15, "%s", line);
}

static void test_utf8_and_table(void)
{
    static const char *const head[] = {"ID", "NOTE"};
    disp_table_t t = {.ncols = 2, .head = head};
    const char *r1[] = {"1", "short"}, *r2[] = {"12345", "w\xc3\xa9 \x1b[1m long enough to be cut"};
    capture_t c;
    char *got;

    CHECK(disp_utf8_text(LIT("w\xc3\xa9rld")));
    CHECK(!disp_utf8_text(LIT("a\0b")));
    CHECK(!disp_utf8_text(LIT("\xff")));
    CHECK(disp_table_add(&t, r1) == 0);
    CHECK(disp_table_add(&t, r2) == 0);
    disp_table_print(&t, capture_start(&c), 0);
    got = capture_end(&c);
    CHECK_STR(got, "ID     NOTE\n1      short\n12345  w\xc3\xa9 \\x1b[1m long enough to be cut\n");
    free(got);
    disp_table_print(&t, capture_start(&c), 20);
    got = capture_end(&c);
    CHECK_STR(got, "ID     NOTE\n1      short\n12345  w\xc3\xa9 \\x1b[1m...\n");
    free(got);
    disp_table_free(&t);
}

static void test_results(void)
{
    CHECK_STR(dlq_result_name(DLQ_HANDED_TO_W), "handed_to_w");
    CHECK_STR(dlq_result_name(DLQ_RESULT_COUNT), "unknown");
    CHECK(dlq_result_ok(DLQ_DUPLICATE));
    CHECK(!dlq_result_ok(DLQ_REFUSED));
    CHECK(!dlq_result_ok(DLQ_RESOLVED));
}

int main(void)
{
    test_since();
    test_safe();
    test_pretty();
    test_body_ids();
    test_progress();
    test_utf8_and_table();
    test_results();
    return check_done("test_display");
}
