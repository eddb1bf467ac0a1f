/* message.c: parsing and validation of the version-1 payment notification. */
#include "message.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inbound bodies are decoded with jansson, not cJSON: cJSON keeps every number
 * as a double and would silently round int64 order ids above 2^53, while
 * jansson keeps integers as json_int_t (long long) and reports overflow. */
#include <jansson.h>

#define MSG_MAX_DEPTH 32 /* deepest nesting of arrays and objects accepted */
#define QUOTE_MAX     40 /* longest excerpt of input quoted in a detail */

static const char *const status_codes[MSG_STATUS_COUNT] = {
    [MSG_OK] = "ok",
    [MSG_E_TOO_LARGE] = "too_large",
    [MSG_E_EMPTY] = "empty",
    [MSG_E_NOT_UTF8] = "not_utf8",
    [MSG_E_JSON] = "malformed_json",
    [MSG_E_NOT_OBJECT] = "not_object",
    [MSG_E_DUPLICATE_FIELD] = "duplicate_field",
    [MSG_E_VERSION] = "unsupported_version",
    [MSG_E_PAYMENT_ID] = "invalid_payment_id",
    [MSG_E_ORDER_ID] = "invalid_order_id",
    [MSG_E_USER_ID] = "invalid_user_id",
    [MSG_E_SHARD] = "shard_mismatch",
    [MSG_E_DEAL_ID] = "invalid_deal_id",
    [MSG_E_QUANTITY] = "invalid_quantity",
    [MSG_E_AMOUNT] = "invalid_amount",
    [MSG_E_CURRENCY] = "invalid_currency",
    [MSG_E_PAID_AT] = "invalid_paid_at",
    [MSG_E_SIG_MISSING] = "missing_signature",
    [MSG_E_SIG_FORMAT] = "malformed_signature",
    [MSG_E_SIG_UNKNOWN_KEY] = "unknown_key_id",
    [MSG_E_SIG_MISMATCH] = "bad_signature",
};

const char *msg_status_code(msg_status_t st)
{
    if ((unsigned)st >= MSG_STATUS_COUNT)
        return "unknown";
    return status_codes[st];
}

msg_status_t msg_status_from_code(const char *code)
{
    if (!code)
        return MSG_STATUS_COUNT;
    for (unsigned i = 0; i < MSG_STATUS_COUNT; i++) {
        if (strcmp(status_codes[i], code) == 0)
            return (msg_status_t)i;
    }
    return MSG_STATUS_COUNT;
}

/* ---- details ---------------------------------------------------------- */

/* Writes an excerpt of untrusted bytes: printable ASCII as is (quotes and
 * backslashes escaped), everything else as \xNN, cut after QUOTE_MAX input
 * bytes with "...". out always ends up NUL-terminated. */
static void quote_bytes(char *out, size_t outlen, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (outlen == 0)
        return;
    for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        char buf[4];
        size_t k = 0;

        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            buf[k++] = (char)c;
        } else {
            buf[k++] = '\\';
            buf[k++] = 'x';
            buf[k++] = hex[c >> 4];
            buf[k++] = hex[c & 15];
        }
        if (o + k >= outlen)
            break;
        memcpy(out + o, buf, k);
        o += k;
    }
    if (n > QUOTE_MAX && o + 3 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static msg_status_t fail(msg_status_t st, char *detail, size_t detlen, const char *fmt, ...)
    CP_PRINTF(4, 5);

/* Formats the detail and returns st. Whatever the format's arguments were, the
 * result is one line of printable ASCII. */
static msg_status_t fail(msg_status_t st, char *detail, size_t detlen, const char *fmt, ...)
{
    va_list ap;

    if (!detail || detlen == 0)
        return st;
    va_start(ap, fmt);
    if (vsnprintf(detail, detlen, fmt, ap) < 0)
        detail[0] = '\0';
    va_end(ap);
    for (char *p = detail; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    }
    return st;
}

/* ---- raw body checks -------------------------------------------------- */

size_t msg_utf8_prefix(const void *body, size_t len)
{
    const unsigned char *p = body;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        unsigned char lo = 0x80, hi = 0xbf;
        size_t more;

        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return i; /* continuation byte, overlong lead C0/C1, or F5..FF */
        }
        if (len - i <= more)
            return i;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= more; k++) {
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return i;
        }
        i += more + 1;
    }
    return len;
}

