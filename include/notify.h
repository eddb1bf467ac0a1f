/* notify.h: the service manager's notification protocol (sd_notify) over
 * $NOTIFY_SOCKET, for `Type=notify` units: readiness, reload, stop, the
 * watchdog and a status line. Without $NOTIFY_SOCKET every call does
 * nothing. Datagrams are written directly to the socket (a path, or an
 * abstract name starting with '@'); a failed send is ignored. */
#ifndef COUPOND_NOTIFY_H
#define COUPOND_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include "common.h"

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the watchdog is on
 * when WATCHDOG_USEC > 0 and WATCHDOG_PID is unset or this process). */
void notify_init(void);

/* READY=1 with a STATUS= line. */
void notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC= (send READY=1 when the reload is done). */
void notify_reloading(void);
/* STOPPING=1 with a STATUS= line. */
void notify_stopping(const char *status);
/* STATUS=... only; printf-style. */
void notify_status(const char *fmt, ...) CP_PRINTF(1, 2);

/* WATCHDOG=1 when half of $WATCHDOG_USEC has passed since the last one.
 * Call it from the main loop only while the loop is healthy. */
void notify_watchdog(void);

/* Sends state (one or more "KEY=VALUE" lines) as one datagram. Returns 0,
 * 1 when there is no $NOTIFY_SOCKET, or -1 when the send failed. */
int notify_send(const char *state);

#endif
