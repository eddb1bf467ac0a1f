/* dlq.c: the operators' dead-letter commands (couponctl dlq list, show,
 * replay, resolve, audit): the replay decision along the W lane's path with
 * the current code and configuration, and the audit trail. What they print
 * is made safe by display.c. */
#define _GNU_SOURCE
#include "dlq.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "display.h"
#include "lane.h"
#include "signature.h"
#include "store_dlq.h"
#include "transport.h"

#define LIST_DEFAULT_LIMIT  100
#define AUDIT_DEFAULT_LIMIT 100
#define SHOW_BODY_MAX       (64 * 1024) /* bytes of a body `show` prints; --raw has all */
#define PROGRESS_EVERY_MS   100
#define REPLAY_PAGE         500 /* letters a replay by filter reads at a time */

static const char *const result_names[DLQ_RESULT_COUNT] = {
    [DLQ_ISSUED] = "issued",           [DLQ_REFUNDED] = "refunded", [DLQ_DUPLICATE] = "duplicate",
    [DLQ_HANDED_TO_W] = "handed_to_w", [DLQ_INVALID] = "invalid",   [DLQ_REFUSED] = "refused",
    [DLQ_FAILED] = "failed",           [DLQ_RESOLVED] = "resolved",
};

const char *dlq_result_name(dlq_result_t r)
{
    return (unsigned)r < DLQ_RESULT_COUNT ? result_names[r] : "unknown";
}

bool dlq_result_ok(dlq_result_t r)
{
    return r == DLQ_ISSUED || r == DLQ_REFUNDED || r == DLQ_DUPLICATE || r == DLQ_HANDED_TO_W;
}

/* ---- time ---------------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- bodies ------------------------------------------------------------- */

bool dlq_body_ids(const void *body, size_t len, int64_t *order_id, char *payment_id, size_t plen)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, 0, &e), *v;
    bool found = false;

    *order_id = 0;
    if (plen)
        payment_id[0] = '\0';
    if (!root)
        return false;
    v = json_is_object(root) ? json_object_get(root, "order_id") : NULL;
    if (json_is_integer(v)) {
        *order_id = json_integer_value(v);
        found = true;
    }
    v = json_is_object(root) ? json_object_get(root, "payment_id") : NULL;
    if (json_is_string(v)) {
        const char *id = json_string_value(v);
        size_t n = strlen(id);
        if (n >= 1 && n <= MSG_PAYMENT_ID_MAX && n < plen &&
            strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n)
            memcpy(payment_id, id, n + 1);
    }
    json_decref(root);
    return found;
}

/* ---- shared command pieces ---------------------------------------------- */

static bool known_reason(const char *r)
{
    msg_status_t st = msg_status_from_code(r);
    return strcmp(r, "conflict") == 0 || (st != MSG_STATUS_COUNT && st != MSG_OK);
}

/* What list and replay select by. */
typedef struct selection {
    store_dl_filter_t f;
    char since[40];
    bool json;
    bool filtered; /* a filter option was given */
    int64_t *ids;  /* positional letter ids */
    size_t nids;
} selection_t;

enum {
    OPT_REASON = 256,
    OPT_LANE,
    OPT_SINCE,
    OPT_UNRESOLVED,
    OPT_LIMIT,
    OPT_JSON,
    OPT_DRY_RUN,
    OPT_RATE,
    OPT_FORCE,
    OPT_RESIGN,
    OPT_NOTE,
    OPT_RAW,
    OPT_LETTER,
    OPT_RESOLVED,
    OPT_OLDER_THAN,
};

// clang-format off
#define FILTER_OPTIONS                                                                             \
    {"reason", required_argument, NULL, OPT_REASON},                                               \
    {"lane", required_argument, NULL, OPT_LANE},                                                   \
    {"since", required_argument, NULL, OPT_SINCE},                                                 \
    {"unresolved", no_argument, NULL, OPT_UNRESOLVED},                                             \
    {"limit", required_argument, NULL, OPT_LIMIT},                                                 \
    {"json", no_argument, NULL, OPT_JSON}
// clang-format on

static int parse_since(const char *cmd, const char *arg, char *out, size_t outlen)
{
    int64_t us;
    if (disp_parse_since(arg, cp_clock_us(CLOCK_REALTIME), &us) != 0)
        return cli_usage(
            cmd,
            "--since: expected a time (2026-11-21T10:00:00Z, 2026-11-21) or a duration "
            "back from now (30m, 2h, 7d), got \"%s\"",
            arg);
    disp_format_us(us, out, outlen);
    return 0;
}

static int parse_limit(const char *cmd, const char *arg, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 0)
        return cli_usage(cmd, "--limit: expected an integer >= 0 (0: no limit), got \"%s\"", arg);
    *out = v;
    return 0;
}

/* Handles one of the options of FILTER_OPTIONS. Returns 0, CP_EXIT_USAGE
 * (reported), or -1 when c is not one of them. */
static int selection_option(const char *cmd, selection_t *s, int c, const char *arg)
{
    switch (c) {
    case OPT_REASON:
        if (!known_reason(arg))
            return cli_usage(
                cmd, "--reason: unknown reason code \"%s\" (see docs/operations-dlq.md)", arg);
        s->f.reason = arg;
        break;
    case OPT_LANE:
        if (strcmp(arg, "l") != 0 && strcmp(arg, "w") != 0)
            return cli_usage(cmd, "--lane: expected l or w, got \"%s\"", arg);
        s->f.lane = arg;
        break;
    case OPT_SINCE:
        if (parse_since(cmd, arg, s->since, sizeof s->since) != 0)
            return CP_EXIT_USAGE;
        s->f.since = s->since;
        break;
    case OPT_UNRESOLVED:
        s->f.unresolved = true;
        break;
    case OPT_LIMIT:
        if (parse_limit(cmd, arg, &s->f.limit) != 0)
            return CP_EXIT_USAGE;
        break;
    case OPT_JSON:
        s->json = true;
        return 0; /* not a filter */
    default:
        return -1;
    }
    s->filtered = true;
    return 0;
}

/* Collects the positional arguments argv[from..argc) as letter ids. */
static int selection_ids(const char *cmd, selection_t *s, int from, int argc, char **argv)
{
    if (argc <= from)
        return 0;
    s->ids = calloc((size_t)(argc - from), sizeof *s->ids);
    if (!s->ids)
        return cli_usage(cmd, "out of memory");
    for (int i = from; i < argc; i++)
        if (cli_parse_id(argv[i], &s->ids[s->nids++]) != 0)
            return cli_usage(cmd, "expected a letter ID (an integer > 0), got \"%s\"", argv[i]);
    return 0;
}

