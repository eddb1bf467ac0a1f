/* finance.c: finance's commands: refunds export (CSV or JSON lines, streamed
 * through a server-side cursor), refunds verify (the hash chain recomputed
 * as the database computes it, and the first break explained), and reconcile
 * (DESIGN's invariants 1, 2 and 3 checked over the store). */
#define _GNU_SOURCE
#include "finance.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "display.h"
#include "store.h"
#include "store_int.h"

/* Rows per FETCH: a few hundred KiB of result, whatever the log's size. */
#define FETCH_ROWS        "2000"
#define PROGRESS_EVERY_MS 200
#define ZERO_HASH         "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- pure pieces ------------------------------------------------------- */

int fin_minor_units(const char *currency)
{
    /* ISO 4217 codes whose exponent is not 2. */
    static const char *const zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY",
                                       "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                                       "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char *const three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    static const char *const four[] = {"CLF", "UYW"};

    for (size_t i = 0; i < CP_ARRAY_SIZE(zero); i++)
        if (strcmp(currency, zero[i]) == 0)
            return 0;
    for (size_t i = 0; i < CP_ARRAY_SIZE(three); i++)
        if (strcmp(currency, three[i]) == 0)
            return 3;
    for (size_t i = 0; i < CP_ARRAY_SIZE(four); i++)
        if (strcmp(currency, four[i]) == 0)
            return 4;
    return 2;
}

int fin_format_amount(int64_t amount, const char *currency, char *out, size_t outlen)
{
    static const int64_t scale[] = {1, 10, 100, 1000, 10000};
    int units = fin_minor_units(currency);
    int n;

    if (outlen)
        out[0] = '\0';
    if (amount < 0)
        return -1;
    if (units == 0)
        n = snprintf(out, outlen, "%" PRId64, amount);
    else
        n = snprintf(out, outlen, "%" PRId64 ".%0*" PRId64, amount / scale[units], units,
                     amount % scale[units]);
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen)
            out[0] = '\0';
        return -1;
    }
    return 0;
}

void fin_csv_field(FILE *out, const char *s, size_t len)
{
    bool quote = len > 0 && (s[0] == ' ' || s[len - 1] == ' ');

    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        fwrite(s, 1, len, out);
        return;
    }
    putc('"', out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"')
            putc('"', out);
        putc(s[i], out);
    }
    putc('"', out);
}

void fin_json_string(FILE *out, const char *s, size_t len)
{
    putc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                putc(c, out);
        }
    }
    putc('"', out);
}

/* Feeds s[0..len) to the digest. */
static bool put(EVP_MD_CTX *ctx, const char *s, size_t len)
{
    return EVP_DigestUpdate(ctx, s, len) == 1;
}

int fin_refund_hash(const fin_refund_t *r, char out[65])
{
    /* OpenSSL 3 looks an algorithm up on every EVP_sha256() digest: fetched
     * once per thread instead (verify hashes millions of rows). */
    static _Thread_local EVP_MD *md;
    static _Thread_local EVP_MD_CTX *ctx;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char nums[128], created[32];
    int n, m;

    out[0] = '\0';
    if (r->seq < 0 || r->order_id < 0 || r->amount_cents < 0 || r->created_us < 0)
        return -1;
    if (!md && !(md = EVP_MD_fetch(NULL, "SHA256", NULL)))
        return -1;
    if (!ctx && !(ctx = EVP_MD_CTX_new()))
        return -1;
    /* The canonical text of 001_init.sql, piece by piece, without copying
     * the reason. */
    n = snprintf(nums, sizeof nums, "%" PRId64 "\n%" PRId64 "\n", r->seq, r->order_id);
    m = snprintf(created, sizeof created, "\n%" PRId64 "\n", r->created_us);
    if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 || !put(ctx, nums, (size_t)n) ||
        !put(ctx, r->payment_id, strlen(r->payment_id)))
        return -1;
    size_t rlen = strlen(r->reason);
    n = snprintf(nums, sizeof nums, "\n%" PRId64 "\n", r->amount_cents);
    if (!put(ctx, nums, (size_t)n) || !put(ctx, r->currency, strlen(r->currency)))
        return -1;
    n = snprintf(nums, sizeof nums, "\n%zu:", rlen);
    if (!put(ctx, nums, (size_t)n) || !put(ctx, r->reason, rlen) || !put(ctx, created, (size_t)m) ||
        !put(ctx, r->prev_hash, strlen(r->prev_hash)) ||
        EVP_DigestFinal_ex(ctx, digest, &len) != 1 || len != 32)
        return -1;
    cp_hex(digest, len, out);
    return 0;
}

/* ---- shared by the commands -------------------------------------------- */

static int64_t mono_ms(void)
{
    return cp_clock_us(CLOCK_MONOTONIC) / 1000;
}

static int parse_time(const char *cmd, const char *opt, const char *arg, int64_t *us)
{
    if (disp_parse_since(arg, (int64_t)time(NULL) * 1000000, us) != 0)
        return cli_usage(
            cmd,
            "%s: expected a time (2026-11-21, 2026-11-21T10:00:00Z) or a duration back "
            "from now (90s, 15m, 2h, 7d), got \"%s\"",
            opt, arg);
    return 0;
}

/* The --from/--to window of the export and the summary, as the parameters
 * of SQL_EXPORT_WHERE ($1, $2: NULL for an open end). */
typedef struct window {
    bool have_from, have_to;
    int64_t from, to;
    char from_s[24], to_s[24];
    const char *params[2];
} window_t;

/* Takes option c ('f' or 't'). Returns 0 or the exit code. */
static int window_option(const char *cmd, window_t *w, int c, const char *arg)
{
    int rc;
    if (c == 'f') {
        if ((rc = parse_time(cmd, "--from", arg, &w->from)) != 0)
            return rc;
        w->have_from = true;
    } else {
        if ((rc = parse_time(cmd, "--to", arg, &w->to)) != 0)
            return rc;
        w->have_to = true;
    }
    return 0;
}

/* After the options: checks the window and sets its parameters. */
static int window_done(const char *cmd, window_t *w)
{
    if (w->have_from && w->have_to && w->to <= w->from)
        return cli_usage(cmd, "--to must be later than --from");
    snprintf(w->from_s, sizeof w->from_s, "%" PRId64, w->from);
    snprintf(w->to_s, sizeof w->to_s, "%" PRId64, w->to);
    w->params[0] = w->have_from ? w->from_s : NULL;
    w->params[1] = w->have_to ? w->to_s : NULL;
    return 0;
}

