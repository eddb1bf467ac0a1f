/* test_signature.c: HMAC-SHA256 header signing and verification. */
#include "check.h"
#include "signature.h"

#define LIT(s) s, sizeof(s) - 1

static sig_key_t make_key(const char *id, const void *secret, size_t len)
{
    sig_key_t k;

    memset(&k, 0, sizeof k);
    snprintf(k.id, sizeof k.id, "%s", id);
    memcpy(k.secret, secret, len);
    k.secret_len = len;
    return k;
}

/* Verifies and checks both the status and a substring of the detail. */
static void expect(const char *name, const sig_keyring_t *ring, const char *header, size_t hlen,
                   const void *body, size_t len, msg_status_t st, const char *want)
{
    char detail[CP_ERRLEN];
    msg_status_t got = sig_verify(ring, header, hlen, body, len, detail, sizeof detail);

    CHECK_MSG(got == st, "%s: status %s, expected %s (%s)", name, msg_status_code(got),
              msg_status_code(st), detail);
    CHECK_MSG(strstr(detail, want) != NULL, "%s: detail \"%s\" lacks \"%s\"", name, detail, want);
}

/* RFC 4231 section 4: HMAC-SHA256 test cases 1, 2, 4 and 6. */
static void test_rfc4231(void)
{
    unsigned char k1[20], k4[25], k6[131];
    unsigned char d4[50];
    char out[SIG_HEADER_MAX + 1];
    sig_key_t key;

    memset(k1, 0x0b, sizeof k1);
    key = make_key("t", k1, sizeof k1);
    CHECK(sig_sign(&key, "Hi There", 8, out, sizeof out) == 0);
    CHECK_STR(out, "t:b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    key = make_key("t", "Jefe", 4);
    CHECK(sig_sign(&key, LIT("what do ya want for nothing?"), out, sizeof out) == 0);
    CHECK_STR(out, "t:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    for (size_t i = 0; i < sizeof k4; i++)
        k4[i] = (unsigned char)(i + 1);
    memset(d4, 0xcd, sizeof d4);
    key = make_key("t", k4, sizeof k4);
    CHECK(sig_sign(&key, d4, sizeof d4, out, sizeof out) == 0);
    CHECK_STR(out, "t:82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    memset(k6, 0xaa, sizeof k6);
    key = make_key("t", k6, sizeof k6);
    CHECK(sig_sign(&key, LIT("Test Using Larger Than Block-Size Key - Hash Key First"), out,
                   sizeof out) == 0);
    CHECK_STR(out, "t:60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    /* and the vector verifies, in either case */
    sig_keyring_t ring = {&key, 1};
    expect("rfc4231 verify", &ring,
           LIT("t:60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
           LIT("Test Using Larger Than Block-Size Key - Hash Key First"), MSG_OK, "");
    expect("rfc4231 upper-case hex", &ring,
           LIT("t:60E431591EE0B67F0D8A26AACBF5B77F8E0BC6213728C5140546040F0EE37F54"),
           LIT("Test Using Larger Than Block-Size Key - Hash Key First"), MSG_OK, "");
}

static void test_sign_errors(void)
{
    char out[SIG_HEADER_MAX + 1];
    sig_key_t key = make_key("k1", "0123456789abcdef", 16);

    CHECK(sig_sign(&key, "x", 1, out, SIG_HEADER_MAX) == -1); /* too small */
    CHECK(sig_sign(&key, "x", 1, out, sizeof out) == 0);
    CHECK(sig_sign(&key, NULL, 0, out, sizeof out) == 0); /* empty body */
    CHECK(sig_sign(&key, "x", 1, NULL, sizeof out) == -1);
    CHECK(sig_sign(NULL, "x", 1, out, sizeof out) == -1);
    key.secret_len = SIG_SECRET_MAX + 1;
    CHECK(sig_sign(&key, "x", 1, out, sizeof out) == -1);
    key = make_key("bad id", "0123456789abcdef", 16);
    CHECK(sig_sign(&key, "x", 1, out, sizeof out) == -1);
    key = make_key("", "0123456789abcdef", 16);
    CHECK(sig_sign(&key, "x", 1, out, sizeof out) == -1);

    /* a 64-character id fills the header exactly */
    char id[SIG_KEY_ID_MAX + 1];
    memset(id, 'k', SIG_KEY_ID_MAX);
    id[SIG_KEY_ID_MAX] = '\0';
    key = make_key(id, "0123456789abcdef", 16);
    CHECK(sig_sign(&key, "x", 1, out, sizeof out) == 0);
    CHECK(strlen(out) == SIG_HEADER_MAX);
    sig_keyring_t ring = {&key, 1};
    expect("64-char key id", &ring, out, strlen(out), "x", 1, MSG_OK, "");
}

static void test_verify(void)
{
    static const char body[] = "{\"payment_id\":\"pay-1\",\"order_id\":1234}";
    sig_key_t keys[2] = {make_key("k1", "first-secret-0123456789", 23),
                         make_key("k2.next_2026-11", "second-secret-abcdefgh", 22)};
    sig_keyring_t both = {keys, 2}, only_k2 = {keys + 1, 1}, none = {NULL, 0};
    char h1[SIG_HEADER_MAX + 1], h2[SIG_HEADER_MAX + 1], h[SIG_HEADER_MAX + 64];
    char detail[CP_ERRLEN];

    CHECK(sig_sign(&keys[0], LIT(body), h1, sizeof h1) == 0);
    CHECK(sig_sign(&keys[1], LIT(body), h2, sizeof h2) == 0);
    CHECK(strncmp(h1, "k1:", 3) == 0 && strlen(h1) == 3 + 64);
    CHECK(strncmp(h2, "k2.next_2026-11:", 16) == 0);
    for (const char *c = h1 + 3; *c; c++)
        CHECK((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));

    /* round trip, and rotation: the ring picks the key by id */
    expect("k1 round trip", &both, h1, strlen(h1), LIT(body), MSG_OK, "");
    expect("k2 round trip", &both, h2, strlen(h2), LIT(body), MSG_OK, "");
    expect("k1 removed", &only_k2, h1, strlen(h1), LIT(body), MSG_E_SIG_UNKNOWN_KEY,
           "signature: key id \"k1\" is not among the valid keys");
    expect("k2 kept", &only_k2, h2, strlen(h2), LIT(body), MSG_OK, "");
    expect("empty ring", &none, h1, strlen(h1), LIT(body), MSG_E_SIG_UNKNOWN_KEY, "\"k1\"");
    expect("NULL ring", NULL, h1, strlen(h1), LIT(body), MSG_E_SIG_UNKNOWN_KEY, "\"k1\"");

    /* k2's MAC presented under k1's id */
    memcpy(h, "k1:", 3);
    memcpy(h + 3, h2 + 16, 65);
    expect("swapped key id", &both, h, strlen(h), LIT(body), MSG_E_SIG_MISMATCH,
           "signature: HMAC-SHA256 does not match the body under key \"k1\"");

    /* one flipped bit of the body, or one different hex digit */
    char flipped[sizeof body];
    memcpy(flipped, body, sizeof body);
    flipped[20] ^= 0x01;
    expect("flipped body bit", &both, h1, strlen(h1), flipped, sizeof body - 1, MSG_E_SIG_MISMATCH,
           "does not match");
    expect("body one byte shorter", &both, h1, strlen(h1), body, sizeof body - 2,
           MSG_E_SIG_MISMATCH, "does not match");
    snprintf(h, sizeof h, "%s", h1);
    h[strlen(h) - 1] = h[strlen(h) - 1] == '0' ? '1' : '0';
    expect("changed hex digit", &both, h, strlen(h), LIT(body), MSG_E_SIG_MISMATCH,
           "does not match");

    /* upper-case hex is accepted */
    snprintf(h, sizeof h, "%s", h1);
    for (char *c = h + 3; *c; c++) {
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    }
    expect("upper-case hex", &both, h, strlen(h), LIT(body), MSG_OK, "");

    /* header need not be NUL-terminated: only hlen bytes count */
    snprintf(h, sizeof h, "%sXYZ", h1);
    expect("unterminated header", &both, h, strlen(h1), LIT(body), MSG_OK, "");
    expect("trailing bytes", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT,
           "must be 64 hex digits, got 67");

    /* missing */
    expect("NULL header", &both, NULL, 0, LIT(body), MSG_E_SIG_MISSING,
           "signature: header missing or empty");
    expect("NULL header with length", &both, NULL, 10, LIT(body), MSG_E_SIG_MISSING, "missing");
    expect("empty header", &both, "", 0, LIT(body), MSG_E_SIG_MISSING, "missing or empty");

    /* malformed */
    expect("k1:", &both, LIT("k1:"), LIT(body), MSG_E_SIG_FORMAT,
           "signature: HMAC must be 64 hex digits, got 0 characters");
    expect("nocolon", &both, LIT("nocolon"), LIT(body), MSG_E_SIG_FORMAT,
           "signature: must be KEY_ID:HEX, no colon found");
    expect("hex only", &both, h1 + 3, 64, LIT(body), MSG_E_SIG_FORMAT, "no colon");
    expect("empty key id", &both, h1 + 2, 65, LIT(body), MSG_E_SIG_FORMAT,
           "signature: key id must be 1-64 characters of [A-Za-z0-9._-]");
    snprintf(h, sizeof h, "k 1%s", h1 + 2);
    expect("space in key id", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "key id must be");
    snprintf(h, sizeof h, "k\xc3\xa9%s", h1 + 2);
    expect("non-ascii key id", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "key id must be");
    snprintf(h, sizeof h, "%s", h1);
    h[1] = '\0';
    expect("NUL in key id", &both, h, strlen(h1), LIT(body), MSG_E_SIG_FORMAT, "key id must be");
    expect("63 hex chars", &both, h1, strlen(h1) - 1, LIT(body), MSG_E_SIG_FORMAT,
           "must be 64 hex digits, got 63 characters");
    snprintf(h, sizeof h, "%s0", h1);
    expect("65 hex chars", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "got 65 characters");
    snprintf(h, sizeof h, "%s", h1);
    h[10] = 'g';
    expect("non-hex", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT,
           "signature: HMAC must be hex digits, bad character at 10");
    snprintf(h, sizeof h, "%s", h1);
    h[3] = ':';
    expect("second colon", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "bad character at 3");
    snprintf(h, sizeof h, "%s", h1);
    h[40] = ' ';
    expect("space in hex", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "bad character at 40");
    snprintf(h, sizeof h, "k1:0x%062d", 0);
    expect("0x prefix", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT, "bad character at 4");

    /* key id of 65 characters; and a header over SIG_HEADER_MAX */
    memset(h, 'k', 65);
    snprintf(h + 65, sizeof h - 65, "%s", h1 + 2);
    CHECK(strlen(h) == SIG_HEADER_MAX + 1);
    expect("65-char key id", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT,
           "signature: 130 bytes, longer than KEY_ID:HEX allows (129)");
    memset(h, 'k', 64);
    snprintf(h + 64, sizeof h - 64, ":%.63s", h1 + 3);
    expect("64-char id, 63 hex", &both, h, strlen(h), LIT(body), MSG_E_SIG_FORMAT,
           "got 63 characters");
    memset(h, 'k', 64);
    snprintf(h + 64, sizeof h - 64, "%s", h1 + 2);
    expect("64-char unknown id", &both, h, strlen(h), LIT(body), MSG_E_SIG_UNKNOWN_KEY,
           "is not among");
    char big[4096];
    memset(big, 'a', sizeof big);
    expect("header of 4096 bytes", &both, big, sizeof big, LIT(body), MSG_E_SIG_FORMAT,
           "4096 bytes, longer than");

    /* detail buffers: NULL is fine, short ones are cut and terminated */
    CHECK(sig_verify(&both, h1, strlen(h1), LIT(body), NULL, 0) == MSG_OK);
    char small[8];
    CHECK(sig_verify(&both, LIT("nocolon"), LIT(body), small, sizeof small) == MSG_E_SIG_FORMAT);
    CHECK(strlen(small) == sizeof small - 1);
    detail[0] = 'X';
    CHECK(sig_verify(&both, h1, strlen(h1), LIT(body), detail, sizeof detail) == MSG_OK);
    CHECK(detail[0] == '\0');

    /* details never carry secret bytes */
    CHECK(sig_verify(&both, h, strlen(h), LIT(body), detail, sizeof detail) ==
          MSG_E_SIG_UNKNOWN_KEY);
    CHECK(sig_verify(&both,
                     LIT("k1:0000000000000000000000000000000000000000000000000000000000000000"),
                     LIT(body), detail, sizeof detail) == MSG_E_SIG_MISMATCH);
    CHECK(strstr(detail, "first-secret") == NULL && strstr(detail, h1 + 3) == NULL);

    /* empty body is signed like any other */
    CHECK(sig_sign(&keys[0], "", 0, h, sizeof h) == 0);
    expect("empty body", &both, h, strlen(h), "", 0, MSG_OK, "");
    expect("empty body vs non-empty", &both, h, strlen(h), "x", 1, MSG_E_SIG_MISMATCH,
           "does not match");
}

int main(void)
{
    test_rfc4231();
    test_sign_errors();
    test_verify();
    return check_done("test_signature");
}