/* Prints rows[0..n) (each `size` bytes) as JSON lines (json_of), or as a
 * table of head's columns (add_row puts one row's cells in it). */
static void print_rows(const void *rows, size_t size, size_t n, bool json, const char *const *head,
                       size_t ncols, cJSON *(*json_of)(const void *row),
                       int (*add_row)(disp_table_t *t, const void *row))
{
    disp_table_t t = {.ncols = ncols, .head = head};
    for (size_t i = 0; i < n; i++) {
        const void *row = (const char *)rows + i * size;
        if (json) {
            cli_json_print(json_of(row));
        } else if (add_row(&t, row) != 0) {
            fprintf(stderr, "couponctl: out of memory\n");
            break;
        }
    }
    if (!json && n > 0)
        disp_table_print(&t, stdout, disp_terminal_width(STDOUT_FILENO));
    disp_table_free(&t);
}

/* Adds s as a string, or null when empty. */
static void json_add_opt(cJSON *o, const char *key, const char *s)
{
    if (s && s[0])
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

/* Adds an int64 id as a string (readers that use doubles keep it exact), or
 * null when 0. */
static void json_add_id(cJSON *o, const char *key, int64_t id)
{
    char text[24];
    if (!id) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    snprintf(text, sizeof text, "%" PRId64, id);
    cJSON_AddStringToObject(o, key, text);
}

static const char *letter_state(const store_dl_t *dl)
{
    return dl->resolved_at[0] ? dl->resolution : "open";
}

static cJSON *letter_json(const store_dl_t *dl)
{
    cJSON *o = cJSON_CreateObject();
    int64_t order_id;
    char payment_id[MSG_PAYMENT_ID_MAX + 1];

    if (!o)
        return NULL;
    dlq_body_ids(dl->body, dl->len, &order_id, payment_id, sizeof payment_id);
    cJSON_AddNumberToObject(o, "id", (double)dl->id);
    cJSON_AddStringToObject(o, "state", letter_state(dl));
    cJSON_AddStringToObject(o, "lane", dl->lane);
    cJSON_AddStringToObject(o, "reason", dl->reason);
    cJSON_AddStringToObject(o, "detail", dl->detail);
    json_add_id(o, "order_id", order_id);
    json_add_opt(o, "payment_id", payment_id);
    cJSON_AddNumberToObject(o, "seen_count", dl->seen_count);
    cJSON_AddNumberToObject(o, "replay_count", dl->replay_count);
    cJSON_AddStringToObject(o, "received_at", dl->received_at);
    cJSON_AddStringToObject(o, "last_seen_at", dl->last_seen_at);
    json_add_opt(o, "last_replay_at", dl->last_replay_at);
    json_add_opt(o, "resolved_at", dl->resolved_at);
    json_add_opt(o, "resolved_by", dl->resolved_by);
    json_add_opt(o, "resolution", dl->resolution);
    json_add_opt(o, "resolution_note", dl->resolution_note);
    cJSON_AddNumberToObject(o, "body_bytes", (double)dl->body_len);
    return o;
}

/* ---- dlq list ------------------------------------------------------------ */

static cJSON *letter_row_json(const void *row)
{
    return letter_json(row);
}

static int letter_row(disp_table_t *t, const void *row)
{
    const store_dl_t *dl = row;
    char id[24], seen[16], replays[16], order[24] = "", payment_id[MSG_PAYMENT_ID_MAX + 1];
    int64_t order_id;

    snprintf(id, sizeof id, "%" PRId64, dl->id);
    snprintf(seen, sizeof seen, "%d", dl->seen_count);
    snprintf(replays, sizeof replays, "%d", dl->replay_count);
    if (dlq_body_ids(dl->body, dl->len, &order_id, payment_id, sizeof payment_id))
        snprintf(order, sizeof order, "%" PRId64, order_id);
    const char *cells[] = {id,      dl->last_seen_at, dl->lane, dl->reason, seen,
                           replays, letter_state(dl), order,    dl->detail};
    return disp_table_add(t, cells);
}

int dlq_cmd_list(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {FILTER_OPTIONS, {NULL, 0, NULL, 0}};
    static const char *const head[] = {"ID",      "LAST SEEN", "LANE",  "REASON", "SEEN",
                                       "REPLAYS", "STATE",     "ORDER", "DETAIL"};
    selection_t s = {.f.limit = LIST_DEFAULT_LIMIT, .json = json};
    char err[CP_ERRLEN];
    store_dl_t *rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    store_t *st = NULL;
    store_rc_t rc;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == '?')
            return cli_option_error("dlq list");
        if ((ret = selection_option("dlq list", &s, c, optarg)) != 0)
            return CP_EXIT_USAGE;
    }
    if (optind != argc)
        return cli_usage("dlq list", "takes no arguments, only options");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    rc = store_dl_list(st, &s.f, &rows, &n, &total, err, sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq list: %s\n", err);
        return cli_store_exit(rc);
    }
    print_rows(rows, sizeof *rows, n, s.json, head, CP_ARRAY_SIZE(head), letter_row_json,
               letter_row);
    if (n == 0)
        fprintf(stderr, "dlq list: no dead letters match\n");
    else if ((int64_t)n < total)
        fprintf(stderr, "dlq list: showing %zu of %" PRId64 " letters (--limit 0 shows all)\n", n,
                total);
    store_dl_free(rows, n);
    return CP_EXIT_OK;
}

/* ---- dlq show ------------------------------------------------------------ */

static void show_headers(const char *headers)
{
    cJSON *o = cJSON_Parse(headers), *item;
    if (!o) {
        printf("  ");
        disp_put_safe(stdout, headers, strlen(headers), false, NULL);
        printf("\n");
        return;
    }
    cJSON_ArrayForEach(item, o)
    {
        cJSON *sub;
        /* The message's own headers first-level, the broker's facts beside them. */
        if (cJSON_IsObject(item) && strcmp(item->string, "headers") == 0) {
            if (!item->child)
                printf("  (no message headers)\n");
            cJSON_ArrayForEach(sub, item)
            {
                printf("  ");
                disp_put_safe(stdout, sub->string, strlen(sub->string), false, NULL);
                printf(": ");
                if (cJSON_IsString(sub))
                    disp_put_safe(stdout, sub->valuestring, strlen(sub->valuestring), false, NULL);
                else {
                    char *text = cJSON_PrintUnformatted(sub);
                    disp_put_safe(stdout, text ? text : "", text ? strlen(text) : 0, false, NULL);
                    cJSON_free(text);
                }
                printf("\n");
            }
            continue;
        }
        char *text = cJSON_IsString(item) ? NULL : cJSON_PrintUnformatted(item);
        const char *v = cJSON_IsString(item) ? item->valuestring : text ? text : "";
        printf("  [broker] %s: ", item->string);
        disp_put_safe(stdout, v, strlen(v), false, NULL);
        printf("\n");
        cJSON_free(text);
    }
    cJSON_Delete(o);
}