/* Opens the store and checks its schema; the exit code on failure. */
static int open_store(const char *cmd, const cfg_t *cfg, store_t **st)
{
    char err[CP_ERRLEN], prog[64];
    store_rc_t rc;
    int crc;

    snprintf(prog, sizeof prog, "couponctl: %s", cmd);
    if ((crc = cli_store_open(prog, cfg, st)) != 0)
        return crc;
    if ((rc = store_check_schema(*st, err, sizeof err)) != STORE_OK) {
        fprintf(stderr, "couponctl: %s: %s\n", cmd, err);
        store_close(*st);
        *st = NULL;
        return cli_store_exit(rc);
    }
    return CP_EXIT_OK;
}

/* Runs one statement and forgets its result. */
static store_rc_t run_sql(store_t *st, const char *what, const char *sql, int n,
                          const char *const *params, char *err, size_t errlen)
{
    PGresult *r;
    store_rc_t rc = store_query_tx(st, what, sql, n, params, &r, err, errlen);
    PQclear(r);
    return rc;
}

/* Opens a read-only transaction: one snapshot for everything a command reads. */
static store_rc_t begin_snapshot(store_t *st, const char *what, char *err, size_t errlen)
{
    PGresult *r;
    store_rc_t rc = store_query(st, what, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
                                NULL, &r, err, errlen);
    PQclear(r);
    return rc;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* A progress line on stderr when it is a terminal. */
typedef struct progress {
    int width; /* 0: off */
    size_t total;
    int64_t drawn_ms;
} progress_t;

static void progress_init(progress_t *p, size_t total)
{
    p->width = isatty(STDERR_FILENO) ? disp_terminal_width(STDERR_FILENO) : 0;
    p->total = total;
    p->drawn_ms = 0;
}

static void progress_draw(progress_t *p, size_t done, bool last)
{
    char line[512];

    if (p->width <= 0 || p->total == 0)
        return;
    if (!last && mono_ms() - p->drawn_ms < PROGRESS_EVERY_MS)
        return;
    disp_progress_line(line, sizeof line, done, p->total, "rows", p->width - 1);
    fprintf(stderr, "\r\033[K%s%s", line, last ? "\n" : "");
    p->drawn_ms = mono_ms();
}

/* ---- refunds export ----------------------------------------------------- */

/* The rows of an export: refund_log with the payment's user, by seq, in a
 * time window ($1, $2: microseconds since the epoch, or NULL). */
static const char SQL_EXPORT_WHERE[] =
    "FROM refund_log r LEFT JOIN payments p ON p.order_id = r.order_id "
    "WHERE ($1::bigint IS NULL OR r.created_at >= timestamptz 'epoch' + $1::bigint * interval "
    "'1 microsecond') AND ($2::bigint IS NULL OR r.created_at < timestamptz 'epoch' + "
    "$2::bigint * interval '1 microsecond')";

enum { X_SEQ, X_CREATED, X_ORDER, X_PAYMENT, X_USER, X_AMOUNT, X_CURRENCY, X_REASON, X_HASH };

typedef struct total {
    char currency[4];
    int64_t count, amount;
} total_t;

typedef struct export_run {
    FILE *out;
    bool json;
    total_t totals[64];
    size_t ntotals, rows;
    bool overflow; /* more currencies than totals[] holds */
    int64_t first_seq, last_seq;
    char last_hash[65]; /* to keep outside the database: see docs/finance.md */
} export_run_t;

static void total_add(export_run_t *x, const char *currency, int64_t amount)
{
    for (size_t i = 0; i < x->ntotals; i++)
        if (strcmp(x->totals[i].currency, currency) == 0) {
            x->totals[i].count++;
            x->totals[i].amount += amount;
            return;
        }
    if (x->ntotals == CP_ARRAY_SIZE(x->totals)) {
        x->overflow = true;
        return;
    }
    total_t *t = &x->totals[x->ntotals++];
    snprintf(t->currency, sizeof t->currency, "%s", currency);
    t->count = 1;
    t->amount = amount;
}

static void export_row(export_run_t *x, const PGresult *r, int i)
{
    static const char *const names[] = {"seq",    "created_at", "order_id", "payment_id", "user_id",
                                        "amount", "currency",   "reason",   "hash"};
    char created[40], amount[32];
    const char *v[9];
    int64_t cents = col_i64(r, i, X_AMOUNT);

    disp_format_us(col_i64(r, i, X_CREATED), created, sizeof created);
    if (fin_format_amount(cents, PQgetvalue(r, i, X_CURRENCY), amount, sizeof amount) != 0)
        snprintf(amount, sizeof amount, "%" PRId64, cents); /* the schema keeps amounts > 0 */
    for (int c = 0; c < 9; c++)
        v[c] = PQgetvalue(r, i, c);
    v[X_CREATED] = created;
    v[X_AMOUNT] = amount;
    for (int c = 0; c < 9; c++) {
        size_t len = strlen(v[c]);
        bool number = c == X_SEQ || c == X_ORDER || (c == X_USER && len > 0);
        if (x->json) {
            fprintf(x->out, "%s\"%s\":", c ? "," : "{", names[c]);
            if (number)
                fwrite(v[c], 1, len, x->out);
            else if (c == X_USER)
                fputs("null", x->out);
            else
                fin_json_string(x->out, v[c], len);
        } else {
            if (c)
                putc(',', x->out);
            fin_csv_field(x->out, v[c], len);
        }
    }
    fputs(x->json ? "}\n" : "\r\n", x->out);
    total_add(x, v[X_CURRENCY], cents);
    if (x->rows++ == 0)
        x->first_seq = col_i64(r, i, X_SEQ);
    x->last_seq = col_i64(r, i, X_SEQ);
    snprintf(x->last_hash, sizeof x->last_hash, "%s", v[X_HASH]);
}

/* The totals and the last row's seq and hash, on stderr (text or one JSON
 * line), beside the rows rather than among them. */
static void export_summary(const export_run_t *x, bool json)
{
    char amount[32];

    if (json)
        fprintf(stderr,
                "{\"rows\":%zu,\"first_seq\":%" PRId64 ",\"last_seq\":%" PRId64
                ",\"last_hash\":\"%s\",\"totals\":[",
                x->rows, x->first_seq, x->last_seq, x->last_hash);
    else if (x->rows)
        fprintf(stderr,
                "refunds export: %zu refund%s, seq %" PRId64 " to %" PRId64
                "; the last one's hash: %s\n",
                x->rows, x->rows == 1 ? "" : "s", x->first_seq, x->last_seq, x->last_hash);
    else
        fprintf(stderr, "refunds export: no refunds\n");
    for (size_t i = 0; i < x->ntotals; i++) {
        const total_t *t = &x->totals[i];
        if (fin_format_amount(t->amount, t->currency, amount, sizeof amount) != 0)
            snprintf(amount, sizeof amount, "?");
        if (json)
            fprintf(stderr, "%s{\"currency\":\"%s\",\"refunds\":%" PRId64 ",\"amount\":\"%s\"}",
                    i ? "," : "", t->currency, t->count, amount);
        else
            fprintf(stderr, "  total %s %s in %" PRId64 " refund%s\n", t->currency, amount,
                    t->count, t->count == 1 ? "" : "s");
    }
    if (json)
        fprintf(stderr, "]}\n");
    if (x->overflow)
        fprintf(stderr, "refunds export: more than %zu currencies: the others are not totalled\n",
                CP_ARRAY_SIZE(x->totals));
}

int fin_cmd_export(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},   {"to", required_argument, NULL, 't'},
        {"format", required_argument, NULL, 'F'}, {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},         {NULL, 0, NULL, 0},
    };
    const char *cmd = "refunds export", *output = NULL;
    char err[CP_ERRLEN], *tmp_path = NULL, *sql = NULL;
    export_run_t x = {0};
    const char *format = NULL;
    bool in_tx = false;
    window_t w = {0};
    progress_t prog;
    store_t *st = NULL;
    PGresult *r = NULL;
    store_rc_t src;
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
        case 't':
            if ((rc = window_option(cmd, &w, c, optarg)) != 0)
                return rc;
            break;
        case 'F':
            if (strcmp(optarg, "csv") != 0 && strcmp(optarg, "json") != 0)
                return cli_usage(cmd, "--format: expected csv or json, got \"%s\"", optarg);
            format = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'j':
            json = true;
            break;
        default:
            return cli_option_error("refunds export");
        }
    }
    if (optind != argc)
        return cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    /* --json: JSON lines unless --format says otherwise; the summary in JSON. */
    x.json = format ? strcmp(format, "json") == 0 : json;
    if ((rc = window_done(cmd, &w)) != 0)
        return rc;

    if ((rc = open_store(cmd, cfg, &st)) != 0)
        return rc;
    rc = CP_EXIT_FAILURE;
    if (output) {
        /* Written aside and renamed when complete: a failed export leaves no
         * partial file under the name finance expects. */
        if (asprintf(&tmp_path, "%s.part", output) < 0) {
            tmp_path = NULL;
            goto out;
        }
        if (!(x.out = fopen(tmp_path, "w"))) {
            fprintf(stderr, "couponctl: %s: %s: %s\n", cmd, tmp_path, strerror(errno));
            goto out;
        }
    } else {
        x.out = stdout;
    }
    /* One snapshot for the count and the rows. */
    src = begin_snapshot(st, cmd, err, sizeof err);
    if (src != STORE_OK)
        goto store_failed;
    in_tx = true;
    progress_init(&prog, 0);
    if (prog.width > 0) {
        if (asprintf(&sql, "SELECT count(*) %s", SQL_EXPORT_WHERE) < 0) {
            sql = NULL;
            goto out;
        }
        if ((src = store_query_tx(st, cmd, sql, 2, w.params, &r, err, sizeof err)) != STORE_OK)
            goto store_failed;
        prog.total = (size_t)col_i64(r, 0, 0);
        PQclear(r);
        r = NULL;
        free(sql);
        sql = NULL;
    }
    if (asprintf(&sql,
                 "DECLARE fin_export NO SCROLL CURSOR FOR SELECT r.seq, "
                 "(extract(epoch FROM r.created_at) * 1000000)::bigint, r.order_id, r.payment_id, "
                 "coalesce(p.user_id::text, ''), r.amount_cents, r.currency, r.reason, r.hash %s "
                 "ORDER BY r.seq",
                 SQL_EXPORT_WHERE) < 0) {
        sql = NULL;
        goto out;
    }
    if ((src = run_sql(st, cmd, sql, 2, w.params, err, sizeof err)) != STORE_OK)
        goto store_failed;
    setvbuf(x.out, NULL, _IOFBF, 1 << 16);
    if (!x.json)
        fputs("seq,created_at,order_id,payment_id,user_id,amount,currency,reason,hash\r\n", x.out);
    for (;;) {
        src = store_query_tx(st, cmd, "FETCH FORWARD " FETCH_ROWS " FROM fin_export", 0, NULL, &r,
                             err, sizeof err);
        if (src != STORE_OK)
            goto store_failed;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            export_row(&x, r, i);
        PQclear(r);
        r = NULL;
        if (ferror(x.out))
            break;
        progress_draw(&prog, x.rows, false);
        if (n == 0)
            break;
    }
    progress_draw(&prog, x.rows, true);
    (void)run_sql(st, cmd, "COMMIT", 0, NULL, err, sizeof err);
    in_tx = false;
    if (fflush(x.out) != 0 || ferror(x.out) || (output && fsync(fileno(x.out)) != 0)) {
        fprintf(stderr, "couponctl: %s: writing %s: %s\n", cmd, output ? output : "stdout",
                strerror(errno));
        goto out;
    }
    if (output) {
        FILE *f = x.out;
        x.out = NULL;
        if (fclose(f) != 0 || rename(tmp_path, output) != 0) {
            fprintf(stderr, "couponctl: %s: %s: %s\n", cmd, output, strerror(errno));
            goto out;
        }
    }
    export_summary(&x, json);
    rc = CP_EXIT_OK;
    goto out;

