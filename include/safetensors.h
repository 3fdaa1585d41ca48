/* safetensors files: a validating reader and an atomic writer.
 * Format: u64 little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {"key": "string", ...}}, then the raw tensor bytes. */
#ifndef TF_SAFETENSORS_H
#define TF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* refuse headers over 100 MiB */

typedef struct {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t offset; /* into data */
    size_t nbytes;
} StEntry;

typedef struct {
    StEntry *entries;
    int n_entries;
    char **meta_keys;
    char **meta_vals;
    int n_meta;
    const unsigned char *data; /* start of the byte buffer (points into buf) */
    size_t data_len;
    unsigned char *buf; /* whole file, owned */
    size_t buf_len;
} StFile;

/* Read and validate a whole file. Returns 0, or -1 with a message in err
 * (TF_ERRLEN bytes). Validation: header length vs file size, JSON, dtype,
 * shape, offsets in range, sizes matching shape, no overlaps. */
int st_read(const char *path, StFile *out, char *err);

/* A file-supplied name made fit for a one-line error message: at most
 * ST_SHOW_LEN bytes (then "..."), control characters replaced by '?'.
 * buf must hold ST_SHOW_LEN + 4 bytes. */
#define ST_SHOW_LEN 64
const char *st_show_name(const char *s, char *buf);
/* Same on a buffer in memory (takes ownership of buf on success and failure). */
int st_parse(unsigned char *buf, size_t len, StFile *out, char *err);
void st_free(StFile *f);
/* One __metadata__ value read from the header alone (no tensor data): 0, or
 * -1 when the file, the header or the key is missing or the value is longer than len-1. */
int st_peek_meta(const char *path, const char *key, char *out, size_t len);
/* The same value, of any length, in a malloc'd copy (NULL: missing). */
char *st_peek_meta_dup(const char *path, const char *key);

const StEntry *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key);
static inline const void *st_data(const StFile *f, const StEntry *e) { return f->data + e->offset; }

typedef struct {
    const char *name;
    DType dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* host memory */
} StTensorOut;

/* Write tensors + string metadata to path atomically: write path.tmp.PID,
 * fsync, rename over path, fsync the directory. On any failure the
 * temporary file is removed and an existing file at path is untouched. */
int st_write_atomic(const char *path, const StTensorOut *tensors, int n_tensors,
                    const char *const *meta_keys, const char *const *meta_vals, int n_meta,
                    char *err);

#endif
