/* bench_common.h: helpers shared by the benchmark programs (tests/bench):
 * clocks, medians and percentiles, configuration loading with --set
 * overrides, reading notification files, and a bare rabbitmq-c client.
 * Every message is prefixed with the calling program's name (prog). */
#ifndef COUPOND_BENCH_COMMON_H
#define COUPOND_BENCH_COMMON_H

#include <amqp.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"

#define BENCH_MAX_SETS   32 /* --set overrides */
#define BENCH_MAX_ROUNDS 15 /* rounds a median is taken over */

/* getopt_long options common to the programs: --set PATH=VALUE ('s'),
 * --help ('h'). */
extern const struct option bench_longopts[];

/* Monotonic clock in seconds. */
double bench_now_s(void);

/* qsort comparison of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

/* Median of v[0..n-1] (n <= BENCH_MAX_ROUNDS); v is left as it was. */
double bench_median(const double *v, int n);

/* The p-th percentile (0..1) of sorted[0..n-1], nearest rank; 0 when n is 0. */
double bench_pct(const double *sorted, size_t n, double p);

/* Adds a --set PATH=VALUE argument; -1 when there are BENCH_MAX_SETS already. */
int bench_add_set(char **sets, int *nsets, char *arg);

/* Loads the configuration (-c CONFIG or COUPOND_CONFIG) with the overrides.
 * On failure prints "prog: noconf" (none found) or "prog: error" and returns
 * CP_EXIT_USAGE; 0 otherwise. */
int bench_cfg_load(cfg_t *cfg, const char *prog, const char *config, char **sets, int nsets,
                   const char *noconf);

/* The next non-empty line of in, line ending stripped (not terminated):
 * its length, or -1 at the end of the file. */
ssize_t bench_read_line(FILE *in, char **line, size_t *cap);

/* Doubles the array p of *ncap elements of size bytes (4096 at first);
 * NULL when out of memory (p is left as it was). */
void *bench_grow(void *p, size_t *ncap, size_t size);

/* ------------------------------------------------------------ RabbitMQ */

/* 0 when the last RPC succeeded; otherwise prints "prog: what: ..." and
 * returns -1. detail: a channel.close is reported with its code and text
 * ("failed" otherwise); without it any broker refusal is reported as
 * "refused by the broker". */
int bench_amqp_ok(const char *prog, bool detail, amqp_connection_state_t conn, const char *what);

/* Connects to a's broker and opens channel 1, in confirm mode when confirms
 * is set; NULL (reported) on failure. */
amqp_connection_state_t bench_amqp_open(const char *prog, bool detail, const cfg_amqp_t *a,
                                        bool confirms);

/* Closes channel 1 and the connection, and destroys it. */
void bench_amqp_close(amqp_connection_state_t conn);

/* A string table entry. */
amqp_table_entry_t bench_amqp_entry_str(const char *key, const char *value);

/* Properties of a notification as coupond publishes it: JSON, persistent,
 * with the headers of the one entry header. */
void bench_amqp_note_props(amqp_basic_properties_t *props, amqp_table_entry_t *header);

/* Publisher confirms: marks tag settled (done[tag - 1]); a multiple ack
 * settles everything from *floor up. Counts newly settled tags in *settled. */
void bench_settle(unsigned char *done, size_t n, uint64_t *floor, uint64_t tag, bool multiple,
                  size_t *settled);

#endif
