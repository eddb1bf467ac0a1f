/* fuzz_msg_parse.c: differential target: msg_parse (with its fast path for
 * flat bodies) and msg_parse_reference (jansson alone) must agree on the
 * status, the detail and every decoded field of any body. */
#include <string.h>

#include "fuzz.h"
#include "message.h"

static void printable(const char *what, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    FUZZ_CHECK(n < cap, "%s is not NUL-terminated", what);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(s[i] >= 0x20 && s[i] < 0x7f, "%s has byte 0x%02x at %zu: %s", what,
                   (unsigned char)s[i], i, s);
}

static void same(const uint8_t *data, size_t size, int max_version)
{
    msg_payment_t a, b;
    char da[256], db[256];
    msg_status_t sa, sb;

    memset(&a, 0xa5, sizeof a);
    memset(&b, 0x5a, sizeof b);
    memset(da, 'x', sizeof da);
    memset(db, 'y', sizeof db);
    sa = msg_parse(data, size, max_version, &a, da, sizeof da);
    sb = msg_parse_reference(data, size, max_version, &b, db, sizeof db);

    FUZZ_CHECK(sa == sb, "max_version %d: fast path %s (%s), reference %s (%s)", max_version,
               msg_status_code(sa), da, msg_status_code(sb), db);
    FUZZ_CHECK((unsigned)sa < MSG_STATUS_COUNT, "status %d", (int)sa);
    printable("fast path detail", da, sizeof da);
    printable("reference detail", db, sizeof db);
    FUZZ_CHECK(strcmp(da, db) == 0, "detail: fast path \"%s\", reference \"%s\"", da, db);
    if (sa != MSG_OK) {
        FUZZ_CHECK(da[0] != '\0', "%s without a detail", msg_status_code(sa));
        return;
    }
    printable("payment_id", a.payment_id, sizeof a.payment_id);
    printable("paid_at", a.paid_at, sizeof a.paid_at);
    FUZZ_CHECK(strcmp(a.payment_id, b.payment_id) == 0, "payment_id \"%s\" / \"%s\"", a.payment_id,
               b.payment_id);
    FUZZ_CHECK(a.order_id == b.order_id, "order_id %lld / %lld", (long long)a.order_id,
               (long long)b.order_id);
    FUZZ_CHECK(a.user_id == b.user_id, "user_id %lld / %lld", (long long)a.user_id,
               (long long)b.user_id);
    FUZZ_CHECK(a.deal_id == b.deal_id, "deal_id %lld / %lld", (long long)a.deal_id,
               (long long)b.deal_id);
    FUZZ_CHECK(a.quantity == b.quantity, "quantity %d / %d", (int)a.quantity, (int)b.quantity);
    FUZZ_CHECK(a.amount_cents == b.amount_cents, "amount_cents %lld / %lld",
               (long long)a.amount_cents, (long long)b.amount_cents);
    FUZZ_CHECK(strncmp(a.currency, b.currency, sizeof a.currency) == 0, "currency %.3s / %.3s",
               a.currency, b.currency);
    FUZZ_CHECK(a.paid_at_us == b.paid_at_us, "paid_at_us %lld / %lld", (long long)a.paid_at_us,
               (long long)b.paid_at_us);
    FUZZ_CHECK(strcmp(a.paid_at, b.paid_at) == 0, "paid_at \"%s\" / \"%s\"", a.paid_at, b.paid_at);
    FUZZ_CHECK(a.version == b.version, "version %d / %d", a.version, b.version);
    /* What DESIGN's rules promise of an accepted notification. */
    FUZZ_CHECK(a.order_id > 0 && a.user_id > 0 && a.deal_id > 0, "ids must be > 0");
    FUZZ_CHECK(a.order_id % 100 == a.user_id % 100, "shard rule");
    FUZZ_CHECK(a.quantity >= 1 && a.quantity <= 100, "quantity %d", (int)a.quantity);
    FUZZ_CHECK(a.version >= 1 && a.version <= (max_version < 1 ? 1 : max_version), "version %d",
               a.version);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    same(data, size, 1);
    same(data, size, 3);
    return 0;
}
