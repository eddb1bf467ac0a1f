/* textbuf.h: a growing text buffer, for text assembled piece by piece
 * (array literals for the store, the metrics page). */
#ifndef COUPOND_TEXTBUF_H
#define COUPOND_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Start it zeroed ({0}). s is NUL-terminated once anything was put. On out
 * of memory it stops growing and sets oom: the text is then incomplete. */
typedef struct textbuf {
    char *s;
    size_t len, cap;
    bool oom;
} textbuf_t;

/* Appends n bytes of s. */
void textbuf_put(textbuf_t *b, const char *s, size_t n);
/* Appends the string s. */
void textbuf_puts(textbuf_t *b, const char *s);
/* Frees the text and zeroes b. */
void textbuf_free(textbuf_t *b);

#endif
