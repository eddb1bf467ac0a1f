/* display.h: what couponctl shows people: untrusted bytes made safe for a
 * terminal, JSON re-indented without touching its tokens, aligned tables,
 * progress bars, and the times operators type and read.
 *
 * Nothing here talks to a server; everything is safe on any bytes. */
#ifndef COUPOND_DISPLAY_H
#define COUPOND_DISPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common.h"

/* Parses a time an operator gives (--since) into microseconds since the
 * epoch: a duration back from now_us ("90s", "15m", "2h", "7d"), a date
 * ("2026-11-21", midnight UTC), or a date and time
 * "2026-11-21T10:00[:00[.fraction]]" (or with a space for the T) in UTC, or
 * with "Z" or an offset "+01:00". Returns 0, or -1 when s is none of these
 * or names no real time (2026-02-30). */
int disp_parse_since(const char *s, int64_t now_us, int64_t *out_us) CP_MUSTCHECK;

/* Formats microseconds since the epoch as "2026-11-21T10:00:00.000000Z". */
void disp_format_us(int64_t us, char *out, size_t outlen);

/* True when s[0..len) is well-formed UTF-8 without a NUL. */
bool disp_utf8_text(const void *s, size_t len);

/* Writes len bytes of untrusted text so that it cannot disturb a terminal:
 * printable ASCII and well-formed UTF-8 of visible characters as they are;
 * control characters, invisible or direction-changing characters, DEL and
 * bytes that are not well-formed UTF-8 as \xNN; a backslash as \\. With
 * lines, a line feed ends the line and the next starts with indent (NULL:
 * none); without it a line feed is \n. */
void disp_put_safe(FILE *out, const void *s, size_t len, bool lines, const char *indent);

/* The disp_put_safe form of a NUL-terminated string, malloc'd (the caller
 * frees it); NULL when out of memory. */
char *disp_safe_dup(const char *s);

/* Writes a JSON text re-indented (two spaces a level, each line starting
 * with indent), keeping every token's bytes as they are (numbers are not
 * re-serialised, key order and duplicate keys stay); string contents are
 * shown as disp_put_safe shows them, except that backslashes stay as they
 * are (they are JSON's own escapes). The caller has checked that the text is
 * JSON; anything else is still shown safely, if oddly indented. */
void disp_put_json_pretty(FILE *out, const void *json, size_t len, const char *indent);

/* One line of a progress bar, at most width columns (and outlen - 1 bytes):
 * "[#####-----] 120/300  <tail>"; the tail is dropped when it does not fit. */
void disp_progress_line(char *out, size_t outlen, size_t done, size_t total, const char *tail,
                        int width);

/* The width of the terminal on fd, 80 when it does not say; 0 when fd is
 * not a terminal. */
int disp_terminal_width(int fd);

/* A table of strings, printed with aligned columns; on a terminal the last
 * column is cut to the terminal's width. Cells are copied, shown safely. */
typedef struct disp_table {
    size_t ncols; /* at most 16 */
    const char *const *head;
    char **cells; /* nrows * ncols, owned */
    size_t nrows;
} disp_table_t;

/* Adds a row of ncols cells (NULL cells are empty). Returns 0 or -1 (out of
 * memory; the table is unchanged). */
int disp_table_add(disp_table_t *t, const char *const *row) CP_MUSTCHECK;

/* Prints the head and the rows; width > 0 cuts the last column to fit. */
void disp_table_print(const disp_table_t *t, FILE *out, int width);

/* Frees the cells (not the head). */
void disp_table_free(disp_table_t *t);

#endif
