/* bench_store.c: the store's own ceiling for the L lane's work. Reads
 * notifications (JSON lines, the file `couponctl publish` was given), parses
 * them all with msg_parse before the clock starts, then issues them with the
 * project's store_issue_batch (issued_by "l"), in batches of the L lane's
 * size, one batch after the other on one connection: exactly the store work
 * the L consumer does, without a broker, verification or logging.
 *
 * Prints one line: payments, wall seconds of the store_issue_batch calls,
 * payments/s, and the outcomes. The wall clock is only half the story: the
 * benchmark (deploy/local/bench.sh lane-l) measures both this run and the L
 * lane with the same ruler, payments.created_at of the first and last order.
 * Not a test: no timed assertions, nothing registered with CTest.
 *
 * Exit: 0 when every notification parsed and was issued (or was a
 * duplicate), 1 when one was not, 2 usage or configuration error, 3 the store
 * unavailable. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "config.h"
#include "log.h"
#include "message.h"
#include "store.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_store [-c CONFIG] [--set PATH=VALUE]... [-b BATCH] FILE\n"
                 "  -c CONFIG        configuration file (default: $COUPOND_CONFIG)\n"
                 "  --set PATH=VALUE override a setting (store.conninfo: the scratch store)\n"
                 "  -b BATCH         orders per store_issue_batch call (default issue.batch_size)\n"
                 "  FILE             notifications, one JSON object per line\n"
                 "Issues every notification of FILE with store_issue_batch (issued_by l) and\n"
                 "prints payments/s over the wall time of the calls.\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    char *sets[BENCH_MAX_SETS];
    int nsets = 0, c, rc = CP_EXIT_OK;
    long batch = 0;
    char err[CP_ERRLEN], detail[256];
    cfg_t cfg;
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0, n = 0, ncap = 0, counts[STORE_REFUNDED + 1] = {0}, failed = 0;
    msg_payment_t *ps = NULL;
    store_result_t *res = NULL;
    store_t *st = NULL;
    ssize_t len;
    double t0, secs;

    while ((c = getopt_long(argc, argv, "c:b:h", bench_longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            if (bench_add_set(sets, &nsets, optarg) != 0)
                goto bad;
            break;
        case 'b':
            batch = strtol(optarg, NULL, 10);
            if (batch < 1 || batch > 100000)
                goto bad;
            break;
        case 'h':
            usage(stdout);
            return CP_EXIT_OK;
        default:
            goto bad;
        }
    }
    if (optind != argc - 1)
        goto bad;
    log_init("bench", "store", LOG_WARN, false);
    if (bench_cfg_load(&cfg, "bench_store", config, sets, nsets,
                       "no configuration: give -c CONFIG or set COUPOND_CONFIG") != 0)
        return CP_EXIT_USAGE;
    if (batch == 0)
        batch = cfg.issue.batch_size;

    if (!(in = fopen(argv[optind], "r"))) {
        perror(argv[optind]);
        cfg_free(&cfg);
        return CP_EXIT_USAGE;
    }
    while ((len = bench_read_line(in, &line, &cap)) > 0) {
        if (n == ncap) {
            msg_payment_t *grown = bench_grow(ps, &ncap, sizeof *ps);
            if (!grown) {
                fprintf(stderr, "bench_store: out of memory\n");
                rc = CP_EXIT_FAILURE;
                goto out;
            }
            ps = grown;
        }
        if (msg_parse(line, (size_t)len, cfg.message.max_version, &ps[n], detail, sizeof detail) !=
            MSG_OK) {
            fprintf(stderr, "bench_store: line %zu: %s\n", n + 1, detail);
            rc = CP_EXIT_FAILURE;
            goto out;
        }
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "bench_store: %s: no notifications\n", argv[optind]);
        rc = CP_EXIT_USAGE;
        goto out;
    }
    if (!(res = calloc((size_t)batch, sizeof *res))) {
        rc = CP_EXIT_FAILURE;
        goto out;
    }
    if (store_open(&st, cfg.store.conninfo, cfg.store.password, cfg.store.statement_timeout_ms, err,
                   sizeof err) != STORE_OK ||
        store_check_schema(st, err, sizeof err) != STORE_OK) {
        fprintf(stderr, "bench_store: store: %s\n", err);
        rc = CP_EXIT_UNAVAIL;
        goto out;
    }

    t0 = bench_now_s();
    for (size_t off = 0; off < n; off += (size_t)batch) {
        size_t k = n - off < (size_t)batch ? n - off : (size_t)batch;
        store_rc_t src = store_issue_batch(st, ps + off, k, "l", res, err, sizeof err);
        if (src != STORE_OK) {
            fprintf(stderr, "bench_store: store_issue_batch: %s\n", err);
            rc = src == STORE_E_UNAVAILABLE ? CP_EXIT_UNAVAIL : CP_EXIT_FAILURE;
            goto out;
        }
        for (size_t i = 0; i < k; i++) {
            if (res[i].rc != STORE_OK) {
                if (!failed++)
                    fprintf(stderr, "bench_store: order %lld: %s\n",
                            (long long)ps[off + i].order_id, res[i].error);
                continue;
            }
            counts[res[i].outcome]++;
        }
    }
    secs = bench_now_s() - t0;
    printf("bench_store: %zu payments in %.3f s = %.0f payments/s (batches of %ld); issued %zu, "
           "duplicate %zu, transient %zu, rejected %zu, failed %zu\n",
           n, secs, (double)n / secs, batch, counts[STORE_ISSUED], counts[STORE_DUPLICATE],
           counts[STORE_TRANSIENT], counts[STORE_REJECTED], failed);
    if (counts[STORE_ISSUED] + counts[STORE_DUPLICATE] != n)
        rc = CP_EXIT_FAILURE;
out:
    if (in)
        fclose(in);
    store_close(st);
    free(line);
    free(ps);
    free(res);
    cfg_free(&cfg);
    return rc;
bad:
    usage(stderr);
    return CP_EXIT_USAGE;
}
