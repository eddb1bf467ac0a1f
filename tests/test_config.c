/* test_config.c: the settings table: defaults, overrides, secrets, errors
 * that cite file:line, combination checks, masking and reload. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"

static char dir[] = "/tmp/coupond-test-config-XXXXXX";

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* A minimal valid configuration in parts; a case may replace the store line
 * or the lanes part (keeping its line count, so lines stay where they are)
 * and append lines from line 12 on. */
static const char *const CLUSTER = "cluster = \"dc1\";\n";                            /* line 1 */
static const char *const STORE = "store: { conninfo = \"host=db\"; };\n";             /* line 2 */
static const char *const LANES = "lanes: {\n"                                         /* 3 */
                                 "  l: { kafka: { brokers = \"k:9092\"; }; };\n"      /* 4 */
                                 "  w: { amqp: { url = \"amqp://u@r:5672/\"; }; };\n" /* 5 */
                                 "};\n";                                              /* 6 */
static const char *const SECURITY =
    "security: {\n"                                            /* 7 */
    "  keys = ( { id = \"k1\"; secret = \"file:k1.key\"; },\n" /* 8 */
    "           { id = \"k2\"; secret = \"env:TEST_K2\"; } );\n"
    "  sign_with = \"k1\";\n"
    "};\n";

static int load_parts(cfg_t *cfg, const char *store, const char *lanes, const char *extra,
                      char **sets, int nsets, char *err, size_t n)
{
    char path[512], text[4096];
    snprintf(text, sizeof text, "%s%s%s%s%s", CLUSTER, store ? store : STORE, lanes ? lanes : LANES,
             SECURITY, extra ? extra : "");
    write_file("c.cfg", text, 0644);
    snprintf(path, sizeof path, "%s/c.cfg", dir);
    return cfg_load(cfg, path, sets, nsets, err, n);
}

typedef struct bad_case {
    const char *name;
    const char *store; /* replaces line 2, or NULL */
    const char *lanes; /* replaces lines 3-6, or NULL */
    const char *extra; /* appended from line 12 */
    const char *set;   /* one --set, or NULL */
    const char *want;  /* substring of the error */
} bad_case_t;

#define SECRET_LINE(ref) "store: { conninfo = \"host=db\"; password = \"" ref "\"; };\n"

