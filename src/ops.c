/* ops.c: operators' commands on deals and orders: couponctl deal list,
 * deal show and order refund (the store's side is in store_ops.c). */
#include "ops.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "display.h"
#include "finance.h"
#include "store_ops.h"

enum { OPT_JSON = 256, OPT_NOTE };

/* Parses the options of a command that takes only --json; the rest are its
 * arguments (from *first). Returns 0 or the exit code. */
static int json_only(const char *cmd, int argc, char **argv, bool *json)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON}, {NULL, 0, NULL, 0}};
    int c;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != OPT_JSON)
            return cli_option_error(cmd);
        *json = true;
    }
    return 0;
}

static void price_text(const store_deal_t *d, char *out, size_t outlen)
{
    if (fin_format_amount(d->price_cents, d->currency, out, outlen) != 0)
        snprintf(out, outlen, "%" PRId64, d->price_cents);
}

static cJSON *deal_json(const store_deal_t *d, bool counts)
{
    char price[32];
    cJSON *o = cJSON_CreateObject();

    if (!o)
        return NULL;
    price_text(d, price, sizeof price);
    cJSON_AddNumberToObject(o, "deal_id", (double)d->deal_id);
    cJSON_AddNumberToObject(o, "price_cents", (double)d->price_cents);
    cJSON_AddStringToObject(o, "price", price);
    cJSON_AddStringToObject(o, "currency", d->currency);
    cJSON_AddBoolToObject(o, "active", d->active);
    cJSON_AddStringToObject(o, "created_at", d->created_at);
    cJSON_AddStringToObject(o, "updated_at", d->updated_at);
    if (counts) {
        cJSON *orders = cJSON_AddObjectToObject(o, "orders");
        if (orders) {
            cJSON_AddNumberToObject(orders, "pending", (double)d->pending);
            cJSON_AddNumberToObject(orders, "issued", (double)d->issued);
            cJSON_AddNumberToObject(orders, "refunded", (double)d->refunded);
        }
        cJSON_AddNumberToObject(o, "coupons", (double)d->coupons);
        cJSON_AddNumberToObject(o, "refunded_cents", (double)d->refunded_cents);
    }
    return o;
}

/* ---- deal list ----------------------------------------------------------- */

int ops_cmd_deal_list(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const char *const head[] = {"DEAL", "PRICE", "CURRENCY", "STATE", "UPDATED"};
    const char *cmd = "deal list";
    char err[CP_ERRLEN];
    store_deal_t *rows = NULL;
    disp_table_t t = {.ncols = CP_ARRAY_SIZE(head), .head = head};
    size_t n = 0;
    store_t *st = NULL;
    store_rc_t rc;
    int ret;

    if ((ret = json_only(cmd, argc, argv, &json)) != 0)
        return ret;
    if (optind != argc)
        return cli_usage(cmd, "takes no arguments, only --json");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    rc = store_deal_list(st, &rows, &n, err, sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: %s: %s\n", cmd, err);
        return cli_store_exit(rc);
    }
    for (size_t i = 0; i < n; i++) {
        char id[24], price[32];
        if (json) {
            cli_json_print(deal_json(&rows[i], false));
            continue;
        }
        snprintf(id, sizeof id, "%" PRId64, rows[i].deal_id);
        price_text(&rows[i], price, sizeof price);
        const char *cells[] = {id, price, rows[i].currency, rows[i].active ? "active" : "inactive",
                               rows[i].updated_at};
        if (disp_table_add(&t, cells) != 0) {
            fprintf(stderr, "couponctl: %s: out of memory\n", cmd);
            ret = CP_EXIT_FAILURE;
            break;
        }
    }
    if (!json && t.nrows > 0)
        disp_table_print(&t, stdout, disp_terminal_width(STDOUT_FILENO));
    if (n == 0)
        fprintf(stderr, "deal list: no deals (couponctl deal set creates one)\n");
    disp_table_free(&t);
    free(rows);
    return ret;
}

/* ---- deal show ----------------------------------------------------------- */

