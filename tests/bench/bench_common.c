/* bench_common.c: helpers shared by the benchmark programs; see
 * bench_common.h. */
#define _GNU_SOURCE
#include "bench_common.h"

#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct option bench_longopts[] = {
    {"set", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, int n)
{
    double s[BENCH_MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double bench_pct(const double *sorted, size_t n, double p)
{
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return n ? sorted[k] : 0;
}

int bench_add_set(char **sets, int *nsets, char *arg)
{
    if (*nsets == BENCH_MAX_SETS)
        return -1;
    sets[(*nsets)++] = arg;
    return 0;
}

int bench_cfg_load(cfg_t *cfg, const char *prog, const char *config, char **sets, int nsets,
                   const char *noconf)
{
    char err[CP_ERRLEN];

    if (!cfg_locate(config)) {
        fprintf(stderr, "%s: %s\n", prog, noconf);
        return CP_EXIT_USAGE;
    }
    if (cfg_load(cfg, cfg_locate(config), sets, nsets, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return CP_EXIT_USAGE;
    }
    return 0;
}

ssize_t bench_read_line(FILE *in, char **line, size_t *cap)
{
    ssize_t len;

    while ((len = getline(line, cap, in)) > 0) {
        while (len > 0 && ((*line)[len - 1] == '\n' || (*line)[len - 1] == '\r'))
            len--;
        if (len > 0)
            return len;
    }
    return -1;
}

void *bench_grow(void *p, size_t *ncap, size_t size)
{
    *ncap = *ncap ? 2 * *ncap : 4096;
    return realloc(p, *ncap * size);
}

/* ------------------------------------------------------------ RabbitMQ */

int bench_amqp_ok(const char *prog, bool detail, amqp_connection_state_t conn, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        fprintf(stderr, "%s: %s: %s\n", prog, what, amqp_error_string2(r.library_error));
    } else if (!detail) {
        fprintf(stderr, "%s: %s: refused by the broker\n", prog, what);
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
               r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *c = r.reply.decoded;
        fprintf(stderr, "%s: %s: %u %.*s\n", prog, what, c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes);
    } else {
        fprintf(stderr, "%s: %s: failed\n", prog, what);
    }
    return -1;
}

amqp_connection_state_t bench_amqp_open(const char *prog, bool detail, const cfg_amqp_t *a,
                                        bool confirms)
{
    struct amqp_connection_info info;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    char *url = strdup(a->url);

    if (!url || amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        fprintf(stderr, "%s: cannot parse the AMQP URL\n", prog);
        goto fail;
    }
    if (!sock || amqp_socket_open(sock, info.host, info.port) != AMQP_STATUS_OK) {
        fprintf(stderr, "%s: cannot connect to %s:%d\n", prog, info.host, info.port);
        goto fail;
    }
    if (amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                   a->password ? a->password : info.password)
            .reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "%s: AMQP login failed\n", prog);
        goto fail;
    }
    amqp_channel_open(conn, 1);
    if (bench_amqp_ok(prog, detail, conn, "opening a channel") != 0)
        goto fail;
    if (confirms) {
        amqp_confirm_select(conn, 1);
        if (bench_amqp_ok(prog, detail, conn, "confirm.select") != 0)
            goto fail;
    }
    free(url);
    return conn;
fail:
    free(url);
    amqp_destroy_connection(conn);
    return NULL;
}

void bench_amqp_close(amqp_connection_state_t conn)
{
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

amqp_table_entry_t bench_amqp_entry_str(const char *key, const char *value)
{
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes(value);
    return e;
}

void bench_amqp_note_props(amqp_basic_properties_t *props, amqp_table_entry_t *header)
{
    memset(props, 0, sizeof *props);
    props->_flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props->content_type = amqp_cstring_bytes("application/json");
    props->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props->headers = (amqp_table_t){1, header};
}

void bench_settle(unsigned char *done, size_t n, uint64_t *floor, uint64_t tag, bool multiple,
                  size_t *settled)
{
    uint64_t first = multiple ? *floor : tag;
    for (uint64_t t = first; t <= tag && t <= n; t++) {
        if (!done[t - 1]) {
            done[t - 1] = 1;
            (*settled)++;
        }
    }
    if (multiple && tag + 1 > *floor)
        *floor = tag + 1;
}