/* A number literal jansson refuses to hold: an integer outside int64 or a
 * real that overflows a double. */
typedef struct big_number {
    size_t off, len;
} big_number_t;

typedef struct scan {
    int depth;          /* deepest nesting seen */
    size_t nul_escape;  /* offset of a \u0000 escape, or SIZE_MAX */
    big_number_t *bigs; /* malloc'ed; may be NULL when nbigs is 0 */
    size_t nbigs;
} scan_t;

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the JSON number literal at p (RFC 8259 grammar), or 0 when the
 * characters there are not exactly one well-formed number. */
static size_t number_length(const unsigned char *p, size_t n)
{
    size_t i = 0;

    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0') {
        i++;
    } else if (i < n && p[i] >= '1' && p[i] <= '9') {
        while (i < n && is_digit(p[i]))
            i++;
    } else {
        return 0;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    return i;
}

/* Whether jansson would report a numeric overflow for the literal p[0..n):
 * the same tests it applies (strtoll's range for integers; strtod reaching
 * HUGE_VAL for reals, with the locale's decimal point as jansson uses). */
static bool number_overflows(const unsigned char *p, size_t n)
{
    bool integer = true, exponent = false, neg = p[0] == '-', big;
    char small[128], *copy = small, *end;
    const char *point;
    double d;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.')
            integer = false;
        if (p[i] == 'e' || p[i] == 'E') {
            integer = false;
            exponent = true;
        }
    }
    if (integer) {
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;

        for (size_t i = neg ? 1 : 0; i < n; i++) {
            unsigned dig = p[i] - '0';

            if (v > (limit - dig) / 10)
                return true;
            v = v * 10 + dig;
        }
        return false;
    }
    if (!exponent && n < 300)
        return false; /* below 1e300 without an exponent: no need to ask strtod */
    if (n >= sizeof small && !(copy = malloc(n + 1)))
        return false; /* leave it to jansson, which then reports the overflow */
    memcpy(copy, p, n);
    copy[n] = '\0';
    point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && !point[1]) {
        char *dot = strchr(copy, '.');

        if (dot)
            *dot = point[0];
    }
    errno = 0;
    d = strtod(copy, &end);
    big = (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
    if (copy != small)
        free(copy);
    return big;
}

/* Scans the body outside of jansson for what jansson does not check the way
 * we want: nesting depth (its own limit is 2048), \u0000 escapes, and number
 * literals it would refuse as overflowing. Returns -1 on memory shortage. */
static int scan_body(const unsigned char *p, size_t n, scan_t *s)
{
    size_t cap = 0;
    int depth = 0;

    s->depth = 0;
    s->nul_escape = SIZE_MAX;
    s->bigs = NULL;
    s->nbigs = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];

        if (c == '"') {
            for (i++; i < n && p[i] != '"'; i++) {
                if (p[i] != '\\')
                    continue;
                if (i + 5 < n && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4) == 0 &&
                    s->nul_escape == SIZE_MAX)
                    s->nul_escape = i;
                i++; /* skip the escaped character */
            }
        } else if (c == '[' || c == '{') {
            if (++depth > s->depth)
                s->depth = depth;
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        } else if (c == '-' || is_digit(c)) {
            size_t len = number_length(p + i, n - i);

            if (len == 0)
                continue; /* not a number; jansson will say what it is */
            if (number_overflows(p + i, len)) {
                if (s->nbigs == cap) {
                    size_t ncap = cap ? cap * 2 : 8;
                    big_number_t *nb = realloc(s->bigs, ncap * sizeof *nb);

                    if (!nb)
                        return -1;
                    s->bigs = nb;
                    cap = ncap;
                }
                s->bigs[s->nbigs].off = i;
                s->bigs[s->nbigs].len = len;
                s->nbigs++;
            }
            i += len - 1;
        }
    }
    return 0;
}

/* A copy of the body in which every overflowing number literal is replaced by
 * a string whose first character is NUL followed by the literal: since the
 * body has no \u0000 escapes of its own, such strings mark those numbers
 * unambiguously, and the field rules can report "out of range" against the
 * right field instead of failing the whole message. */