int ops_cmd_deal_show(const cfg_t *cfg, bool json, int argc, char **argv)
{
    const char *cmd = "deal show";
    char err[CP_ERRLEN], price[32], refunded[32];
    store_deal_t d;
    int64_t deal_id;
    store_t *st = NULL;
    store_rc_t rc;
    int ret;

    if ((ret = json_only(cmd, argc, argv, &json)) != 0)
        return ret;
    if (optind + 1 != argc || cli_parse_id(argv[optind], &deal_id) != 0)
        return cli_usage(cmd, "needs one DEAL_ID (an integer > 0)");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    rc = store_deal_get(st, deal_id, &d, err, sizeof err);
    store_close(st);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "couponctl: %s: deal %" PRId64 " is not in the store\n", cmd, deal_id);
        return CP_EXIT_FAILURE;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: %s: %s\n", cmd, err);
        return cli_store_exit(rc);
    }
    if (json) {
        cli_json_print(deal_json(&d, true));
        return CP_EXIT_OK;
    }
    price_text(&d, price, sizeof price);
    if (fin_format_amount(d.refunded_cents, d.currency, refunded, sizeof refunded) != 0)
        snprintf(refunded, sizeof refunded, "%" PRId64, d.refunded_cents);
    printf("deal        %" PRId64 "\n", d.deal_id);
    printf("price       %s %s (%" PRId64 " minor units)\n", price, d.currency, d.price_cents);
    printf("state       %s\n", d.active ? "active" : "inactive");
    printf("orders      %" PRId64 " pending, %" PRId64 " issued, %" PRId64 " refunded\n", d.pending,
           d.issued, d.refunded);
    printf("coupons     %" PRId64 "\n", d.coupons);
    printf("refunded    %s %s\n", refunded, d.currency);
    printf("created     %s\nupdated     %s\n", d.created_at, d.updated_at);
    return CP_EXIT_OK;
}

/* ---- order refund -------------------------------------------------------- */

int ops_cmd_order_refund(const cfg_t *cfg, bool json, int argc, char **argv)
{
    static const struct option opts[] = {{"note", required_argument, NULL, OPT_NOTE},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {NULL, 0, NULL, 0}};
    const char *cmd = "order refund", *note = NULL;
    char err[CP_ERRLEN], user[64], host[256] = "";
    store_result_t res;
    int64_t order_id;
    store_t *st = NULL;
    store_rc_t rc;
    int c, ret;

    optind = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_NOTE)
            note = optarg;
        else if (c == OPT_JSON)
            json = true;
        else
            return cli_option_error(cmd);
    }
    if (optind + 1 != argc || cli_parse_id(argv[optind], &order_id) != 0)
        return cli_usage(cmd, "needs one ORDER_ID (an integer > 0)");
    if (!note || !note[strspn(note, " \t")])
        return cli_usage(cmd, "needs --note TEXT: say why the order is refunded");
    if (!disp_utf8_text(note, strlen(note)))
        return cli_usage(cmd, "--note must be UTF-8 text");
    if ((ret = cli_store_open("couponctl", cfg, &st)) != 0)
        return ret;
    cli_os_user(user, sizeof user);
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    rc = store_order_refund_operator(st, order_id, user, host, note, &res, err, sizeof err);
    store_close(st);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "couponctl: %s: order %" PRId64 " is not in the store\n", cmd, order_id);
        return CP_EXIT_FAILURE;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: %s: %s\n", cmd, err);
        return cli_store_exit(rc);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        char id[24];
        if (o) {
            snprintf(id, sizeof id, "%" PRId64, order_id);
            cJSON_AddStringToObject(o, "order_id", id);
            cJSON_AddStringToObject(o, "result",
                                    res.outcome == STORE_REFUNDED ? "refunded" : "refused");
            cJSON_AddStringToObject(o, "state", res.state);
            if (res.refund_seq)
                cJSON_AddNumberToObject(o, "refund_seq", (double)res.refund_seq);
            else
                cJSON_AddNullToObject(o, "refund_seq");
            cJSON_AddStringToObject(o, "os_user", user);
            cJSON_AddStringToObject(o, "note", note);
        }
        cli_json_print(o);
    }
    if (res.outcome != STORE_REFUNDED) {
        fprintf(stderr, "couponctl: %s: order %" PRId64 " is already %s", cmd, order_id, res.state);
        if (res.refund_seq)
            fprintf(stderr, " (refund seq %" PRId64 ")", res.refund_seq);
        fprintf(stderr, ": not refunded\n");
        return CP_EXIT_FAILURE;
    }
    if (!json)
        printf("order %" PRId64 ": refunded (refund seq %" PRId64 ", reason operator, by %s)\n",
               order_id, res.refund_seq, user);
    return CP_EXIT_OK;
}
