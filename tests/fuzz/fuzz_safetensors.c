/* libFuzzer target for the safetensors reader: any byte string must be
 * either parsed into a consistent StFile or rejected with a message,
 * without out-of-bounds reads, undefined behaviour or leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "safetensors.h"

/* Touch everything a successful parse promises: every entry's bytes lie
 * inside the buffer (ASan flags any that do not), lookups by name find
 * the entry, metadata pairs are readable strings. */
static void exercise(const StFile *f) {
    volatile unsigned char sink = 0;
    for (int i = 0; i < f->n_entries; i++) {
        const StEntry *e = &f->entries[i];
        const unsigned char *p = st_data(f, e);
        if (e->nbytes) sink ^= p[0] ^ p[e->nbytes - 1];
        if (e->offset + e->nbytes > f->data_len || e->ndim < 0 || e->ndim > ST_MAX_DIMS) abort();
        if (st_find(f, e->name) != e) abort(); /* names are unique */
    }
    for (int i = 0; i < f->n_meta; i++) {
        const char *v = st_meta(f, f->meta_keys[i]);
        if (!v) abort();
        sink ^= (unsigned char)strlen(v);
    }
    (void)st_find(f, "wte");
    (void)st_find(f, "");
    (void)st_meta(f, "config");
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exactly-sized heap copy, so reading one byte too far is caught. */
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    StFile f;
    char err[TF_ERRLEN];
    err[0] = '\0';
    if (st_parse(buf, size, &f, err) == 0) {
        exercise(&f);
        st_free(&f);
    } else if (!err[0] || strchr(err, '\n')) {
        abort(); /* every rejection carries a one-line message */
    }
    return 0;
}