#define BIG_PREFIX     "\"\\u0000"
#define BIG_PREFIX_LEN (sizeof(BIG_PREFIX) - 1)
#define BIG_EXTRA      (BIG_PREFIX_LEN + 1)

static char *substitute_bigs(const unsigned char *p, size_t n, const scan_t *s, size_t *outlen)
{
    size_t total = n + s->nbigs * BIG_EXTRA, o = 0, from = 0;
    char *out = malloc(total);

    if (!out)
        return NULL;
    for (size_t k = 0; k < s->nbigs; k++) {
        const big_number_t *b = &s->bigs[k];

        memcpy(out + o, p + from, b->off - from);
        o += b->off - from;
        memcpy(out + o, BIG_PREFIX, BIG_PREFIX_LEN);
        o += BIG_PREFIX_LEN;
        memcpy(out + o, p + b->off, b->len);
        o += b->len;
        out[o++] = '"';
        from = b->off + b->len;
    }
    memcpy(out + o, p + from, n - from);
    o += n - from;
    *outlen = o;
    return out;
}

/* Maps an offset in the substituted copy back to the original body. */
static size_t original_offset(const scan_t *s, size_t pos)
{
    size_t shift = 0;

    for (size_t k = 0; k < s->nbigs; k++) {
        size_t start = s->bigs[k].off + shift; /* where the marker string begins */

        if (pos <= start)
            break;
        if (pos < start + s->bigs[k].len + BIG_EXTRA)
            return s->bigs[k].off;
        shift += BIG_EXTRA;
    }
    return pos - shift;
}

/* Finds the string token that ends (closing quote included) just before
 * offset end; returns its start or SIZE_MAX. Used to name a duplicate key. */
static size_t string_ending_at(const char *p, size_t n, size_t end)
{
    for (size_t i = 0; i < n && i < end; i++) {
        if (p[i] != '"')
            continue;
        size_t start = i;

        for (i++; i < n && p[i] != '"'; i++) {
            if (p[i] == '\\')
                i++;
        }
        if (i + 1 == end)
            return start;
    }
    return SIZE_MAX;
}

static bool is_big(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0 && json_string_value(v)[0] == '\0';
}

/* One known field's value as the rules see it, whichever parser found it:
 * an integer, a string (no NUL in it), something else (only from jansson:
 * json says what), or missing. */
typedef enum field_kind { F_MISSING = 0, F_INT, F_STR, F_OTHER } field_kind_t;

typedef struct field {
    field_kind_t kind;
    int64_t i;          /* F_INT */
    const char *s;      /* F_STR: its bytes, not NUL-terminated */
    size_t n;           /* F_STR: their number */
    const json_t *json; /* jansson's value, when jansson decoded the body */
} field_t;

/* The fields the rules read, in the order of DESIGN's table. */
enum {
    FLD_V,
    FLD_PAYMENT_ID,
    FLD_ORDER_ID,
    FLD_USER_ID,
    FLD_DEAL_ID,
    FLD_QUANTITY,
    FLD_AMOUNT,
    FLD_CURRENCY,
    FLD_PAID_AT,
    FLD_COUNT
};

#define FIELD_NAME(s)                                                                              \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
static const struct {
    const char *s;
    size_t n;
} field_names[FLD_COUNT] = {
    [FLD_V] = FIELD_NAME("v"),
    [FLD_PAYMENT_ID] = FIELD_NAME("payment_id"),
    [FLD_ORDER_ID] = FIELD_NAME("order_id"),
    [FLD_USER_ID] = FIELD_NAME("user_id"),
    [FLD_DEAL_ID] = FIELD_NAME("deal_id"),
    [FLD_QUANTITY] = FIELD_NAME("quantity"),
    [FLD_AMOUNT] = FIELD_NAME("amount_cents"),
    [FLD_CURRENCY] = FIELD_NAME("currency"),
    [FLD_PAID_AT] = FIELD_NAME("paid_at"),
};

