/* couponctl: the operators' and finance's tool: store migrations, deals,
 * order status, dead letters and configuration look-ups. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "display.h"
#include "dlq.h"
#include "finance.h"
#include "log.h"
#include "ops.h"
#include "publish.h"
#include "signature.h"
#include "store.h"
#include "store_ops.h"

typedef struct ctl {
    cli_common_t cli;
    cfg_t cfg;
    bool cfg_loaded;
    bool json;
} ctl_t;

/* A command's run() gets argv[0] = "couponctl NAME", then its own
 * arguments, so it can use getopt. */
typedef struct ctl_cmd {
    const char *name; /* "db migrate" */
    const char *args; /* for usage */
    const char *help;
    int (*run)(ctl_t *ctl, int argc, char **argv);
} ctl_cmd_t;

/* The command being run, for the usage it names ("dlq replay"). */
static const char *running = "";

static int usage_error(const char *fmt, ...) CP_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "couponctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'couponctl %s --help')\n", running);
    return CP_EXIT_USAGE;
}

/* An option a command without options was given, as getopt would say it. */
static int unknown_option(const char *opt)
{
    fprintf(stderr, "couponctl %s: unrecognized option '%s'\n", running, opt);
    return cli_option_error(running);
}

static int parse_i64(const char *s, int64_t min, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

/* Opens the store named by the configuration. Returns 0, or the exit code
 * after reporting why it cannot be used. */
static int ctl_store(ctl_t *ctl, store_t **st)
{
    return cli_store_open("couponctl", &ctl->cfg, st);
}

/* An unmigrated (or newer) schema makes the store unusable, like an outage. */
static int store_exit(store_rc_t rc)
{
    return rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA ? CP_EXIT_UNAVAIL : CP_EXIT_FAILURE;
}

static int cmd_db_migrate(ctl_t *ctl, int argc, char **argv)
{
    char err[CP_ERRLEN];
    int applied = 0;
    store_rc_t rc;
    store_t *st;
    int crc;

    (void)argv;
    if (argc != 1)
        return usage_error("db migrate takes no arguments");
    if ((crc = ctl_store(ctl, &st)) != 0)
        return crc;
    rc = store_migrate(st, &applied, err, sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: db migrate: %s\n", err);
        return store_exit(rc);
    }
    printf("db migrate: %d migration%s applied; schema at version %d\n", applied,
           applied == 1 ? "" : "s",
           store_migrations_count ? store_migrations[store_migrations_count - 1].version : 0);
    return CP_EXIT_OK;
}

static int cmd_deal_set(ctl_t *ctl, int argc, char **argv)
{
    static const struct option opts[] = {
        {"price-cents", required_argument, NULL, 'p'},
        {"currency", required_argument, NULL, 'c'},
        {"active", no_argument, NULL, 'a'},
        {"inactive", no_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    char err[CP_ERRLEN];
    int64_t deal_id, price = -1;
    const char *currency = NULL;
    bool active = true;
    store_rc_t rc;
    store_t *st;
    int crc;
    int c;

    optind = 0; /* glibc: re-initialise getopt for the command's own options */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_i64(optarg, 1, &price) != 0)
                return usage_error("--price-cents: expected an integer > 0, got \"%s\"", optarg);
            break;
        case 'c':
            currency = optarg;
            break;
        case 'a':
            active = true;
            break;
        case 'i':
            active = false;
            break;
        default:
            return cli_option_error("deal set");
        }
    }
    if (optind + 1 != argc)
        return usage_error("deal set needs one DEAL_ID");
    if (parse_i64(argv[optind], 1, &deal_id) != 0)
        return usage_error("DEAL_ID: expected an integer > 0, got \"%s\"", argv[optind]);
    if (price < 0 || !currency)
        return usage_error("deal set needs --price-cents N and --currency XXX");
    if (strlen(currency) != 3 || strspn(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
        return usage_error("--currency: expected three upper-case letters, got \"%s\"", currency);
    if ((crc = ctl_store(ctl, &st)) != 0)
        return crc;
    rc = store_deal_set(st, deal_id, price, currency, active, err, sizeof err);
    store_close(st);
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: deal set: %s\n", err);
        return store_exit(rc);
    }
    printf("deal %" PRId64 ": %" PRId64 " %s, %s\n", deal_id, price, currency,
           active ? "active" : "inactive");
    return CP_EXIT_OK;
}

/* Who refunded an order by hand, and why (couponctl order refund). */
static void status_operator(ctl_t *ctl, int64_t order_id)
{
    store_operator_refund_t op;
    store_t *st;

    if (cli_store_open("couponctl", &ctl->cfg, &st) != 0)
        return;
    if (store_operator_refund_get(st, order_id, &op, NULL, 0) == STORE_OK) {
        printf("refunded by %s on %s at %s: ", op.os_user, op.host, op.at);
        disp_put_safe(stdout, op.note, strlen(op.note), false, NULL);
        printf("\n");
    }
    store_close(st);
}

static int cmd_status(ctl_t *ctl, int argc, char **argv)
{
    char err[CP_ERRLEN];
    int64_t order_id;
    store_order_t o;
    store_rc_t rc;
    store_t *st;
    int crc;

    if (argc != 2 || parse_i64(argv[1], 1, &order_id) != 0)
        return usage_error("status needs one ORDER_ID (an integer > 0)");
    if ((crc = ctl_store(ctl, &st)) != 0)
        return crc;
    rc = store_order_get(st, order_id, &o, err, sizeof err);
    store_close(st);
    if (rc == STORE_NOT_FOUND) {
        fprintf(stderr, "couponctl: order %" PRId64 " is not in the store\n", order_id);
        return CP_EXIT_FAILURE;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "couponctl: status: %s\n", err);
        return store_exit(rc);
    }
    if (ctl->json) {
        printf("{\"order_id\":%" PRId64 ",\"payment_id\":\"%s\",\"user_id\":%" PRId64
               ",\"deal_id\":%" PRId64 ",\"quantity\":%d,\"amount_cents\":%" PRId64
               ",\"currency\":\"%s\",\"paid_at\":\"%s\",\"state\":\"%s\",\"attempts\":%d,"
               "\"coupons\":%d,\"issued_by\":\"%s\",\"refund_seq\":%" PRId64 "}\n",
               o.payment.order_id, o.payment.payment_id, o.payment.user_id, o.payment.deal_id,
               o.payment.quantity, o.payment.amount_cents, o.payment.currency, o.payment.paid_at,
               o.state, o.attempts, o.ncoupons, o.issued_by, o.refund_seq);
        return CP_EXIT_OK;
    }
    printf("order       %" PRId64 "\n", o.payment.order_id);
    printf("payment     %s\n", o.payment.payment_id);
    printf("user        %" PRId64 "\n", o.payment.user_id);
    printf("deal        %" PRId64 " x %d\n", o.payment.deal_id, o.payment.quantity);
    printf("amount      %" PRId64 " %s (minor units)\n", o.payment.amount_cents,
           o.payment.currency);
    printf("paid at     %s\n", o.payment.paid_at);
    printf("state       %s\n", o.state);
    printf("attempts    %d\n", o.attempts);
    if (o.last_error[0])
        printf("last error  %s\n", o.last_error);
    if (o.ncoupons)
        printf("coupons     %d, issued by %s\n", o.ncoupons, o.issued_by);
    if (o.refund_seq)
        printf("refund      seq %" PRId64 ": %s\n", o.refund_seq, o.refund_reason);
    if (o.refund_seq && strcmp(o.refund_reason, "operator") == 0)
        status_operator(ctl, o.payment.order_id);
    printf("created     %s\nupdated     %s\n", o.created_at, o.updated_at);
    return CP_EXIT_OK;
}