store_failed:
    fprintf(stderr, "couponctl: %s\n", err);
    rc = cli_store_exit(src);
out:
    PQclear(r);
    if (in_tx)
        (void)run_sql(st, cmd, "ROLLBACK", 0, NULL, err, sizeof err);
    if (output && x.out)
        fclose(x.out);
    if (tmp_path && rc != CP_EXIT_OK)
        unlink(tmp_path);
    free(tmp_path);
    free(sql);
    store_close(st);
    return rc;
}

/* ---- refunds summary ---------------------------------------------------- */

/* The export's rows (SQL_EXPORT_WHERE), counted and summed per group and
 * currency: amounts of different currencies are never added together. */
static const char *const summary_keys[][2] = {
    {"currency", "''"},
    {"day", "to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"},
    {"reason", "r.reason"},
};

/* Adds n refunds of cents in all to the currency's total. */
static void summary_total(export_run_t *x, const char *currency, int64_t n, int64_t cents)
{
    total_add(x, currency, cents);
    for (size_t i = 0; i < x->ntotals; i++)
        if (strcmp(x->totals[i].currency, currency) == 0)
            x->totals[i].count += n - 1;
}

int fin_cmd_summary(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"by", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "refunds summary";
    char err[CP_ERRLEN], *sql = NULL;
    window_t w = {0};
    int64_t count = 0;
    size_t by = 0;
    export_run_t x = {0}; /* for its per-currency totals */
    store_t *st = NULL;
    PGresult *r = NULL;
    store_rc_t src;
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
        case 't':
            if ((rc = window_option(cmd, &w, c, optarg)) != 0)
                return rc;
            break;
        case 'b':
            for (by = 0; by < CP_ARRAY_SIZE(summary_keys); by++)
                if (strcmp(optarg, summary_keys[by][0]) == 0)
                    break;
            if (by == CP_ARRAY_SIZE(summary_keys))
                return cli_usage(cmd, "--by: expected day, reason or currency, got \"%s\"", optarg);
            break;
        case 'j':
            json = true;
            break;
        default:
            return cli_option_error(cmd);
        }
    }
    if (optind != argc)
        return cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    if ((rc = window_done(cmd, &w)) != 0)
        return rc;

    if ((rc = open_store(cmd, cfg, &st)) != 0)
        return rc;
    rc = CP_EXIT_FAILURE;
    if (asprintf(&sql,
                 "SELECT %s AS k, r.currency, count(*), sum(r.amount_cents)::bigint %s "
                 "GROUP BY 1, 2 ORDER BY 1, 2",
                 summary_keys[by][1], SQL_EXPORT_WHERE) < 0) {
        sql = NULL;
        fprintf(stderr, "couponctl: %s: out of memory\n", cmd);
        goto out;
    }
    if ((src = store_query(st, cmd, sql, 2, w.params, &r, err, sizeof err)) != STORE_OK) {
        fprintf(stderr, "couponctl: %s\n", err);
        rc = cli_store_exit(src);
        goto out;
    }
    const char *head[] = {by == 0   ? "CURRENCY"
                          : by == 1 ? "DAY"
                                    : "REASON",
                          "CURRENCY", "REFUNDS", "AMOUNT"};
    disp_table_t t = {.ncols = by == 0 ? 3 : 4, .head = by == 0 ? head + 1 : head};
    for (int i = 0; i < PQntuples(r); i++) {
        const char *key = PQgetvalue(r, i, 0), *cur = PQgetvalue(r, i, 1);
        int64_t n = col_i64(r, i, 2), cents = col_i64(r, i, 3);
        char amount[32], num[24];

        if (fin_format_amount(cents, cur, amount, sizeof amount) != 0)
            snprintf(amount, sizeof amount, "%" PRId64, cents);
        summary_total(&x, cur, n, cents);
        count += n;
        if (json) {
            printf("{");
            if (by != 0) {
                printf("\"%s\":", summary_keys[by][0]);
                fin_json_string(stdout, key, strlen(key));
                printf(",");
            }
            printf("\"currency\":\"%s\",\"refunds\":%" PRId64 ",\"amount\":\"%s\","
                   "\"amount_cents\":%" PRId64 "}\n",
                   cur, n, amount, cents);
            continue;
        }
        snprintf(num, sizeof num, "%" PRId64, n);
        const char *cells[] = {key, cur, num, amount};
        if (disp_table_add(&t, by == 0 ? cells + 1 : cells) != 0) {
            fprintf(stderr, "couponctl: %s: out of memory\n", cmd);
            disp_table_free(&t);
            goto out;
        }
    }
    if (!json && t.nrows > 0)
        disp_table_print(&t, stdout, disp_terminal_width(STDOUT_FILENO));
    disp_table_free(&t);
    if (count == 0)
        fprintf(stderr, "refunds summary: no refunds\n");
    else if (!json && by != 0)
        for (size_t i = 0; i < x.ntotals; i++) {
            char amount[32];
            if (fin_format_amount(x.totals[i].amount, x.totals[i].currency, amount,
                                  sizeof amount) != 0)
                snprintf(amount, sizeof amount, "?");
            fprintf(stderr, "  total %s %s in %" PRId64 " refund%s\n", x.totals[i].currency, amount,
                    x.totals[i].count, x.totals[i].count == 1 ? "" : "s");
        }
    rc = fflush(stdout) == 0 && !ferror(stdout) ? CP_EXIT_OK : CP_EXIT_FAILURE;