/* The known fields of an object jansson decoded. */
static void fields_from_json(const json_t *root, field_t *f)
{
    for (int k = 0; k < FLD_COUNT; k++) {
        const json_t *v = json_object_get(root, field_names[k].s);

        f[k] = (field_t){.json = v};
        if (!v) {
            f[k].kind = F_MISSING;
        } else if (json_is_integer(v)) {
            f[k].kind = F_INT;
            f[k].i = (int64_t)json_integer_value(v);
        } else if (json_is_string(v) && !is_big(v)) {
            f[k].kind = F_STR;
            f[k].s = json_string_value(v);
            f[k].n = json_string_length(v);
        } else {
            f[k].kind = F_OTHER;
        }
    }
}

/* ---- value descriptions ----------------------------------------------- */

/* Shortest %g form that reads back as the same double, always showing that it
 * is a real ("1.0", not "1"). */
static void format_real(char *out, size_t outlen, double d)
{
    if (!isfinite(d)) {
        snprintf(out, outlen, "%s", isnan(d) ? "nan" : "inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    if (!strpbrk(out, ".eE,")) {
        size_t l = strlen(out);

        if (l + 2 < outlen)
            memcpy(out + l, ".0", 3);
    }
}

/* Describes a JSON value for a detail: what was found instead. */
static void describe_json(char *out, size_t outlen, const json_t *v)
{
    char q[QUOTE_MAX * 4 + 8];

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        snprintf(out, outlen, "an object");
        break;
    case JSON_ARRAY:
        snprintf(out, outlen, "an array");
        break;
    case JSON_STRING:
        if (is_big(v)) {
            quote_bytes(q, sizeof q, json_string_value(v) + 1, json_string_length(v) - 1);
            snprintf(out, outlen, "%s (out of range)", q);
        } else {
            quote_bytes(q, sizeof q, json_string_value(v), json_string_length(v));
            snprintf(out, outlen, "string \"%s\"", q);
        }
        break;
    case JSON_INTEGER:
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        format_real(out, outlen, json_real_value(v));
        break;
    case JSON_TRUE:
        snprintf(out, outlen, "true");
        break;
    case JSON_FALSE:
        snprintf(out, outlen, "false");
        break;
    case JSON_NULL:
    default:
        snprintf(out, outlen, "null");
        break;
    }
}

static void describe(char *out, size_t outlen, const field_t *f)
{
    char q[QUOTE_MAX * 4 + 8];

    if (f->json) {
        describe_json(out, outlen, f->json);
    } else if (f->kind == F_INT) {
        snprintf(out, outlen, "%" PRId64, f->i);
    } else {
        quote_bytes(q, sizeof q, f->s, f->n);
        snprintf(out, outlen, "string \"%s\"", q);
    }
}

/* ---- field rules ------------------------------------------------------ */

/* An integer field within [min, max]; rule is the wording of the detail. */
static msg_status_t get_int(const field_t *f, int k, int64_t min, int64_t max, const char *rule,
                            msg_status_t st, int64_t *out, char *detail, size_t detlen)
{
    const field_t *v = &f[k];
    const char *name = field_names[k].s;
    char got[QUOTE_MAX * 4 + 32];

    if (v->kind == F_MISSING)
        return fail(st, detail, detlen, "%s: missing", name);
    if (v->kind == F_INT && v->i >= min && v->i <= max) {
        *out = v->i;
        return MSG_OK;
    }
    describe(got, sizeof got, v);
    return fail(st, detail, detlen, "%s: must be %s, got %s", name, rule, got);
}

static bool is_id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' ||
           c == '_' || c == '-';
}

static msg_status_t check_payment_id(const field_t *v, msg_payment_t *out, char *detail,
                                     size_t detlen)
{
    char got[QUOTE_MAX * 4 + 32];
    const char *s = v->s;
    size_t n = v->n;

    if (v->kind == F_MISSING)
        return fail(MSG_E_PAYMENT_ID, detail, detlen, "payment_id: missing");
    if (v->kind != F_STR) {
        describe(got, sizeof got, v);
        return fail(MSG_E_PAYMENT_ID, detail, detlen, "payment_id: must be a string, got %s", got);
    }
    if (n == 0)
        return fail(MSG_E_PAYMENT_ID, detail, detlen, "payment_id: must not be empty");
    if (n > MSG_PAYMENT_ID_MAX)
        return fail(MSG_E_PAYMENT_ID, detail, detlen,
                    "payment_id: must be at most %d characters, got %zu bytes", MSG_PAYMENT_ID_MAX,
                    n);
    for (size_t i = 0; i < n; i++) {
        if (!is_id_char((unsigned char)s[i])) {
            quote_bytes(got, sizeof got, s, n);
            return fail(MSG_E_PAYMENT_ID, detail, detlen,
                        "payment_id: must contain only [A-Za-z0-9._-], got \"%s\"", got);
        }
    }
    memcpy(out->payment_id, s, n);
    out->payment_id[n] = '\0';
    return MSG_OK;
}