/* The body: pretty JSON when it is JSON, otherwise its text shown safely. */
static void show_body(const store_dl_t *dl)
{
    size_t shown = dl->len > SHOW_BODY_MAX ? SHOW_BODY_MAX : dl->len;
    msg_status_t st = msg_parse(dl->body, dl->len, 1000, NULL, NULL, 0);
    bool is_json = st != MSG_E_TOO_LARGE && st != MSG_E_EMPTY && st != MSG_E_NOT_UTF8 &&
                   st != MSG_E_JSON && dl->len == dl->body_len;

    if (dl->body_len == 0) {
        printf("body         (empty)\n");
        return;
    }
    if (is_json) {
        printf("body         %zu bytes, JSON (re-indented; the exact bytes: --raw)\n", dl->len);
        disp_put_json_pretty(stdout, dl->body, dl->len, "  ");
        return;
    }
    printf("body         %zu bytes, not JSON (%s); shown with \\xNN for bytes that are not "
           "printable text; the exact bytes: --raw\n  ",
           dl->body_len, msg_status_code(st));
    disp_put_safe(stdout, dl->body, shown, true, "  ");
    printf("\n");
    if (shown < dl->body_len)
        printf("  ... %zu more bytes\n", dl->body_len - shown);
}

static void show_history(const store_dl_audit_t *h, size_t n)
{
    if (n == 0) {
        printf("history      no replay or resolve yet\n");
        return;
    }
    printf("history\n");
    for (size_t i = 0; i < n; i++) {
        printf("  %s  %s@%s  %s  %s%s", h[i].at, h[i].os_user, h[i].host, h[i].action, h[i].result,
               h[i].resigned ? " (re-signed)" : "");
        if (h[i].detail[0]) {
            printf(": ");
            disp_put_safe(stdout, h[i].detail, strlen(h[i].detail), false, NULL);
        }
        printf("\n");
    }
}

static cJSON *audit_json(const store_dl_audit_t *a)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)a->id);
    cJSON_AddNumberToObject(o, "letter_id", (double)a->letter_id);
    cJSON_AddStringToObject(o, "at", a->at);
    cJSON_AddStringToObject(o, "os_user", a->os_user);
    cJSON_AddStringToObject(o, "host", a->host);
    cJSON_AddStringToObject(o, "db_user", a->db_user);
    cJSON_AddStringToObject(o, "action", a->action);
    cJSON_AddStringToObject(o, "result", a->result);
    cJSON_AddBoolToObject(o, "resigned", a->resigned);
    json_add_id(o, "order_id", a->order_id);
    cJSON_AddStringToObject(o, "detail", a->detail);
    return o;
}

static void show_json(const store_dl_t *dl, const store_dl_audit_t *h, size_t nh)
{
    cJSON *o = letter_json(dl), *headers, *hist;
    int b64len = 4 * (((int)dl->len + 2) / 3) + 1;
    char *b64 = malloc((size_t)b64len);

    if (!o) {
        free(b64);
        return;
    }
    cJSON_AddStringToObject(o, "fingerprint", dl->fingerprint);
    headers = cJSON_Parse(dl->headers);
    if (headers)
        cJSON_AddItemToObject(o, "headers", headers);
    else
        cJSON_AddStringToObject(o, "headers", dl->headers);
    /* The body as text when it is (valid UTF-8, no NUL), and always exactly. */
    if (dl->len == dl->body_len && disp_utf8_text(dl->body, dl->len))
        cJSON_AddStringToObject(o, "body", (const char *)dl->body);
    else
        cJSON_AddNullToObject(o, "body");
    if (b64) {
        EVP_EncodeBlock((unsigned char *)b64, dl->body, (int)dl->len);
        cJSON_AddStringToObject(o, "body_base64", b64);
    }
    free(b64);
    hist = cJSON_AddArrayToObject(o, "history");
    for (size_t i = 0; hist && i < nh; i++)
        cJSON_AddItemToArray(hist, audit_json(&h[i]));
    cli_json_print(o);
}

int dlq_cmd_show(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         {"raw", no_argument, NULL, OPT_RAW},
                                         {NULL, 0, NULL, 0}};
    char err[CP_ERRLEN];
    store_dl_t dl;
    store_dl_audit_t *h = NULL;
    size_t nh = 0;
    bool raw = false;
    int64_t id, order_id;
    char payment_id[MSG_PAYMENT_ID_MAX + 1];
    store_t *st = NULL;
    store_rc_t rc;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_JSON)
            json = true;
        else if (c == OPT_RAW)
            raw = true;
        else
            return cli_option_error("dlq show");
    }
    if (optind + 1 != argc || cli_parse_id(argv[optind], &id) != 0)
        return cli_usage("dlq show", "needs one letter ID (an integer > 0)");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    rc = store_dl_get(st, id, &dl, err, sizeof err);
    if (rc == STORE_OK && !raw)
        rc = store_dl_audit(st, id, NULL, 0, &h, &nh, err, sizeof err);
    store_close(st);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "couponctl: dlq show: no dead letter %" PRId64 "\n", id);
        return CP_EXIT_FAILURE;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq show: %s\n", err);
        store_dl_clear(&dl);
        return cli_store_exit(rc);
    }
    if (raw) {
        fwrite(dl.body, 1, dl.len, stdout);
    } else if (json) {
        show_json(&dl, h, nh);
    } else {
        printf("letter       %" PRId64 "\n", dl.id);
        if (dl.resolved_at[0]) {
            printf("state        resolved %s by %s: %s", dl.resolved_at, dl.resolved_by,
                   dl.resolution);
            if (dl.resolution_note[0]) {
                printf(" (");
                disp_put_safe(stdout, dl.resolution_note, strlen(dl.resolution_note), false, NULL);
                printf(")");
            }
            printf("\n");
        } else {
            printf("state        open\n");
        }
        printf("reason       %s\n", dl.reason);
        printf("detail       ");
        disp_put_safe(stdout, dl.detail, strlen(dl.detail), false, NULL);
        printf("\n");
        if (dlq_body_ids(dl.body, dl.len, &order_id, payment_id, sizeof payment_id))
            printf("order        %" PRId64 "%s%s (couponctl status %" PRId64 ")\n", order_id,
                   payment_id[0] ? ", payment " : "", payment_id, order_id);
        printf("lane         %s\n", dl.lane);
        printf("seen         %d time%s: first %s, last %s\n", dl.seen_count,
               dl.seen_count == 1 ? "" : "s", dl.received_at, dl.last_seen_at);
        printf("replays      %d%s%s\n", dl.replay_count, dl.last_replay_at[0] ? ", last " : "",
               dl.last_replay_at);
        printf("fingerprint  %s\n", dl.fingerprint);
        printf("headers\n");
        show_headers(dl.headers);
        show_body(&dl);
        show_history(h, nh);
    }
    store_dl_audit_free(h, nh);
    store_dl_clear(&dl);
    return CP_EXIT_OK;
}

