/* safetensors reader and atomic writer.
 *
 * The reader treats every byte of the file as hostile: checkpoints come
 * from disk, other tools and the fuzzer alike. Every length is checked
 * against what is actually there before it is used, integers from JSON
 * are range-checked before conversion, and every error path releases
 * what it allocated. Errors are one line; names taken from the file are
 * shortened and stripped of control characters before being printed. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

const char *st_show_name(const char *s, char *buf) {
    size_t i = 0;
    if (!s) s = "(null)";
    for (; s[i] && i < ST_SHOW_LEN; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* strdup that reports failure instead of exiting (strdup is not C11). */
static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static uint64_t read_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int dtype_from_name(const char *s, DType *out) {
    if (strcmp(s, "F32") == 0) {
        *out = DTYPE_F32;
        return 0;
    }
    if (strcmp(s, "I32") == 0) {
        *out = DTYPE_I32;
        return 0;
    }
    return -1;
}

/* A JSON number that is a non-negative integer small enough to be exact.
 * The range check comes first: converting an out-of-range double to an
 * integer type is undefined behaviour. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT)) return -1; /* also rejects NaN */
    uint64_t v = (uint64_t)d;
    if ((double)v != d) return -1; /* fractional */
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reader: one tensor entry                                            */

static int parse_dtype(const cJSON *obj, StEntry *e, const char *nm, char *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    char b[ST_SHOW_LEN + 4];
    if (!j) return tf_err(err, "tensor '%s' has no dtype", nm);
    if (!cJSON_IsString(j) || !j->valuestring) return tf_err(err, "tensor '%s' dtype is not a string", nm);
    if (dtype_from_name(j->valuestring, &e->dtype) != 0)
        return tf_err(err, "tensor '%s' has unsupported dtype '%s' (only F32 and I32 are supported)", nm,
                      st_show_name(j->valuestring, b));
    return 0;
}

/* Fills e->ndim, e->shape and e->nbytes (numel * dtype size, overflow-checked). */
static int parse_shape(const cJSON *obj, StEntry *e, const char *nm, char *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    if (!j) return tf_err(err, "tensor '%s' has no shape", nm);
    if (!cJSON_IsArray(j)) return tf_err(err, "tensor '%s' shape is not an array", nm);
    int nd = cJSON_GetArraySize(j);
    if (nd > ST_MAX_DIMS) return tf_err(err, "tensor '%s' has %d dimensions (at most %d supported)", nm, nd, ST_MAX_DIMS);
    size_t bytes = dtype_size(e->dtype);
    int i = 0;
    for (const cJSON *d = j->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_uint(d, &v) != 0)
            return tf_err(err, "tensor '%s' shape[%d] is not a non-negative integer", nm, i);
        if (v > SIZE_MAX || tf_mul_overflows(bytes, (size_t)v, &bytes) != 0)
            return tf_err(err, "tensor '%s' shape is too large (size overflows)", nm);
        e->shape[i] = (int64_t)v;
    }
    e->ndim = nd;
    e->nbytes = bytes;
    return 0;
}

static int parse_offsets(const cJSON *obj, StEntry *e, size_t data_len, const char *nm, char *err) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    uint64_t b, en;
    if (!j) return tf_err(err, "tensor '%s' has no data_offsets", nm);
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 || json_uint(j->child, &b) != 0 ||
        json_uint(j->child->next, &en) != 0)
        return tf_err(err, "tensor '%s' data_offsets is not a pair of non-negative integers", nm);
    if (b > en || en > data_len)
        return tf_err(err, "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] out of range (data is %zu bytes)", nm,
                      b, en, data_len);
    if (en - b != e->nbytes)
        return tf_err(err, "tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                           " bytes but dtype and shape need %zu",
                      nm, b, en, en - b, e->nbytes);
    e->offset = (size_t)b;
    return 0;
}

