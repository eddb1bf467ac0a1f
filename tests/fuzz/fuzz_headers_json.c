/* fuzz_headers_json.c: the dead letters' JSON of a delivery's headers, key
 * and routing key (tp_kafka_json; the AMQP transport's headers_json) from any
 * bytes. The output must be one JSON object that PostgreSQL's jsonb takes:
 * strict JSON, valid UTF-8, no \u0000 and no lone surrogate escapes (jansson
 * refuses all of these by default, as jsonb does), and lossless: each key,
 * routing key and header value that is not shadowed by a later header of the
 * same name decodes back to its bytes (a string, or {"hex": ...}).
 *
 * Input: a mode byte. Even: Kafka: a key chunk (fuzz.h; NULL: no key), a
 * partition byte, then header name and value chunk pairs (a NULL value is a
 * header without one). Odd: AMQP: bit 1 redelivered, a routing key chunk,
 * the rest a basic content header's properties as RabbitMQ encodes them
 * (amqp_decode_properties), whose header table is converted. */
#define _GNU_SOURCE
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <cjson/cJSON.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "fuzz.h"
#include "message.h"
#include "transport_int.h"

static const char hexdigits[] = "0123456789abcdef";

/* v is what tp_json_bytes made of p[0..n). */
static void check_bytes(const char *what, const json_t *v, const void *p, size_t n)
{
    const unsigned char *b = p;
    if (json_is_string(v)) {
        FUZZ_CHECK(msg_utf8_prefix(p, n) == n, "%s: not UTF-8, yet kept as a string", what);
        FUZZ_CHECK(json_string_length(v) == n && memcmp(json_string_value(v), p, n) == 0,
                   "%s: the string is not the bytes", what);
        return;
    }
    FUZZ_CHECK(json_is_object(v) && json_object_size(v) == 1, "%s: neither string nor {hex}", what);
    const json_t *hex = json_object_get(v, "hex");
    FUZZ_CHECK(json_is_string(hex), "%s: no hex", what);
    FUZZ_CHECK(msg_utf8_prefix(p, n) != n, "%s: UTF-8, yet written as hex", what);
    FUZZ_CHECK(json_string_length(hex) == 2 * n, "%s: hex of %zu characters for %zu bytes", what,
               json_string_length(hex), n);
    for (size_t i = 0; i < n; i++) {
        const char *h = json_string_value(hex) + 2 * i;
        FUZZ_CHECK(h[0] == hexdigits[b[i] >> 4] && h[1] == hexdigits[b[i] & 15],
                   "%s: hex differs at byte %zu", what, i);
    }
}

/* Parses text as jsonb would take it; returns the root object, or NULL for
 * the one number form jsonb takes and jansson cannot (below). */
static json_t *strict(const char *text)
{
    json_error_t e;
    json_t *root;

    FUZZ_CHECK(text != NULL, "no JSON (out of memory?)");
    /* COUPOND_FUZZ_JSON_OUT=FILE appends each output as a line, for a check
     * against a real PostgreSQL (docs/development.md, "Fuzzing"). */
    const char *dump = getenv("COUPOND_FUZZ_JSON_OUT");
    if (dump && *dump) {
        FILE *f = fopen(dump, "a");
        FUZZ_CHECK(f != NULL, "cannot append to %s", dump);
        fprintf(f, "%s\n", text);
        fclose(f);
    }
    /* Integers as reals: jsonb takes any number; jansson's int range is not
     * the question. */
    root = json_loads(text, JSON_DECODE_INT_AS_REAL, &e);
    /* cJSON writes a header's DBL_MAX as 1.79769313486232e+308, just above
     * DBL_MAX: jsonb (numeric) takes it, jansson's doubles do not. */
    if (!root && strcmp(e.text, "real number overflow") == 0)
        return NULL;
    FUZZ_CHECK(root != NULL, "not strict JSON (%s at %d): %s", e.text, e.position, text);
    FUZZ_CHECK(json_is_object(root), "not an object: %s", text);
    FUZZ_CHECK(json_is_object(json_object_get(root, "headers")), "no headers object: %s", text);
    return root;
}

/* Whether name[0..n) is shadowed by a later entry (same JSON key). */
static bool shadowed(char *const *keys, size_t i, size_t count)
{
    for (size_t j = i + 1; j < count; j++)
        if (strcmp(keys[i], keys[j]) == 0)
            return true;
    return false;
}