static int cmd_config_get(ctl_t *ctl, int argc, char **argv)
{
    char value[4096];
    if (argc != 2)
        return usage_error("config get needs one PATH");
    if (argv[1][0] == '-')
        return unknown_option(argv[1]);
    if (cfg_format(&ctl->cfg, argv[1], value, sizeof value) != 0) {
        fprintf(stderr, "couponctl: config get: unknown setting '%s'\n", argv[1]);
        return CP_EXIT_USAGE;
    }
    printf("%s\n", value);
    return CP_EXIT_OK;
}

/* Prints one result line (JSON) for input line `line`. */
static void print_result(long line, const pub_result_t *r)
{
    static const char *const lanes[PUB_LANES] = {"l", "w"};
    cJSON *o = cJSON_CreateObject();
    char *text, id[24];

    if (!o)
        return;
    cJSON_AddNumberToObject(o, "line", (double)line);
    if (r->status != MSG_OK) {
        cJSON_AddBoolToObject(o, "accepted", false);
        cJSON_AddStringToObject(o, "error", msg_status_code(r->status));
        cJSON_AddStringToObject(o, "detail", r->detail);
    } else {
        /* A string, so an int64 order id survives readers that use doubles. */
        snprintf(id, sizeof id, "%lld", (long long)r->order_id);
        cJSON_AddStringToObject(o, "order_id", id);
        cJSON_AddStringToObject(o, "payment_id", r->payment_id);
        cJSON_AddBoolToObject(o, "accepted", pub_accepted(r));
        for (int l = 0; l < PUB_LANES; l++) {
            char key[16];
            cJSON_AddStringToObject(o, lanes[l],
                                    r->lane[l] == TP_ACCEPTED ? "accepted" : "refused");
            if (r->lane[l] != TP_ACCEPTED) {
                snprintf(key, sizeof key, "%s_error", lanes[l]);
                cJSON_AddStringToObject(o, key, r->lane_error[l]);
            }
        }
    }
    text = cJSON_PrintUnformatted(o);
    if (text)
        puts(text);
    cJSON_free(text);
    cJSON_Delete(o);
}