/* ---- dlq replay ---------------------------------------------------------- */

/* One letter's outcome. */
typedef struct outcome {
    dlq_result_t result;
    int64_t order_id;
    bool resigned;
    char reason[48];         /* DLQ_INVALID, DLQ_REFUSED: the reason code now */
    char letter_detail[256]; /* DLQ_INVALID: the new detail of the letter */
    char detail[768];        /* what happened, for people and the audit trail */
} outcome_t;

typedef struct replayer {
    const cfg_t *cfg;
    store_t *st;
    transport_t *w; /* W publisher, opened at the first hand-over */
    bool w_down;    /* it could not be opened: not tried again this run */
    char w_err[CP_ERRLEN];
    bool dry_run, force;
    const sig_key_t *resign;
    char user[64], host[256];
} replayer_t;

static volatile sig_atomic_t replay_stop;

static void on_interrupt(int sig)
{
    (void)sig;
    replay_stop = 1;
}

static void note(outcome_t *o, const char *fmt, ...) CP_PRINTF(2, 3);
static void note(outcome_t *o, const char *fmt, ...)
{
    size_t used = strlen(o->detail);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail + used, sizeof o->detail - used, fmt, ap);
    va_end(ap);
}

static bool signature_status(msg_status_t st)
{
    return st == MSG_E_SIG_MISSING || st == MSG_E_SIG_FORMAT || st == MSG_E_SIG_UNKNOWN_KEY ||
           st == MSG_E_SIG_MISMATCH;
}

/* The `signature` header the letter arrived with, from its headers JSON
 * ({"headers":{"signature":"k1:..."}, ...}); false when it had none. */
static bool letter_signature(const char *headers, char *out, size_t outlen)
{
    cJSON *o = cJSON_Parse(headers);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "headers");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(h, "signature");
    bool found = cJSON_IsString(sig) && strlen(sig->valuestring) < outlen;
    if (found)
        snprintf(out, outlen, "%s", sig->valuestring);
    cJSON_Delete(o);
    return found;
}

static void invalid(outcome_t *o, const char *reason, const char *detail)
{
    o->result = DLQ_INVALID;
    snprintf(o->reason, sizeof o->reason, "%s", reason);
    snprintf(o->letter_detail, sizeof o->letter_detail, "%s", detail);
    note(o, "%s: %s", reason, detail);
}

/* Takes the store's answer on a refund (or its preview) for p. */
static store_rc_t refund(replayer_t *R, const msg_payment_t *p, const char *reason, outcome_t *o)
{
    char err[CP_ERRLEN];
    store_result_t r;
    store_rc_t rc = R->dry_run ? store_issue_preview(R->st, p, &r, err, sizeof err)
                               : store_refund_payment(R->st, p, reason, &r, err, sizeof err);
    if (rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA) {
        note(o, "%s", err);
        return rc;
    }
    if (rc != STORE_OK) {
        o->result = DLQ_FAILED;
        note(o, "refund failed: %s", err);
    } else if (r.conflict) {
        invalid(o, "conflict", r.error);
    } else if (r.outcome == STORE_DUPLICATE) {
        o->result = DLQ_DUPLICATE;
        note(o, "order already %s: nothing changed", r.state);
    } else {
        o->result = DLQ_REFUNDED;
        note(o, "%s", reason);
        if (r.refund_seq)
            note(o, " (refund seq %" PRId64 ")", r.refund_seq);
    }
    return STORE_OK;
}

/* Deal unknown or inactive: publish the message (as signed now) to the W
 * lane's first retry tier, so W retries it and refunds it at the deadline,
 * as for any notification of its own. */
static void hand_to_w(replayer_t *R, const msg_payment_t *p, const tp_delivery_t *d,
                      const char *why, outcome_t *o)
{
    const cfg_t *cfg = R->cfg;
    int64_t due = lane_deadline_ms(cfg, p);
    int delay = lane_retry_tier(cfg, 0, due - cp_clock_us(CLOCK_REALTIME) / 1000);
    char dest[256], when[40], sig[SIG_HEADER_MAX + 1];
    tp_msg_t m;

    tp_retry_queue(&cfg->lane_w, delay, dest, sizeof dest);
    msg_format_time(due * 1000, when, sizeof when);
    if (R->dry_run) {
        o->result = DLQ_HANDED_TO_W;
        note(o, "%s: to W's retry queue %s; W retries until %s, then refunds", why, dest, when);
        return;
    }
    if (!R->w && !R->w_down) {
        tp_lane_desc_t desc = {.lane = "w",
                               .cfg = &cfg->lane_w,
                               .timeout_ms = cfg->publish.timeout_ms,
                               .retry_delays_ms = cfg->issue.retry_delays_ms,
                               .nretry = cfg->issue.nretry_delays,
                               .refunds_queue = cfg->refunds_queue};
        if (cfg->lane_w.transport != CFG_TRANSPORT_AMQP) {
            snprintf(R->w_err, sizeof R->w_err,
                     "lanes.w.transport is not \"amqp\": W has no "
                     "retry queues");
            R->w_down = true;
        } else if (tp_publisher_open(&R->w, &desc, R->w_err, sizeof R->w_err) != 0) {
            R->w_down = true;
        }
    }
    o->result = DLQ_FAILED;
    if (R->w_down) {
        note(o,
             "%s; not handed to W: %s (the payment is recorded pending: W's sweeper finishes "
             "it)",
             why, R->w_err);
        return;
    }
    snprintf(sig, sizeof sig, "%.*s", (int)d->siglen, d->signature ? d->signature : "");
    m = (tp_msg_t){.body = d->body,
                   .len = d->len,
                   .signature = d->signature ? sig : NULL,
                   .dest = dest,
                   .attempt = 1};
    tp_publish_begin(R->w, &m, 1);
    if (tp_publish_end(R->w, &m, 1, tp_now_ms() + cfg->publish.timeout_ms) != 1) {
        note(o,
             "%s; not handed to W: %s (the payment is recorded pending: W's sweeper finishes "
             "it)",
             why, m.error);
        return;
    }
    o->result = DLQ_HANDED_TO_W;
    note(o, "%s: handed to W's retry queue %s; W retries until %s, then refunds", why, dest, when);
}

