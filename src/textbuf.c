/* textbuf.c: a growing text buffer. */
#include "textbuf.h"

#include <stdlib.h>
#include <string.h>

void textbuf_put(textbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(p = realloc(b->s, cap))) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void textbuf_puts(textbuf_t *b, const char *s)
{
    textbuf_put(b, s, strlen(s));
}

void textbuf_free(textbuf_t *b)
{
    free(b->s);
    *b = (textbuf_t){0};
}