static msg_status_t check_currency(const field_t *v, msg_payment_t *out, char *detail,
                                   size_t detlen)
{
    char got[QUOTE_MAX * 4 + 32];
    const char *s = v->s;

    if (v->kind == F_MISSING)
        return fail(MSG_E_CURRENCY, detail, detlen, "currency: missing");
    if (v->kind == F_STR && v->n == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
        s[2] >= 'A' && s[2] <= 'Z') {
        memcpy(out->currency, s, 3);
        out->currency[3] = '\0';
        return MSG_OK;
    }
    describe(got, sizeof got, v);
    return fail(MSG_E_CURRENCY, detail, detlen,
                "currency: must be three upper-case letters A-Z, got %s", got);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so that no time-zone state (timegm, TZ) is involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return 29;
    return mdays[m - 1];
}

/* Reads n decimal digits at s; -1 when one is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

#define PAID_AT_FORMAT "YYYY-MM-DDTHH:MM:SS[.fraction]Z"

static msg_status_t check_paid_at(const field_t *v, msg_payment_t *out, char *detail, size_t detlen)
{
    char got[QUOTE_MAX * 4 + 32];
    int year, mon, day, hour, min, sec;
    int64_t frac_us = 0, secs;
    const char *s = v->s;
    size_t n = v->n, i;

    if (v->kind == F_MISSING)
        return fail(MSG_E_PAID_AT, detail, detlen, "paid_at: missing");
    if (v->kind != F_STR) {
        describe(got, sizeof got, v);
        return fail(MSG_E_PAID_AT, detail, detlen,
                    "paid_at: must be an RFC 3339 UTC string, got %s", got);
    }
    quote_bytes(got, sizeof got, s, n);
    /* The shape first: digits and separators exactly where RFC 3339 puts them,
     * upper-case T and Z only, no offset other than Z. */
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        (year = digits(s, 4)) < 0 || (mon = digits(s + 5, 2)) < 0 || (day = digits(s + 8, 2)) < 0 ||
        (hour = digits(s + 11, 2)) < 0 || (min = digits(s + 14, 2)) < 0 ||
        (sec = digits(s + 17, 2)) < 0)
        return fail(MSG_E_PAID_AT, detail, detlen,
                    "paid_at: must be " PAID_AT_FORMAT ", got \"%s\"", got);
    i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        int64_t scale = 100000;

        while (i < n && is_digit((unsigned char)s[i])) {
            frac_us += (s[i] - '0') * scale; /* digits past microseconds truncate */
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9)
            return fail(MSG_E_PAID_AT, detail, detlen,
                        "paid_at: fraction of a second must have 1 to 9 digits, got \"%s\"", got);
    }
    if (i + 1 != n || s[i] != 'Z')
        return fail(MSG_E_PAID_AT, detail, detlen,
                    "paid_at: must be UTC, ending in Z (" PAID_AT_FORMAT "), got \"%s\"", got);
    if (year < 1970)
        return fail(MSG_E_PAID_AT, detail, detlen, "paid_at: year must be 1970 to 9999, got \"%s\"",
                    got);
    if (mon < 1 || mon > 12)
        return fail(MSG_E_PAID_AT, detail, detlen, "paid_at: month must be 01 to 12, got \"%s\"",
                    got);
    if (day < 1 || (unsigned)day > days_in_month((unsigned)year, (unsigned)mon))
        return fail(MSG_E_PAID_AT, detail, detlen, "paid_at: no such date %04d-%02d-%02d", year,
                    mon, day);
    if (hour > 23 || min > 59 || sec > 59)
        return fail(MSG_E_PAID_AT, detail, detlen,
                    "paid_at: time must be 00:00:00 to 23:59:59 (no leap seconds), got \"%s\"",
                    got);
    secs =
        days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + hour * 3600 + min * 60 + sec;
    out->paid_at_us = secs * 1000000 + frac_us;
    memcpy(out->paid_at, s, n); /* n <= 30 here, the buffer holds 40 */
    out->paid_at[n] = '\0';
    return MSG_OK;
}