/* Decides and does what a replay of dl does (or, dry, would do). Returns
 * STORE_OK with o filled, or STORE_E_UNAVAILABLE / STORE_E_SCHEMA when the
 * store is unusable (the run stops). */
static store_rc_t replay_letter(replayer_t *R, const store_dl_t *dl, outcome_t *o)
{
    const cfg_t *cfg = R->cfg;
    char sig[SIG_HEADER_MAX + 1], detail[256], err[CP_ERRLEN], pid[MSG_PAYMENT_ID_MAX + 1];
    bool has_sig = letter_signature(dl->headers, sig, sizeof sig);
    tp_delivery_t d = {.body = dl->body,
                       .len = dl->len,
                       .signature = has_sig ? sig : NULL,
                       .siglen = has_sig ? strlen(sig) : 0};
    msg_payment_t p;
    msg_status_t st;
    store_result_t res;
    store_rc_t rc;

    memset(o, 0, sizeof *o);
    /* The order as far as the body tells, for the record even if it is refused. */
    dlq_body_ids(dl->body, dl->len, &o->order_id, pid, sizeof pid);
    if (dl->replay_count >= cfg->dlq.max_replays && !R->force) {
        o->result = DLQ_REFUSED;
        snprintf(o->reason, sizeof o->reason, "%s", dl->reason);
        note(o, "replayed %d times already (dlq.max_replays = %d): --force replays it again",
             dl->replay_count, cfg->dlq.max_replays);
        return STORE_OK;
    }
    st = lane_verify(cfg, &d, &p, detail, sizeof detail);
    if (signature_status(st) && R->resign) {
        note(o, "re-signed with key %s (was %s: %s); ", R->resign->id, msg_status_code(st), detail);
        if (sig_sign(R->resign, dl->body, dl->len, sig, sizeof sig) != 0) {
            o->result = DLQ_FAILED;
            note(o, "signing failed");
            return STORE_OK;
        }
        d.signature = sig;
        d.siglen = strlen(sig);
        o->resigned = true;
        st = lane_verify(cfg, &d, &p, detail, sizeof detail);
    }
    if (signature_status(st)) {
        o->result = DLQ_REFUSED;
        snprintf(o->reason, sizeof o->reason, "%s", msg_status_code(st));
        note(o, "%s: %s; replay it only if you vouch for the message: --resign KEY_ID",
             msg_status_code(st), detail);
        return STORE_OK;
    }
    if (st != MSG_OK) {
        invalid(o, msg_status_code(st), detail);
        return STORE_OK;
    }
    o->order_id = p.order_id;
    if (cp_clock_us(CLOCK_REALTIME) / 1000 >= lane_deadline_ms(cfg, &p)) {
        char reason[128];
        snprintf(reason, sizeof reason, "deadline: no coupons %d s after payment",
                 cfg->issue.refund_after_s);
        return refund(R, &p, reason, o);
    }
    rc = R->dry_run ? store_issue_preview(R->st, &p, &res, err, sizeof err)
                    : store_issue(R->st, &p, "replay", &res, err, sizeof err);
    if (rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA) {
        note(o, "%s", err);
        return rc;
    }
    if (rc != STORE_OK) {
        o->result = DLQ_FAILED;
        note(o, "issue failed: %s", err);
        return STORE_OK;
    }
    switch (res.outcome) {
    case STORE_ISSUED:
        o->result = DLQ_ISSUED;
        note(o, "%d coupon%s (issued_by replay)", p.quantity, p.quantity == 1 ? "" : "s");
        break;
    case STORE_DUPLICATE:
        o->result = DLQ_DUPLICATE;
        note(o, "order already %s: nothing changed", res.state);
        break;
    case STORE_TRANSIENT:
        hand_to_w(R, &p, &d, res.error, o);
        break;
    default:
        if (res.conflict) {
            invalid(o, "conflict", res.error);
            break;
        }
        return refund(R, &p, res.error, o);
    }
    return STORE_OK;
}

/* Writes the outcome to the audit trail and the letter. */
static store_rc_t record_replay(replayer_t *R, const store_dl_t *dl, const outcome_t *o, char *err,
                                size_t errlen)
{
    store_dl_action_t a = {.letter_id = dl->id,
                           .action = "replay",
                           .os_user = R->user,
                           .host = R->host,
                           .result = dlq_result_name(o->result),
                           .detail = o->detail,
                           .resigned = o->resigned,
                           .order_id = o->order_id,
                           .replayed = o->result != DLQ_REFUSED && o->result != DLQ_FAILED,
                           .reason = o->result == DLQ_INVALID ? o->reason : NULL,
                           .letter_detail = o->letter_detail,
                           .close = dlq_result_ok(o->result)};
    return store_dl_record(R->st, &a, NULL, err, errlen);
}

/* One replay run: what came of its letters so far, its pace and its bar. */
typedef struct run {
    size_t n[DLQ_RESULT_COUNT]; /* letters by result */
    size_t done;                /* letters gone through */
    size_t total;               /* letters expected */
    bool json, progress, aborted;
    int width;     /* of the progress bar */
    double rate;   /* letters per second; 0: no limit */
    int64_t t0_ns; /* monotonic start */
    int64_t drawn_ns;
} run_t;

static void run_text(const run_t *t, char *out, size_t outlen)
{
    snprintf(out, outlen, "replayed %zu  invalid %zu  refused %zu  failed %zu",
             t->n[DLQ_ISSUED] + t->n[DLQ_REFUNDED] + t->n[DLQ_DUPLICATE] + t->n[DLQ_HANDED_TO_W],
             t->n[DLQ_INVALID], t->n[DLQ_REFUSED], t->n[DLQ_FAILED]);
}

