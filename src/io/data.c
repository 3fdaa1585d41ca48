/* The training text: read and validated, tokenized, split (90/10 by
 * default, or train/val/test), and served as seeded random windows
 * (docs/MODEL.md, training). */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

/* ------------------------------------------------------------- reading */

/* Texts past 1 GiB are refused: the tokens alone would take 4 GiB, and an
 * endless stream (/dev/zero, a runaway pipe) must end in an error, not in
 * the out-of-memory killer. */
#define TEXT_MAX_BYTES ((size_t)1 << 30)

/* Read the whole stream. The size from fstat is only a first guess for the
 * buffer: pipes and /proc files report 0, and a file may grow meanwhile. */
static int read_whole_stream(FILE *f, const char *path, size_t size_hint, unsigned char **data, size_t *len,
                             char *err) {
    size_t cap = size_hint + 1; /* +1 so a correct hint reaches EOF without growing */
    unsigned char *buf = tf_malloc(cap, "file contents");
    size_t used = 0;
    for (;;) {
        if (used > TEXT_MAX_BYTES) {
            free(buf);
            return tf_err(err, "'%s' is larger than 1 GiB; tokenformer trains on texts up to 1 GiB", path);
        }
        if (used == cap) {
            if (cap > SIZE_MAX / 2) {
                free(buf);
                return tf_err(err, "'%s' is too large to read into memory", path);
            }
            size_t grown = cap * 2 < TEXT_MAX_BYTES + 2 ? cap * 2 : TEXT_MAX_BYTES + 2;
            unsigned char *bigger = realloc(buf, grown);
            if (!bigger) {
                free(buf);
                return tf_err(err, "out of memory reading '%s'", path);
            }
            buf = bigger;
            cap = grown;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int saved = errno;
        free(buf);
        return tf_err(err, "error reading '%s': %s", path, saved ? strerror(saved) : "read failed");
    }
    *data = buf;
    *len = used;
    return 0;
}

/* Open and check that `path` names something we can read text from. */
static FILE *open_text_file(const char *path, size_t *size_hint, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tf_err(err, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        tf_err(err, "cannot stat '%s': %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    /* glibc's fopen succeeds on a directory; only the first read fails. */
    if (S_ISDIR(st.st_mode)) {
        tf_err(err, "'%s' is a directory", path);
        fclose(f);
        return NULL;
    }
    *size_hint = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 0;
    if (*size_hint > TEXT_MAX_BYTES) {
        tf_err(err, "'%s' is larger than 1 GiB; tokenformer trains on texts up to 1 GiB", path);
        fclose(f);
        return NULL;
    }
    return f;
}

/* The whole file, non-empty, in *bytes (the caller frees). */
static int read_file_bytes(const char *path, unsigned char **bytes, size_t *len, char *err) {
    size_t size_hint;
    FILE *f = open_text_file(path, &size_hint, err);
    if (!f) return -1;
    *bytes = NULL;
    *len = 0;
    int rc = read_whole_stream(f, path, size_hint, bytes, len, err);
    fclose(f);
    if (rc) return -1;
    if (*len == 0) {
        free(*bytes);
        return tf_err(err, "'%s' is empty", path);
    }
    return 0;
}

/* Code points of UTF-8 text; *rec (when not NULL) records the file. */
static int read_utf8_text(const char *path, uint32_t **cps, size_t *n, TextRecord *rec, char *err) {
    *cps = NULL;
    *n = 0;
    unsigned char *bytes = NULL; /* set on success; initialized for -O3 -Wmaybe-uninitialized */
    size_t len = 0;
    if (read_file_bytes(path, &bytes, &len, err)) return -1;
    if (rec) text_record_set(rec, path, bytes, len);
    /* A byte order mark is an encoding marker, not text: it must not become a vocabulary character. */
    size_t skip = len >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
    if (skip) fprintf(stderr, "note: '%s' starts with a UTF-8 byte order mark; skipped\n", path);
    if (len == skip) {
        free(bytes);
        return tf_err(err, "'%s' is empty", path);
    }
    char why[TF_ERRLEN];
    int rc = utf8_decode(bytes + skip, len - skip, cps, n, why);
    free(bytes);
    if (rc)
        return tf_err(err, "'%s': %s; a character model needs UTF-8 text: convert it (e.g. iconv -t UTF-8) or train "
                           "a byte model with --tokenizer bytes", path, why);
    return 0;
}

int text_file_read(const char *path, uint32_t **cps, size_t *n, char *err) {
    return read_utf8_text(path, cps, n, NULL, err);
}

int text_file_read_as(const char *path, int bytes, uint32_t **cps, size_t *n, char *err) {
    return text_file_load(path, bytes, cps, n, NULL, err);
}

int text_file_load(const char *path, int bytes, uint32_t **cps, size_t *n, TextRecord *rec, char *err) {
    if (!bytes) return read_utf8_text(path, cps, n, rec, err);
    *cps = NULL;
    *n = 0;
    unsigned char *raw = NULL;
    size_t len = 0;
    if (read_file_bytes(path, &raw, &len, err)) return -1;
    if (rec) text_record_set(rec, path, raw, len);
    uint32_t *out = tf_malloc(len * sizeof *out, "text bytes");
    for (size_t i = 0; i < len; i++) out[i] = raw[i];
    free(raw);
    *cps = out;
    *n = len;
    return 0;
}

int data_split_parse(const char *s, int parts[3], char *err) {
    long v[3] = {0, 0, 0};
    int k = 0;
    const char *p = s ? s : "";
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 1000 || *p == '-' || *p == '+' || *p == ' ') break;
        v[k++] = x;
        p = end;
        if (*p == '\0' || k == 3) break;
        if (*p != ',') break;
        p++;
    }
    if (k < 2 || *p != '\0' || v[0] == 0 || v[1] == 0 || v[0] + v[1] + v[2] > 1000)
        return tf_err(err, "--split: expected TRAIN,VAL[,TEST] as non-negative integers with TRAIN and VAL > 0 "
                           "(e.g. 90,5,5), got '%s'", s ? s : "");
    for (int i = 0; i < 3; i++) parts[i] = (int)v[i];
    return 0;
}

/* ------------------------------------------------------------- dataset */

/* floor(n * num / den) without overflowing n * num for huge n. */
static size_t scaled(size_t n, size_t num, size_t den) { return n / den * num + n % den * num / den; }

/* A split must fit one full window: block_size inputs plus the next target.
 * smallest is the shortest split, which bounds the block_size that fits. */
static int check_split_fits_block(const char *name, size_t len, size_t smallest, int block_size, char *err) {
    size_t need = (size_t)block_size + 1;
    if (len < need && smallest >= 2)
        return tf_err(err, "text too short: the %s split has %zu characters but block_size %d needs at least %zu; "
                           "give a longer text, or --block-size %zu or less for a new run",
                      name, len, block_size, need, smallest - 1);
    if (len < need)
        return tf_err(err, "text too short: the %s split has %zu characters but block_size %d needs at least %zu; "
                           "give a longer text", name, len, block_size, need);
    return 0;
}

int dataset_build(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size, char *err) {
    static const int parts[3] = DATA_SPLIT_DEFAULT;
    return dataset_build_split(d, cps, n, v, block_size, parts, err);
}

/* The split boundaries, checked before tokenizing: the error is cheaper and
 * more useful. */
static int split_bounds(Dataset *d, size_t n, int block_size, const int parts[3], char *err) {
    memset(d, 0, sizeof *d);
    if (block_size < 1) return tf_err(err, "block_size must be at least 1 (got %d)", block_size);
    size_t sum = (size_t)parts[0] + (size_t)parts[1] + (size_t)parts[2];
    size_t n_train = scaled(n, (size_t)parts[0], sum);
    size_t val_end = parts[2] ? scaled(n, (size_t)parts[0] + (size_t)parts[1], sum) : n;
    size_t smallest = n_train < val_end - n_train ? n_train : val_end - n_train;
    if (parts[2] && n - val_end < smallest) smallest = n - val_end;
    if (check_split_fits_block("train", n_train, smallest, block_size, err)) return -1;
    if (check_split_fits_block("val", val_end - n_train, smallest, block_size, err)) return -1;
    if (parts[2] && check_split_fits_block("test", n - val_end, smallest, block_size, err)) return -1;
    d->n = n;
    d->n_train = n_train;
    d->n_val = val_end - n_train;
    return 0;
}

int dataset_build_split(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                        const int parts[3], char *err) {
    if (split_bounds(d, n, block_size, parts, err)) return -1;
    int *ids = tf_malloc(n * sizeof *ids, "token ids");
    if (vocab_encode(v, cps, n, ids, err)) {
        free(ids);
        memset(d, 0, sizeof *d);
        return -1;
    }
    d->ids = ids;
    return 0;
}

_Static_assert(sizeof(int) == sizeof(uint32_t), "ids are encoded over the code points they replace");

int dataset_build_split_owned(Dataset *d, uint32_t *cps, size_t n, const Vocab *v, int block_size,
                              const int parts[3], char *err) {
    /* vocab_encode reads each code point before it writes that position's id */
    if (split_bounds(d, n, block_size, parts, err) || vocab_encode(v, cps, n, (int *)cps, err)) {
        free(cps);
        memset(d, 0, sizeof *d);
        return -1;
    }
    d->ids = (int *)cps;
    return 0;
}

const int *dataset_split(const Dataset *d, Split split, size_t *len) {
    if (split == SPLIT_TRAIN) {
        *len = d->n_train;
        return d->ids;
    }
    if (split == SPLIT_VAL) {
        *len = d->n_val;
        return d->ids + d->n_train;
    }
    *len = d->n - d->n_train - d->n_val;
    return d->ids + d->n_train + d->n_val;
}

void dataset_free(Dataset *d) {
    free(d->ids);
    memset(d, 0, sizeof *d);
}

/* --------------------------------------------------------------- batches */

/* One draw per row, in row order, so a run is reproducible from its seed and
 * the same on every backend. Offsets cover [0, len - T - 1]: every window of
 * T+1 tokens that lies wholly inside the split. */
void dataset_batch(const Dataset *d, Split split, Rng *rng, int B, int T, int *tokens, int *targets) {
    size_t len;
    const int *base = dataset_split(d, split, &len);
    assert(T >= 1 && (size_t)T + 1 <= len); /* dataset_build guaranteed it for T <= block_size */
    size_t n_offsets = len - (size_t)T;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)rng_below(rng, n_offsets);
        const int *window = base + off;
        int *row_tokens = tokens + (size_t)b * T;
        int *row_targets = targets + (size_t)b * T;
        memcpy(row_tokens, window, (size_t)T * sizeof *row_tokens);
        memcpy(row_targets, window + 1, (size_t)T * sizeof *row_targets);
    }
}
