/* fuzz_config.c: the configuration loader (cfg_load: libconfig, the settings
 * table, secrets, keys, combination checks) on any file contents. A loaded
 * configuration is printed, each printed setting formatted on its own, and
 * reloaded onto itself. The file lives in a private directory beside a secret
 * file ("file:k1.key", mode 0600) and a brokers file ("file:brokers"); the
 * environment has TEST_K2. Inputs with an @include directive are skipped: an
 * included /dev/zero or FIFO would only hang libconfig, and the file is the
 * operator's, not the network's. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

/* libconfig's scanner leaks the text of a string token when the parse fails
 * inside or after it (a few bytes per failed read of a broken file; seen in
 * libconfig_yylex and strbuf_append): libconfig's, not the loader's, which
 * always calls config_destroy. Nothing of coupond's runs below libconfig, so
 * the suppression hides no leak of its own. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

static char dir[] = "/tmp/coupond-fuzz-config-XXXXXX";
static char path[sizeof dir + 16];

static void put(const char *name, const void *data, size_t len, mode_t mode)
{
    char p[sizeof dir + 32];
    int fd;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FUZZ_CHECK(fd >= 0, "cannot write %s", p);
    FUZZ_CHECK(len == 0 || write(fd, data, len) == (ssize_t)len, "cannot write %s", p);
    close(fd);
}

static void cleanup(void)
{
    static const char *const names[] = {"c.cfg", "k1.key", "brokers"};
    char p[sizeof dir + 32];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void setup(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    atexit(cleanup);
    snprintf(path, sizeof path, "%s/c.cfg", dir);
    put("k1.key", "0123456789abcdef0123456789abcdef\n", 33, 0600);
    put("brokers", "127.0.0.1:9092\n", 15, 0644);
    setenv("TEST_K2", "fedcba9876543210fedcba9876543210", 1);
    log_set_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
}

/* cfg_print writes "PATH = VALUE;" for every setting, VALUE being what
 * cfg_format gives for PATH. A string value is a libconfig literal, its
 * quotes, backslashes and control characters escaped, so no value holds a
 * newline; the printed text is walked all the same. */
static void check_print(const cfg_t *cfg)
{
    char *text = NULL, *at, value[4096] /* as cfg_print's */;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    FUZZ_CHECK(f != NULL, "open_memstream");
    cfg_print(cfg, f);
    fclose(f);
    at = strchr(text, '\n'); /* past the "# effective configuration" line */
    FUZZ_CHECK(at != NULL && text[0] == '#', "no heading line");
    for (at++; *at;) {
        char *eq = strstr(at, " = ");
        size_t vlen;
        FUZZ_CHECK(eq != NULL, "printed setting without ' = ': %.80s", at);
        *eq = '\0';
        FUZZ_CHECK(cfg_format(cfg, at, value, sizeof value) == 0, "cfg_format(%s) fails", at);
        vlen = strlen(value);
        FUZZ_CHECK(strncmp(eq + 3, value, vlen) == 0 && strncmp(eq + 3 + vlen, ";\n", 2) == 0,
                   "%s: printed %.200s, formatted %s", at, eq + 3, value);
        at = eq + 3 + vlen + 2;
    }
    FUZZ_CHECK(cfg_format(cfg, "no.such.setting", value, sizeof value) == -1, "unknown path");
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfg_t cfg, again;
    char err[1024];

    setup();
    if (memmem(data, size, "@", 1)) {
        /* libconfig's directive is "@include", in any case. */
        for (size_t i = 0; i + 8 <= size; i++)
            if (strncasecmp((const char *)data + i, "@include", 8) == 0)
                return 0;
    }
    put("c.cfg", data, size, 0644);
    memset(err, 'x', sizeof err);
    if (cfg_load(&cfg, path, NULL, 0, err, sizeof err) != 0) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL, "error not NUL-terminated");
        FUZZ_CHECK(err[0] != '\0', "an error without a message");
        cfg_free(&cfg);
        log_redact_clear();
        return 0;
    }
    check_print(&cfg);
    /* A reload of the same file changes nothing and needs no restart. */
    if (cfg_load(&again, path, NULL, 0, err, sizeof err) == 0) {
        char note[1024];
        memset(note, 'x', sizeof note);
        cfg_apply_reload(&cfg, &again, note, sizeof note);
        FUZZ_CHECK(memchr(note, '\0', sizeof note) != NULL, "note not NUL-terminated");
        FUZZ_CHECK(note[0] == '\0', "reloading the same file: %s", note);
        cfg_free(&again);
    } else {
        FUZZ_CHECK(0, "the same file loads once, then fails: %s", err);
    }
    check_print(&cfg);
    cfg_free(&cfg);
    log_redact_clear();
    return 0;
}
