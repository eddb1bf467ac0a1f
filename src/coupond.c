/* coupond: runs one lane's consumer (--role l|w) or checks the configuration. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lane.h"
#include "log.h"
#include "signature.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: coupond [--config FILE] [--set PATH=VALUE]... --role l|w\n"
                 "       coupond [--config FILE] [--set PATH=VALUE]... --check\n"
                 "\n"
                 "  --config FILE    configuration file (default: $COUPOND_CONFIG)\n"
                 "  --set PATH=VALUE override one setting (repeatable)\n"
                 "  --role l|w       run the L (fast) or W (safety net) lane's consumer\n"
                 "  --check          validate the configuration, print it (secrets masked), exit\n"
                 "\n"
                 "exit codes: 0 ok, 1 failures, 2 usage or configuration error, 3 dependency "
                 "unavailable\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"role", required_argument, NULL, 'r'},   {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    cli_common_t cli = {.prog = "coupond"};
    const char *role = NULL;
    int check = 0, c, rc;
    cfg_t cfg;

    while ((c = getopt_long(argc, argv, "c:s:r:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cli.config_path = optarg;
            break;
        case 's':
            if (cli_add_set(&cli, optarg) != 0) {
                fprintf(stderr, "coupond: out of memory\n");
                return CP_EXIT_FAILURE;
            }
            break;
        case 'r':
            role = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'h':
            usage(stdout);
            return CP_EXIT_OK;
        default:
            usage(stderr);
            cli_free(&cli);
            return CP_EXIT_USAGE;
        }
    }
    if (optind != argc || (!check && !role) ||
        (role && strcmp(role, "l") != 0 && strcmp(role, "w") != 0)) {
        usage(stderr);
        cli_free(&cli);
        return CP_EXIT_USAGE;
    }
    rc = cli_load(&cli, &cfg, role ? role : "check");
    if (rc != CP_EXIT_OK) {
        cli_free(&cli);
        return rc;
    }
    if (check) {
        cfg_print(&cfg, stdout);
        printf("# configuration OK\n");
    } else {
        lane_ctx_t lc = {.cfg = &cfg,
                         .config_path = cfg_locate(cli.config_path),
                         .sets = cli.sets,
                         .nsets = cli.nsets,
                         .role = role};
        lane_signals_install();
        rc = lane_run(&lc);
        store_close(lc.store);
    }
    cli_free(&cli);
    cfg_free(&cfg);
    sig_thread_cleanup();
    return rc;
}
