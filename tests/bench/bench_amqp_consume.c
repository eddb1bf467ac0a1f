/* bench_amqp_consume.c: the raw RabbitMQ consume-and-ack ceiling for the W
 * lane. Per round: declares a fresh quorum queue like the W work queue,
 * fills it with the notifications of FILE (persistent, `signature` header,
 * the same bytes coupond publishes; publisher confirms, not timed), then
 * drains it with a bare rabbitmq-c consumer working the way the W lane's
 * transport does (src/transport_amqp.c): basic.qos prefetch, basic.consume,
 * take up to BATCH deliveries (waiting up to 200 ms for the first and
 * batch_wait_ms for each further one), then one basic.ack with `multiple`
 * for the batch. Nothing is parsed, verified or stored: that is the ceiling
 * a W consumer cannot beat. Time from the first delivery to the last ack;
 * the queue is deleted after each round. Prints every round and the median.
 * Not a test: no timed assertions, nothing registered with CTest.
 *
 * Exit: 0, 1 when a round did not get every message back, 2 usage or
 * configuration error, 3 the broker unavailable. */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_framing.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "bench_common.h"
#include "config.h"
#include "log.h"
#include "signature.h"

#define PROG           "bench_amqp_consume"
#define MAX_ROUNDS     BENCH_MAX_ROUNDS
#define CONFIRM_WINDOW 2048 /* src/transport_amqp.c */
#define FIRST_WAIT_MS  200  /* W_FETCH_WAIT_MS in src/lane_w.c */
#define CH             1

typedef struct note {
    char *body;
    size_t len;
    char sig[SIG_HEADER_MAX + 1];
} note_t;

static int reply_ok(amqp_connection_state_t conn, const char *what)
{
    return bench_amqp_ok(PROG, false, conn, what);
}

static amqp_connection_state_t connect_amqp(const cfg_amqp_t *a)
{
    return bench_amqp_open(PROG, false, a, false);
}

/* Declares queue (quorum, durable, like the W work queue) and fills it with
 * the notes, confirms pipelined. With via_delay, the notes go the W lane's
 * way: into QUEUE.delay (quorum, TTL 1 ms, at-least-once dead-lettering to
 * QUEUE), so they reach QUEUE as the W consumer gets them, with the x-death
 * headers dead-lettering adds; fill returns once they are all there. */