static const bad_case_t bad_cases[] = {
    {"syntax error", NULL, NULL, "issue = ;\n", NULL, "c.cfg:12: "},
    {"unknown setting", NULL, NULL, "issue: { batchsize = 5; };\n", NULL,
     "c.cfg:12: unknown setting 'issue.batchsize'"},
    {"unknown group", NULL, NULL, "nonsense: { a = 1; };\n", NULL,
     "c.cfg:12: unknown setting 'nonsense'"},
    {"unknown nested", NULL,
     "lanes: {\n  l: { kafka: { brokers = \"k:9092\"; topik = \"x\"; }; };\n"
     "  w: { amqp: { url = \"amqp://u@r:5672/\"; }; };\n};\n",
     NULL, NULL, "c.cfg:4: unknown setting 'lanes.l.kafka.topik'"},
    {"int as string", NULL, NULL, "issue: { refund_after_s = \"1800\"; };\n", NULL,
     "c.cfg:12: issue.refund_after_s: expected an integer"},
    {"int out of range", NULL, NULL, "issue: { batch_size = 0; };\n", NULL,
     "c.cfg:12: issue.batch_size: must be between 1 and 10000, got 0"},
    {"bad enum", NULL, NULL, "log: { level = \"loud\"; };\n", NULL,
     "c.cfg:12: log.level: unknown value \"loud\"; one of: error, warn, info, debug"},
    {"bad transport", NULL,
     "lanes: {\n  l: { transport = \"mqtt\"; kafka: { brokers = \"k:9092\"; }; };\n"
     "  w: { amqp: { url = \"amqp://u@r:5672/\"; }; };\n};\n",
     NULL, NULL, "c.cfg:4: lanes.l.transport: unknown value \"mqtt\""},
    {"bool as int", NULL, NULL,
     "message: { max_version = 1; };\npublish: { timeout_ms = true; };\n", NULL,
     "c.cfg:13: publish.timeout_ms: expected an integer"},
    {"list not ascending", NULL, NULL, "issue: { retry_delays_ms = [ 5000, 1000 ]; };\n", NULL,
     "c.cfg:12: issue.retry_delays_ms: delays must be strictly ascending"},
    {"list of strings", NULL, NULL, "issue: { retry_delays_ms = [ \"a\" ]; };\n", NULL,
     "issue.retry_delays_ms: element 1 is not an integer"},
    {"deadline shorter than delay", NULL, NULL, "issue: { refund_after_s = 5; };\n",
     "lanes.w.delay_ms=10000",
     "c.cfg:12: issue.refund_after_s: the refund deadline (5 s) must be longer than the w lane's "
     "delay (10000 ms)"},
    {"bad set value", NULL, NULL, NULL, "issue.batch_size=many",
     "--set issue.batch_size: expected an integer"},
    {"unknown set", NULL, NULL, NULL, "issue.nope=1", "--set issue.nope=1: unknown setting"},
    {"set without =", NULL, NULL, NULL, "issue.batch_size", "expected PATH=VALUE"},
    {"inline secret", SECRET_LINE("hunter2hunter2"), NULL, NULL, NULL,
     "c.cfg:2: store.password: secrets are read from a file or the environment"},
    {"missing secret file", SECRET_LINE("file:nope"), NULL, NULL, NULL,
     "c.cfg:2: store.password: cannot open"},
    {"unset env secret", SECRET_LINE("env:COUPOND_TEST_UNSET"), NULL, NULL, NULL,
     "environment variable COUPOND_TEST_UNSET is not set"},
    {"world-readable secret", SECRET_LINE("file:open.key"), NULL, NULL, NULL,
     "is accessible by group or others (mode 0644); run: chmod 600"},
    {"group-readable secret", SECRET_LINE("file:group.key"), NULL, NULL, NULL,
     "is accessible by group or others (mode 0640)"},
    {"sign_with unknown", NULL, NULL, NULL, "security.sign_with=k9",
     "no key \"k9\" in security.keys"},
    {"same destination", NULL,
     "lanes: {\n  l: { kafka: { brokers = \"k:9092\"; }; };\n"
     "  w: { transport = \"kafka\"; kafka: { brokers = \"k:9092\"; topic = \"coupond.l\"; }; "
     "};\n};\n",
     NULL, NULL, "the l and w lanes point at the same destination"},
    {"bad amqp url", NULL, NULL, NULL, "lanes.w.amqp.url=http://x",
     "--set lanes.w.amqp.url: must start with amqp://"},
    {"bad listen", NULL, NULL, NULL, "metrics.listen=nowhere", "must be HOST:PORT"},
    {"bad cluster", NULL, NULL, NULL, "cluster=DC 1", "must be 1-32 characters"},
    {"delay queue = work queue", NULL, NULL, NULL, "lanes.w.amqp.delay_queue=coupond.w.work",
     "needs a delay queue distinct from its work queue"},
    {"missing broker file", NULL, NULL, NULL, "lanes.l.kafka.brokers=file:nothere", "cannot open"},
    {"keys not a list", NULL, NULL, NULL, "security.keys=x", "keys are set in the file"},
};

static void test_bad_cases(void)
{
    char err[CP_ERRLEN];
    for (size_t i = 0; i < CP_ARRAY_SIZE(bad_cases); i++) {
        const bad_case_t *c = &bad_cases[i];
        char *sets[1] = {(char *)c->set};
        cfg_t cfg;
        int rc;
        err[0] = '\0';
        rc = load_parts(&cfg, c->store, c->lanes, c->extra, sets, c->set ? 1 : 0, err, sizeof err);
        CHECK_MSG(rc == -1, "%s: loaded", c->name);
        CHECK_MSG(strstr(err, c->want) != NULL, "%s: error \"%s\" lacks \"%s\"", c->name, err,
                  c->want);
        cfg_free(&cfg);
    }
}

