/* fuzz.h: what the libFuzzer targets of tests/fuzz share: a check that
 * reports the broken property and aborts, so that libFuzzer keeps the input. */
#ifndef COUPOND_FUZZ_H
#define COUPOND_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts (a crash for libFuzzer) with a message when cond is false. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads the input as a sequence of chunks: a length byte, then that many
 * bytes (fewer at the end of the input); the length byte 0xff stands for a
 * NULL chunk and is followed by nothing. */
typedef struct fuzz_reader {
    const uint8_t *p;
    size_t n;
} fuzz_reader_t;

static inline int fuzz_byte(fuzz_reader_t *r)
{
    if (r->n == 0)
        return -1;
    r->n--;
    return *r->p++;
}

/* The next chunk into *out and *len (*out NULL for a NULL chunk). Returns 0,
 * or -1 at the end of the input. */
static inline int fuzz_chunk(fuzz_reader_t *r, const uint8_t **out, size_t *len)
{
    int b = fuzz_byte(r);
    size_t n;
    if (b < 0)
        return -1;
    if (b == 0xff) {
        *out = NULL;
        *len = 0;
        return 0;
    }
    n = (size_t)b < r->n ? (size_t)b : r->n;
    *out = r->p;
    *len = n;
    r->p += n;
    r->n -= n;
    return 0;
}

#endif