static int parse_entry(const cJSON *item, StEntry *e, size_t data_len, char *err) {
    char nm[ST_SHOW_LEN + 4];
    st_show_name(item->string, nm);
    if (!cJSON_IsObject(item)) return tf_err(err, "tensor '%s' is not a JSON object", nm);
    if (parse_dtype(item, e, nm, err) != 0 || parse_shape(item, e, nm, err) != 0 ||
        parse_offsets(item, e, data_len, nm, err) != 0)
        return -1;
    e->name = dup_str(item->string);
    if (!e->name) return tf_err(err, "out of memory");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reader: metadata and whole-file checks                              */

static int parse_metadata(const cJSON *meta, StFile *f, char *err) {
    char b[ST_SHOW_LEN + 4];
    if (!cJSON_IsObject(meta)) return tf_err(err, "__metadata__ is not a JSON object");
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_vals = calloc((size_t)n + 1, sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals) return tf_err(err, "out of memory");
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m) || !m->valuestring || !m->string)
            return tf_err(err, "__metadata__ value for '%s' is not a string", st_show_name(m->string, b));
        /* Count each pair as soon as it is allocated so st_free releases it. */
        f->meta_keys[f->n_meta] = dup_str(m->string);
        f->meta_vals[f->n_meta] = dup_str(m->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1]) return tf_err(err, "out of memory");
    }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys: cJSON keeps both, and a lookup would silently see only
 * the first, so reject them. Sorting keeps this O(n log n) on huge headers. */
static int check_unique(char **names, int n, const char *what, char *err) {
    char b[ST_SHOW_LEN + 4];
    if (n < 2) return 0;
    char **tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) return tf_err(err, "out of memory");
    memcpy(tmp, names, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_str_ptr);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(tmp[i - 1], tmp[i]) == 0) rc = tf_err(err, "duplicate %s '%s'", what, st_show_name(tmp[i], b));
    free(tmp);
    return rc;
}

static int check_unique_names(const StFile *f, char *err) {
    if (f->n_entries < 2) return 0;
    char **names = malloc((size_t)f->n_entries * sizeof *names);
    if (!names) return tf_err(err, "out of memory");
    for (int i = 0; i < f->n_entries; i++) names[i] = f->entries[i].name;
    int rc = check_unique(names, f->n_entries, "tensor name", err);
    free(names);
    return rc;
}

static int cmp_entry_offset(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Two tensors sharing bytes would alias each other when loaded. After
 * sorting by start, each tensor must start at or after the furthest end
 * seen so far (the furthest, not the previous one, so a long tensor
 * followed by short ones is still caught). */
static int check_overlaps(const StFile *f, char *err) {
    char b1[ST_SHOW_LEN + 4], b2[ST_SHOW_LEN + 4];
    if (f->n_entries < 2) return 0;
    const StEntry **v = malloc((size_t)f->n_entries * sizeof *v);
    if (!v) return tf_err(err, "out of memory");
    for (int i = 0; i < f->n_entries; i++) v[i] = &f->entries[i];
    qsort(v, (size_t)f->n_entries, sizeof *v, cmp_entry_offset);
    int rc = 0;
    const StEntry *far = v[0];
    for (int i = 1; i < f->n_entries && rc == 0; i++) {
        if (v[i]->offset < far->offset + far->nbytes)
            rc = tf_err(err, "tensors '%s' and '%s' overlap (bytes %zu..%zu and %zu..%zu)", st_show_name(far->name, b1),
                        st_show_name(v[i]->name, b2), far->offset, far->offset + far->nbytes, v[i]->offset,
                        v[i]->offset + v[i]->nbytes);
        if (v[i]->offset + v[i]->nbytes > far->offset + far->nbytes) far = v[i];
    }
    free(v);
    return rc;
}

/* Walk the header object: tensors in file order, "__metadata__" aside. */
static int parse_header_object(const cJSON *root, StFile *f, char *err) {
    const cJSON *meta = NULL;
    int n = cJSON_GetArraySize(root);
    f->entries = calloc((size_t)n + 1, sizeof *f->entries);
    if (!f->entries) return tf_err(err, "out of memory");
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!it->string) return tf_err(err, "header has an entry without a name");
        if (strcmp(it->string, "__metadata__") == 0) {
            if (meta) return tf_err(err, "duplicate __metadata__");
            meta = it;
            continue;
        }
        if (parse_entry(it, &f->entries[f->n_entries], f->data_len, err) != 0) return -1;
        f->n_entries++;
    }
    if (meta && parse_metadata(meta, f, err) != 0) return -1;
    if (check_unique_names(f, err) != 0) return -1;
    if (check_unique(f->meta_keys, f->n_meta, "__metadata__ key", err) != 0) return -1;
    return check_overlaps(f, err);
}

/* JSON text must be followed only by padding (serde_json, which the
 * reference implementation uses, allows trailing whitespace only). */