#define PUBLISH_BATCH 1000

static int cmd_publish(ctl_t *ctl, int argc, char **argv)
{
    char err[CP_ERRLEN];
    publisher_t *pub = NULL;
    pub_note_t notes[PUBLISH_BATCH];
    pub_result_t *res = NULL;
    char *lines[PUBLISH_BATCH] = {0};
    size_t caps[PUBLISH_BATCH] = {0};
    long lineno[PUBLISH_BATCH];
    long line = 0, total = 0, both = 0, one = 0, none = 0, invalid = 0;
    FILE *in = stdin;
    int rc;

    if (argc > 2)
        return usage_error("publish takes at most one FILE (or - for standard input)");
    if (argc == 2 && argv[1][0] == '-' && argv[1][1] != '\0')
        return unknown_option(argv[1]);
    if (argc == 2 && strcmp(argv[1], "-") != 0 && !(in = fopen(argv[1], "r"))) {
        fprintf(stderr, "couponctl: publish: %s: %s\n", argv[1], strerror(errno));
        return CP_EXIT_USAGE;
    }
    res = calloc(PUBLISH_BATCH, sizeof *res);
    if (!res) {
        rc = CP_EXIT_FAILURE;
        goto out;
    }
    rc = pub_open(&pub, &ctl->cfg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "couponctl: publish: %s\n", err);
        goto out;
    }
    for (bool eof = false; !eof;) {
        size_t n = 0;
        while (n < PUBLISH_BATCH) {
            ssize_t len = getline(&lines[n], &caps[n], in);
            if (len < 0) {
                eof = true;
                break;
            }
            line++;
            /* The line's end is not part of the notification. */
            while (len > 0 && (lines[n][len - 1] == '\n' || lines[n][len - 1] == '\r'))
                len--;
            if (len == 0)
                continue; /* blank lines are not notifications */
            notes[n] = (pub_note_t){lines[n], (size_t)len};
            lineno[n++] = line;
        }
        if (n == 0)
            continue;
        pub_send(pub, notes, n, res);
        for (size_t i = 0; i < n; i++) {
            print_result(lineno[i], &res[i]);
            total++;
            if (res[i].status != MSG_OK)
                invalid++;
            else if (res[i].lane[PUB_LANE_L] == TP_ACCEPTED &&
                     res[i].lane[PUB_LANE_W] == TP_ACCEPTED)
                both++;
            else if (pub_accepted(&res[i]))
                one++;
            else
                none++;
        }
        fflush(stdout);
    }
    fprintf(stderr,
            "publish: %ld notification%s: %ld accepted by both lanes, %ld by one, %ld by none, "
            "%ld invalid\n",
            total, total == 1 ? "" : "s", both, one, none, invalid);
    rc = (none || invalid) ? CP_EXIT_FAILURE : CP_EXIT_OK;
