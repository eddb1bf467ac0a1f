/* cli.h: what coupond and couponctl share on the command line: --config,
 * --set overrides, loading the configuration and starting the log. */
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

#endif