static int only_whitespace(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return 0;
    return 1;
}

static int parse_header(StFile *f, const char *hdr, size_t hlen, char *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) {
        size_t at = (end && end >= hdr && end <= hdr + hlen) ? (size_t)(end - hdr) : 0;
        return tf_err(err, "header is not valid JSON (error near byte %zu of %zu)", at, hlen);
    }
    int rc;
    if (!end || end < hdr || end > hdr + hlen || !only_whitespace(end, hdr + hlen))
        rc = tf_err(err, "header has trailing bytes after the JSON object");
    else if (!cJSON_IsObject(root))
        rc = tf_err(err, "header is not a JSON object");
    else
        rc = parse_header_object(root, f, err);
    cJSON_Delete(root);
    return rc;
}

int st_parse(unsigned char *buf, size_t len, StFile *out, char *err) {
    StFile f;
    memset(&f, 0, sizeof f);
    memset(out, 0, sizeof *out);
    f.buf = buf;
    f.buf_len = len;
    int rc = 0;
    if (!buf || len < 8) {
        rc = tf_err(err, "file too short (%zu bytes; a safetensors file starts with an 8-byte header length)", len);
        goto done;
    }
    /* Checked against the real size before anything depends on it, so a
     * forged length can neither cause a huge allocation nor a read past
     * the buffer. */
    uint64_t hlen = read_u64_le(buf);
    if (hlen > len - 8) {
        rc = tf_err(err, "header length %" PRIu64 " exceeds file size (%zu bytes)", hlen, len);
        goto done;
    }
    if (hlen > ST_MAX_HEADER) {
        rc = tf_err(err, "header length %" PRIu64 " exceeds the %u-byte limit", hlen, (unsigned)ST_MAX_HEADER);
        goto done;
    }
    f.data = buf + 8 + hlen;
    f.data_len = len - 8 - (size_t)hlen;
    rc = parse_header(&f, (const char *)buf + 8, (size_t)hlen, err);
done:
    if (rc != 0) {
        st_free(&f); /* frees buf too: st_parse owns it either way */
        return -1;
    }
    *out = f;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reader: files                                                       */

/* Read a whole regular file. Directories, devices and FIFOs are refused:
 * reading them either fails obscurely or never ends. O_NONBLOCK keeps
 * open() itself from waiting for a FIFO's writer; it does not affect
 * reads of regular files. */
static int read_whole_file(const char *path, unsigned char **buf_out, size_t *len_out, char *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return tf_err(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tf_err(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tf_err(err, "%s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX - 1) {
        close(fd);
        return tf_err(err, "%s: file too large", path);
    }
    size_t len = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return tf_err(err, "%s: out of memory reading %zu bytes", path, len);
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            if (r == 0) return tf_err(err, "%s: file shrank while being read", path);
            return tf_err(err, "%s: read error: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    *buf_out = buf;
    *len_out = len;
    return 0;
}

int st_read(const char *path, StFile *out, char *err) {
    unsigned char *buf = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    if (read_whole_file(path, &buf, &len, err) != 0) return -1;
    char local[TF_ERRLEN];
    if (st_parse(buf, len, out, local) != 0) return tf_err(err, "%s: %s", path, local);
    return 0;
}

/* A copy of metadata value `key` of the file at path, from its header alone;
 * NULL when the file, its header or the key is missing. */
char *st_peek_meta_dup(const char *path, const char *key) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    unsigned char n8[8];
    uint64_t n = 0;
    char *value = NULL;
    if (fread(n8, 1, 8, fp) == 8) {
        for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
        char *hdr = n > 0 && n <= ((uint64_t)1 << 27) ? malloc((size_t)n + 1) : NULL;
        if (hdr && fread(hdr, 1, (size_t)n, fp) == (size_t)n) {
            hdr[n] = '\0';
            cJSON *j = cJSON_Parse(hdr);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "__metadata__"), key);
            if (cJSON_IsString(v)) value = dup_str(v->valuestring);
            cJSON_Delete(j);
        }
        free(hdr);
    }
    fclose(fp);
    return value;
}

int st_peek_meta(const char *path, const char *key, char *out, size_t len) {
    char *v = st_peek_meta_dup(path, key);
    int rc = v && strlen(v) < len ? 0 : -1;
    if (!rc) strcpy(out, v);
    free(v);
    return rc;
}

void st_free(StFile *f) {
    if (!f) return;
    if (f->entries)
        for (int i = 0; i < f->n_entries; i++) free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* Linear: checkpoints hold tens of tensors, and lookups happen once at load. */
const StEntry *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Writer: header text                                                 */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} StrBuf;

static void sb_put(StrBuf *s, const char *t, size_t n) {
    if (s->oom) return;
    if (n > SIZE_MAX - s->len - 1) {
        s->oom = 1;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap = cap > SIZE_MAX / 2 ? s->len + n + 1 : cap * 2;
        char *p = realloc(s->p, cap);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, t, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void sb_str(StrBuf *s, const char *t) { sb_put(s, t, strlen(t)); }

static void sb_u64(StrBuf *s, uint64_t v) {
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    sb_put(s, b, (size_t)n);
}

/* A JSON string literal. Bytes >= 0x80 pass through (names are expected
 * to be UTF-8); quotes, backslashes and control characters are escaped. */
static void sb_json_string(StrBuf *s, const char *t) {
    sb_put(s, "\"", 1);
    for (; *t; t++) {
        unsigned char c = (unsigned char)*t;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(s, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_put(s, e, 6);
        } else {
            sb_put(s, (const char *)&c, 1);
        }
    }
    sb_put(s, "\"", 1);
}

/* Validate what the caller passed and compute each tensor's byte size, so
 * that we never write a file our own reader would reject. */
static int check_tensors(const char *path, const StTensorOut *t, int n, size_t *nbytes, char *err) {
    char b[ST_SHOW_LEN + 4];
    for (int i = 0; i < n; i++) {
        if (!t[i].name || strcmp(t[i].name, "__metadata__") == 0)
            return tf_err(err, "%s: tensor %d has an invalid name", path, i);
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS || (t[i].ndim > 0 && !t[i].shape))
            return tf_err(err, "%s: tensor '%s' has an invalid shape", path, st_show_name(t[i].name, b));
        if (t[i].dtype != DTYPE_F32 && t[i].dtype != DTYPE_I32)
            return tf_err(err, "%s: tensor '%s' has an invalid dtype", path, st_show_name(t[i].name, b));
        size_t bytes = dtype_size(t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0 || (uint64_t)t[i].shape[d] > SIZE_MAX ||
                tf_mul_overflows(bytes, (size_t)t[i].shape[d], &bytes) != 0)
                return tf_err(err, "%s: tensor '%s' has an invalid shape", path, st_show_name(t[i].name, b));
        if (bytes > 0 && !t[i].data) return tf_err(err, "%s: tensor '%s' has no data", path, st_show_name(t[i].name, b));
        for (int j = 0; j < i; j++)
            if (strcmp(t[j].name, t[i].name) == 0)
                return tf_err(err, "%s: duplicate tensor name '%s'", path, st_show_name(t[i].name, b));
        nbytes[i] = bytes;
    }
    return 0;
}

static void sb_metadata(StrBuf *s, const char *const *keys, const char *const *vals, int n) {
    sb_str(s, "\"__metadata__\":{");
    for (int i = 0; i < n; i++) {
        if (i) sb_str(s, ",");
        sb_json_string(s, keys[i]);
        sb_str(s, ":");
        sb_json_string(s, vals[i]);
    }
    sb_str(s, "}");
}

static void sb_tensor(StrBuf *s, const StTensorOut *t, uint64_t begin, uint64_t end) {
    sb_json_string(s, t->name);
    sb_str(s, ":{\"dtype\":\"");
    sb_str(s, dtype_name(t->dtype));
    sb_str(s, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
        if (d) sb_str(s, ",");
        sb_u64(s, (uint64_t)t->shape[d]);
    }
    sb_str(s, "],\"data_offsets\":[");
    sb_u64(s, begin);
    sb_str(s, ",");
    sb_u64(s, end);
    sb_str(s, "]}");
}

/* Header JSON padded with spaces so the data starts 8-byte aligned
 * (8-byte length prefix + header length is a multiple of 8), as the
 * reference writer does; readers may then map tensors in place. */
static int build_header(StrBuf *s, const StTensorOut *t, int n, const size_t *nbytes, const char *const *mk,
                        const char *const *mv, int n_meta) {
    uint64_t off = 0;
    sb_str(s, "{");
    if (n_meta > 0) sb_metadata(s, mk, mv, n_meta);
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) sb_str(s, ",");
        if (nbytes[i] > UINT64_MAX - off) return -1;
        sb_tensor(s, &t[i], off, off + nbytes[i]);
        off += nbytes[i];
    }
    sb_str(s, "}");
    while (!s->oom && s->len % 8 != 0) sb_str(s, " ");
    return s->oom ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Writer: files                                                       */

/* write(2) may write less than asked (signals, large counts); loop until
 * done. A zero return is treated as "no space" so it cannot spin. */
static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(fd, c, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Make the rename itself durable. Filesystems that cannot sync a
 * directory report EINVAL; that is not a failure of ours. */
static int fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = dup_str(".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e == EINVAL) rc = 0;
    errno = e;
    return rc;
}

/* Header then data into an open temporary file, synced to disk. */
static int write_contents(int fd, const StrBuf *hdr, const StTensorOut *t, int n, const size_t *nbytes) {
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr->len >> (8 * i));
    if (write_all(fd, len8, 8) != 0 || write_all(fd, hdr->p, hdr->len) != 0) return -1;
    for (int i = 0; i < n; i++)
        if (nbytes[i] && write_all(fd, t[i].data, nbytes[i]) != 0) return -1;
    return fsync(fd);
}

static int write_temp_and_rename(const char *path, const char *tmp, const StrBuf *hdr, const StTensorOut *t,
                                 int n, const size_t *nbytes, char *err) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return tf_err(err, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
    if (write_contents(fd, hdr, t, n, nbytes) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return tf_err(err, "%s: writing %s failed: %s", path, tmp, strerror(e));
    }
    /* close can report deferred write errors (NFS, quotas). */
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return tf_err(err, "%s: closing %s failed: %s", path, tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return tf_err(err, "%s: cannot replace with %s: %s", path, tmp, strerror(e));
    }
    if (fsync_parent_dir(path) != 0)
        return tf_err(err, "%s: written, but syncing its directory failed: %s", path, strerror(errno));
    return 0;
}

/* Temporary files of writers that died mid-save (SIGKILL, a second signal)
 * would pile up beside the checkpoint: after a successful save, remove the
 * ones whose process no longer exists. Best effort; errors are ignored. */
static void remove_stale_temps(const char *path) {
    size_t plen = strlen(path);
    char *pattern = malloc(plen + 8);
    if (!pattern) return;
    snprintf(pattern, plen + 8, "%s.tmp.*", path);
    glob_t g;
    if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *end;
            long pid = strtol(g.gl_pathv[i] + plen + 5, &end, 10);
            if (*end || pid <= 0 || pid == (long)getpid()) continue;
            if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) unlink(g.gl_pathv[i]);
        }
        globfree(&g);
    }
    free(pattern);
}

