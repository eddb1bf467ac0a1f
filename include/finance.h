/* finance.h: finance's commands: the refund log exported for finance's tools
 * (couponctl refunds export), its hash chain verified (couponctl refunds
 * verify), and every order's outcome reconciled against DESIGN's invariants
 * (couponctl reconcile); and the pure pieces they are made of. */
#ifndef COUPOND_FINANCE_H
#define COUPOND_FINANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common.h"
#include "config.h"

/* The commands. argv[0] names the command (for getopt), its options
 * follow; json is couponctl's global --json. cfg must be loaded. Each
 * returns the process exit code: 0 success; 1 a broken chain (verify), a
 * violation (reconcile) or an output that could not be written (export);
 * 2 usage; 3 the store is unavailable or not migrated. Data go to stdout (or
 * export's --output FILE), summaries, progress and diagnostics to stderr. */
int fin_cmd_export(const cfg_t *cfg, bool json, int argc, char **argv);
int fin_cmd_verify(const cfg_t *cfg, bool json, int argc, char **argv);
/* refunds summary [--from T] [--to T] [--by day|reason|currency]: the rows
 * export would write, counted and summed per currency and group. */
int fin_cmd_summary(const cfg_t *cfg, bool json, int argc, char **argv);
int fin_cmd_reconcile(const cfg_t *cfg, bool json, int argc, char **argv);

/* ---- pieces, exposed for tests ----------------------------------------- */

/* The number of minor units of a currency (ISO 4217 exponent): 0 for JPY,
 * KRW and the others without subunits, 3 for BHD, KWD, ..., 4 for CLF and
 * UYW, 2 for every other code. */
int fin_minor_units(const char *currency);

/* Writes amount (in minor units, >= 0) as a decimal in the currency's units:
 * 1500 EUR "15.00", 5 EUR "0.05", 1500 JPY "1500", 1500 KWD "1.500".
 * Returns 0, or -1 (out empty) when amount is negative or out is too small
 * (24 bytes always suffice). */
int fin_format_amount(int64_t amount, const char *currency, char *out, size_t outlen) CP_MUSTCHECK;

/* Writes s[0..len) as one RFC 4180 CSV field: as it is, or in double quotes
 * (each quote doubled) when it holds a comma, a quote, a CR or an LF, or
 * starts or ends with a space. */
void fin_csv_field(FILE *out, const char *s, size_t len);

/* Writes s[0..len) as a JSON string, quotes included (s is UTF-8). */
void fin_json_string(FILE *out, const char *s, size_t len);

/* One refund_log row, as the hash covers it. */
typedef struct fin_refund {
    int64_t seq, order_id, amount_cents;
    int64_t created_us; /* created_at, microseconds since the epoch */
    const char *payment_id, *currency, *reason, *prev_hash;
} fin_refund_t;

/* The row's hash as the database computes it (coupond_refund_hash in
 * src/sql/001_init.sql): lower-case hex SHA-256 of the canonical text, into
 * out (65 bytes, NUL-terminated). Returns 0, or -1 when the hash cannot be
 * computed (out of memory, or a negative number). */
int fin_refund_hash(const fin_refund_t *r, char out[65]) CP_MUSTCHECK;

#endif
