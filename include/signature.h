/* signature.h: HMAC-SHA256 signing and verification of notification bodies.
 *
 * The `signature` header is "KEY_ID:HEX", HEX being the lower-case hex
 * HMAC-SHA256 of the exact body bytes under that key's secret. Several keys may
 * be valid at once (rotation); verification compares in constant time. */
#ifndef COUPOND_SIGNATURE_H
#define COUPOND_SIGNATURE_H

#include <stddef.h>
#include "common.h"
#include "message.h"

#define SIG_KEY_ID_MAX 64  /* longest key id, excluding the NUL */
#define SIG_SECRET_MAX 256 /* longest secret, in bytes */
#define SIG_HEADER_MAX (SIG_KEY_ID_MAX + 1 + 64)

typedef struct sig_key {
    char id[SIG_KEY_ID_MAX + 1]; /* [A-Za-z0-9._-]{1,64} */
    unsigned char secret[SIG_SECRET_MAX];
    size_t secret_len; /* >= 16 */
} sig_key_t;

/* A set of valid keys. The ring does not own `keys`. */
typedef struct sig_keyring {
    const sig_key_t *keys;
    size_t nkeys;
} sig_keyring_t;

/* Writes the NUL-terminated header value "KEY_ID:HEX" for body into out.
 * Returns 0, or -1 when outlen is smaller than SIG_HEADER_MAX + 1, the key's
 * id is not [A-Za-z0-9._-]{1,64}, its secret_len exceeds SIG_SECRET_MAX, or
 * libcrypto fails (out is then unspecified). The 16-byte minimum of secrets
 * is enforced where keys are configured, not here. */
int sig_sign(const sig_key_t *key, const void *body, size_t len, char *out,
             size_t outlen) CP_MUSTCHECK;

/* Verifies header (hlen bytes, not necessarily NUL-terminated; NULL when the
 * message carried none) against body with the keys of ring; the key is chosen
 * by id (the first with that id), hex digits may be upper or lower case, and
 * the MACs are compared in constant time.
 * Returns MSG_OK, MSG_E_SIG_MISSING (NULL or empty header), MSG_E_SIG_FORMAT
 * (longer than SIG_HEADER_MAX, no colon, key id not [A-Za-z0-9._-]{1,64}, or
 * not exactly 64 hex digits after the colon), MSG_E_SIG_UNKNOWN_KEY (no key
 * of ring has that id; ring may be NULL or empty), or MSG_E_SIG_MISMATCH, and
 * writes a one-line explanation into detail (it names the key id at most,
 * never secret or MAC bytes). */
msg_status_t sig_verify(const sig_keyring_t *ring, const char *header, size_t hlen,
                        const void *body, size_t len, char *detail, size_t detlen) CP_MUSTCHECK;

/* Frees this thread's cached HMAC context (which holds a copy of the last
 * key used). Safe to call at any time; the next call builds a new one. */
void sig_thread_cleanup(void);

#endif