out:
    pub_close(pub);
    for (size_t i = 0; i < PUBLISH_BATCH; i++)
        free(lines[i]);
    free(res);
    if (in != stdin)
        fclose(in);
    return rc;
}

/* The dead-letter commands live in src/dlq.c. */
#define DLQ_COMMAND(name)                                                                          \
    static int cmd_dlq_##name(ctl_t *ctl, int argc, char **argv)                                   \
    {                                                                                              \
        return dlq_cmd_##name(&ctl->cfg, ctl->json, argc, argv);                                   \
    }
DLQ_COMMAND(list)
DLQ_COMMAND(show)
DLQ_COMMAND(replay)
DLQ_COMMAND(resolve)
DLQ_COMMAND(audit)
DLQ_COMMAND(purge)

/* Deals and orders live in src/ops.c. */
static int cmd_deal_list(ctl_t *ctl, int argc, char **argv)
{
    return ops_cmd_deal_list(&ctl->cfg, ctl->json, argc, argv);
}

static int cmd_deal_show(ctl_t *ctl, int argc, char **argv)
{
    return ops_cmd_deal_show(&ctl->cfg, ctl->json, argc, argv);
}

static int cmd_order_refund(ctl_t *ctl, int argc, char **argv)
{
    return ops_cmd_order_refund(&ctl->cfg, ctl->json, argc, argv);
}

/* Finance's commands live in src/finance.c. */
static int cmd_refunds_export(ctl_t *ctl, int argc, char **argv)
{
    return fin_cmd_export(&ctl->cfg, ctl->json, argc, argv);
}

static int cmd_refunds_verify(ctl_t *ctl, int argc, char **argv)
{
    return fin_cmd_verify(&ctl->cfg, ctl->json, argc, argv);
}

static int cmd_refunds_summary(ctl_t *ctl, int argc, char **argv)
{
    return fin_cmd_summary(&ctl->cfg, ctl->json, argc, argv);
}

static int cmd_reconcile(ctl_t *ctl, int argc, char **argv)
{
    return fin_cmd_reconcile(&ctl->cfg, ctl->json, argc, argv);
}