out:
    PQclear(r);
    free(sql);
    store_close(st);
    return rc;
}

/* ---- refunds verify ----------------------------------------------------- */

/* One row as verify keeps it: the stored links and the recomputed hash. */
typedef struct vrow {
    int64_t seq, order_id;
    char hash[65], prev[65], calc[65];
} vrow_t;

typedef struct verdict {
    int64_t seq;      /* the first row that breaks the chain */
    const char *kind; /* changed, missing, reordered, inserted */
    char detail[400];
} verdict_t;

/* Reads a declared cursor a row at a time. */
typedef struct vreader {
    store_t *st;
    PGresult *r;
    int i, n;
    bool eof;
} vreader_t;

/* The next row into *row. Returns 1, 0 at the end, or -1 with err set. */
static int vreader_next(vreader_t *R, vrow_t *row, store_rc_t *src, char *err, size_t errlen)
{
    if (R->i >= R->n) {
        PQclear(R->r);
        R->r = NULL;
        R->i = R->n = 0;
        if (R->eof)
            return 0;
        *src =
            store_query_tx(R->st, "refunds verify", "FETCH FORWARD " FETCH_ROWS " FROM fin_verify",
                           0, NULL, &R->r, err, errlen);
        if (*src != STORE_OK)
            return -1;
        R->n = PQntuples(R->r);
        R->eof = R->n == 0;
        if (R->eof)
            return 0;
    }
    const PGresult *r = R->r;
    int i = R->i++;
    fin_refund_t f = {
        .seq = col_i64(r, i, 0),
        .order_id = col_i64(r, i, 1),
        .payment_id = PQgetvalue(r, i, 2),
        .amount_cents = col_i64(r, i, 3),
        .currency = PQgetvalue(r, i, 4),
        .reason = PQgetvalue(r, i, 5),
        .created_us = col_i64(r, i, 6),
        .prev_hash = PQgetvalue(r, i, 7),
    };
    row->seq = f.seq;
    row->order_id = f.order_id;
    snprintf(row->prev, sizeof row->prev, "%s", f.prev_hash);
    snprintf(row->hash, sizeof row->hash, "%s", PQgetvalue(r, i, 8));
    if (fin_refund_hash(&f, row->calc) != 0) {
        *src = STORE_E_QUERY;
        snprintf(err, errlen, "seq %" PRId64 ": cannot compute its hash", f.seq);
        return -1;
    }
    return 1;
}