static void test_defaults_and_sets(void)
{
    char err[CP_ERRLEN], out[4096];
    char *sets[] = {"lanes.w.delay_ms=1000", "issue.retry_delays_ms=[100, 200,300]",
                    "log.level=\"debug\"", "security.require_signature=false"};
    cfg_t cfg;
    int rc = load_parts(&cfg, NULL, NULL, NULL, sets, 4, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc != 0)
        return;
    CHECK_STR(cfg.cluster, "dc1");
    CHECK(cfg.lane_l.transport == CFG_TRANSPORT_KAFKA);
    CHECK(cfg.lane_w.transport == CFG_TRANSPORT_AMQP);
    CHECK_STR(cfg.lane_l.kafka.topic, "coupond.l");
    CHECK_STR(cfg.lane_w.amqp.queue, "coupond.w.work");
    CHECK_STR(cfg.lane_w.amqp.delay_queue, "coupond.w.delay");
    CHECK(cfg.lane_w.delay_ms == 1000);
    CHECK(cfg.issue.refund_after_s == 1800);
    CHECK(cfg.issue.nretry_delays == 3 && cfg.issue.retry_delays_ms[2] == 300);
    CHECK(cfg.log.level == LOG_DEBUG);
    CHECK(!cfg.security.require_signature);
    CHECK(cfg.security.nkeys == 2);
    CHECK(cfg_sign_key(&cfg) && strcmp(cfg_sign_key(&cfg)->id, "k1") == 0);
    CHECK(cfg_sign_key(&cfg)->secret_len == 32 &&
          memcmp(cfg_sign_key(&cfg)->secret, "0123456789abcdef0123456789abcdef", 32) == 0);
    CHECK(cfg_keyring(&cfg).nkeys == 2);
    CHECK(cfg_format(&cfg, "issue.retry_delays_ms", out, sizeof out) == 0);
    CHECK_STR(out, "[ 100, 200, 300 ]");
    CHECK(cfg_format(&cfg, "lanes.w.delay_ms", out, sizeof out) == 0);
    CHECK_STR(out, "1000");
    CHECK(cfg_format(&cfg, "log.level", out, sizeof out) == 0);
    CHECK_STR(out, "\"debug\"");
    CHECK(cfg_format(&cfg, "no.such", out, sizeof out) == -1);
    cfg_free(&cfg);
}

/* Secrets never come out of format/print, and inline URL/conninfo passwords
 * are masked. */
static void test_masking(void)
{
    char err[CP_ERRLEN], out[4096];
    char *buf = NULL;
    size_t len = 0;
    FILE *mem;
    cfg_t cfg;
    int rc;

    rc = load_parts(
        &cfg, "store: { password = \"file:pg.pw\"; conninfo = \"host=db password=inline-pw\"; };\n",
        "lanes: {\n  l: { kafka: { brokers = \"k:9092\"; }; };\n"
        "  w: { amqp: { url = \"amqp://u:url-pw@r:5672/\"; }; };\n};\n",
        NULL, NULL, 0, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc != 0)
        return;
    CHECK_STR(cfg.store.password, "pg-secret-value");
    CHECK(cfg_format(&cfg, "store.password", out, sizeof out) == 0);
    CHECK_STR(out, "\"********\"");
    CHECK(cfg_format(&cfg, "lanes.w.amqp.url", out, sizeof out) == 0);
    CHECK_STR(out, "\"amqp://u:****@r:5672/\"");
    CHECK(cfg_format(&cfg, "store.conninfo", out, sizeof out) == 0);
    CHECK_STR(out, "\"host=db password=****\"");
    mem = open_memstream(&buf, &len);
    cfg_print(&cfg, mem);
    fclose(mem);
    CHECK(strstr(buf, "pg-secret-value") == NULL);
    CHECK(strstr(buf, "0123456789abcdef") == NULL);
    CHECK(strstr(buf, "k2-secret-from-env") == NULL);
    CHECK(strstr(buf, "inline-pw") == NULL && strstr(buf, "url-pw") == NULL);
    CHECK(strstr(buf, "security.keys = ( { id = \"k1\"; secret = \"********\"; }") != NULL);
    free(buf);
    cfg_free(&cfg);
}

/* A printed string value is a libconfig literal: quotes, backslashes and
 * control characters are escaped, and the printed value reads back as the
 * same string. */
