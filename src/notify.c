/* notify.c: sd_notify without libsystemd: one datagram per state change to
 * the AF_UNIX socket named by $NOTIFY_SOCKET. */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
    struct sockaddr_un addr;
    socklen_t addrlen; /* 0: no socket */
    int64_t watchdog_us, last_watchdog_us;
} nt;

void notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET"), *wd = getenv("WATCHDOG_USEC"),
               *wpid = getenv("WATCHDOG_PID");
    size_t len;

    memset(&nt, 0, sizeof nt);
    if (path && (path[0] == '/' || path[0] == '@') &&
        (len = strlen(path)) < sizeof nt.addr.sun_path) {
        nt.addr.sun_family = AF_UNIX;
        memcpy(nt.addr.sun_path, path, len);
        if (path[0] == '@')
            nt.addr.sun_path[0] = '\0'; /* abstract: the name is not NUL-terminated */
        nt.addrlen =
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0));
    }
    if (wd && (!wpid || atol(wpid) == (long)getpid()))
        nt.watchdog_us = atoll(wd) > 0 ? atoll(wd) : 0;
    nt.last_watchdog_us = INT64_MIN / 2; /* the first goes out at once */
}

int notify_send(const char *state)
{
    int fd, rc;
    if (nt.addrlen == 0)
        return 1;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&nt.addr,
                nt.addrlen) < 0
             ? -1
             : 0;
    close(fd);
    return rc;
}

static void send_with_status(const char *what, const char *status)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s\nSTATUS=%s", what, status);
    notify_send(msg);
}

void notify_ready(const char *status)
{
    send_with_status("READY=1", status);
}

void notify_reloading(void)
{
    char msg[128];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading",
             (long long)cp_clock_us(CLOCK_MONOTONIC));
    notify_send(msg);
}

void notify_stopping(const char *status)
{
    send_with_status("STOPPING=1", status);
}

void notify_status(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n = snprintf(msg, sizeof msg, "STATUS=");
    if (nt.addrlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    notify_send(msg);
}

void notify_watchdog(void)
{
    int64_t now;
    if (nt.watchdog_us <= 0)
        return;
    now = cp_clock_us(CLOCK_MONOTONIC);
    if (now - nt.last_watchdog_us < nt.watchdog_us / 2)
        return;
    nt.last_watchdog_us = now;
    notify_send("WATCHDOG=1");
}