static void print_outcome(const store_dl_t *dl, const outcome_t *o, bool dry, bool json)
{
    if (json) {
        cJSON *j = cJSON_CreateObject();
        if (!j)
            return;
        cJSON_AddNumberToObject(j, "id", (double)dl->id);
        json_add_id(j, "order_id", o->order_id);
        cJSON_AddStringToObject(j, "result", dlq_result_name(o->result));
        cJSON_AddBoolToObject(j, "dry_run", dry);
        cJSON_AddBoolToObject(j, "resigned", o->resigned);
        json_add_opt(j, "reason", o->reason);
        cJSON_AddStringToObject(j, "detail", o->detail);
        cli_json_print(j);
        return;
    }
    printf("letter %" PRId64 ": %s%s", dl->id, dry ? "dry run: " : "", dlq_result_name(o->result));
    if (o->order_id)
        printf(" (order %" PRId64 ")", o->order_id);
    printf(": ");
    disp_put_safe(stdout, o->detail, strlen(o->detail), false, NULL);
    printf("\n");
}

/* Sleeps until the monotonic time `until_ns`, or an interrupt. */
static void pace(int64_t until_ns)
{
    for (int64_t now = mono_ns(); now < until_ns && !replay_stop; now = mono_ns()) {
        struct timespec ts = {.tv_sec = (until_ns - now) / 1000000000,
                              .tv_nsec = (until_ns - now) % 1000000000};
        nanosleep(&ts, NULL);
    }
}

/* Parses replay's own options into R and *rate. */
static int replay_options(const cfg_t *cfg, int argc, char **argv, selection_t *s, replayer_t *R,
                          double *rate)
{
    static const struct option opts[] = {FILTER_OPTIONS,
                                         {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                         {"rate", required_argument, NULL, OPT_RATE},
                                         {"force", no_argument, NULL, OPT_FORCE},
                                         {"resign", required_argument, NULL, OPT_RESIGN},
                                         {NULL, 0, NULL, 0}};
    const char *resign = NULL;
    char *end;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DRY_RUN:
            R->dry_run = true;
            break;
        case OPT_FORCE:
            R->force = true;
            break;
        case OPT_RESIGN:
            resign = optarg;
            break;
        case OPT_RATE:
            errno = 0;
            *rate = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(*rate > 0) || *rate > 1e6)
                return cli_usage("dlq replay",
                                 "--rate: expected letters per second (> 0), got \"%s\"", optarg);
            break;
        default:
            if (c == '?')
                return cli_option_error("dlq replay");
            if ((ret = selection_option("dlq replay", s, c, optarg)) != 0)
                return CP_EXIT_USAGE;
        }
    }
    if (s->f.unresolved)
        s->filtered = true;
    if ((ret = selection_ids("dlq replay", s, optind, argc, argv)) != 0)
        return ret;
    if (s->nids && s->filtered)
        return cli_usage("dlq replay", "name letter IDs or select with options, not both");
    if (!s->nids && !s->filtered)
        return cli_usage("dlq replay",
                         "name letter IDs, or select open letters with --reason, --lane, "
                         "--since or --limit");
    if (resign) {
        if (!s->nids)
            return cli_usage("dlq replay",
                             "--resign vouches for each message it re-signs: name the "
                             "letters by ID");
        for (int i = 0; i < cfg->security.nkeys; i++)
            if (strcmp(cfg->security.keys[i].id, resign) == 0)
                R->resign = &cfg->security.keys[i];
        if (!R->resign)
            return cli_usage("dlq replay", "--resign: no key \"%s\" in security.keys", resign);
    }
    return 0;
}

/* Goes through one letter of the run: paces, reads the whole body when the
 * list had a prefix only, replays, records, prints. Returns false when the
 * run must stop (interrupted, or the store is unavailable). */
static bool replay_step(replayer_t *R, run_t *run, store_dl_t *dl)
{
    char err[1024], tail[160], line[256]; /* err may hold an outcome's detail */
    outcome_t o = {.result = DLQ_FAILED};
    store_rc_t rc = STORE_OK;

    if (run->rate > 0)
        pace(run->t0_ns + (int64_t)((double)run->done * 1e9 / run->rate));
    if (replay_stop)
        return false;
    if (dl->len < dl->body_len) {
        store_dl_t whole;
        rc = store_dl_get(R->st, dl->id, &whole, err, sizeof err);
        if (rc == STORE_OK) {
            store_dl_clear(dl);
            *dl = whole;
        }
    }
    if (rc == STORE_OK) {
        rc = replay_letter(R, dl, &o);
        if (rc != STORE_OK)
            snprintf(err, sizeof err, "%s", o.detail);
        else if (!R->dry_run && (rc = record_replay(R, dl, &o, err, sizeof err)) != STORE_OK)
            print_outcome(dl, &o, R->dry_run, run->json); /* done, but not recorded: say both */
    }
    if (run->progress && isatty(STDOUT_FILENO))
        fputs("\r\033[K", stderr);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq replay: letter %" PRId64 ": %s\n", dl->id, err);
        o.result = DLQ_FAILED;
        run->aborted = rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA;
    } else {
        print_outcome(dl, &o, R->dry_run, run->json);
        fflush(stdout);
    }
    run->n[o.result]++;
    run->done++;
    if (run->progress &&
        (mono_ns() - run->drawn_ns >= PROGRESS_EVERY_MS * 1000000LL || run->done == run->total)) {
        run_text(run, tail, sizeof tail);
        disp_progress_line(line, sizeof line, run->done, run->total, tail, run->width - 1);
        fprintf(stderr, "\r\033[K%s", line);
        run->drawn_ns = mono_ns();
    }
    return !run->aborted && !replay_stop;
}

/* Reports the IDs asked for that the list did not find. */
static void missing_ids(run_t *run, const selection_t *s, const store_dl_t *rows, size_t n)
{
    for (size_t i = 0; i < s->nids; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = rows[k].id == s->ids[i];
        if (!found) {
            fprintf(stderr, "couponctl: dlq replay: no dead letter %" PRId64 "\n", s->ids[i]);
            run->n[DLQ_FAILED]++;
        }
    }
}

/* Replays what s selects: by ID, those letters (open or not); by filter, the
 * open ones, a page at a time, so that memory stays flat however many. */
