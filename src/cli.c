/* cli.c: configuration loading shared by coupond and couponctl, and the
 * pieces every couponctl command shares (opening the store, usage errors). */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

int cli_add_set(cli_common_t *cli, char *set)
{
    char **grown = realloc(cli->sets, sizeof *grown * (size_t)(cli->nsets + 1));
    if (!grown)
        return -1;
    cli->sets = grown;
    cli->sets[cli->nsets++] = set;
    return 0;
}

int cli_load(cli_common_t *cli, cfg_t *cfg, const char *role)
{
    char err[CP_ERRLEN];
    const char *path = cfg_locate(cli->config_path);

    if (!path) {
        fprintf(stderr, "%s: no configuration: pass --config FILE or set COUPOND_CONFIG\n",
                cli->prog);
        return CP_EXIT_USAGE;
    }
    if (cfg_load(cfg, path, cli->sets, cli->nsets, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", cli->prog, err);
        return CP_EXIT_USAGE;
    }
    log_init(cfg->cluster, role, (log_level_t)cfg->log.level, cfg->log.format == 0);
    return CP_EXIT_OK;
}

void cli_free(cli_common_t *cli)
{
    free(cli->sets);
    cli->sets = NULL;
    cli->nsets = 0;
}

int cli_store_open(const char *prog, const cfg_t *cfg, store_t **st)
{
    char err[CP_ERRLEN];
    store_rc_t rc = store_open(st, cfg->store.conninfo, cfg->store.password,
                               cfg->store.statement_timeout_ms, err, sizeof err);
    if (rc == STORE_E_INVALID) {
        fprintf(stderr, "%s: store.conninfo: %s\n", prog, err);
        return CP_EXIT_USAGE;
    }
    if (rc != STORE_OK) {
        fprintf(stderr, "%s: store unavailable: %s\n", prog, err);
        return CP_EXIT_UNAVAIL;
    }
    return CP_EXIT_OK;
}

int cli_option_error(const char *cmd)
{
    fprintf(stderr, "couponctl: %s: see 'couponctl %s --help' for its usage\n", cmd, cmd);
    return CP_EXIT_USAGE;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "couponctl: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'couponctl %s --help')\n", cmd);
    return CP_EXIT_USAGE;
}

int cli_store_exit(store_rc_t rc)
{
    return rc == STORE_E_UNAVAILABLE || rc == STORE_E_SCHEMA ? CP_EXIT_UNAVAIL : CP_EXIT_FAILURE;
}

int cli_parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1)
        return -1;
    *out = v;
    return 0;
}

void cli_os_user(char *out, size_t outlen)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw && pw->pw_name && pw->pw_name[0])
        snprintf(out, outlen, "%s", pw->pw_name);
    else
        snprintf(out, outlen, "uid %u", (unsigned)geteuid());
}

void cli_json_print(cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    if (text)
        puts(text);
    cJSON_free(text);
    cJSON_Delete(o);
}