/* ---- the fast path ---------------------------------------------------- */

/* Notifications are almost always a flat object of plain strings and
 * integers. fast_fields decodes exactly those in one pass, without building a
 * DOM, and finds exactly what jansson would: strings without escapes or
 * control characters, integers of at most 18 digits (no overflow possible),
 * true, false and null for fields the rules do not read, no nested values,
 * no duplicate keys. Anything else, every malformed body included, it leaves
 * to the full parser, which alone writes decoding errors; the field rules
 * then run on either parser's fields alike. The body is already known to be
 * valid UTF-8 without NUL bytes. */
#define FAST_MAX_KEYS 32

static size_t skip_ws(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* The end (past the closing quote) of a string without escapes or control
 * characters whose opening quote is p[i], or 0. */
static size_t plain_string(const unsigned char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '"')
            return i + 1;
        if (p[i] == '\\' || p[i] < 0x20)
            return 0;
    }
    return 0;
}

/* Which known field a key names, or -1. */
static int field_index(const unsigned char *key, size_t n)
{
    for (int k = 0; k < FLD_COUNT; k++) {
        if (field_names[k].n == n && memcmp(field_names[k].s, key, n) == 0)
            return k;
    }
    return -1;
}

/* Length of the literal true, false or null at p, or 0. */
static size_t literal_length(const unsigned char *p, size_t n)
{
    if (n >= 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0))
        return 4;
    return n >= 5 && memcmp(p, "false", 5) == 0 ? 5 : 0;
}

static bool fast_fields(const unsigned char *p, size_t n, field_t *f)
{
    struct {
        const unsigned char *s;
        size_t n;
    } keys[FAST_MAX_KEYS];
    size_t nkeys = 0, i = skip_ws(p, n, 0), end;

    memset(f, 0, FLD_COUNT * sizeof *f);
    if (i >= n || p[i] != '{')
        return false;
    i = skip_ws(p, n, i + 1);
    for (;;) {
        field_t v = {.kind = F_OTHER};
        const unsigned char *key = p + i + 1;
        size_t klen;
        int known;

        if (i >= n || p[i] != '"' || !(end = plain_string(p, n, i)) || nkeys == FAST_MAX_KEYS)
            return false;
        klen = end - i - 2;
        for (size_t k = 0; k < nkeys; k++) {
            if (keys[k].n == klen && memcmp(keys[k].s, key, klen) == 0)
                return false;
        }
        keys[nkeys].s = key;
        keys[nkeys++].n = klen;
        known = field_index(key, klen);
        i = skip_ws(p, n, end);
        if (i >= n || p[i] != ':')
            return false;
        i = skip_ws(p, n, i + 1);
        if (i >= n)
            return false;
        if (p[i] == '"') {
            if (!(end = plain_string(p, n, i)))
                return false;
            v = (field_t){.kind = F_STR, .s = (const char *)p + i + 1, .n = end - i - 2};
        } else if (p[i] == '-' || is_digit(p[i])) {
            size_t neg = p[i] == '-', len = number_length(p + i, n - i);
            if (len <= neg || len - neg > 18)
                return false;
            v.kind = F_INT;
            for (size_t d = i + neg; d < i + len; d++) {
                if (!is_digit(p[d]))
                    return false; /* a fraction or an exponent: a real */
                v.i = v.i * 10 + (p[d] - '0');
            }
            if (neg)
                v.i = -v.i;
            end = i + len;
        } else if (known < 0 && (end = literal_length(p + i, n - i)) > 0) {
            end += i;
        } else {
            return false; /* nested, a literal the rules read, or malformed */
        }
        if (known >= 0)
            f[known] = v;
        i = skip_ws(p, n, end);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, n, i + 1);
            continue;
        }
        if (i < n && p[i] == '}')
            return skip_ws(p, n, i + 1) == n;
        return false;
    }
}