static void kafka(fuzz_reader_t *r)
{
    const uint8_t *key, *name, *value;
    size_t keylen = 0, nlen, vlen, count = 0;
    int partition;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    struct {
        const uint8_t *value;
        size_t vlen;
    } h[64];
    char *keys[64];

    if (fuzz_chunk(r, &key, &keylen) != 0)
        key = NULL;
    partition = fuzz_byte(r);
    while (count < 64 && fuzz_chunk(r, &name, &nlen) == 0 && fuzz_chunk(r, &value, &vlen) == 0) {
        if (!name)
            name = (const uint8_t *)"", nlen = 0;
        FUZZ_CHECK(rd_kafka_header_add(hdrs, (const char *)name, (ssize_t)nlen, value,
                                       value ? (ssize_t)vlen : -1) == 0,
                   "rd_kafka_header_add");
        h[count].value = value;
        h[count].vlen = vlen;
        count++;
    }

    char *text = tp_kafka_json(hdrs, key, keylen, "coupond.l", partition, (int64_t)keylen << 40);
    json_t *root = strict(text), *headers = json_object_get(root, "headers"), *v;
    if (!root)
        goto out;
    const char *hname;
    const void *hvalue;
    size_t i = 0, hsize;

    if (key)
        check_bytes("key", json_object_get(root, "key"), key, keylen);
    else
        FUZZ_CHECK(json_object_get(root, "key") == NULL, "a key without one");
    FUZZ_CHECK(json_real_value(json_object_get(root, "partition")) == partition, "partition");
    FUZZ_CHECK(json_real_value(json_object_get(root, "offset")) == (double)((int64_t)keylen << 40),
               "offset");
    /* librdkafka keeps names up to their first NUL, as the wire's are read. */
    for (i = 0; i < count && rd_kafka_header_get_all(hdrs, i, &hname, &hvalue, &hsize) == 0; i++)
        keys[i] = tp_json_key(hname, strlen(hname));
    FUZZ_CHECK(i == count, "%zu headers read back of %zu", i, count);
    for (i = 0; i < count; i++) {
        FUZZ_CHECK(keys[i] != NULL, "tp_json_key");
        if (shadowed(keys, i, count))
            continue;
        v = json_object_get(headers, keys[i]);
        FUZZ_CHECK(v != NULL, "header %zu (%s) missing", i, keys[i]);
        if (!h[i].value)
            FUZZ_CHECK(json_is_null(v), "header %zu without a value is not null", i);
        else
            check_bytes("header", v, h[i].value, h[i].vlen);
    }
    FUZZ_CHECK(json_object_size(headers) <= count, "more headers than were sent");
    for (i = 0; i < count; i++)
        free(keys[i]);
    json_decref(root);
out:
    cJSON_free(text);
    rd_kafka_headers_destroy(hdrs);
}

static void amqp(int mode, fuzz_reader_t *r)
{
    const uint8_t *rk;
    size_t rklen = 0;
    amqp_envelope_t e;
    amqp_pool_t pool;
    void *decoded = NULL;
    tp_delivery_t d = {0};

    memset(&e, 0, sizeof e);
    init_amqp_pool(&pool, 4096);
    if (fuzz_chunk(r, &rk, &rklen) != 0 || !rk)
        rk = (const uint8_t *)"", rklen = 0;
    e.routing_key.bytes = (void *)rk;
    e.routing_key.len = rklen;
    e.redelivered = (mode >> 1) & 1;
    if (r->n) {
        amqp_bytes_t enc = {r->n, (void *)r->p};
        if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, enc, &decoded) == AMQP_STATUS_OK &&
            decoded)
            e.message.properties = *(amqp_basic_properties_t *)decoded;
    }
    d.raw = &e;

    char *text = tp_amqp_ops.headers_json(NULL, &d);
    json_t *root = strict(text), *headers = json_object_get(root, "headers");

    if (!root) {
        cJSON_free(text);
        empty_amqp_pool(&pool);
        return;
    }
    check_bytes("routing_key", json_object_get(root, "routing_key"), rk, rklen);
    FUZZ_CHECK(json_is_boolean(json_object_get(root, "redelivered")) &&
                   json_is_true(json_object_get(root, "redelivered")) == (e.redelivered != 0),
               "redelivered");
    if (e.message.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
        const amqp_table_t *t = &e.message.properties.headers;
        int n = t->num_entries < 64 ? t->num_entries : 64;
        char *keys[64];
        for (int i = 0; i < n; i++)
            keys[i] = tp_json_key(t->entries[i].key.bytes, t->entries[i].key.len);
        for (int i = 0; i < n; i++) {
            const amqp_field_value_t *fv = &t->entries[i].value;
            if (shadowed(keys, (size_t)i, (size_t)n) || t->num_entries > 64)
                continue;
            json_t *v = json_object_get(headers, keys[i]);
            FUZZ_CHECK(v != NULL, "header %d (%s) missing", i, keys[i]);
            if (fv->kind == AMQP_FIELD_KIND_UTF8 || fv->kind == AMQP_FIELD_KIND_BYTES)
                check_bytes("header", v, fv->value.bytes.bytes, fv->value.bytes.len);
            else if (fv->kind == AMQP_FIELD_KIND_BOOLEAN)
                FUZZ_CHECK(json_is_boolean(v) && json_is_true(v) == (fv->value.boolean != 0),
                           "boolean header");
            else if (fv->kind == AMQP_FIELD_KIND_VOID)
                FUZZ_CHECK(json_is_null(v), "void header");
        }
        for (int i = 0; i < n; i++)
            free(keys[i]);
    } else {
        FUZZ_CHECK(json_object_size(headers) == 0, "headers without the headers flag");
    }
    json_decref(root);
    cJSON_free(text);
    empty_amqp_pool(&pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    int mode = fuzz_byte(&r);

    if (mode < 0)
        return 0;
    if (mode & 1)
        amqp(mode, &r);
    else
        kafka(&r);
    return 0;
}