static void test_print_escapes(void)
{
    static const char raw[] = "host=db\napplication_name='a\"b\\c\td\x01'";
    char err[CP_ERRLEN], out[4096], store[4200];
    cfg_t cfg, again;
    int rc;

    rc = load_parts(
        &cfg, "store: { conninfo = \"host=db\\napplication_name='a\\\"b\\\\c\\td\\x01'\"; };\n",
        NULL, NULL, NULL, 0, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc != 0)
        return;
    CHECK_STR(cfg.store.conninfo, raw);
    CHECK(cfg_format(&cfg, "store.conninfo", out, sizeof out) == 0);
    CHECK_STR(out, "\"host=db\\napplication_name='a\\\"b\\\\c\\td\\x01'\"");
    CHECK(strchr(out, '\n') == NULL);
    snprintf(store, sizeof store, "store: { conninfo = %s; };\n", out);
    rc = load_parts(&again, store, NULL, NULL, NULL, 0, err, sizeof err);
    CHECK_MSG(rc == 0, "printed value does not read back: %s", err);
    if (rc == 0) {
        CHECK_STR(again.store.conninfo, raw);
        cfg_free(&again);
    }
    cfg_free(&cfg);
}

static void test_reload(void)
{
    char err[CP_ERRLEN], note[512];
    char *s1[] = {"log.level=info"}, *s2[] = {"log.level=debug", "cluster=dc2",
                                              "issue.retry_delays_ms=1,2", "issue.batch_size=7"};
    cfg_t cur, next;
    CHECK(load_parts(&cur, NULL, NULL, NULL, s1, 1, err, sizeof err) == 0);
    CHECK(load_parts(&next, NULL, NULL, NULL, s2, 4, err, sizeof err) == 0);
    cfg_apply_reload(&cur, &next, note, sizeof note);
    CHECK(cur.log.level == LOG_DEBUG);
    CHECK_STR(cur.cluster, "dc1"); /* needs a restart */
    CHECK(strstr(note, "cluster") != NULL);
    CHECK(cur.issue.batch_size == 7);
    /* Retry tiers are queues declared at start: a restart, not a reload. */
    CHECK(cur.issue.nretry_delays == 5 && cur.issue.retry_delays_ms[0] == 1000);
    CHECK(strstr(note, "issue.retry_delays_ms") != NULL);
    cfg_free(&cur);
    cfg_free(&next);
}

static void test_locate(void)
{
    unsetenv("COUPOND_CONFIG");
    CHECK(cfg_locate(NULL) == NULL);
    CHECK_STR(cfg_locate("x.cfg"), "x.cfg");
    setenv("COUPOND_CONFIG", "/etc/coupond/coupond.cfg", 1);
    CHECK_STR(cfg_locate(NULL), "/etc/coupond/coupond.cfg");
    CHECK_STR(cfg_locate("x.cfg"), "x.cfg");
}

/* The shipped default configuration parses once its secrets exist. */
static void test_shipped_config(void)
{
    char err[CP_ERRLEN];
    cfg_t cfg;
    int rc = cfg_load(&cfg, "../conf/coupond.cfg", NULL, 0, err, sizeof err);
    /* Without local services the secrets are absent: the error must say so
     * precisely; with them, it loads. */
    CHECK_MSG(rc == 0 || strstr(err, "coupond.cfg:") != NULL, "%s", err);
    if (rc == 0)
        CHECK(cfg.lane_l.transport == CFG_TRANSPORT_KAFKA &&
              cfg.lane_w.transport == CFG_TRANSPORT_AMQP);
    cfg_free(&cfg);
}

int main(void)
{
    char cmd[600];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    write_file("k1.key", "0123456789abcdef0123456789abcdef\n", 0600);
    write_file("pg.pw", "pg-secret-value", 0600);
    write_file("open.key", "0123456789abcdef", 0644);
    write_file("group.key", "0123456789abcdef", 0640);
    setenv("TEST_K2", "k2-secret-from-env", 1);
    log_set_fd(open("/dev/null", 1));

    test_bad_cases();
    test_defaults_and_sets();
    test_masking();
    test_print_escapes();
    test_reload();
    test_locate();
    test_shipped_config();

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_done("test_config");
}