/* The seq of the row whose stored hash is hash, or -1. */
static int64_t seq_of_hash(store_t *st, const char *hash)
{
    char err[CP_ERRLEN];
    const char *p[1] = {hash};
    PGresult *r;
    int64_t seq = -1;

    if (store_query_tx(st, "refunds verify", "SELECT seq FROM refund_log WHERE hash = $1", 1, p, &r,
                       err, sizeof err) != STORE_OK)
        return -1;
    if (PQntuples(r) == 1)
        seq = col_i64(r, 0, 0);
    PQclear(r);
    return seq;
}

/* Judges cur against what it must link to (want_prev: the previous row's
 * hash; NULL when unknown) and the seq it must have, with the row after it
 * (next, NULL at the end) and the chain head's seq. Returns true when cur
 * breaks the chain, with v filled. The order of the tests decides how a
 * break is explained: a row beyond the head was inserted; a gap is a
 * deletion; a link to another row's hash is a reordering; a row that the
 * next one skips was inserted; anything else is a changed row. */
static bool judge(store_t *st, const char *want_prev, int64_t want_seq, const vrow_t *cur,
                  const vrow_t *next, int64_t head_seq, verdict_t *v)
{
    bool link_bad = want_prev && strcmp(cur->prev, want_prev) != 0;
    bool self_bad = strcmp(cur->hash, cur->calc) != 0;
    int64_t m;

    v->seq = cur->seq;
    if (cur->seq > head_seq) {
        v->kind = "inserted";
        snprintf(v->detail, sizeof v->detail,
                 "row seq %" PRId64 " (order %" PRId64 ") is beyond the chain head (seq %" PRId64
                 "): it was inserted without the chain trigger",
                 cur->seq, cur->order_id, head_seq);
    } else if (cur->seq > want_seq) {
        v->kind = "missing";
        v->seq = want_seq;
        if (cur->seq - want_seq == 1)
            snprintf(v->detail, sizeof v->detail,
                     "row seq %" PRId64 " is missing (deleted): seq %" PRId64
                     " follows seq %" PRId64,
                     want_seq, cur->seq, want_seq - 1);
        else
            snprintf(v->detail, sizeof v->detail,
                     "rows seq %" PRId64 " to %" PRId64 " are missing (deleted): seq %" PRId64
                     " follows seq %" PRId64,
                     want_seq, cur->seq - 1, cur->seq, want_seq - 1);
    } else if (link_bad && (m = seq_of_hash(st, cur->prev)) > 0 && m != cur->seq) {
        v->kind = "reordered";
        snprintf(v->detail, sizeof v->detail,
                 "row seq %" PRId64 " (order %" PRId64 ") links to the hash of seq %" PRId64
                 ", not of seq %" PRId64 ": it was seq %" PRId64 " (rows were reordered)",
                 cur->seq, cur->order_id, m, cur->seq - 1, m + 1);
    } else if (next && want_prev && strcmp(next->prev, cur->hash) != 0 &&
               strcmp(next->prev, want_prev) == 0) {
        v->kind = "inserted";
        snprintf(v->detail, sizeof v->detail,
                 "row seq %" PRId64 " (order %" PRId64 ") is not part of the chain: seq %" PRId64
                 " links to the row before it (it was inserted)",
                 cur->seq, cur->order_id, next->seq);
    } else if (link_bad || self_bad) {
        v->kind = "changed";
        snprintf(v->detail, sizeof v->detail, "row seq %" PRId64 " (order %" PRId64 "): %s",
                 cur->seq, cur->order_id,
                 !link_bad  ? "its fields no longer give its hash (the row was changed)"
                 : self_bad ? "its hash and prev_hash match nothing (both were rewritten)"
                            : "prev_hash is not the previous row's hash (the row was changed and "
                              "rehashed)");
    } else {
        return false;
    }
    return true;
}

