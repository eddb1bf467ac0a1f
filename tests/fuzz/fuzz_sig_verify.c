#define _GNU_SOURCE
/* fuzz_sig_verify.c: sig_verify on any header and body, against a plain
 * reference written from signature.h's contract (OpenSSL's one-shot HMAC);
 * half of the inputs start from a real signature (sig_sign) that the input
 * then damages, so that the MISMATCH and OK paths are reached too.
 *
 * Input: a mode byte; mode & 1 == 0: a header chunk (fuzz.h), the rest the
 * body; mode & 1: the key (mode >> 1), a damage chunk (pairs of position and
 * xor byte), the rest the body, signed with that key and then damaged. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz.h"
#include "signature.h"

static sig_key_t keys[4];
static size_t nkeys;

static void add_key(const char *id, size_t secret_len, unsigned char fill)
{
    sig_key_t *k = &keys[nkeys++];
    snprintf(k->id, sizeof k->id, "%s", id);
    for (size_t i = 0; i < secret_len; i++)
        k->secret[i] = (unsigned char)(fill + i * 7);
    k->secret_len = secret_len;
}

static void setup(void)
{
    if (nkeys)
        return;
    add_key("k1", 16, 0x01);
    add_key("key-2026.b_", 32, 0x80);
    add_key("A123456789012345678901234567890123456789012345678901234567890123", SIG_SECRET_MAX,
            0x13);
    add_key("k1", 20, 0x44); /* the same id again: the first one counts */
}

static bool id_char(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '_' || c == '-';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* signature.h's rules, written out once more. */
static msg_status_t reference(const sig_keyring_t *ring, const char *h, size_t hlen,
                              const void *body, size_t len)
{
    const char *colon;
    size_t idlen;
    unsigned char want[32], mac[32];
    unsigned int maclen = 0;
    const sig_key_t *key = NULL;
    static const unsigned char empty[1];

    if (!h || hlen == 0)
        return MSG_E_SIG_MISSING;
    if (hlen > SIG_HEADER_MAX || !(colon = memchr(h, ':', hlen)))
        return MSG_E_SIG_FORMAT;
    idlen = (size_t)(colon - h);
    if (idlen < 1 || idlen > SIG_KEY_ID_MAX || hlen - idlen - 1 != 64)
        return MSG_E_SIG_FORMAT;
    for (size_t i = 0; i < idlen; i++)
        if (!id_char((unsigned char)h[i]))
            return MSG_E_SIG_FORMAT;
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)colon[1 + 2 * i]),
            lo = hexval((unsigned char)colon[2 + 2 * i]);
        if (hi < 0 || lo < 0)
            return MSG_E_SIG_FORMAT;
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    for (size_t k = 0; k < ring->nkeys && !key; k++)
        if (strlen(ring->keys[k].id) == idlen && memcmp(ring->keys[k].id, h, idlen) == 0)
            key = &ring->keys[k];
    if (!key)
        return MSG_E_SIG_UNKNOWN_KEY;
    FUZZ_CHECK(HMAC(EVP_sha256(), key->secret, (int)key->secret_len, body ? body : empty, len, mac,
                    &maclen) != NULL &&
                   maclen == 32,
               "reference HMAC failed");
    return memcmp(mac, want, 32) == 0 ? MSG_OK : MSG_E_SIG_MISMATCH;
}

static void verify(const char *h, size_t hlen, const void *body, size_t len)
{
    sig_keyring_t ring = {keys, nkeys};
    char detail[256];
    msg_status_t want = reference(&ring, h, hlen, body, len);
    msg_status_t got;

    memset(detail, 'x', sizeof detail);
    got = sig_verify(&ring, h, hlen, body, len, detail, sizeof detail);
    FUZZ_CHECK(got == want, "sig_verify %s, the reference %s (%s)", msg_status_code(got),
               msg_status_code(want), detail);
    FUZZ_CHECK(memchr(detail, '\0', sizeof detail) != NULL, "detail not NUL-terminated");
    FUZZ_CHECK(got == MSG_OK || detail[0] != '\0', "%s without a detail", msg_status_code(got));
    for (const char *c = detail; *c; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "detail has byte 0x%02x: %s", (unsigned char)*c,
                   detail);
    for (size_t k = 0; k < nkeys; k++)
        FUZZ_CHECK(!memmem(detail, strlen(detail), keys[k].secret, 8), "detail shows a secret");
    /* No ring at all: a well-formed header names an unknown key. */
    got = sig_verify(NULL, h, hlen, body, len, NULL, 0);
    FUZZ_CHECK(got == (want == MSG_OK || want == MSG_E_SIG_MISMATCH ? MSG_E_SIG_UNKNOWN_KEY : want),
               "without keys: %s, with them %s", msg_status_code(got), msg_status_code(want));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    int mode = fuzz_byte(&r);
    const uint8_t *chunk;
    size_t clen;

    setup();
    if (mode < 0)
        return 0;
    if (!(mode & 1)) {
        if (fuzz_chunk(&r, &chunk, &clen) != 0) {
            verify(NULL, 0, NULL, 0);
            return 0;
        }
        verify((const char *)chunk, clen, r.n ? r.p : NULL, r.n);
        return 0;
    }

    const sig_key_t *key = &keys[(size_t)(mode >> 1) % nkeys];
    char header[SIG_HEADER_MAX + 1];
    size_t hlen;

    if (fuzz_chunk(&r, &chunk, &clen) != 0)
        chunk = NULL, clen = 0;
    FUZZ_CHECK(sig_sign(key, r.p, r.n, header, sizeof header) == 0, "sig_sign failed");
    hlen = strlen(header);
    FUZZ_CHECK(hlen == strlen(key->id) + 65, "header \"%s\"", header);
    if (key != &keys[3]) {
        sig_keyring_t ring = {keys, nkeys};
        FUZZ_CHECK(sig_verify(&ring, header, hlen, r.p, r.n, NULL, 0) == MSG_OK,
                   "a fresh signature does not verify");
    }
    for (size_t i = 0; chunk && i + 1 < clen; i += 2)
        header[chunk[i] % hlen] ^= (char)chunk[i + 1];
    verify(header, chunk && clen % 2 ? chunk[clen - 1] % (hlen + 1) : hlen, r.p, r.n);
    return 0;
}