/* ---- the parser -------------------------------------------------------- */

/* Rules that need the decoded object, in the order DESIGN's table lists them;
 * the cross-field shard rule comes after every field is known to be valid. */
static msg_status_t check_fields(const field_t *f, int max_version, msg_payment_t *out,
                                 char *detail, size_t detlen)
{
    const field_t *v = &f[FLD_V];
    char got[QUOTE_MAX * 4 + 32];
    msg_status_t st;
    int64_t i64 = 0;

    if (max_version < 1)
        max_version = 1;
    out->version = 1;
    if (v->kind != F_MISSING) {
        if (v->kind != F_INT) {
            describe(got, sizeof got, v);
            return fail(MSG_E_VERSION, detail, detlen, "v: must be an integer 1 to %d, got %s",
                        max_version, got);
        }
        if (v->i < 1 || v->i > max_version)
            return fail(MSG_E_VERSION, detail, detlen,
                        "v: version %" PRId64 " not supported (accepting 1 to %d)", v->i,
                        max_version);
        out->version = (int)v->i;
    }
    if ((st = check_payment_id(&f[FLD_PAYMENT_ID], out, detail, detlen)) != MSG_OK)
        return st;
    if ((st = get_int(f, FLD_ORDER_ID, 1, INT64_MAX, "an integer > 0", MSG_E_ORDER_ID,
                      &out->order_id, detail, detlen)) != MSG_OK)
        return st;
    if ((st = get_int(f, FLD_USER_ID, 1, INT64_MAX, "an integer > 0", MSG_E_USER_ID, &out->user_id,
                      detail, detlen)) != MSG_OK)
        return st;
    if ((st = get_int(f, FLD_DEAL_ID, 1, INT64_MAX, "an integer > 0", MSG_E_DEAL_ID, &out->deal_id,
                      detail, detlen)) != MSG_OK)
        return st;
    if ((st = get_int(f, FLD_QUANTITY, 1, 100, "an integer 1 to 100", MSG_E_QUANTITY, &i64, detail,
                      detlen)) != MSG_OK)
        return st;
    out->quantity = (int32_t)i64;
    if ((st = get_int(f, FLD_AMOUNT, 1, INT64_MAX, "an integer > 0", MSG_E_AMOUNT,
                      &out->amount_cents, detail, detlen)) != MSG_OK)
        return st;
    if ((st = check_currency(&f[FLD_CURRENCY], out, detail, detlen)) != MSG_OK)
        return st;
    if ((st = check_paid_at(&f[FLD_PAID_AT], out, detail, detlen)) != MSG_OK)
        return st;
    if (out->order_id % 100 != out->user_id % 100)
        return fail(MSG_E_SHARD, detail, detlen,
                    "order_id %" PRId64 " is in shard %02d but user_id %" PRId64
                    " is in shard %02d (order_id %% 100 must equal user_id %% 100)",
                    out->order_id, (int)(out->order_id % 100), out->user_id,
                    (int)(out->user_id % 100));
    return MSG_OK;
}

/* Turns a jansson decoding failure into a status and detail. text is the
 * decoded buffer (the body or its substituted copy) and s maps its offsets
 * back to the body's. */
static msg_status_t decode_error(const json_error_t *err, const char *text, size_t n,
                                 const scan_t *s, char *detail, size_t detlen)
{
    char q[JSON_ERROR_TEXT_LENGTH * 4];
    size_t pos = err->position > 0 ? (size_t)err->position : 0;

    if (json_error_code(err) == json_error_duplicate_key) {
        size_t start = string_ending_at(text, n, pos);

        if (start != SIZE_MAX) {
            quote_bytes(q, sizeof q, text + start + 1, pos - start - 2);
            return fail(MSG_E_DUPLICATE_FIELD, detail, detlen, "duplicate key \"%s\" at byte %zu",
                        q, original_offset(s, start));
        }
        return fail(MSG_E_DUPLICATE_FIELD, detail, detlen, "duplicate key at byte %zu",
                    original_offset(s, pos));
    }
    quote_bytes(q, sizeof q, err->text, strnlen(err->text, sizeof err->text));
    return fail(MSG_E_JSON, detail, detlen, "malformed JSON at line %d, near byte %zu: %s",
                err->line, original_offset(s, pos), q);
}