int fin_cmd_verify(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        {"from-seq", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "refunds verify";
    char err[CP_ERRLEN], from_s[24], start_s[24], head_hash[65] = "", want_prev[65];
    vrow_t prev = {0}, cur, next;
    int64_t from_seq = 1, head_seq = 0, want_seq, checked = 0;
    bool have_prev = false, broken = false, in_tx = false;
    int got_cur, got_next;
    verdict_t v = {0};
    progress_t prog;
    vreader_t rd = {0};
    store_t *st = NULL;
    PGresult *r = NULL;
    store_rc_t src = STORE_OK;
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f': {
            char *end;
            errno = 0;
            from_seq = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || from_seq < 1)
                return cli_usage(cmd, "--from-seq: expected an integer >= 1, got \"%s\"", optarg);
            break;
        }
        case 'j':
            json = true;
            break;
        default:
            return cli_option_error("refunds verify");
        }
    }
    if (optind != argc)
        return cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    if ((rc = open_store(cmd, cfg, &st)) != 0)
        return rc;
    rd.st = st;
    rc = CP_EXIT_FAILURE;
    /* One snapshot for the head and the rows. */
    if ((src = begin_snapshot(st, cmd, err, sizeof err)) != STORE_OK)
        goto store_failed;
    in_tx = true;
    snprintf(from_s, sizeof from_s, "%" PRId64, from_seq);
    const char *p_from[1] = {from_s};
    if ((src = store_query_tx(st, cmd,
                              "SELECT seq, hash, (SELECT count(*) FROM refund_log WHERE seq >= "
                              "$1::bigint) FROM refund_chain_head WHERE id = 1",
                              1, p_from, &r, err, sizeof err)) != STORE_OK)
        goto store_failed;
    if (PQntuples(r) == 1) {
        head_seq = col_i64(r, 0, 0);
        snprintf(head_hash, sizeof head_hash, "%s", PQgetvalue(r, 0, 1));
    }
    progress_init(&prog, PQntuples(r) == 1 ? (size_t)col_i64(r, 0, 2) : 0);
    PQclear(r);
    r = NULL;
    /* From seq N: row N - 1 too, for the link row N must have. */
    snprintf(start_s, sizeof start_s, "%" PRId64, from_seq - 1);
    const char *p_start[1] = {start_s};
    if ((src = run_sql(st, cmd,
                       "DECLARE fin_verify NO SCROLL CURSOR FOR SELECT seq, order_id, payment_id, "
                       "amount_cents, currency, reason, "
                       "(extract(epoch FROM created_at) * 1000000)::bigint, prev_hash, hash "
                       "FROM refund_log WHERE seq >= $1::bigint ORDER BY seq",
                       1, p_start, err, sizeof err)) != STORE_OK)
        goto store_failed;

    if ((got_cur = vreader_next(&rd, &cur, &src, err, sizeof err)) < 0)
        goto store_failed;
    if (from_seq == 1) {
        snprintf(want_prev, sizeof want_prev, "%s", ZERO_HASH);
    } else if (got_cur && cur.seq == from_seq - 1) {
        prev = cur, have_prev = true;
        snprintf(want_prev, sizeof want_prev, "%s", prev.hash);
        if ((got_cur = vreader_next(&rd, &cur, &src, err, sizeof err)) < 0)
            goto store_failed;
    } else {
        want_prev[0] = '\0'; /* row N - 1 is missing: row N's own link is taken on trust */
    }
    want_seq = from_seq;
    while (got_cur) {
        if ((got_next = vreader_next(&rd, &next, &src, err, sizeof err)) < 0)
            goto store_failed;
        broken = judge(st, want_prev[0] ? want_prev : NULL, want_seq, &cur, got_next ? &next : NULL,
                       head_seq, &v);
        if (broken)
            break;
        checked++;
        prev = cur, have_prev = true;
        snprintf(want_prev, sizeof want_prev, "%s", prev.hash);
        want_seq = prev.seq + 1;
        cur = next, got_cur = got_next;
        if (checked % 1000 == 0)
            progress_draw(&prog, (size_t)checked, false);
    }
    progress_draw(&prog, (size_t)checked, true);
    if (!broken) {
        /* The log must end at the chain head: rows deleted from the end leave
         * the head ahead; a rewritten last row gives another hash. */
        int64_t last = have_prev ? prev.seq : from_seq - 1;
        if (last < head_seq && head_seq >= from_seq) {
            broken = true;
            v.seq = last + 1;
            v.kind = "missing";
            snprintf(v.detail, sizeof v.detail,
                     "rows seq %" PRId64 " to %" PRId64
                     " are missing (deleted from the end): the chain head is at seq %" PRId64,
                     last + 1, head_seq, head_seq);
        } else if (have_prev && last == head_seq && strcmp(prev.hash, head_hash) != 0) {
            broken = true;
            v.seq = last;
            v.kind = "changed";
            snprintf(v.detail, sizeof v.detail,
                     "row seq %" PRId64 " (order %" PRId64
                     "): its hash is not the chain head's (the row was changed and rehashed)",
                     last, prev.order_id);
        }
    }
    (void)run_sql(st, cmd, "COMMIT", 0, NULL, err, sizeof err);
    in_tx = false;
    if (json) {
        printf("{\"ok\":%s,\"checked\":%" PRId64 ",\"from_seq\":%" PRId64 ",\"head_seq\":%" PRId64,
               broken ? "false" : "true", checked, from_seq, head_seq);
        if (broken) {
            printf(",\"seq\":%" PRId64 ",\"kind\":\"%s\",\"detail\":", v.seq, v.kind);
            fin_json_string(stdout, v.detail, strlen(v.detail));
        }
        printf("}\n");
    } else if (broken) {
        printf("refunds verify: broken at seq %" PRId64 ": %s: %s\n", v.seq, v.kind, v.detail);
    } else {
        printf("refunds verify: %" PRId64 " row%s from seq %" PRId64
               " verify; the chain head is at seq %" PRId64 "\n",
               checked, checked == 1 ? "" : "s", from_seq, head_seq);
    }
    rc = broken ? CP_EXIT_FAILURE : CP_EXIT_OK;
    goto out;

store_failed:
    fprintf(stderr, "couponctl: %s\n", err);
    rc = cli_store_exit(src);
out:
    PQclear(r);
    PQclear(rd.r);
    if (in_tx)
        (void)run_sql(st, cmd, "ROLLBACK", 0, NULL, err, sizeof err);
    store_close(st);
    return rc;
}

/* ---- reconcile ------------------------------------------------------------ */

/* Invariant 1 over the payments paid since $1 (microseconds, or NULL): what
 * each violating order holds. */
static const char SQL_INV1[] =
    "DECLARE fin_inv1 NO SCROLL CURSOR FOR "
    "SELECT p.order_id, p.state, p.quantity, coalesce(c.n, 0), coalesce(r.n, 0) "
    "FROM payments p "
    "LEFT JOIN (SELECT order_id, count(*) AS n FROM coupons GROUP BY order_id) c "
    "ON c.order_id = p.order_id "
    "LEFT JOIN (SELECT order_id, count(*) AS n FROM refund_log GROUP BY order_id) r "
    "ON r.order_id = p.order_id "
    "WHERE ($1::bigint IS NULL OR p.paid_at >= timestamptz 'epoch' + $1::bigint * interval "
    "'1 microsecond') AND ("
    "(p.state = 'issued' AND (coalesce(c.n, 0) <> p.quantity OR coalesce(r.n, 0) <> 0)) OR "
    "(p.state = 'refunded' AND (coalesce(r.n, 0) <> 1 OR coalesce(c.n, 0) <> 0)) OR "
    "(p.state = 'pending' AND (coalesce(c.n, 0) <> 0 OR coalesce(r.n, 0) <> 0))) "
    "ORDER BY p.order_id";

