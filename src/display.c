/* display.c: what couponctl shows people: untrusted bytes made safe for a
 * terminal, JSON re-indented without touching its tokens, aligned tables,
 * progress bars, and the times operators type and read. */
#define _GNU_SOURCE
#include "display.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* ---- times ---------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly n digits at *p. */
static int take_digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

static int parse_duration(const char *s, int64_t now_us, int64_t *out_us)
{
    char *end;
    long long n;
    int64_t unit;

    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno || end == s || n < 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    switch (*end) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return -1;
    }
    if (n > 100LL * 366 * 86400 / unit) /* a century is plenty */
        return -1;
    *out_us = now_us - (int64_t)n * unit * 1000000;
    return 0;
}

int disp_parse_since(const char *s, int64_t now_us, int64_t *out_us)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
    int64_t frac_us = 0;

    if (!s || !*s)
        return -1;
    if (isdigit((unsigned char)s[0]) && !strchr(s, '-') && !strchr(s, ':'))
        return parse_duration(s, now_us, out_us);
    if (take_digits(&p, 4, &y) || *p++ != '-' || take_digits(&p, 2, &mo) || *p++ != '-' ||
        take_digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (take_digits(&p, 2, &h) || *p++ != ':' || take_digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (take_digits(&p, 2, &sec))
                return -1;
            if (*p == '.') {
                int64_t scale = 100000;
                p++;
                if (!isdigit((unsigned char)*p))
                    return -1;
                for (; isdigit((unsigned char)*p); p++, scale /= 10)
                    frac_us += (*p - '0') * scale;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            sign = *p++ == '+' ? 1 : -1;
            if (take_digits(&p, 2, &oh))
                return -1;
            if (*p == ':')
                p++;
            if (take_digits(&p, 2, &om) || oh > 23 || om > 59)
                return -1;
        }
    }
    if (*p != '\0' || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
        return -1;
    *out_us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
               (int64_t)sign * (oh * 3600 + om * 60)) *
                  1000000 +
              frac_us;
    return 0;
}

void disp_format_us(int64_t us, char *out, size_t outlen)
{
    time_t t = (time_t)(us / 1000000);
    int64_t frac = us % 1000000;
    struct tm tm;

    if (frac < 0) {
        frac += 1000000;
        t--;
    }
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

/* ---- untrusted bytes ------------------------------------------------------ */

/* The length of the well-formed UTF-8 sequence at s (n bytes left), with its
 * code point; 0 when ill-formed (overlong, surrogate, > U+10FFFF, cut). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t c, min;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0)
        len = 2, c = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0)
        len = 3, c = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0)
        len = 4, c = s[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* Characters shown as they are: visible ones. Controls (C0, DEL, C1), soft
 * hyphen, zero-width and direction-changing characters, and tags are not. */
static bool visible(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0xAD)
        return false;
    if ((c >= 0x200B && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) ||
        (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) ||
        (c >= 0xE0000 && c <= 0xE007F))
        return false;
    return true;
}

bool disp_utf8_text(const void *s, size_t len)
{
    const unsigned char *b = s;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_next(b + i, len - i, &c);
        if (n == 0 || c == 0)
            return false;
        i += n;
    }
    return true;
}

enum { SAFE_LINES = 1, SAFE_KEEP_BACKSLASH = 2 };

static void put_safe(FILE *out, const void *s, size_t len, unsigned flags, const char *indent)
{
    const unsigned char *b = s;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = utf8_next(b + i, len - i, &c);
        if (n && c == '\n' && (flags & SAFE_LINES)) {
            fputc('\n', out);
            fputs(indent ? indent : "", out);
        } else if (n && c == '\\' && !(flags & SAFE_KEEP_BACKSLASH)) {
            fputs("\\\\", out);
        } else if (n && c == '\n') {
            fputs("\\n", out);
        } else if (n && c == '\t') {
            fputs("\\t", out);
        } else if (n && c == '\r') {
            fputs("\\r", out);
        } else if (n && visible(c)) {
            fwrite(b + i, 1, n, out);
        } else {
            /* Not shown as itself: every byte of it, escaped. */
            for (size_t k = 0; k < (n ? n : 1); k++)
                fprintf(out, "\\x%02x", b[i + k]);
            n = n ? n : 1;
        }
        i += n;
    }
}

void disp_put_safe(FILE *out, const void *s, size_t len, bool lines, const char *indent)
{
    put_safe(out, s, len, lines ? SAFE_LINES : 0, indent);
}

