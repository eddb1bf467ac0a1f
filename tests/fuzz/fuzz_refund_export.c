/* fuzz_refund_export.c: the refund export's writers (fin_csv_field,
 * fin_json_string) round-tripped through strict parsers: a row of fields
 * written as the export writes it (fields joined by ",", the record ended by
 * CRLF) must read back field for field with an RFC 4180 reader; each field
 * that is UTF-8 without NUL (what a PostgreSQL text column holds) must read
 * back from its JSON string with jansson.
 *
 * Input: fields separated by the byte 0x1f (at most 16; the rest is one
 * field). */
#define _GNU_SOURCE
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "finance.h"
#include "fuzz.h"
#include "message.h"

#define MAX_FIELDS 16

typedef struct field {
    const char *p;
    size_t n;
} field_t;

/* RFC 4180, strictly: fields are plain (no quote inside) or quoted (quotes
 * doubled, anything else as is, the closing quote followed by a comma or the
 * end of the record); a record ends with CRLF. Reads one record from
 * text[0..len) into out (copies into buf), which must be all of text.
 * Returns the number of fields, or -1 (with why) when text is not one valid
 * record. */
static int csv_read(const char *text, size_t len, char *buf, field_t *out, int max,
                    const char **why)
{
    size_t i = 0, o = 0;
    int nf = 0;

    for (;;) {
        size_t start = o;
        if (nf == max) {
            *why = "too many fields";
            return -1;
        }
        if (i < len && text[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) {
                    *why = "unterminated quoted field";
                    return -1;
                }
                if (text[i] == '"') {
                    if (i + 1 < len && text[i + 1] == '"') {
                        buf[o++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                buf[o++] = text[i++];
            }
        } else {
            while (i < len && text[i] != ',' && text[i] != '\r' && text[i] != '\n') {
                if (text[i] == '"') {
                    *why = "a quote inside an unquoted field";
                    return -1;
                }
                buf[o++] = text[i++];
            }
        }
        out[nf].p = buf + start;
        out[nf].n = o - start;
        nf++;
        if (i < len && text[i] == ',') {
            i++;
            continue;
        }
        if (i + 2 == len && text[i] == '\r' && text[i + 1] == '\n')
            return nf;
        *why = i + 2 < len ? "data after a field" : "the record does not end with CRLF";
        return -1;
    }
}

static void check_json(const field_t *f)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    json_error_t e;
    json_t *v;

    FUZZ_CHECK(out != NULL, "open_memstream");
    fin_json_string(out, f->p, f->n);
    fclose(out);
    if (msg_utf8_prefix(f->p, f->n) != f->n) {
        /* Not text PostgreSQL could hold: only no overrun is asked. */
        free(text);
        return;
    }
    v = json_loadb(text, len, JSON_DECODE_ANY, &e);
    FUZZ_CHECK(v != NULL, "not JSON (%s at %d): %s", e.text, e.position, text);
    FUZZ_CHECK(json_is_string(v), "not a string: %s", text);
    FUZZ_CHECK(json_string_length(v) == f->n && memcmp(json_string_value(v), f->p, f->n) == 0,
               "the JSON string does not read back: %s", text);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK((unsigned char)text[i] >= 0x20 && text[i] != 0x7f,
                   "a control byte 0x%02x written raw", (unsigned char)text[i]);
    json_decref(v);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    field_t in[MAX_FIELDS], back[MAX_FIELDS];
    const char *p = (const char *)data, *end = p + size, *why = "";
    int n = 0, got;
    char *text = NULL, *buf;
    size_t len = 0;
    FILE *out;

    while (n < MAX_FIELDS - 1) {
        const char *sep = memchr(p, 0x1f, (size_t)(end - p));
        if (!sep)
            break;
        in[n].p = p;
        in[n++].n = (size_t)(sep - p);
        p = sep + 1;
    }
    in[n].p = p;
    in[n++].n = (size_t)(end - p);

    out = open_memstream(&text, &len);
    FUZZ_CHECK(out != NULL, "open_memstream");
    for (int i = 0; i < n; i++) {
        if (i)
            putc(',', out);
        fin_csv_field(out, in[i].p, in[i].n);
    }
    fputs("\r\n", out);
    fclose(out);

    buf = malloc(len + 1);
    FUZZ_CHECK(buf != NULL, "malloc");
    got = csv_read(text, len, buf, back, MAX_FIELDS, &why);
    FUZZ_CHECK(got >= 0, "the CSV record does not parse: %s", why);
    /* One empty field is an empty line, which RFC 4180 readers skip; the
     * export always writes nine. */
    FUZZ_CHECK(got == n, "%d fields written, %d read", n, got);
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(back[i].n == in[i].n && memcmp(back[i].p, in[i].p, in[i].n) == 0,
                   "field %d does not read back", i);
    free(buf);
    free(text);

    for (int i = 0; i < n; i++)
        check_json(&in[i]);
    return 0;
}