static int fill(amqp_connection_state_t conn, const char *queue, const note_t *notes, size_t n,
                bool via_delay)
{
    amqp_table_entry_t qt = bench_amqp_entry_str("x-queue-type", "quorum");
    char delay[300] = "";
    const char *target = queue;
    size_t sent = 0, settled = 0;
    uint64_t floor = 1; /* every tag below is settled */
    unsigned char *done = calloc(n, 1);
    int rc = -1;

    if (!done)
        return -1;

    amqp_queue_declare(conn, CH, amqp_cstring_bytes(queue), 0, 1, 0, 0, (amqp_table_t){1, &qt});
    if (reply_ok(conn, "declaring the queue") != 0)
        goto out;
    if (via_delay) {
        amqp_table_entry_t dq[] = {
            qt,
            bench_amqp_entry_str("x-dead-letter-exchange", ""),
            bench_amqp_entry_str("x-dead-letter-routing-key", queue),
            bench_amqp_entry_str("x-dead-letter-strategy", "at-least-once"),
            bench_amqp_entry_str("x-overflow", "reject-publish"),
            {amqp_cstring_bytes("x-message-ttl"), {AMQP_FIELD_KIND_I64, {.i64 = 1}}},
        };
        snprintf(delay, sizeof delay, "%s.delay", queue);
        amqp_queue_declare(conn, CH, amqp_cstring_bytes(delay), 0, 1, 0, 0,
                           (amqp_table_t){(int)(sizeof dq / sizeof *dq), dq});
        if (reply_ok(conn, "declaring the delay queue") != 0)
            goto out;
        target = delay;
    }
    amqp_confirm_select(conn, CH);
    if (reply_ok(conn, "confirm.select") != 0)
        goto out;
    while (settled < n) {
        amqp_frame_t frame;
        struct timeval tv = {60, 0};
        while (sent < n && sent - settled < CONFIRM_WINDOW) {
            amqp_basic_properties_t props;
            amqp_table_entry_t header = bench_amqp_entry_str("signature", notes[sent].sig);
            bench_amqp_note_props(&props, &header);
            if (amqp_basic_publish(conn, CH, amqp_empty_bytes, amqp_cstring_bytes(target), 0, 0,
                                   &props, (amqp_bytes_t){notes[sent].len, notes[sent].body}) !=
                AMQP_STATUS_OK) {
                fprintf(stderr, "bench_amqp_consume: publish failed\n");
                goto out;
            }
            sent++;
        }
        if (amqp_simple_wait_frame_noblock(conn, &frame, &tv) != AMQP_STATUS_OK) {
            fprintf(stderr, "bench_amqp_consume: no confirm within 60 s\n");
            goto out;
        }
        if (frame.frame_type == AMQP_FRAME_METHOD &&
            (frame.payload.method.id == AMQP_BASIC_ACK_METHOD ||
             frame.payload.method.id == AMQP_BASIC_NACK_METHOD)) {
            /* ack and nack carry the same fields; a nack is a refusal */
            amqp_basic_ack_t *a = frame.payload.method.decoded;
            if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
                fprintf(stderr, "bench_amqp_consume: the broker refused a message\n");
                goto out;
            }
            bench_settle(done, n, &floor, a->delivery_tag, a->multiple, &settled);
        } else if (frame.frame_type == AMQP_FRAME_METHOD) {
            fprintf(stderr, "bench_amqp_consume: the broker closed the channel\n");
            goto out;
        }
        amqp_maybe_release_buffers(conn);
    }
    /* Wait until dead-lettering has moved every note (not timed). */
    for (int i = 0; via_delay && i < 1200; i++) {
        amqp_queue_declare_ok_t *ok =
            amqp_queue_declare(conn, CH, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
        if (reply_ok(conn, "counting the queue") != 0)
            goto out;
        if (ok->message_count >= n)
            break;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    rc = 0;
out:
    if (delay[0]) {
        amqp_queue_delete(conn, CH, amqp_cstring_bytes(delay), 0, 0);
        reply_ok(conn, "deleting the delay queue");
    }
    free(done);
    return rc;
}

/* Drains n messages: prefetch, batches of up to batch, one multiple ack per
 * batch. *secs: first delivery to last ack; *batches: how many. */
static int drain(amqp_connection_state_t conn, const char *queue, size_t n, int prefetch,
                 size_t batch, int batch_wait_ms, double *secs, size_t *batches)
{
    size_t got = 0;
    double t0 = 0;
    amqp_envelope_t *envs = calloc(batch, sizeof *envs);

    if (!envs)
        return -1;
    amqp_basic_qos(conn, CH, 0, (uint16_t)prefetch, 0);
    if (reply_ok(conn, "basic.qos") != 0)
        goto fail;
    amqp_basic_consume(conn, CH, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (reply_ok(conn, "basic.consume") != 0)
        goto fail;
    *batches = 0;
    while (got < n) {
        size_t k = 0;
        while (k < batch) {
            int ms = k == 0 ? FIRST_WAIT_MS : batch_wait_ms;
            struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
            amqp_rpc_reply_t r = amqp_consume_message(conn, &envs[k], &tv, 0);
            if (r.reply_type == AMQP_RESPONSE_NORMAL) {
                if (got == 0 && k == 0)
                    t0 = bench_now_s();
                k++;
                continue;
            }
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                r.library_error == AMQP_STATUS_TIMEOUT)
                break;
            fprintf(stderr, "bench_amqp_consume: consuming failed after %zu messages\n", got);
            goto fail;
        }
        if (k == 0) {
            if (got == 0)
                continue; /* not started yet */
            fprintf(stderr, "bench_amqp_consume: the queue ran dry after %zu of %zu messages\n",
                    got, n);
            goto fail;
        }
        if (amqp_basic_ack(conn, CH, envs[k - 1].delivery_tag, 1) != AMQP_STATUS_OK) {
            fprintf(stderr, "bench_amqp_consume: ack failed\n");
            goto fail;
        }
        for (size_t i = 0; i < k; i++)
            amqp_destroy_envelope(&envs[i]);
        amqp_maybe_release_buffers(conn);
        got += k;
        (*batches)++;
    }
    *secs = bench_now_s() - t0;
    free(envs);
    return 0;
fail:
    free(envs);
    return -1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_amqp_consume [-c CONFIG] [--set PATH=VALUE]... -q QUEUE [-r ROUNDS]\n"
            "                          [-p PREFETCH] [-b BATCH] [-w BATCH_WAIT_MS] [-d] FILE\n"
            "  -q QUEUE    a fresh queue name (declared, filled, drained, deleted each round)\n"
            "  -r ROUNDS   rounds, median reported (default 3)\n"
            "  -p, -b, -w  prefetch, batch, batch wait (default lanes.w.amqp.prefetch,\n"
            "              issue.batch_size, issue.batch_wait_ms)\n"
            "  -d          fill through a delay queue (TTL 1 ms, at-least-once dead-lettering),\n"
            "              as the W lane's messages reach its work queue\n"
            "  FILE        notifications, one JSON object per line (signed here with\n"
            "              security.sign_with before the clock starts)\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *queue = NULL;
    char *sets[BENCH_MAX_SETS];
    bool via_delay = false;
    int nsets = 0, c, rounds = 3, prefetch = 0, batch = 0, batch_wait = -1, rc = CP_EXIT_OK;
    double rate[MAX_ROUNDS];
    note_t *notes = NULL;
    size_t n = 0, ncap = 0, cap = 0;
    char *line = NULL;
    ssize_t len;
    FILE *in;
    cfg_t cfg;
    const sig_key_t *key;

    while ((c = getopt_long(argc, argv, "c:q:r:p:b:w:dh", bench_longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            if (bench_add_set(sets, &nsets, optarg) != 0)
                goto bad;
            break;
        case 'q':
            queue = optarg;
            break;
        case 'r':
            rounds = atoi(optarg);
            if (rounds < 1 || rounds > MAX_ROUNDS)
                goto bad;
            break;
        case 'p':
            prefetch = atoi(optarg);
            if (prefetch < 1 || prefetch > 65535)
                goto bad;
            break;
        case 'b':
            batch = atoi(optarg);
            if (batch < 1 || batch > 100000)
                goto bad;
            break;
        case 'w':
            batch_wait = atoi(optarg);
            if (batch_wait < 0 || batch_wait > 10000)
                goto bad;
            break;
        case 'd':
            via_delay = true;
            break;
        case 'h':
            usage(stdout);
            return CP_EXIT_OK;
        default:
            goto bad;
        }
    }
    if (optind != argc - 1 || !queue)
        goto bad;
    log_init("bench", "amqp", LOG_WARN, false);
    if (bench_cfg_load(&cfg, PROG, config, sets, nsets,
                       "no configuration: -c CONFIG or COUPOND_CONFIG") != 0)
        return CP_EXIT_USAGE;
    if (!prefetch)
        prefetch = cfg.lane_w.amqp.prefetch;
    if (!batch)
        batch = cfg.issue.batch_size;
    if (batch_wait < 0)
        batch_wait = cfg.issue.batch_wait_ms;
    if (!(key = cfg_sign_key(&cfg))) {
        fprintf(stderr, "bench_amqp_consume: no signing key (security.sign_with)\n");
        cfg_free(&cfg);
        return CP_EXIT_USAGE;
    }
    if (!(in = fopen(argv[optind], "r"))) {
        perror(argv[optind]);
        cfg_free(&cfg);
        return CP_EXIT_USAGE;
    }
    while ((len = bench_read_line(in, &line, &cap)) > 0) {
        if (n == ncap) {
            note_t *grown = bench_grow(notes, &ncap, sizeof *notes);
            if (!grown)
                goto oom;
            notes = grown;
        }
        if (!(notes[n].body = strndup(line, (size_t)len)))
            goto oom;
        notes[n].len = (size_t)len;
        if (sig_sign(key, line, (size_t)len, notes[n].sig, sizeof notes[n].sig) != 0) {
            fprintf(stderr, "bench_amqp_consume: signing failed\n");
            rc = CP_EXIT_FAILURE;
            goto out;
        }
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "bench_amqp_consume: %s: no notifications\n", argv[optind]);
        rc = CP_EXIT_USAGE;
        goto out;
    }

    printf("bench_amqp_consume: %zu messages, prefetch %d, batches of %d (batch wait %d ms), "
           "%d round%s\n",
           n, prefetch, batch, batch_wait, rounds, rounds == 1 ? "" : "s");
    for (int r = 0; r < rounds; r++) {
        char name[256];
        double secs = 0;
        size_t batches = 0;
        int frc;
        amqp_connection_state_t pub, con;

        snprintf(name, sizeof name, "%s.r%d", queue, r + 1);
        if (!(pub = connect_amqp(&cfg.lane_w.amqp))) {
            rc = CP_EXIT_UNAVAIL;
            goto out;
        }
        frc = fill(pub, name, notes, n, via_delay);
        bench_amqp_close(pub);
        con = frc == 0 ? connect_amqp(&cfg.lane_w.amqp) : NULL;
        if (con && drain(con, name, n, prefetch, (size_t)batch, batch_wait, &secs, &batches) == 0) {
            rate[r] = (double)n / secs;
            printf("round %d: %zu messages in %.3f s = %.0f msgs/s (%zu batches)\n", r + 1, n, secs,
                   rate[r], batches);
            fflush(stdout);
        } else {
            rc = CP_EXIT_FAILURE;
        }
        if (con)
            bench_amqp_close(con);
        /* the queue goes, whatever happened */
        if ((con = connect_amqp(&cfg.lane_w.amqp))) {
            amqp_queue_delete(con, CH, amqp_cstring_bytes(name), 0, 0);
            reply_ok(con, "deleting the queue");
            bench_amqp_close(con);
        }
        if (rc != CP_EXIT_OK)
            goto out;
    }
    printf("raw_ceiling_msgs_per_s %.0f\n", bench_median(rate, rounds));
out:
    fclose(in);
    for (size_t i = 0; i < n; i++)
        free(notes[i].body);
    free(notes);
    free(line);
    cfg_free(&cfg);
    return rc;
oom:
    fprintf(stderr, "bench_amqp_consume: out of memory\n");
    rc = CP_EXIT_FAILURE;
    goto out;
bad:
    usage(stderr);
    return CP_EXIT_USAGE;
}
