/* kafkahost.c: hosts librdkafka's mock Kafka cluster on loopback for local runs and tests. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define BROKER_CNT  3
#define MAX_CLIENTS 8
#define LINE_MAX_   512

static volatile sig_atomic_t stop_requested;

struct client {
    int fd; /* -1 when the slot is free */
    size_t len;
    char buf[LINE_MAX_];
};

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void logf_(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(const char *level, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ kafkahost %s: ", when, ts.tv_nsec / 1000000, level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (!strcmp(fac, "CONFWARN") && strstr(buf, "bootstrap.servers"))
        return; /* the hosting handle never connects anywhere: nothing to warn about */
    logf_(level <= 3 ? "error" : level <= 5 ? "warning" : "debug", "rdkafka %s: %s", fac, buf);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: coupond-kafkahost --bootstrap-file FILE [--topic NAME:PARTITIONS]... "
            "[--control PATH]\n"
            "       coupond-kafkahost --ctl PATH COMMAND...\n"
            "commands: down ID|all, up ID|all, rtt ID|all MS, topic NAME PARTITIONS, ping\n");
    return 2;
}

/* Writes the bootstrap list to a temporary file, then renames it over FILE so
 * readers never see a partial list. */
static int write_bootstrap(const char *path, const char *list)
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    if (!(f = fopen(tmp, "w")))
        return -1;
    if (fputs(list, f) == EOF || fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return -1;
    strcpy(sa->sun_path, path);
    return 0;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(s, &end, 10);
    return errno || end == s || *end || *out < lo || *out > hi ? -1 : 0;
}

/* "all" maps to -1, which the mock API takes as every broker. */
static int parse_broker(const char *s, int32_t *id)
{
    long v;

    if (!strcmp(s, "all")) {
        *id = -1;
        return 0;
    }
    if (parse_int(s, 1, BROKER_CNT, &v))
        return -1;
    *id = (int32_t)v;
    return 0;
}

/* Runs one control command and writes the one-line answer into reply. */
static void run_command(rd_kafka_mock_cluster_t *mc, char *line, char *reply, size_t size)
{
    char *argv[4], *save = NULL;
    int argc = 0;
    int32_t id = 0;
    long n = 0;
    rd_kafka_resp_err_t err;
    char *tok;

    for (tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == 4) {
            snprintf(reply, size, "error: too many arguments");
            return;
        }
        argv[argc++] = tok;
    }
    if (argc == 1 && !strcmp(argv[0], "ping")) {
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
    } else if (argc == 2 && (!strcmp(argv[0], "down") || !strcmp(argv[0], "up"))) {
        if (parse_broker(argv[1], &id)) {
            snprintf(reply, size, "error: broker must be 1..%d or all", BROKER_CNT);
            return;
        }
        err = argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mc, id)
                                : rd_kafka_mock_broker_set_up(mc, id);
    } else if (argc == 3 && !strcmp(argv[0], "rtt")) {
        if (parse_broker(argv[1], &id) || parse_int(argv[2], 0, 600000, &n)) {
            snprintf(reply, size, "error: usage: rtt 1..%d|all MS", BROKER_CNT);
            return;
        }
        err = rd_kafka_mock_broker_set_rtt(mc, id, (int)n);
    } else if (argc == 3 && !strcmp(argv[0], "topic")) {
        if (parse_int(argv[2], 1, 10000, &n)) {
            snprintf(reply, size, "error: partitions must be 1..10000");
            return;
        }
        err = rd_kafka_mock_topic_create(mc, argv[1], (int)n, BROKER_CNT);
    } else {
        snprintf(reply, size,
                 "error: unknown command (down|up ID|all, rtt ID|all MS, "
                 "topic NAME PARTITIONS, ping)");
        return;
    }
    if (err)
        snprintf(reply, size, "error: %s", rd_kafka_err2str(err));
    else
        snprintf(reply, size, "ok");
    if (argc > 1)
        logf_("info", "control: %s %s%s%s -> %s", argv[0], argv[1], argc > 2 ? " " : "",
              argc > 2 ? argv[2] : "", reply);
}

/* Reads what a client sent and answers every complete line. Returns -1 when
 * the client is gone or misbehaved and its slot should be freed. */
static int serve_client(rd_kafka_mock_cluster_t *mc, struct client *c)
{
    char reply[LINE_MAX_ + 64];
    char *nl;
    ssize_t n;

    n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    while ((nl = strchr(c->buf, '\n'))) {
        *nl = '\0';
        run_command(mc, c->buf, reply, sizeof reply - 1);
        strcat(reply, "\n");
        if (send(c->fd, reply, strlen(reply), MSG_NOSIGNAL) < 0)
            return -1;
        c->len -= (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, c->len + 1);
    }
    return c->len == sizeof c->buf - 1 ? -1 : 0;
}