/* The safe form of a NUL-terminated string, malloc'd (NULL: out of memory). */
char *disp_safe_dup(const char *s)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    put_safe(f, s, strlen(s), 0, NULL);
    fclose(f);
    return buf;
}

static void pretty_newline(FILE *out, const char *indent, int depth)
{
    fputc('\n', out);
    fputs(indent, out);
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
}

static bool json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void disp_put_json_pretty(FILE *out, const void *json, size_t len, const char *indent)
{
    const unsigned char *s = json;
    int depth = 0;

    indent = indent ? indent : "";
    fputs(indent, out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '"') {
            size_t j = i + 1;
            while (j < len && s[j] != '"')
                j += s[j] == '\\' && j + 1 < len ? 2 : 1;
            fputc('"', out);
            put_safe(out, s + i + 1, (j < len ? j : len) - (i + 1), SAFE_KEEP_BACKSLASH, NULL);
            if (j < len)
                fputc('"', out);
            i = j;
        } else if (json_space(c)) {
            continue;
        } else if (c == '{' || c == '[') {
            size_t k = i + 1;
            while (k < len && json_space(s[k]))
                k++;
            fputc(c, out);
            if (k < len && s[k] == (c == '{' ? '}' : ']')) {
                fputc(s[k], out); /* an empty one stays on its line */
                i = k;
                continue;
            }
            pretty_newline(out, indent, ++depth);
        } else if (c == '}' || c == ']') {
            depth = depth > 0 ? depth - 1 : 0;
            pretty_newline(out, indent, depth);
            fputc(c, out);
        } else if (c == ',') {
            fputc(',', out);
            pretty_newline(out, indent, depth);
        } else if (c == ':') {
            fputs(": ", out);
        } else {
            put_safe(out, s + i, 1, 0, NULL);
        }
    }
    fputc('\n', out);
}

/* ---- progress and tables -------------------------------------------------- */

void disp_progress_line(char *out, size_t outlen, size_t done, size_t total, const char *tail,
                        int width)
{
    char count[48];
    int bar, filled, used;

    snprintf(count, sizeof count, "%zu/%zu", done, total);
    bar = width - (int)strlen(count) - 4 - (int)strlen(tail);
    if (bar < 10)
        tail = ""; /* the bar and the count matter most */
    bar = width - (int)strlen(count) - 4 - (int)strlen(tail);
    bar = bar > 40 ? 40 : bar < 10 ? 10 : bar;
    filled = total ? (int)((double)bar * (double)done / (double)total) : bar;
    used = snprintf(out, outlen, "[");
    for (int i = 0; i < bar && used + 2 < (int)outlen; i++)
        out[used++] = i < filled ? '#' : '-';
    snprintf(out + used, outlen - (size_t)used, "] %s%s%s", count, tail[0] ? "  " : "", tail);
    if (width > 0 && strlen(out) > (size_t)width)
        out[width] = '\0';
}

int disp_terminal_width(int fd)
{
    struct winsize ws;
    if (!isatty(fd))
        return 0;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

/* Display columns of a UTF-8 string (one per character). */
static size_t columns(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int disp_table_add(disp_table_t *t, const char *const *row)
{
    char **grown = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *grown);
    if (!grown)
        return -1;
    t->cells = grown;
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = disp_safe_dup(row[c] ? row[c] : "");
    t->nrows++;
    return 0;
}

void disp_table_print(const disp_table_t *t, FILE *out, int width)
{
    size_t w[16] = {0}, used = 0;
    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = columns(t->head[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t n = cell ? columns(cell) : 0;
            w[c] = n > w[c] ? n : w[c];
        }
        if (c + 1 < t->ncols)
            used += w[c] + 2;
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = r == 0 ? t->head[c] : t->cells[(r - 1) * t->ncols + c];
            cell = cell ? cell : "";
            if (c + 1 < t->ncols) {
                fprintf(out, "%s%*s", cell, (int)(w[c] - columns(cell) + 2), "");
                continue;
            }
            /* The last column: cut at a character boundary to fit. */
            size_t room = width > 0 && (size_t)width > used + 4 ? (size_t)width - used : SIZE_MAX;
            if (columns(cell) <= room) {
                fputs(cell, out);
            } else {
                size_t k = 0, cols = 0;
                while (cell[k] && cols < room - 3) {
                    k++;
                    while (((unsigned char)cell[k] & 0xC0) == 0x80)
                        k++;
                    cols++;
                }
                fprintf(out, "%.*s...", (int)k, cell);
            }
        }
        fputc('\n', out);
    }
}

void disp_table_free(disp_table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
}
