/* ops.h: operators' commands on deals and orders: couponctl deal list,
 * deal show and order refund. */
#ifndef COUPOND_OPS_H
#define COUPOND_OPS_H

#include <stdbool.h>
#include "common.h"
#include "config.h"

/* The commands. argv[0] names the command (for getopt), its options and
 * arguments follow; json is couponctl's global --json (each command also
 * takes --json itself). cfg must be loaded. Each returns the process exit
 * code: 0 success; 1 no such deal or order, or (order refund) an order that
 * is already issued or refunded; 2 usage; 3 the store is unavailable or not
 * migrated. Data go to stdout, diagnostics to stderr. */
int ops_cmd_deal_list(const cfg_t *cfg, bool json, int argc, char **argv);
int ops_cmd_deal_show(const cfg_t *cfg, bool json, int argc, char **argv);
int ops_cmd_order_refund(const cfg_t *cfg, bool json, int argc, char **argv);

#endif
