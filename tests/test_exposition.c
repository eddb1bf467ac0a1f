/* test_exposition.c: the Prometheus text exposition (metrics.c): HELP and
 * TYPE lines, label escaping, values, histograms (cumulative buckets, +Inf,
 * _sum, _count), and the whole page a lane serves: every family once, names
 * and labels as the dashboards and alert rules use them. */
#include <stdint.h>

#include "check.h"
#include "metrics.h"

/* The text of one call, as a fresh string in b. */
#define FRESH(b) textbuf_free(&(b))

static void test_family(void)
{
    mx_buf_t b = {0};
    mx_family(&b, "coupond_x_total", "counter", "Things \\ counted\nover time.");
    CHECK_STR(b.s, "# HELP coupond_x_total Things \\\\ counted\\nover time.\n"
                   "# TYPE coupond_x_total counter\n");
    FRESH(b);
}

static void test_samples(void)
{
    // clang-format off
    static const struct {
        double value;
        const char *want;
    } cases[] = {
        {0, "m 0\n"},
        {42, "m 42\n"},
        {-3, "m -3\n"},
        {0.5, "m 0.5\n"},
        {0.098, "m 0.098\n"},
        {1e20, "m 1e+20\n"},
        {18446744073709551615.0, "m 1.8446744073709552e+19\n"},
        {1.0 / 0.0, "m +Inf\n"},
        {-1.0 / 0.0, "m -Inf\n"},
        {0.0 / 0.0, "m NaN\n"},
    };
    // clang-format on
    for (size_t i = 0; i < CP_ARRAY_SIZE(cases); i++) {
        mx_buf_t b = {0};
        mx_sample(&b, "m", NULL, 0, cases[i].value);
        CHECK_STR(b.s, cases[i].want);
        FRESH(b);
    }
    {
        mx_buf_t b = {0};
        mx_label_t l[] = {{"cluster", "dc1-l"}, {"reason", "a\"b\\c\nd"}};
        mx_sample(&b, "coupond_y_total", l, 2, 7);
        CHECK_STR(b.s, "coupond_y_total{cluster=\"dc1-l\",reason=\"a\\\"b\\\\c\\nd\"} 7\n");
        FRESH(b);
    }
}

static void test_histogram(void)
{
    static const double bounds[] = {0.1, 1, 10};
    const uint64_t counts[] = {2, 0, 3, 1}; /* per bucket; the last above 10 */
    mx_label_t l[] = {{"lane", "w"}};
    mx_buf_t b = {0};

    mx_histogram(&b, "h_seconds", l, 1, bounds, 3, counts, 42.25);
    CHECK_STR(b.s, "h_seconds_bucket{lane=\"w\",le=\"0.1\"} 2\n"
                   "h_seconds_bucket{lane=\"w\",le=\"1\"} 2\n"
                   "h_seconds_bucket{lane=\"w\",le=\"10\"} 5\n"
                   "h_seconds_bucket{lane=\"w\",le=\"+Inf\"} 6\n"
                   "h_seconds_sum{lane=\"w\"} 42.25\n"
                   "h_seconds_count{lane=\"w\"} 6\n");
    FRESH(b);

    /* No labels: le is the only one. */
    mx_histogram(&b, "h", NULL, 0, bounds, 0, counts, 0);
    CHECK_STR(b.s, "h_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 2\n");
    FRESH(b);
}

