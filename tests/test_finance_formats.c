/* test_finance_formats.c: the pure pieces of finance's commands (finance.c):
 * CSV fields (RFC 4180), JSON strings, amounts in the currency's units, UTC
 * timestamps, and the refund hash against 001_init.sql's test vector. */
#define _GNU_SOURCE
#include <stdint.h>

#include "check.h"
#include "display.h"
#include "finance.h"

#define LIT(s) s, sizeof(s) - 1

/* What fin_csv_field (csv) or fin_json_string (!csv) writes for s. */
static char *field(bool csv, const char *s, size_t len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    if (csv)
        fin_csv_field(f, s, len);
    else
        fin_json_string(f, s, len);
    fclose(f);
    return buf;
}

static void test_csv(void)
{
    // clang-format off
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"deadline", "deadline"},
        {"", ""},
        {"a,b", "\"a,b\""},
        {"say \"no\"", "\"say \"\"no\"\"\""},
        {"\"", "\"\"\"\""},
        {"two\nlines", "\"two\nlines\""},
        {"crlf\r\n", "\"crlf\r\n\""},
        {"cr\r", "\"cr\r\""},
        {" lead", "\" lead\""},
        {"trail ", "\"trail \""},
        {"in side", "in side"},
        {"rejected: amount_cents 2999 != price 1500 x quantity 2 = 3000 (deal 1)",
         "rejected: amount_cents 2999 != price 1500 x quantity 2 = 3000 (deal 1)"},
        {"semi;colon\ttab", "semi;colon\ttab"},
        {"ünïcödé, too", "\"ünïcödé, too\""},
    };
    // clang-format on
    for (size_t i = 0; i < CP_ARRAY_SIZE(cases); i++) {
        char *got = field(true, cases[i].in, strlen(cases[i].in));
        CHECK_STR(got, cases[i].want);
        free(got);
    }
    /* Length-bounded: bytes past len are not written. */
    char *got = field(true, "a,bc", 1);
    CHECK_STR(got, "a");
    free(got);
}

static void test_json(void)
{
    char *got = field(false, LIT("say \"hi\"\\\n\r\t\x01\x7f é"));
    CHECK_STR(got, "\"say \\\"hi\\\"\\\\\\n\\r\\t\\u0001\\u007f é\"");
    free(got);
    got = field(false, "", 0);
    CHECK_STR(got, "\"\"");
    free(got);
}

static void test_amounts(void)
{
    // clang-format off
    static const struct {
        int64_t amount;
        const char *currency, *want;
    } cases[] = {
        {1500, "EUR", "15.00"},
        {5, "EUR", "0.05"},
        {50, "USD", "0.50"},
        {0, "EUR", "0.00"},
        {100, "GBP", "1.00"},
        {123456789012345, "EUR", "1234567890123.45"},
        {INT64_MAX, "EUR", "92233720368547758.07"},
        {1500, "JPY", "1500"},
        {1, "KRW", "1"},
        {0, "JPY", "0"},
        {1500, "KWD", "1.500"},
        {1, "BHD", "0.001"},
        {12345, "CLF", "1.2345"},
        {1500, "XYZ", "15.00"}, /* unknown codes: 2 minor units */
    };
    // clang-format on
    char out[32];
    for (size_t i = 0; i < CP_ARRAY_SIZE(cases); i++) {
        CHECK_MSG(fin_format_amount(cases[i].amount, cases[i].currency, out, sizeof out) == 0, "%s",
                  cases[i].want);
        CHECK_STR(out, cases[i].want);
    }
    /* Never negative, never cut short. */
    CHECK(fin_format_amount(-1, "EUR", out, sizeof out) == -1 && out[0] == '\0');
    CHECK(fin_format_amount(-1500, "JPY", out, sizeof out) == -1 && out[0] == '\0');
    CHECK(fin_format_amount(1500, "EUR", out, 5) == -1 && out[0] == '\0');
    CHECK(fin_format_amount(1500, "EUR", out, 6) == 0);
    CHECK_STR(out, "15.00");
    CHECK(fin_minor_units("EUR") == 2 && fin_minor_units("JPY") == 0 &&
          fin_minor_units("KWD") == 3 && fin_minor_units("UYW") == 4);
}

static void test_times(void)
{
    char out[40];
    disp_format_us(1795255200000000LL, out, sizeof out);
    CHECK_STR(out, "2026-11-21T10:00:00.000000Z");
    disp_format_us(1795255200123456LL, out, sizeof out);
    CHECK_STR(out, "2026-11-21T10:00:00.123456Z");
    disp_format_us(0, out, sizeof out);
    CHECK_STR(out, "1970-01-01T00:00:00.000000Z");
}

static void test_hash(void)
{
    char out[65];
    fin_refund_t r = {
        .seq = 1,
        .order_id = 4201,
        .payment_id = "pay-1",
        .amount_cents = 1500,
        .currency = "EUR",
        .reason = "deadline",
        .created_us = 1795255200000000LL,
        .prev_hash = "0000000000000000000000000000000000000000000000000000000000000000",
    };
    /* The test vector of 001_init.sql. */
    CHECK(fin_refund_hash(&r, out) == 0);
    CHECK_STR(out, "fe19e7487a21846d99e4403a4b776a584e02e68851f74ea8042de7d332e84110");
    /* Every field counts. */
    r.amount_cents = 1501;
    CHECK(fin_refund_hash(&r, out) == 0);
    CHECK(strcmp(out, "fe19e7487a21846d99e4403a4b776a584e02e68851f74ea8042de7d332e84110") != 0);
    r.seq = -1;
    CHECK(fin_refund_hash(&r, out) == -1);
}

int main(void)
{
    test_csv();
    test_json();
    test_amounts();
    test_times();
    test_hash();
    return check_done("test_finance_formats");
}