static int control_listen(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (unix_addr(path, &sa) || (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    unlink(path); /* a stale socket from a killed host */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 16)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Serves the control socket (if any) until a signal asks us to stop. */
static void serve(rd_kafka_mock_cluster_t *mc, int lfd)
{
    struct pollfd pfd[MAX_CLIENTS + 1];
    struct client clients[MAX_CLIENTS];
    int i, fd;

    for (i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    while (!stop_requested) {
        pfd[0].fd = lfd;
        pfd[0].events = POLLIN;
        for (i = 0; i < MAX_CLIENTS; i++) {
            pfd[i + 1].fd = clients[i].fd;
            pfd[i + 1].events = POLLIN;
        }
        if (poll(pfd, MAX_CLIENTS + 1, 1000) <= 0)
            continue; /* timeout, or EINTR from the stop signal */
        for (i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd >= 0 && pfd[i + 1].revents && serve_client(mc, &clients[i])) {
                close(clients[i].fd);
                clients[i].fd = -1;
            }
        }
        if (pfd[0].revents & POLLIN && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            for (i = 0; i < MAX_CLIENTS && clients[i].fd >= 0; i++)
                ;
            if (i == MAX_CLIENTS) {
                close(fd); /* busy: the client sees EOF and reports an error */
                continue;
            }
            clients[i].fd = fd;
            clients[i].len = 0;
        }
    }
    for (i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0)
            close(clients[i].fd);
}

/* Client mode: sends one command, prints the answer. 0 ok, 1 error, 3 no host. */
static int ctl(const char *path, int argc, char **argv)
{
    char line[LINE_MAX_] = "", reply[LINE_MAX_ + 64];
    struct sockaddr_un sa;
    size_t len = 0;
    ssize_t n;
    int fd, i;

    for (i = 0; i < argc; i++) {
        if (strlen(line) + strlen(argv[i]) + 2 >= sizeof line)
            return usage();
        strcat(line, i ? " " : "");
        strcat(line, argv[i]);
    }
    strcat(line, "\n");
    if (unix_addr(path, &sa) || (fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        fprintf(stderr, "coupond-kafkahost: cannot connect to %s: %s\n", path, strerror(errno));
        return 3;
    }
    if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) {
        close(fd);
        return 3;
    }
    shutdown(fd, SHUT_WR);
    while (len < sizeof reply - 1 && (n = read(fd, reply + len, sizeof reply - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    reply[len] = '\0';
    if (len == 0) {
        fprintf(stderr, "coupond-kafkahost: no answer from %s\n", path);
        return 3;
    }
    fputs(reply, stdout);
    return strncmp(reply, "ok\n", 3) ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *bootstrap_file = NULL, *control = NULL;
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    struct sigaction sa;
    int i, lfd = -1, rc = 1;

    if (argc >= 3 && !strcmp(argv[1], "--ctl"))
        return argc > 3 ? ctl(argv[2], argc - 3, argv + 3) : usage();
    for (i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--bootstrap-file"))
            bootstrap_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--control"))
            control = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--topic"))
            i++; /* created once the cluster exists */
        else
            return usage();
    }
    if (!bootstrap_file)
        return usage();

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() must return on a signal */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr))) {
        logf_("error", "rd_kafka_new: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    conf = NULL; /* owned by rk now */
    if (!(mc = rd_kafka_mock_cluster_new(rk, BROKER_CNT))) {
        logf_("error", "cannot create the mock cluster");
        goto out;
    }
    for (i = 1; i < argc; i++) { /* every option has a value: step over it */
        char name[256], *colon;
        long parts;

        if (strcmp(argv[i++], "--topic"))
            continue;
        colon = strrchr(argv[i], ':');
        if (!colon || colon - argv[i] >= (long)sizeof name || colon == argv[i] ||
            parse_int(colon + 1, 1, 10000, &parts)) {
            logf_("error", "--topic wants NAME:PARTITIONS, got '%s'", argv[i]);
            rc = 2;
            goto out;
        }
        snprintf(name, sizeof name, "%.*s", (int)(colon - argv[i]), argv[i]);
        if (rd_kafka_mock_topic_create(mc, name, (int)parts, BROKER_CNT)) {
            logf_("error", "cannot create topic %s", name);
            goto out;
        }
        logf_("info", "topic %s created with %ld partitions", name, parts);
    }
    if (control && (lfd = control_listen(control)) < 0) {
        logf_("error", "cannot listen on control socket %s: %s", control, strerror(errno));
        goto out;
    }
    if (write_bootstrap(bootstrap_file, rd_kafka_mock_cluster_bootstraps(mc))) {
        logf_("error", "cannot write %s: %s", bootstrap_file, strerror(errno));
        goto out;
    }
    logf_("info", "mock cluster of %d brokers at %s (bootstrap file %s, control %s)", BROKER_CNT,
          rd_kafka_mock_cluster_bootstraps(mc), bootstrap_file, control ? control : "none");

    serve(mc, lfd); /* poll() ignores lfd == -1: then it only waits for the signal */
    logf_("info", "stopping");
    unlink(bootstrap_file);
    rc = 0;
out:
    if (lfd >= 0) {
        close(lfd);
        unlink(control);
    }
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    rd_kafka_wait_destroyed(5000); /* let librdkafka's threads finish before exit */
    return rc;
}