static const ctl_cmd_t commands[] = {
    {"db migrate", "", "apply the store's schema migrations (idempotent)", cmd_db_migrate},
    {"deal set", "DEAL_ID --price-cents N --currency XXX [--active|--inactive]",
     "create or update a deal", cmd_deal_set},
    {"deal list", "[--json]", "list the deals: price, currency, active or not", cmd_deal_list},
    {"deal show", "DEAL_ID [--json]",
     "show one deal and its orders: pending, issued, refunded; coupons issued", cmd_deal_show},
    {"publish", "[FILE|-]",
     "validate, sign and fan out JSON-lines notifications to both lanes; one result line each",
     cmd_publish},
    {"status", "ORDER_ID", "show one order: payment, state, attempts, coupons, refund", cmd_status},
    {"order refund", "ORDER_ID --note TEXT [--json]",
     "refund a pending order now (reason operator, recorded with your OS user and the note);\n"
     "      exit 1 when it is already issued or refunded",
     cmd_order_refund},
    {"config get", "PATH", "print one setting's effective value (secrets masked)", cmd_config_get},
    {"dlq list", "[--reason CODE] [--lane l|w] [--since T] [--unresolved] [--limit N]",
     "list dead letters: reason, lanes, sightings, replays, state (default --limit 100)",
     cmd_dlq_list},
    {"dlq show", "ID [--raw]",
     "show one dead letter: headers, body (re-indented JSON, or escaped), reason, history",
     cmd_dlq_show},
    {"dlq replay",
     "ID... | [--reason CODE] [--lane l|w] [--since T] [--unresolved] [--limit N]\n"
     "        [--dry-run] [--rate N] [--force] [--resign KEY_ID]",
     "re-validate letters with the current configuration and send the valid ones down the W\n"
     "      lane's path (by filter: open letters only); every replay is recorded",
     cmd_dlq_replay},
    {"dlq resolve", "ID... --note TEXT", "close letters without replaying them (recorded)",
     cmd_dlq_resolve},
    {"dlq audit", "[--letter ID] [--since T] [--limit N]",
     "the audit trail of replays and resolves: who, when, which letter, what happened",
     cmd_dlq_audit},
    {"dlq purge", "--resolved --older-than DURATION [--dry-run] [--json]",
     "delete letters resolved longer ago than DURATION (90s, 15m, 2h, 7d); open letters are\n"
     "      never purged; each purge is recorded in the audit trail",
     cmd_dlq_purge},
    {"refunds export", "[--from T] [--to T] [--format csv|json] [--output FILE]",
     "the refund log for finance, by seq: CSV (RFC 4180, header row) or JSON lines;\n"
     "      totals per currency on stderr",
     cmd_refunds_export},
    {"refunds verify", "[--from-seq N]",
     "recompute the refund log's hash chain; name the first row that breaks it (exit 1)",
     cmd_refunds_verify},
    {"refunds summary", "[--from T] [--to T] [--by day|reason|currency] [--json]",
     "the refunds of the export's stream counted and summed per currency, by day, reason or\n"
     "      currency (default)",
     cmd_refunds_summary},
    {"reconcile", "[--since T] [--published FILE]",
     "check every order's outcome (invariants 1, 2, and 3 with --published); exit 1 on any\n"
     "      violation",
     cmd_reconcile},
};

static const char global_options[] =
    "  --config FILE    configuration file (default: $COUPOND_CONFIG)\n"
    "  --set PATH=VALUE override one setting (repeatable)\n"
    "  --json           machine-readable output where a command supports it\n"
    "  -h, --help       this usage; after a command, that command's usage\n";
static const char exit_codes[] = "\nexit codes: 0 ok, 1 failures found or caused, 2 usage or "
                                 "configuration error, 3 dependency unavailable\n";

static void usage(FILE *out)
{
    fprintf(out, "usage: couponctl [--config FILE] [--set PATH=VALUE]... [--json] COMMAND ...\n\n"
                 "commands:\n");
    for (size_t i = 0; i < CP_ARRAY_SIZE(commands); i++)
        fprintf(out, "  %s %s\n      %s\n", commands[i].name, commands[i].args, commands[i].help);
    fprintf(out, "\n%s%s", global_options, exit_codes);
}

/* One command's usage. */
static void command_usage(FILE *out, const ctl_cmd_t *cmd)
{
    fprintf(out, "usage: couponctl [--config FILE] [--set PATH=VALUE]... %s %s\n\n      %s\n\n",
            cmd->name, cmd->args, cmd->help);
    fprintf(out, "%s%s", global_options, exit_codes);
    fprintf(out, "(man couponctl has the details)\n");
}

/* True when word is the first word of multi-word commands ("dlq"). */
static bool is_group(const char *word)
{
    size_t len = strlen(word);
    for (size_t i = 0; i < CP_ARRAY_SIZE(commands); i++)
        if (strncmp(commands[i].name, word, len) == 0 && commands[i].name[len] == ' ')
            return true;
    return false;
}