static store_rc_t replay_selection(replayer_t *R, run_t *run, selection_t *s, char *err,
                                   size_t errlen)
{
    long limit = s->f.limit, left = limit; /* limit 0: none */

    if (s->nids) {
        s->f.ids = s->ids;
        s->f.nids = s->nids;
    } else {
        s->f.unresolved = true;
    }
    for (;;) {
        long want = s->nids ? 0 : left > 0 && left < REPLAY_PAGE ? left : REPLAY_PAGE;
        store_dl_t *rows = NULL;
        size_t n = 0;
        int64_t total = 0;
        bool go_on = true;
        store_rc_t rc;

        s->f.limit = want;
        rc = store_dl_list(R->st, &s->f, &rows, &n, &total, err, errlen);
        if (rc != STORE_OK)
            return rc;
        if (s->f.after_id == 0) { /* the first page: how many there are */
            run->total = limit > 0 && limit < total ? (size_t)limit : (size_t)total;
            run->progress = run->width > 0 && run->total > 1;
            missing_ids(run, s, rows, n);
        }
        for (size_t i = 0; i < n && go_on; i++)
            go_on = replay_step(R, run, &rows[i]);
        if (n > 0)
            s->f.after_id = rows[n - 1].id;
        store_dl_free(rows, n);
        if (!go_on || s->nids || (long)n < want || (limit > 0 && (left -= (long)n) <= 0))
            return STORE_OK;
    }
}

int dlq_cmd_replay(const cfg_t *cfg, bool json, int argc, char **argv)
{
    selection_t s = {.json = json};
    replayer_t R = {.cfg = cfg};
    run_t run = {.width = disp_terminal_width(STDERR_FILENO)};
    char err[CP_ERRLEN];
    struct sigaction sa = {.sa_handler = on_interrupt}, old_int, old_term;
    store_rc_t rc;
    size_t fine;
    int ret;

    if ((ret = replay_options(cfg, argc, argv, &s, &R, &run.rate)) != 0)
        goto out;
    run.json = s.json;
    if ((ret = cli_store_open("couponctl", cfg, &R.st)) != 0)
        goto out;
    cli_os_user(R.user, sizeof R.user);
    if (gethostname(R.host, sizeof R.host) != 0)
        R.host[0] = '\0';
    R.host[sizeof R.host - 1] = '\0';
    replay_stop = 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    run.t0_ns = mono_ns();
    rc = replay_selection(&R, &run, &s, err, sizeof err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (run.progress)
        fputs("\r\033[K", stderr);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq replay: %s\n", err);
        run.aborted = rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA;
        run.n[DLQ_FAILED]++;
    }
    fine = run.n[DLQ_ISSUED] + run.n[DLQ_REFUNDED] + run.n[DLQ_DUPLICATE] + run.n[DLQ_HANDED_TO_W];
    fprintf(stderr,
            "dlq replay%s: %zu letter%s%s: %zu %s (%zu issued, %zu refunded, %zu duplicate, "
            "%zu handed to W), %zu still invalid, %zu refused, %zu failed; %.2f s\n",
            R.dry_run ? " --dry-run" : "", run.done, run.done == 1 ? "" : "s",
            R.dry_run ? " (nothing changed)" : "", fine, R.dry_run ? "would replay" : "replayed",
            run.n[DLQ_ISSUED], run.n[DLQ_REFUNDED], run.n[DLQ_DUPLICATE], run.n[DLQ_HANDED_TO_W],
            run.n[DLQ_INVALID], run.n[DLQ_REFUSED], run.n[DLQ_FAILED],
            (double)(mono_ns() - run.t0_ns) / 1e9);
    if (replay_stop || run.aborted)
        fprintf(stderr, "dlq replay: stopped after %zu of %zu letters%s\n", run.done, run.total,
                run.aborted ? ": the store is unavailable" : " (interrupted)");
    else if (run.done == 0 && !s.nids)
        fprintf(stderr, "dlq replay: no open dead letters match\n");
    if (run.aborted)
        ret = CP_EXIT_UNAVAIL;
    else if (fine < run.done || run.n[DLQ_FAILED] || replay_stop)
        ret = CP_EXIT_FAILURE;
    else
        ret = CP_EXIT_OK;
out:
    tp_close(R.w);
    store_close(R.st);
    free(s.ids);
    return ret;
}

/* ---- dlq resolve --------------------------------------------------------- */

int dlq_cmd_resolve(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {{"note", required_argument, NULL, OPT_NOTE},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {NULL, 0, NULL, 0}};
    selection_t s = {.json = json};
    const char *text = NULL;
    char err[CP_ERRLEN], user[64], host[256] = "";
    store_t *st = NULL;
    int c, ret = CP_EXIT_OK;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_NOTE)
            text = optarg;
        else if (c == OPT_JSON)
            s.json = true;
        else
            return cli_option_error("dlq resolve");
    }
    if (!text || !text[strspn(text, " \t")])
        return cli_usage("dlq resolve",
                         "needs --note TEXT: say why the letters are closed unreplayed");
    if (!disp_utf8_text(text, strlen(text)))
        return cli_usage("dlq resolve", "--note must be UTF-8 text");
    if ((ret = selection_ids("dlq resolve", &s, optind, argc, argv)) != 0)
        goto out;
    if (!s.nids) {
        ret = cli_usage("dlq resolve", "needs one or more letter IDs");
        goto out;
    }
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        goto out;
    cli_os_user(user, sizeof user);
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    for (size_t i = 0; i < s.nids; i++) {
        store_dl_t dl;
        store_rc_t rc = store_dl_get(st, s.ids[i], &dl, err, sizeof err);
        int64_t order_id = 0;
        char payment_id[MSG_PAYMENT_ID_MAX + 1];
        if (rc == STORE_NOT_FOUND) {
            fprintf(stderr, "couponctl: dlq resolve: no dead letter %" PRId64 "\n", s.ids[i]);
            ret = CP_EXIT_FAILURE;
            continue;
        }
        if (rc == STORE_OK && dl.resolved_at[0]) {
            fprintf(stderr,
                    "couponctl: dlq resolve: letter %" PRId64
                    " is already resolved (%s by %s: %s)\n",
                    dl.id, dl.resolved_at, dl.resolved_by, dl.resolution);
            store_dl_clear(&dl);
            ret = CP_EXIT_FAILURE;
            continue;
        }
        if (rc == STORE_OK) {
            dlq_body_ids(dl.body, dl.len, &order_id, payment_id, sizeof payment_id);
            store_dl_action_t a = {.letter_id = dl.id,
                                   .action = "resolve",
                                   .os_user = user,
                                   .host = host,
                                   .result = "resolved",
                                   .detail = text,
                                   .order_id = order_id,
                                   .close = true};
            rc = store_dl_record(st, &a, NULL, err, sizeof err);
        }
        store_dl_clear(&dl);
        if (rc != STORE_OK) {
            fprintf(stderr, "couponctl: dlq resolve: letter %" PRId64 ": %s\n", s.ids[i], err);
            ret = cli_store_exit(rc);
            if (ret == CP_EXIT_UNAVAIL)
                break;
            continue;
        }
        if (s.json) {
            cJSON *j = cJSON_CreateObject();
            if (j) {
                cJSON_AddNumberToObject(j, "id", (double)s.ids[i]);
                cJSON_AddStringToObject(j, "result", "resolved");
                cJSON_AddStringToObject(j, "note", text);
            }
            cli_json_print(j);
        } else {
            printf("letter %" PRId64 ": resolved: ", s.ids[i]);
            disp_put_safe(stdout, text, strlen(text), false, NULL);
            printf("\n");
        }
    }
