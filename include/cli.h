/* cli.h: what coupond and couponctl share on the command line: --config,
 * --set overrides, loading the configuration and starting the log; and the
 * small pieces every couponctl command uses (usage errors, exit codes, ids,
 * the OS user, JSON lines). */
#ifndef COUPOND_CLI_H
#define COUPOND_CLI_H

#include "config.h"
#include "store.h"

typedef struct cli_common {
    const char *prog;        /* for messages */
    const char *config_path; /* --config, or NULL */
    char **sets;             /* --set values (not owned) */
    int nsets;
} cli_common_t;

/* Records one --set PATH=VALUE. Returns 0, or -1 when out of memory. */
int cli_add_set(cli_common_t *cli, char *set) CP_MUSTCHECK;

/* Locates and loads the configuration and starts the log for role.
 * Returns CP_EXIT_OK, or CP_EXIT_USAGE after printing "PROG: FILE:LINE: ..."
 * to stderr (cfg is then empty). */
int cli_load(cli_common_t *cli, cfg_t *cfg, const char *role) CP_MUSTCHECK;

void cli_free(cli_common_t *cli);

/* Opens the store named by cfg. Returns CP_EXIT_OK with *st, or the exit
 * code after printing why to stderr: CP_EXIT_USAGE for a malformed
 * store.conninfo, CP_EXIT_UNAVAIL when the server cannot be reached. */
int cli_store_open(const char *prog, const cfg_t *cfg, store_t **st) CP_MUSTCHECK;

/* After getopt refused one of couponctl command cmd's options ("dlq
 * replay"; getopt said why): names the usage to read, on stderr. Returns
 * CP_EXIT_USAGE. */
int cli_option_error(const char *cmd);

/* A wrong argument of couponctl command cmd ("dlq replay"): prints
 * "couponctl: CMD: WHY (see 'couponctl CMD --help')" on stderr. Returns
 * CP_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) CP_PRINTF(2, 3);

/* The exit code of a store call that failed: a store that is down or not
 * migrated is unusable, like an outage (CP_EXIT_UNAVAIL); anything else is
 * CP_EXIT_FAILURE. */
int cli_store_exit(store_rc_t rc);

/* Parses a decimal id > 0 that fills the whole of s. Returns 0 or -1. */
int cli_parse_id(const char *s, int64_t *out) CP_MUSTCHECK;

/* The name of the OS user running the command (or "uid N"), for audit rows. */
void cli_os_user(char *out, size_t outlen);

/* Prints o as one line of JSON on stdout, then frees it (NULL: nothing). */
struct cJSON;
void cli_json_print(struct cJSON *o);

#endif