int st_write_atomic(const char *path, const StTensorOut *tensors, int n_tensors, const char *const *meta_keys,
                    const char *const *meta_vals, int n_meta, char *err) {
    if (!path || !*path) return tf_err(err, "st_write_atomic: empty path");
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* rename would replace a device node or FIFO */
        return tf_err(err, "%s: exists and is not a regular file; not replacing it", path);
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) || (n_meta > 0 && (!meta_keys || !meta_vals)))
        return tf_err(err, "%s: invalid arguments", path);
    for (int i = 0; i < n_meta; i++)
        if (!meta_keys[i] || !meta_vals[i]) return tf_err(err, "%s: metadata entry %d is NULL", path, i);
    size_t *nbytes = calloc((size_t)n_tensors + 1, sizeof *nbytes);
    if (!nbytes) return tf_err(err, "%s: out of memory", path);
    StrBuf hdr = {0};
    char *tmp = NULL;
    int rc = check_tensors(path, tensors, n_tensors, nbytes, err);
    if (rc == 0 && build_header(&hdr, tensors, n_tensors, nbytes, meta_keys, meta_vals, n_meta) != 0)
        rc = tf_err(err, "%s: out of memory building the header", path);
    if (rc == 0) {
        size_t tlen = strlen(path) + 32;
        tmp = malloc(tlen);
        if (!tmp)
            rc = tf_err(err, "%s: out of memory", path);
        else
            snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    }
    if (rc == 0) rc = write_temp_and_rename(path, tmp, &hdr, tensors, n_tensors, nbytes, err);
    if (rc == 0) remove_stale_temps(path);
    free(tmp);
    free(hdr.p);
    free(nbytes);
    return rc;
}