/* Invariant 2: pending past paid_at + $2 s (refund_after_s + grace). */
static const char SQL_INV2[] =
    "DECLARE fin_inv2 NO SCROLL CURSOR FOR "
    "SELECT order_id, " SQL_TIME(
        "paid_at") ", "
                   "floor(extract(epoch FROM now() - paid_at))::bigint - $2::integer "
                   "FROM payments WHERE state = 'pending' "
                   "AND ($1::bigint IS NULL OR paid_at >= timestamptz 'epoch' + $1::bigint * "
                   "interval "
                   "'1 microsecond') AND paid_at < now() - $2::integer * interval '1 second' "
                   "ORDER BY paid_at, order_id";

/* Invariant 3: of the order ids $1, those neither in payments nor named by
 * a dead letter's body. */
static const char SQL_INV3[] =
    "SELECT o FROM unnest($1::bigint[]) AS o "
    "WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o) "
    "AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE position(convert_to('\"order_id\"', "
    "'UTF8') IN d.body) > 0 AND substring(encode(d.body, 'escape') FROM "
    "'\"order_id\"[[:space:]]*:[[:space:]]*\"?([0-9]+)') = o::text) "
    "ORDER BY o";

typedef struct recon {
    bool json;
    int64_t violations;
} recon_t;

static void violation(recon_t *R, int invariant, const char *order_id, const char *fmt, ...)
    CP_PRINTF(4, 5);
