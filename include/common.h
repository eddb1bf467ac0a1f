/* common.h: definitions every coupond module shares (exit codes, attributes). */
#ifndef COUPOND_COMMON_H
#define COUPOND_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Process exit codes of coupond and couponctl (DESIGN: Programs). */
enum {
    CP_EXIT_OK = 0,      /* success */
    CP_EXIT_FAILURE = 1, /* the operation ran and found or caused failures */
    CP_EXIT_USAGE = 2,   /* usage or configuration error */
    CP_EXIT_UNAVAIL = 3, /* a dependency (broker, database) is unavailable */
};

/* Functions whose status must be looked at. */
#define CP_MUSTCHECK    __attribute__((warn_unused_result))
#define CP_PRINTF(f, a) __attribute__((format(printf, f, a)))

#define CP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Size of the caller-supplied error buffers used across modules. */
#define CP_ERRLEN 512

/* A clock in microseconds: CLOCK_MONOTONIC for intervals and timeouts,
 * CLOCK_REALTIME for comparisons with paid_at and the store's timestamps. */
static inline int64_t cp_clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes in[0..n) as 2n lower-case hex digits and a NUL into out (2n + 1
 * bytes). */
static inline void cp_hex(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

#endif