/* Whether line appears in the page as a whole line. */
static int has_line(const char *page, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = page; (p = strstr(p, line)) != NULL; p += n)
        if ((p == page || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static int count_of(const char *page, const char *needle)
{
    int n = 0;
    for (const char *p = page; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_page(void)
{
    static const int tiers[] = {1000, 5000};
    static const char *const families[] = {
        "coupond_notifications_received_total counter",
        "coupond_issued_total counter",
        "coupond_duplicates_total counter",
        "coupond_transient_failures_total counter",
        "coupond_rejected_total counter",
        "coupond_dead_letters_total counter",
        "coupond_retries_total counter",
        "coupond_refunds_total counter",
        "coupond_publishes_total counter",
        "coupond_batch_size histogram",
        "coupond_outcome_latency_seconds histogram",
        "coupond_broker_up gauge",
        "coupond_store_up gauge",
        "coupond_ready gauge",
        "coupond_loop_tick_age_seconds gauge",
        "coupond_oldest_pending_seconds gauge",
    };
    static const char *const want[] = {
        "coupond_notifications_received_total{cluster=\"dc1\",lane=\"w\"} 10",
        "coupond_issued_total{cluster=\"dc1\",lane=\"w\"} 2",
        "coupond_duplicates_total{cluster=\"dc1\",lane=\"w\"} 1",
        "coupond_transient_failures_total{cluster=\"dc1\",lane=\"w\"} 1",
        "coupond_rejected_total{cluster=\"dc1\",lane=\"w\"} 0",
        "coupond_dead_letters_total{cluster=\"dc1\",lane=\"w\",reason=\"bad_signature\"} 2",
        "coupond_dead_letters_total{cluster=\"dc1\",lane=\"w\",reason=\"conflict\"} 1",
        "coupond_dead_letters_total{cluster=\"dc1\",lane=\"w\",reason=\"other\"} 1",
        "coupond_dead_letters_total{cluster=\"dc1\",lane=\"w\",reason=\"malformed_json\"} 0",
        "coupond_retries_total{cluster=\"dc1\",lane=\"w\",tier_ms=\"1000\"} 0",
        "coupond_retries_total{cluster=\"dc1\",lane=\"w\",tier_ms=\"5000\"} 1",
        "coupond_retries_total{cluster=\"dc1\",lane=\"w\",tier_ms=\"other\"} 1",
        "coupond_refunds_total{cluster=\"dc1\",lane=\"w\",reason=\"deadline\"} 1",
        "coupond_refunds_total{cluster=\"dc1\",lane=\"w\",reason=\"rejected\"} 0",
        "coupond_publishes_total{cluster=\"dc1\",lane=\"w\",kind=\"retry\",result=\"accepted\"} 2",
        "coupond_publishes_total{cluster=\"dc1\",lane=\"w\",kind=\"retry\",result=\"refused\"} 1",
        "coupond_batch_size_bucket{cluster=\"dc1\",lane=\"w\",le=\"1\"} 1",
        "coupond_batch_size_bucket{cluster=\"dc1\",lane=\"w\",le=\"250\"} 1",
        "coupond_batch_size_bucket{cluster=\"dc1\",lane=\"w\",le=\"500\"} 2",
        "coupond_batch_size_bucket{cluster=\"dc1\",lane=\"w\",le=\"+Inf\"} 2",
        "coupond_batch_size_sum{cluster=\"dc1\",lane=\"w\"} 301",
        "coupond_batch_size_count{cluster=\"dc1\",lane=\"w\"} 2",
        "coupond_outcome_latency_seconds_bucket{cluster=\"dc1\",lane=\"w\",outcome=\"issued\",le="
        "\"0.25\"} 0",
        "coupond_outcome_latency_seconds_bucket{cluster=\"dc1\",lane=\"w\",outcome=\"issued\",le="
        "\"0.5\"} 1",
        "coupond_outcome_latency_seconds_bucket{cluster=\"dc1\",lane=\"w\",outcome=\"issued\",le="
        "\"15\"} 2",
        "coupond_outcome_latency_seconds_sum{cluster=\"dc1\",lane=\"w\",outcome=\"issued\"} 12.3",
        "coupond_outcome_latency_seconds_bucket{cluster=\"dc1\",lane=\"w\",outcome=\"refunded\",le="
        "\"1800\"} 0",
        "coupond_outcome_latency_seconds_bucket{cluster=\"dc1\",lane=\"w\",outcome=\"refunded\",le="
        "\"3600\"} 1",
        "coupond_broker_up{cluster=\"dc1\",lane=\"w\"} 1",
        "coupond_store_up{cluster=\"dc1\",lane=\"w\"} 1",
        "coupond_ready{cluster=\"dc1\",lane=\"w\"} 0", /* not started */
        "coupond_oldest_pending_seconds{cluster=\"dc1\",lane=\"w\"} 12.5",
    };
    mx_buf_t b = {0};
    char line[128];

    metrics_init("dc1", "w", tiers, 2);
    metrics_received(10);
    metrics_outcome(MX_ISSUED, 0.3);
    metrics_outcome(MX_ISSUED, 12);
    metrics_outcome(MX_DUPLICATE, 0);
    metrics_outcome(MX_TRANSIENT, 0);
    metrics_dead_letter("bad_signature");
    metrics_dead_letter("bad_signature");
    metrics_dead_letter("conflict");
    metrics_dead_letter("no such reason");
    metrics_retry(5000);
    metrics_retry(777); /* not a tier (after a reload) */
    metrics_refund(MX_REFUND_DEADLINE, 1800.5);
    metrics_publish(MX_PUB_RETRY, 2, 1);
    metrics_batch(1);
    metrics_batch(300);
    metrics_broker_up(true);
    metrics_store_up(true);
    metrics_oldest_pending(12.5);
    metrics_format(&b);
    CHECK(!b.oom);

    for (size_t i = 0; i < CP_ARRAY_SIZE(families); i++) {
        snprintf(line, sizeof line, "# TYPE %s", families[i]);
        CHECK_MSG(has_line(b.s, line), "%s", line);
        *strchr(line + 7, ' ') = '\0';
        CHECK_MSG(count_of(b.s, line) == 1, "%s once", line);
    }
    for (size_t i = 0; i < CP_ARRAY_SIZE(want); i++)
        CHECK_MSG(has_line(b.s, want[i]), "%s", want[i]);
    CHECK(count_of(b.s, "reason=\"ok\"") == 0);
    /* Every line is a comment or a sample "name{...} value". */
    for (char *p = b.s; *p;) {
        char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        if (!nl)
            break;
        CHECK_MSG(*p == '#' || (strncmp(p, "coupond_", 8) == 0 && memchr(p, ' ', nl - p)), "%.*s",
                  (int)(nl - p), p);
        p = nl + 1;
    }
    FRESH(b);

    /* Readiness and liveness follow the lane. */
    metrics_started(true);
    CHECK(metrics_ready());
    metrics_store_up(false);
    CHECK(!metrics_ready());
    metrics_tick();
    CHECK(metrics_alive(1000));
    /* An unknown age is not exported. */
    metrics_oldest_pending(-1);
    metrics_format(&b);
    CHECK(count_of(b.s, "coupond_oldest_pending_seconds") == 0);
    FRESH(b);
}

int main(void)
{
    test_family();
    test_samples();
    test_histogram();
    test_page();
    return check_done("test_exposition");
}