out:
    store_close(st);
    free(s.ids);
    return ret;
}

/* ---- dlq audit ----------------------------------------------------------- */

static cJSON *audit_row_json(const void *row)
{
    return audit_json(row);
}

static int audit_row(disp_table_t *t, const void *row)
{
    const store_dl_audit_t *a = row;
    char id[24], order[24] = "";

    snprintf(id, sizeof id, "%" PRId64, a->letter_id);
    if (a->order_id)
        snprintf(order, sizeof order, "%" PRId64, a->order_id);
    const char *cells[] = {a->at,    a->os_user, a->host,   a->action,
                           id,       order,      a->result, a->resigned ? "re-signed" : "",
                           a->detail};
    return disp_table_add(t, cells);
}

int dlq_cmd_audit(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {{"letter", required_argument, NULL, OPT_LETTER},
                                         {"since", required_argument, NULL, OPT_SINCE},
                                         {"limit", required_argument, NULL, OPT_LIMIT},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {NULL, 0, NULL, 0}};
    static const char *const head[] = {"AT",    "USER",   "HOST",  "ACTION", "LETTER",
                                       "ORDER", "RESULT", "FLAGS", "DETAIL"};
    char err[CP_ERRLEN], since[40];
    const char *since_p = NULL;
    long limit = AUDIT_DEFAULT_LIMIT;
    int64_t letter = 0;
    store_dl_audit_t *rows = NULL;
    size_t n = 0;
    store_t *st = NULL;
    store_rc_t rc;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LETTER:
            if (cli_parse_id(optarg, &letter) != 0)
                return cli_usage("dlq audit", "--letter: expected a letter ID, got \"%s\"", optarg);
            break;
        case OPT_SINCE:
            if (parse_since("dlq audit", optarg, since, sizeof since) != 0)
                return CP_EXIT_USAGE;
            since_p = since;
            break;
        case OPT_LIMIT:
            if (parse_limit("dlq audit", optarg, &limit) != 0)
                return CP_EXIT_USAGE;
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            return cli_option_error("dlq audit");
        }
    }
    if (optind != argc)
        return cli_usage("dlq audit", "takes no arguments, only options");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    rc = store_dl_audit(st, letter, since_p, limit, &rows, &n, err, sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq audit: %s\n", err);
        return cli_store_exit(rc);
    }
    print_rows(rows, sizeof *rows, n, json, head, CP_ARRAY_SIZE(head), audit_row_json, audit_row);
    if (n == 0)
        fprintf(stderr, "dlq audit: no actions recorded%s\n",
                letter || since_p ? " that match" : "");
    store_dl_audit_free(rows, n);
    return CP_EXIT_OK;
}

/* ---- dlq purge ----------------------------------------------------------- */

int dlq_cmd_purge(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {{"resolved", no_argument, NULL, OPT_RESOLVED},
                                         {"older-than", required_argument, NULL, OPT_OLDER_THAN},
                                         {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {NULL, 0, NULL, 0}};
    static const char *const head[] = {"ID", "REASON", "RESOLVED", "BY", "RESOLUTION"};
    char err[CP_ERRLEN], user[64], host[256] = "";
    bool resolved = false, dry = false;
    const char *older = NULL;
    int64_t now_us = cp_clock_us(CLOCK_REALTIME), before_us = 0;
    store_dl_purged_t *rows = NULL;
    disp_table_t t = {.ncols = CP_ARRAY_SIZE(head), .head = head};
    size_t n = 0;
    store_t *st = NULL;
    store_rc_t rc;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_RESOLVED:
            resolved = true;
            break;
        case OPT_OLDER_THAN:
            older = optarg;
            break;
        case OPT_DRY_RUN:
            dry = true;
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            return cli_option_error("dlq purge");
        }
    }
    if (optind != argc)
        return cli_usage("dlq purge", "takes no arguments, only options");
    /* Said out loud: only resolved letters go, whatever else may come. */
    if (!resolved)
        return cli_usage("dlq purge", "needs --resolved (only resolved letters are ever purged)");
    if (!older)
        return cli_usage("dlq purge", "needs --older-than DURATION (90s, 15m, 2h, 7d)");
    if (disp_parse_since(older, now_us, &before_us) != 0 || before_us > now_us)
        return cli_usage("dlq purge",
                         "--older-than: expected a duration (90s, 15m, 2h, 7d) or a past time "
                         "(2026-11-21), got \"%s\"",
                         older);
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    cli_os_user(user, sizeof user);
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    rc = store_dl_purge(st, (now_us - before_us) / 1000000, user, host, dry, &rows, &n, err,
                        sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: dlq purge: %s\n", err);
        return cli_store_exit(rc);
    }
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, rows[i].id);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            if (o) {
                cJSON_AddNumberToObject(o, "id", (double)rows[i].id);
                cJSON_AddStringToObject(o, "reason", rows[i].reason);
                cJSON_AddStringToObject(o, "resolved_at", rows[i].resolved_at);
                cJSON_AddStringToObject(o, "resolved_by", rows[i].resolved_by);
                cJSON_AddStringToObject(o, "resolution", rows[i].resolution);
                cJSON_AddBoolToObject(o, "purged", !dry);
            }
            cli_json_print(o);
            continue;
        }
        const char *cells[] = {id, rows[i].reason, rows[i].resolved_at, rows[i].resolved_by,
                               rows[i].resolution};
        if (disp_table_add(&t, cells) != 0) {
            fprintf(stderr, "couponctl: dlq purge: out of memory\n");
            break;
        }
    }
    if (!json && t.nrows > 0)
        disp_table_print(&t, stdout, disp_terminal_width(STDOUT_FILENO));
    disp_table_free(&t);
    fprintf(stderr, "dlq purge: %zu resolved letter%s %s (resolved longer ago than %s)%s\n", n,
            n == 1 ? "" : "s", dry ? "would be purged" : "purged", older,
            dry ? "; dry run: nothing changed" : "; recorded in the audit trail");
    free(rows);
    return CP_EXIT_OK;
}