/* The usage of a group: its commands. */
static void group_usage(FILE *out, const char *group)
{
    size_t len = strlen(group);
    fprintf(out,
            "usage: couponctl [--config FILE] [--set PATH=VALUE]... %s COMMAND ...\n\n"
            "commands:\n",
            group);
    for (size_t i = 0; i < CP_ARRAY_SIZE(commands); i++)
        if (strncmp(commands[i].name, group, len) == 0 && commands[i].name[len] == ' ')
            fprintf(out, "  %s %s\n      %s\n", commands[i].name, commands[i].args,
                    commands[i].help);
    fprintf(out, "\n'couponctl %s COMMAND --help' shows one command's usage.\n", group);
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* True when a command's arguments ask for its help: --help or -h before
 * any "--". */
static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (is_help(argv[i]))
            return true;
    return false;
}

/* Matches argv against a command's words ("db migrate" takes two). */
static const ctl_cmd_t *find_command(int argc, char **argv, int *words)
{
    for (size_t i = 0; i < CP_ARRAY_SIZE(commands); i++) {
        const char *name = commands[i].name, *space = strchr(name, ' ');
        if (!space) {
            if (argc >= 1 && strcmp(argv[0], name) == 0) {
                *words = 1;
                return &commands[i];
            }
        } else if (argc >= 2 && strncmp(argv[0], name, (size_t)(space - name)) == 0 &&
                   argv[0][space - name] == '\0' && strcmp(argv[1], space + 1) == 0) {
            *words = 2;
            return &commands[i];
        }
    }
    return NULL;
}

/* No command matched argv[0..argc): a group's help, or the usage error that
 * names what to read. Returns the exit code. */
static int no_command(int argc, char **argv)
{
    if (argc == 0) {
        usage(stderr);
        return CP_EXIT_USAGE;
    }
    if (is_group(argv[0])) {
        if (argc >= 2 && is_help(argv[1])) {
            group_usage(stdout, argv[0]);
            return CP_EXIT_OK;
        }
        if (argc == 1)
            fprintf(stderr, "couponctl: %s: which command?\n", argv[0]);
        else
            fprintf(stderr, "couponctl: unknown command '%s %s'\n", argv[0], argv[1]);
        group_usage(stderr, argv[0]);
        return CP_EXIT_USAGE;
    }
    fprintf(stderr, "couponctl: unknown command '%s' (see couponctl --help)\n", argv[0]);
    return CP_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ctl_t ctl = {.cli = {.prog = "couponctl"}};
    const ctl_cmd_t *cmd;
    char *cmd_argv0;
    int c, words = 0, rc;

    /* "+": stop at the command, whose own options are parsed by it. */
    while ((c = getopt_long(argc, argv, "+c:s:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            ctl.cli.config_path = optarg;
            break;
        case 's':
            if (cli_add_set(&ctl.cli, optarg) != 0)
                return CP_EXIT_FAILURE;
            break;
        case 'j':
            ctl.json = true;
            break;
        case 'h':
            usage(stdout);
            cli_free(&ctl.cli);
            return CP_EXIT_OK;
        default:
            usage(stderr);
            cli_free(&ctl.cli);
            return CP_EXIT_USAGE;
        }
    }
    cmd = find_command(argc - optind, argv + optind, &words);
    if (!cmd) {
        cli_free(&ctl.cli);
        return no_command(argc - optind, argv + optind);
    }
    /* Help needs no configuration. */
    if (wants_help(argc - optind - words, argv + optind + words)) {
        command_usage(stdout, cmd);
        cli_free(&ctl.cli);
        return CP_EXIT_OK;
    }
    running = cmd->name;
    rc = cli_load(&ctl.cli, &ctl.cfg, "ctl");
    cli_free(&ctl.cli);
    if (rc != CP_EXIT_OK)
        return rc;
    /* A command gets argv[0] = its name and its arguments after it, the
     * shape getopt expects; getopt's messages then name the command. */
    if (asprintf(&cmd_argv0, "couponctl %s", cmd->name) < 0) {
        cfg_free(&ctl.cfg);
        return CP_EXIT_FAILURE;
    }
    argv[optind + words - 1] = cmd_argv0;
    rc = cmd->run(&ctl, argc - optind - words + 1, argv + optind + words - 1);
    free(cmd_argv0);
    cfg_free(&ctl.cfg);
    sig_thread_cleanup();
    return rc;
}