static msg_status_t parse(const void *body, size_t len, int max_version, msg_payment_t *out,
                          char *detail, size_t detlen, bool fast)
{
    const unsigned char *p = body;
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;
    msg_payment_t scratch;
    scan_t scan = {0};
    json_error_t err;
    json_t *root = NULL;
    field_t fields[FLD_COUNT];
    char *subst = NULL;
    size_t bad;
    msg_status_t st;

    if (detail && detlen > 0)
        detail[0] = '\0';
    if (!out)
        out = &scratch;
    memset(out, 0, sizeof *out);

    if (len > MSG_MAX_BYTES)
        return fail(MSG_E_TOO_LARGE, detail, detlen, "body is %zu bytes, the limit is %d", len,
                    MSG_MAX_BYTES);
    if (len == 0 || !p)
        return fail(MSG_E_EMPTY, detail, detlen, "body is empty");
    if ((bad = msg_utf8_prefix(p, len)) < len) {
        if (p[bad] == 0)
            return fail(MSG_E_NOT_UTF8, detail, detlen, "NUL byte at byte %zu", bad);
        return fail(MSG_E_NOT_UTF8, detail, detlen, "invalid UTF-8 at byte %zu (0x%02x)", bad,
                    p[bad]);
    }
    if (fast && fast_fields(p, len, fields))
        return check_fields(fields, max_version, out, detail, detlen);
    if (scan_body(p, len, &scan) < 0) {
        st = fail(MSG_E_JSON, detail, detlen, "out of memory scanning the body");
        goto out;
    }
    if (scan.depth > MSG_MAX_DEPTH) {
        st = fail(MSG_E_JSON, detail, detlen, "nesting deeper than %d levels (%d)", MSG_MAX_DEPTH,
                  scan.depth);
        goto out;
    }
    if (scan.nul_escape != SIZE_MAX) {
        st = fail(MSG_E_JSON, detail, detlen, "\\u0000 escape in a string at byte %zu",
                  scan.nul_escape);
        goto out;
    }

    if (scan.nbigs == 0) {
        root = json_loadb(body, len, flags, &err);
        if (!root) {
            st = decode_error(&err, body, len, &scan, detail, detlen);
            goto out;
        }
    } else {
        size_t slen;

        subst = substitute_bigs(p, len, &scan, &slen);
        if (!subst) {
            st = fail(MSG_E_JSON, detail, detlen, "out of memory decoding the body");
            goto out;
        }
        root = json_loadb(subst, slen, flags | JSON_ALLOW_NUL, &err);
        if (!root) {
            st = decode_error(&err, subst, slen, &scan, detail, detlen);
            goto out;
        }
    }
    if (!json_is_object(root)) {
        char got[QUOTE_MAX * 4 + 32];

        describe_json(got, sizeof got, root);
        st = fail(MSG_E_NOT_OBJECT, detail, detlen, "top level must be an object, got %s", got);
        goto out;
    }
    fields_from_json(root, fields);
    st = check_fields(fields, max_version, out, detail, detlen);

out:
    json_decref(root);
    free(subst);
    free(scan.bigs);
    return st;
}

msg_status_t msg_parse(const void *body, size_t len, int max_version, msg_payment_t *out,
                       char *detail, size_t detlen)
{
    return parse(body, len, max_version, out, detail, detlen, true);
}

msg_status_t msg_parse_reference(const void *body, size_t len, int max_version, msg_payment_t *out,
                                 char *detail, size_t detlen)
{
    return parse(body, len, max_version, out, detail, detlen, false);
}

void msg_format_time(int64_t us, char *out, size_t outlen)
{
    int64_t secs = us / 1000000, rem = us % 1000000, days, sod, y;
    unsigned m, d;

    if (!out || outlen == 0)
        return;
    if (rem < 0) {
        rem += 1000000;
        secs--;
    }
    days = secs / 86400;
    sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    snprintf(out, outlen, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d,
             (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), (int)(rem / 1000));
}
