/* signature.c: HMAC-SHA256 signing and verification of notification bodies. */
#include "signature.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#define SIG_MAC_LEN 32 /* bytes of an HMAC-SHA256 */
#define SIG_HEX_LEN (2 * SIG_MAC_LEN)

static msg_status_t sig_fail(msg_status_t st, char *detail, size_t detlen, const char *fmt, ...)
    CP_PRINTF(4, 5);

static msg_status_t sig_fail(msg_status_t st, char *detail, size_t detlen, const char *fmt, ...)
{
    va_list ap;

    if (!detail || detlen == 0)
        return st;
    va_start(ap, fmt);
    if (vsnprintf(detail, detlen, fmt, ap) < 0)
        detail[0] = '\0';
    va_end(ap);
    return st;
}

static bool is_key_id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool key_id_valid(const char *id, size_t n)
{
    if (n == 0 || n > SIG_KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_key_id_char((unsigned char)id[i]))
            return false;
    }
    return true;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One keyed HMAC context per thread, for the key used last: OpenSSL 3's
 * one-shot HMAC() looks the algorithm up and hashes the key on every call,
 * which costs more than the MAC of a notification itself. */
static __thread struct {
    EVP_MAC_CTX *ctx;
    unsigned char secret[SIG_SECRET_MAX];
    size_t len;
} mac_cache;

static EVP_MAC_CTX *keyed_ctx(const sig_key_t *key)
{
    static const unsigned char empty[1];
    OSSL_PARAM params[2];
    EVP_MAC *hmac;

    if (mac_cache.ctx && mac_cache.len == key->secret_len &&
        CRYPTO_memcmp(mac_cache.secret, key->secret, key->secret_len) == 0)
        return EVP_MAC_init(mac_cache.ctx, NULL, 0, NULL) ? mac_cache.ctx : NULL;
    EVP_MAC_CTX_free(mac_cache.ctx);
    mac_cache.ctx = NULL;
    if (!(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
        return NULL;
    mac_cache.ctx = EVP_MAC_CTX_new(hmac);
    EVP_MAC_free(hmac); /* the context keeps its own reference */
    if (!mac_cache.ctx)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!EVP_MAC_init(mac_cache.ctx, key->secret_len ? key->secret : empty, key->secret_len,
                      params)) {
        EVP_MAC_CTX_free(mac_cache.ctx);
        mac_cache.ctx = NULL;
        return NULL;
    }
    memcpy(mac_cache.secret, key->secret, key->secret_len);
    mac_cache.len = key->secret_len;
    return mac_cache.ctx;
}

/* HMAC-SHA256 of body under key into mac; 0 or -1. */
static int compute_mac(const sig_key_t *key, const void *body, size_t len,
                       unsigned char mac[SIG_MAC_LEN])
{
    static const unsigned char empty[1];
    EVP_MAC_CTX *ctx;
    size_t maclen = 0;

    if (key->secret_len > SIG_SECRET_MAX || !(ctx = keyed_ctx(key)))
        return -1;
    if (!EVP_MAC_update(ctx, body ? body : empty, len) ||
        !EVP_MAC_final(ctx, mac, &maclen, SIG_MAC_LEN) || maclen != SIG_MAC_LEN)
        return -1;
    return 0;
}

void sig_thread_cleanup(void)
{
    EVP_MAC_CTX_free(mac_cache.ctx);
    OPENSSL_cleanse(mac_cache.secret, sizeof mac_cache.secret);
    mac_cache.ctx = NULL;
    mac_cache.len = 0;
}

int sig_sign(const sig_key_t *key, const void *body, size_t len, char *out, size_t outlen)
{
    unsigned char mac[SIG_MAC_LEN];
    size_t idlen, o;

    if (!key || !out || outlen < SIG_HEADER_MAX + 1)
        return -1;
    idlen = strnlen(key->id, sizeof key->id);
    if (!key_id_valid(key->id, idlen) || compute_mac(key, body, len, mac) != 0)
        return -1;
    memcpy(out, key->id, idlen);
    o = idlen;
    out[o++] = ':';
    cp_hex(mac, SIG_MAC_LEN, out + o);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

msg_status_t sig_verify(const sig_keyring_t *ring, const char *header, size_t hlen,
                        const void *body, size_t len, char *detail, size_t detlen)
{
    unsigned char want[SIG_MAC_LEN], mac[SIG_MAC_LEN];
    const sig_key_t *key = NULL;
    const char *colon, *hexpart;
    size_t idlen;
    msg_status_t st;

    if (detail && detlen > 0)
        detail[0] = '\0';
    if (!header || hlen == 0)
        return sig_fail(MSG_E_SIG_MISSING, detail, detlen, "signature: header missing or empty");
    if (hlen > SIG_HEADER_MAX)
        return sig_fail(MSG_E_SIG_FORMAT, detail, detlen,
                        "signature: %zu bytes, longer than KEY_ID:HEX allows (%d)", hlen,
                        SIG_HEADER_MAX);
    colon = memchr(header, ':', hlen);
    if (!colon)
        return sig_fail(MSG_E_SIG_FORMAT, detail, detlen,
                        "signature: must be KEY_ID:HEX, no colon found");
    idlen = (size_t)(colon - header);
    if (!key_id_valid(header, idlen))
        return sig_fail(MSG_E_SIG_FORMAT, detail, detlen,
                        "signature: key id must be 1-%d characters of [A-Za-z0-9._-]",
                        SIG_KEY_ID_MAX);
    hexpart = colon + 1;
    if (hlen - idlen - 1 != SIG_HEX_LEN)
        return sig_fail(MSG_E_SIG_FORMAT, detail, detlen,
                        "signature: HMAC must be %d hex digits, got %zu characters", SIG_HEX_LEN,
                        hlen - idlen - 1);
    for (size_t i = 0; i < SIG_MAC_LEN; i++) {
        int hi = hex_value((unsigned char)hexpart[2 * i]);
        int lo = hex_value((unsigned char)hexpart[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return sig_fail(MSG_E_SIG_FORMAT, detail, detlen,
                            "signature: HMAC must be hex digits, bad character at %zu",
                            idlen + 1 + 2 * i + (hi < 0 ? 0 : 1));
        want[i] = (unsigned char)(hi << 4 | lo);
    }

    /* The key id is not secret and has been checked to be printable, so it
     * may be quoted; neither secrets nor computed MACs are ever shown. */
    for (size_t k = 0; ring && k < ring->nkeys; k++) {
        const sig_key_t *cand = &ring->keys[k];

        if (strnlen(cand->id, sizeof cand->id) == idlen && memcmp(cand->id, header, idlen) == 0) {
            key = cand;
            break;
        }
    }
    if (!key)
        return sig_fail(MSG_E_SIG_UNKNOWN_KEY, detail, detlen,
                        "signature: key id \"%.*s\" is not among the valid keys", (int)idlen,
                        header);
    if (compute_mac(key, body, len, mac) != 0) {
        /* A key that cannot be used verifies nothing. */
        st =
            sig_fail(MSG_E_SIG_MISMATCH, detail, detlen,
                     "signature: cannot compute HMAC-SHA256 with key \"%.*s\"", (int)idlen, header);
    } else if (CRYPTO_memcmp(mac, want, SIG_MAC_LEN) != 0) {
        st = sig_fail(MSG_E_SIG_MISMATCH, detail, detlen,
                      "signature: HMAC-SHA256 does not match the body under key \"%.*s\"",
                      (int)idlen, header);
    } else {
        st = MSG_OK;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return st;
}
