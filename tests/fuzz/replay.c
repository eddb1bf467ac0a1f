/* replay.c: runs a fuzz target's LLVMFuzzerTestOneInput on files, so that
 * any compiler's build (gcc, the sanitizer build, valgrind) replays the
 * committed corpora as a regression test without libFuzzer.
 *
 * usage: replay_TARGET DIR_OR_FILE...   (exit 0 when every input passed; a
 * broken property aborts, as under libFuzzer) */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    size_t got;

    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    /* Its own allocation of exactly n bytes, so that ASan sees overreads. */
    buf = malloc(n ? (size_t)n : 1);
    if (!buf) {
        fclose(f);
        return -1;
    }
    got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        fprintf(stderr, "replay: short read of %s\n", path);
        free(buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

static int compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int files = 0, bad = 0;

    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            return 2;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad += run_file(argv[i]) != 0;
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        char **names = NULL;
        size_t n = 0, cap = 0;
        if (!d)
            return 2;
        while ((e = readdir(d))) {
            char *p;
            if (e->d_name[0] == '.')
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **grown = realloc(names, cap * sizeof *names);
                if (!grown)
                    return 2;
                names = grown;
            }
            if (asprintf(&p, "%s/%s", argv[i], e->d_name) < 0)
                return 2;
            names[n++] = p;
        }
        closedir(d);
        qsort(names, n, sizeof *names, compare);
        for (size_t k = 0; k < n; k++) {
            bad += run_file(names[k]) != 0;
            files++;
            free(names[k]);
        }
        free(names);
    }
    printf("replay: %d inputs, %d unreadable\n", files, bad);
    return files > 0 && bad == 0 ? 0 : 1;
}