static void violation(recon_t *R, int invariant, const char *order_id, const char *fmt, ...)
{
    char what[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    R->violations++;
    if (R->json) {
        printf("{\"violation\":%d,\"order_id\":%s,\"what\":", invariant, order_id);
        fin_json_string(stdout, what, strlen(what));
        printf("}\n");
    } else {
        printf("violation: invariant %d: order %s: %s\n", invariant, order_id, what);
    }
}

/* Fetches a declared cursor to its end, calling each for every row. */
static store_rc_t drain(store_t *st, const char *cursor, recon_t *R,
                        void (*each)(recon_t *, const PGresult *, int), char *err, size_t errlen)
{
    char sql[80];
    PGresult *r;
    store_rc_t rc;

    snprintf(sql, sizeof sql, "FETCH FORWARD " FETCH_ROWS " FROM %s", cursor);
    for (;;) {
        if ((rc = store_query_tx(st, "reconcile", sql, 0, NULL, &r, err, errlen)) != STORE_OK)
            return rc;
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            each(R, r, i);
        PQclear(r);
        if (n == 0)
            return STORE_OK;
    }
}

static void inv1_row(recon_t *R, const PGresult *r, int i)
{
    const char *state = PQgetvalue(r, i, 1);
    int64_t qty = col_i64(r, i, 2), nc = col_i64(r, i, 3), nr = col_i64(r, i, 4);

    if (strcmp(state, "issued") == 0)
        violation(R, 1, PQgetvalue(r, i, 0),
                  "issued with %" PRId64 " of %" PRId64 " coupons and %" PRId64
                  " refund%s (want %" PRId64 " coupons, no refund)",
                  nc, qty, nr, nr == 1 ? "" : "s", qty);
    else if (strcmp(state, "refunded") == 0)
        violation(R, 1, PQgetvalue(r, i, 0),
                  "refunded with %" PRId64 " refund%s and %" PRId64
                  " coupons (want one refund, no coupons)",
                  nr, nr == 1 ? "" : "s", nc);
    else
        violation(R, 1, PQgetvalue(r, i, 0),
                  "%s with %" PRId64 " coupons and %" PRId64 " refund%s (want neither)", state, nc,
                  nr, nr == 1 ? "" : "s");
}

static void inv2_row(recon_t *R, const PGresult *r, int i)
{
    violation(R, 2, PQgetvalue(r, i, 0),
              "still pending %s s past its deadline and grace (paid at %s)", PQgetvalue(r, i, 2),
              PQgetvalue(r, i, 1));
}

/* Reads the published order ids of FILE: a line is an order id, or a JSON
 * object with "order_id" (a number or a string), such as a notification or
 * couponctl publish's result line, which counts only when "accepted" is not
 * false. Returns the number of ids (*ids malloc'd), or -1 after saying why. */
static long read_published(const char *path, int64_t **ids)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, n = 0, max = 0;
    long lineno = 0;
    ssize_t len;

    *ids = NULL;
    if (!f) {
        fprintf(stderr, "couponctl: reconcile: --published %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        int64_t id = 0;
        char *end;
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (line[0] == '{') {
            json_error_t je;
            json_t *o = json_loadb(line, (size_t)len, 0, &je), *v, *acc;
            bool ok = false;
            if (o && json_is_object(o)) {
                acc = json_object_get(o, "accepted");
                v = json_object_get(o, "order_id");
                if (json_is_false(acc)) {
                    json_decref(o);
                    continue; /* refused or invalid: nobody promised it */
                }
                if (json_is_integer(v)) {
                    id = json_integer_value(v);
                    ok = id > 0;
                } else if (json_is_string(v)) {
                    errno = 0;
                    id = strtoll(json_string_value(v), &end, 10);
                    ok = !errno && *end == '\0' && id > 0;
                }
            }
            json_decref(o);
            if (!ok)
                goto bad;
        } else {
            errno = 0;
            id = strtoll(line, &end, 10);
            if (errno || *end || id <= 0)
                goto bad;
        }
        if (n == max) {
            size_t grown = max ? max * 2 : 1024;
            int64_t *g = realloc(*ids, grown * sizeof *g);
            if (!g)
                goto oom;
            *ids = g;
            max = grown;
        }
        (*ids)[n++] = id;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return (long)n;
bad:
    fprintf(stderr,
            "couponctl: reconcile: %s:%ld: expected an order id or a JSON object with order_id\n",
            path, lineno);
    goto fail;
oom:
    fprintf(stderr, "couponctl: reconcile: out of memory\n");
fail:
    free(line);
    free(*ids);
    *ids = NULL;
    if (f != stdin)
        fclose(f);
    return -1;
}

/* Invariant 3 for ids[0..n), a chunk at a time. */
static store_rc_t check_published(store_t *st, recon_t *R, const int64_t *ids, size_t n, char *err,
                                  size_t errlen)
{
    enum { CHUNK = 10000 };
    char *arr = malloc(CHUNK * 21 + 3);
    store_rc_t rc = STORE_OK;

    if (!arr) {
        snprintf(err, errlen, "reconcile: out of memory");
        return STORE_E_QUERY;
    }
    for (size_t at = 0; at < n && rc == STORE_OK; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK, len = 0;
        PGresult *r;
        arr[len++] = '{';
        for (size_t i = 0; i < k; i++)
            len += (size_t)sprintf(arr + len, "%s%" PRId64, i ? "," : "", ids[at + i]);
        arr[len++] = '}';
        arr[len] = '\0';
        const char *p[1] = {arr};
        if ((rc = store_query_tx(st, "reconcile", SQL_INV3, 1, p, &r, err, errlen)) != STORE_OK)
            break;
        for (int i = 0; i < PQntuples(r); i++)
            violation(R, 3, PQgetvalue(r, i, 0),
                      "published and accepted, but neither in payments nor in dead_letters");
        PQclear(r);
    }
    free(arr);
    return rc;
}

int fin_cmd_reconcile(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        {"since", required_argument, NULL, 's'},
        {"published", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "reconcile", *published = NULL;
    char err[CP_ERRLEN], since_s[24], due_s[24];
    bool have_since = false, in_tx = false;
    int64_t since = 0, *ids = NULL;
    long nids = 0;
    recon_t R = {0};
    store_t *st = NULL;
    PGresult *r = NULL;
    store_rc_t src;
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if ((rc = parse_time(cmd, "--since", optarg, &since)) != 0)
                return rc;
            have_since = true;
            break;
        case 'p':
            published = optarg;
            break;
        case 'j':
            json = true;
            break;
        default:
            return cli_option_error("reconcile");
        }
    }
    if (optind != argc)
        return cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    R.json = json;
    if (published && (nids = read_published(published, &ids)) < 0)
        return CP_EXIT_USAGE;
    if ((rc = open_store(cmd, cfg, &st)) != 0) {
        free(ids);
        return rc;
    }
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    snprintf(due_s, sizeof due_s, "%d", cfg->issue.refund_after_s + cfg->reconcile.grace_s);
    const char *params[2] = {have_since ? since_s : NULL, due_s};

    if ((src = begin_snapshot(st, cmd, err, sizeof err)) != STORE_OK)
        goto store_failed;
    in_tx = true;
    /* Counts by state and by outcome: who issued, why refunded. */
    if ((src = store_query_tx(
             st, cmd,
             "SELECT 'state', state, count(*) FROM payments p WHERE ($1::bigint IS NULL OR "
             "p.paid_at >= timestamptz 'epoch' + $1::bigint * interval '1 microsecond') GROUP BY 2 "
             "UNION ALL SELECT 'issued_by', c.issued_by, count(DISTINCT c.order_id) FROM coupons c "
             "JOIN payments p USING (order_id) WHERE ($1::bigint IS NULL OR p.paid_at >= "
             "timestamptz 'epoch' + $1::bigint * interval '1 microsecond') GROUP BY 2 "
             "UNION ALL SELECT 'refund_reason', split_part(r.reason, ':', 1), count(*) "
             "FROM refund_log r JOIN payments p USING (order_id) WHERE ($1::bigint IS NULL OR "
             "p.paid_at >= timestamptz 'epoch' + $1::bigint * interval '1 microsecond') GROUP BY 2 "
             "UNION ALL SELECT 'pending_in_flight', '', count(*) FROM payments p WHERE state = "
             "'pending' AND paid_at >= now() - $2::integer * interval '1 second' AND "
             "($1::bigint IS NULL OR p.paid_at >= timestamptz 'epoch' + $1::bigint * interval "
             "'1 microsecond') ORDER BY 1, 2",
             2, params, &r, err, sizeof err)) != STORE_OK)
        goto store_failed;
    for (int i = 0; i < PQntuples(r); i++) {
        /* The key may be a reason's first word: text from outside. */
        const char *key = PQgetvalue(r, i, 1);
        if (json) {
            printf("{\"count\":\"%s\",\"key\":", PQgetvalue(r, i, 0));
            fin_json_string(stdout, key, strlen(key));
            printf(",\"n\":%s}\n", PQgetvalue(r, i, 2));
        } else {
            char *safe = disp_safe_dup(key);
            printf("%-18s %-10s %s\n", PQgetvalue(r, i, 0), safe ? safe : "?", PQgetvalue(r, i, 2));
            free(safe);
        }
    }
    PQclear(r);
    r = NULL;
    if ((src = run_sql(st, cmd, SQL_INV1, 1, params, err, sizeof err)) != STORE_OK ||
        (src = drain(st, "fin_inv1", &R, inv1_row, err, sizeof err)) != STORE_OK ||
        (src = run_sql(st, cmd, SQL_INV2, 2, params, err, sizeof err)) != STORE_OK ||
        (src = drain(st, "fin_inv2", &R, inv2_row, err, sizeof err)) != STORE_OK)
        goto store_failed;
    if (ids && (src = check_published(st, &R, ids, (size_t)nids, err, sizeof err)) != STORE_OK)
        goto store_failed;
    (void)run_sql(st, cmd, "COMMIT", 0, NULL, err, sizeof err);
    in_tx = false;
    fprintf(stderr, "reconcile: invariants 1 and 2%s checked: %" PRId64 " violation%s\n",
            ids ? " and 3" : "", R.violations, R.violations == 1 ? "" : "s");
    if (ids)
        fprintf(stderr, "reconcile: %ld published order id%s checked\n", nids,
                nids == 1 ? "" : "s");
    rc = R.violations ? CP_EXIT_FAILURE : CP_EXIT_OK;
    goto out;

store_failed:
    fprintf(stderr, "couponctl: %s\n", err);
    rc = cli_store_exit(src);
out:
    PQclear(r);
    if (in_tx)
        (void)run_sql(st, cmd, "ROLLBACK", 0, NULL, err, sizeof err);
    store_close(st);
    free(ids);
    return rc;
}
