/* Tests for the safetensors reader/writer: round trips, atomic overwrite,
 * and a battery of corrupt files that must be rejected with a one-line
 * message (and, under ASan/UBSan, without a crash or leak).
 * Prints "PASS name" / "FAIL name: detail" per check; exits 1 on failure.
 * ST_VERBOSE=1 also prints each rejection message (prefixed "# "). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "safetensors.h"
#include "check.h"

static char g_dir[64];

static void path_in_dir(char *out, size_t n, const char *file) { snprintf(out, n, "%s/%s", g_dir, file); }

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* 8-byte little-endian length + header text + data_len zero bytes. */
static unsigned char *make_file(uint64_t hlen_field, const char *hdr, size_t data_len, size_t *len_out) {
    size_t hl = strlen(hdr), len = 8 + hl + data_len;
    unsigned char *b = calloc(len, 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(b + 8, hdr, hl);
    *len_out = len;
    return b;
}

static unsigned char *make_st(const char *hdr, size_t data_len, size_t *len_out) {
    return make_file(strlen(hdr), hdr, data_len, len_out);
}

/* A well-formed rejection: -1, a non-empty single-line message that
 * mentions `want`, and a zeroed StFile that st_free accepts. */
static int rejected_ok(int rc, const StFile *f, const char *err, const char *want, char *why, size_t n) {
    if (rc != -1) return snprintf(why, n, "accepted (rc=%d)", rc), 0;
    if (!err[0]) return snprintf(why, n, "empty error message"), 0;
    if (strchr(err, '\n')) return snprintf(why, n, "multi-line error: %s", err), 0;
    if (want && !strstr(err, want)) return snprintf(why, n, "message lacks '%s': %s", want, err), 0;
    if (f->buf || f->entries || f->n_entries || f->meta_keys) return snprintf(why, n, "StFile not cleared"), 0;
    return 1;
}

/* Reject both through st_read (message must name the path) and st_parse. */
static void expect_reject(const char *name, const unsigned char *bytes, size_t len, const char *want) {
    char path[128], err[TF_ERRLEN] = "", why[TF_ERRLEN + 64] = "";
    StFile f;
    path_in_dir(path, sizeof path, "bad.safetensors");
    if (write_bytes(path, bytes, len) != 0) {
        check(0, name, "cannot write %s", path);
        return;
    }
    int rc = st_read(path, &f, err);
    int ok = rejected_ok(rc, &f, err, want, why, sizeof why);
    if (ok && !strstr(err, path)) ok = 0, snprintf(why, sizeof why, "st_read message lacks the path: %s", err);
    if (rc == 0) st_free(&f);
    if (ok) {
        unsigned char *copy = malloc(len ? len : 1);
        if (len) memcpy(copy, bytes, len);
        err[0] = '\0';
        rc = st_parse(copy, len, &f, err); /* owns copy either way */
        ok = rejected_ok(rc, &f, err, want, why, sizeof why);
        if (rc == 0) st_free(&f);
    }
    unlink(path);
    if (ok && getenv("ST_VERBOSE")) printf("# %s: %s\n", name, err);
    check(ok, name, "%s", why);
}

static void reject_hdr(const char *name, const char *hdr, size_t data_len, const char *want) {
    size_t len;
    unsigned char *b = make_st(hdr, data_len, &len);
    expect_reject(name, b, len, want);
    free(b);
}

/* ------------------------------------------------------------------ */

static void test_hostile_inputs(void) {
    size_t len;
    unsigned char *b;

    expect_reject("reject_empty_file", (const unsigned char *)"", 0, "too short");
    expect_reject("reject_short_file", (const unsigned char *)"\x10\0\0\0\0", 5, "too short");

    b = make_file(100, "{}", 0, &len);
    expect_reject("reject_header_len_beyond_file", b, len, "exceeds file size");
    free(b);
    b = make_file(UINT64_C(1) << 63, "{}", 0, &len);
    expect_reject("reject_header_len_2pow63", b, len, "exceeds file size");
    free(b);
    b = make_file(UINT64_MAX, "{}", 0, &len);
    expect_reject("reject_header_len_max", b, len, "exceeds file size");
    free(b);

    reject_hdr("reject_not_json", "{not json", 0, "not valid JSON");
    reject_hdr("reject_empty_header", "", 0, "not valid JSON");
    reject_hdr("reject_json_array", "[1,2,3]", 0, "not a JSON object");
    reject_hdr("reject_json_string", "\"hello\"", 0, "not a JSON object");
    reject_hdr("reject_trailing_garbage", "{} x", 0, "trailing");
    reject_hdr("reject_entry_not_object", "{\"a\":5}", 0, "not a JSON object");
    reject_hdr("reject_missing_dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype");
    reject_hdr("reject_missing_shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape");
    reject_hdr("reject_missing_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no data_offsets");
    reject_hdr("reject_unknown_dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "'F16'");
    /* checkpoints hold F32 and I32 only, even now that tensors may be BF16 */
    reject_hdr("reject_bf16_dtype", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "'BF16'");
    reject_hdr("reject_dtype_not_string", "{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    reject_hdr("reject_negative_shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "shape[0]");
    reject_hdr("reject_fractional_shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
               "shape[0]");
    reject_hdr("reject_huge_shape_number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}",
               4, "shape[0]");
    reject_hdr("reject_shape_overflow",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               "overflow");
    reject_hdr("reject_too_many_dims",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    reject_hdr("reject_shape_not_array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
               "shape");
    reject_hdr("reject_offsets_out_of_range", "{\"wte\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,99]}}",
               64, "data_offsets [0, 99] out of range (data is 64 bytes)");
    reject_hdr("reject_offsets_reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16,
               "out of range");
    reject_hdr("reject_offsets_size_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}",
               16, "need 16");
    reject_hdr("reject_offsets_three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
               "pair");
    reject_hdr("reject_offsets_negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
               "pair");
    reject_hdr("reject_overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
               32, "overlap");
    reject_hdr("reject_overlap_nested",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
               "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
               32, "overlap");
    reject_hdr("reject_metadata_non_string", "{\"__metadata__\":{\"step\":5}}", 0, "not a string");
    reject_hdr("reject_metadata_not_object", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__");
    reject_hdr("reject_duplicate_metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate");
    reject_hdr("reject_duplicate_metadata_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate");
    reject_hdr("reject_duplicate_key",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate tensor name 'a'");
    reject_hdr("reject_control_chars_in_name",
               "{\"a\\nb\":{\"dtype\":\"BAD\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a?b'");

    /* Truncated data: a valid file minus its last bytes. */
    b = make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, &len);
    expect_reject("reject_truncated_data", b, len - 5, "out of range");
    free(b);

    /* Deep nesting must hit cJSON's depth limit, not the stack. */
    {
        size_t depth = 100000;
        char *hdr = malloc(2 * depth + 1);
        memset(hdr, '[', depth);
        memset(hdr + depth, ']', depth);
        hdr[2 * depth] = '\0';
        reject_hdr("reject_deep_nesting", hdr, 0, "JSON");
        free(hdr);
    }
    /* NUL byte inside the header. */
    {
        const char h[] = "{\"a\":{\"dt\0pe\":\"F32\"}}";
        b = make_file(sizeof h - 1, "", 0, &len);
        unsigned char *c = calloc(8 + sizeof h - 1, 1);
        memcpy(c, b, 8);
        memcpy(c + 8, h, sizeof h - 1);
        expect_reject("reject_nul_in_header", c, 8 + sizeof h - 1, NULL);
        free(c);
        free(b);
    }
    /* Header over ST_MAX_HEADER (but within the buffer): in memory only. */
    {
        size_t n = 8 + (size_t)ST_MAX_HEADER + 16;
        unsigned char *big = calloc(n, 1);
        uint64_t h = (uint64_t)ST_MAX_HEADER + 1;
        for (int i = 0; i < 8; i++) big[i] = (unsigned char)(h >> (8 * i));
        StFile f;
        char err[TF_ERRLEN] = "", why[TF_ERRLEN + 64];
        int rc = st_parse(big, n, &f, err);
        check(rejected_ok(rc, &f, err, "limit", why, sizeof why), "reject_header_over_limit", "%s", why);
        if (rc == 0) st_free(&f);
    }
}

static void test_read_errors(void) {
    StFile f;
    char err[TF_ERRLEN] = "", path[128];
    int rc = st_read(g_dir, &f, err);
    check(rc == -1 && strstr(err, g_dir) && strstr(err, "not a regular file"), "reject_directory", "rc=%d err=%s",
          rc, err);
    path_in_dir(path, sizeof path, "fifo.safetensors");
    if (mkfifo(path, 0600) == 0) {
        err[0] = '\0';
        rc = st_read(path, &f, err); /* must not block waiting for a writer */
        check(rc == -1 && strstr(err, path) && strstr(err, "not a regular file"), "reject_fifo", "rc=%d err=%s", rc,
              err);
        unlink(path);
    }
    path_in_dir(path, sizeof path, "does-not-exist.safetensors");
    err[0] = '\0';
    rc = st_read(path, &f, err);
    check(rc == -1 && strstr(err, path) && strstr(err, "No such file"), "reject_missing_file", "rc=%d err=%s", rc,
          err);
}

/* ------------------------------------------------------------------ */

static int no_temp_files_left(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int clean = 1;
    if (!d) return 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) clean = 0;
    closedir(d);
    return clean;
}

static int entry_matches(const StFile *f, const char *name, DType dt, int ndim, const int64_t *shape,
                         const void *data, size_t nbytes) {
    const StEntry *e = st_find(f, name);
    if (!e || e->dtype != dt || e->ndim != ndim || e->nbytes != nbytes) return 0;
    for (int i = 0; i < ndim; i++)
        if (e->shape[i] != shape[i]) return 0;
    return nbytes == 0 || memcmp(st_data(f, e), data, nbytes) == 0;
}

static void test_round_trip(void) {
    char path[128], err[TF_ERRLEN] = "";
    path_in_dir(path, sizeof path, "rt.safetensors");
    float w[12], scalar = 3.25f;
    int32_t ids[5] = {0, -1, 2147483647, (int32_t)INT32_MIN, 42};
    for (int i = 0; i < 12; i++) w[i] = 0.5f * (float)i - 1.0f;
    int64_t s2[2] = {3, 4}, s1[1] = {5}, s0[1] = {0};
    StTensorOut t[4] = {
        {"wte", DTYPE_F32, 2, s2, w},
        {"ids", DTYPE_I32, 1, s1, ids},
        {"scale \"q\"\n\\", DTYPE_F32, 0, NULL, &scalar},
        {"empty", DTYPE_F32, 1, s0, NULL},
    };
    const char *mk[3] = {"config", "step", "note"};
    const char *mv[3] = {"{\"n_layer\": 2}", "100", "tab\there \xc3\xa9 \x01"};
    int rc = st_write_atomic(path, t, 4, mk, mv, 3, err);
    check(rc == 0, "write_round_trip", "%s", err);
    if (rc != 0) return;
    check(no_temp_files_left(), "write_no_temp_left", "temporary file left in %s", g_dir);

    StFile f;
    rc = st_read(path, &f, err);
    check(rc == 0, "read_round_trip", "%s", err);
    if (rc != 0) return;
    check(f.n_entries == 4 && f.n_meta == 3, "round_trip_counts", "%d entries, %d meta", f.n_entries, f.n_meta);
    check(f.n_entries == 4 && strcmp(f.entries[0].name, "wte") == 0 && strcmp(f.entries[3].name, "empty") == 0,
          "round_trip_order", "entries not in written order");
    check(entry_matches(&f, "wte", DTYPE_F32, 2, s2, w, sizeof w), "round_trip_f32_2d", "mismatch");
    check(entry_matches(&f, "ids", DTYPE_I32, 1, s1, ids, sizeof ids), "round_trip_i32_1d", "mismatch");
    check(entry_matches(&f, "scale \"q\"\n\\", DTYPE_F32, 0, NULL, &scalar, 4), "round_trip_f32_0d", "mismatch");
    check(entry_matches(&f, "empty", DTYPE_F32, 1, s0, NULL, 0), "round_trip_empty", "mismatch");
    int meta_ok = 1;
    for (int i = 0; i < 3; i++) meta_ok &= st_meta(&f, mk[i]) && strcmp(st_meta(&f, mk[i]), mv[i]) == 0;
    check(meta_ok, "round_trip_metadata", "metadata differs");
    check(!st_find(&f, "nope") && !st_meta(&f, "nope"), "lookup_missing", "found a name that is not there");
    check((size_t)(f.data - f.buf) % 8 == 0, "data_8_byte_aligned", "data starts at byte %zu",
          (size_t)(f.data - f.buf));
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | f.buf[i];
    check(f.buf[8 + hl - 1] == ' ' || f.buf[8 + hl - 1] == '}', "header_padded_with_spaces", "last byte 0x%02x",
          f.buf[8 + hl - 1]);
    st_free(&f);

    /* No tensors at all, no metadata. */
    rc = st_write_atomic(path, NULL, 0, NULL, NULL, 0, err);
    if (rc == 0) rc = st_read(path, &f, err);
    check(rc == 0 && f.n_entries == 0 && f.n_meta == 0, "round_trip_empty_file", "%s", err);
    if (rc == 0) st_free(&f);
    unlink(path);
}

static void test_writer_rejects(void) {
    char path[128], err[TF_ERRLEN] = "";
    path_in_dir(path, sizeof path, "w.safetensors");
    float x[2] = {1, 2};
    int64_t s[1] = {2}, neg[1] = {-2};
    StTensorOut dup[2] = {{"a", DTYPE_F32, 1, s, x}, {"a", DTYPE_F32, 1, s, x}};
    int rc = st_write_atomic(path, dup, 2, NULL, NULL, 0, err);
    check(rc == -1 && strstr(err, "duplicate") && access(path, F_OK) != 0, "write_rejects_duplicate", "rc=%d %s",
          rc, err);
    StTensorOut reserved = {"__metadata__", DTYPE_F32, 1, s, x};
    rc = st_write_atomic(path, &reserved, 1, NULL, NULL, 0, err);
    check(rc == -1 && access(path, F_OK) != 0, "write_rejects_reserved_name", "rc=%d %s", rc, err);
    StTensorOut bad = {"b", DTYPE_F32, 1, neg, x};
    rc = st_write_atomic(path, &bad, 1, NULL, NULL, 0, err);
    check(rc == -1 && access(path, F_OK) != 0, "write_rejects_negative_shape", "rc=%d %s", rc, err);
    uint16_t halves[2] = {0x3f80, 0x4000};
    StTensorOut bf16 = {"h", DTYPE_BF16, 1, s, halves};
    rc = st_write_atomic(path, &bf16, 1, NULL, NULL, 0, err);
    check(rc == -1 && strstr(err, "dtype") && access(path, F_OK) != 0, "write_rejects_bf16", "rc=%d %s", rc,
          err);
}

/* The element types tensors and backend buffers are typed with. */
static void test_dtypes(void) {
    check(dtype_size(DTYPE_F32) == 4 && dtype_size(DTYPE_I32) == 4 && dtype_size(DTYPE_BF16) == 2,
          "dtype_sizes", "%zu %zu %zu", dtype_size(DTYPE_F32), dtype_size(DTYPE_I32),
          dtype_size(DTYPE_BF16));
    check(strcmp(dtype_name(DTYPE_F32), "F32") == 0 && strcmp(dtype_name(DTYPE_I32), "I32") == 0 &&
              strcmp(dtype_name(DTYPE_BF16), "BF16") == 0,
          "dtype_names", "%s %s %s", dtype_name(DTYPE_F32), dtype_name(DTYPE_I32), dtype_name(DTYPE_BF16));
}

/* ------------------------------------------------------------------ */

static int file_equals(const char *path, const unsigned char *want, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char *b = malloc(n + 1);
    size_t got = fread(b, 1, n + 1, f);
    fclose(f);
    int eq = got == n && memcmp(b, want, n) == 0;
    free(b);
    return eq;
}

static void test_atomic_overwrite(void) {
    char path[128], sub[128], err[TF_ERRLEN] = "";
    path_in_dir(path, sizeof path, "ckpt.safetensors");
    float x[4] = {1, 2, 3, 4};
    int64_t s[1] = {4};
    StTensorOut t = {"x", DTYPE_F32, 1, s, x};
    if (st_write_atomic(path, &t, 1, NULL, NULL, 0, err) != 0) {
        check(0, "atomic_setup", "%s", err);
        return;
    }
    FILE *fp = fopen(path, "rb");
    unsigned char old[4096];
    size_t old_n = fread(old, 1, sizeof old, fp);
    fclose(fp);

    /* Disk full, simulated with a file size limit: the data write fails
     * part-way. SIGXFSZ is ignored so write() returns EFBIG instead. */
    {
        size_t n = 1 << 20;
        float *big = calloc(n, sizeof *big);
        int64_t bs[1] = {(int64_t)n};
        StTensorOut bt = {"x", DTYPE_F32, 1, bs, big};
        struct rlimit saved, lim;
        getrlimit(RLIMIT_FSIZE, &saved);
        lim = saved;
        lim.rlim_cur = 65536;
        void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &lim);
        int rc = st_write_atomic(path, &bt, 1, NULL, NULL, 0, err);
        setrlimit(RLIMIT_FSIZE, &saved);
        signal(SIGXFSZ, oldsig);
        free(big);
        check(rc == -1 && strstr(err, path) && strstr(err, "too large"), "atomic_short_write_fails", "rc=%d %s", rc,
              err);
        check(file_equals(path, old, old_n), "atomic_short_write_keeps_old", "old file changed");
        check(no_temp_files_left(), "atomic_short_write_no_temp", "temporary file left");
    }
    /* Target is a directory: rename fails after the temp file was written. */
    {
        path_in_dir(sub, sizeof sub, "isdir.safetensors");
        mkdir(sub, 0755);
        int rc = st_write_atomic(sub, &t, 1, NULL, NULL, 0, err);
        struct stat st;
        check(rc == -1 && strstr(err, sub) && stat(sub, &st) == 0 && S_ISDIR(st.st_mode), "atomic_path_is_directory",
              "rc=%d %s", rc, err);
        check(no_temp_files_left(), "atomic_path_is_directory_no_temp", "temporary file left");
        rmdir(sub);
    }
    /* Parent directory missing: the temp file cannot even be created. */
    {
        path_in_dir(sub, sizeof sub, "missing/ckpt.safetensors");
        int rc = st_write_atomic(sub, &t, 1, NULL, NULL, 0, err);
        check(rc == -1 && strstr(err, sub) && strstr(err, "No such file"), "atomic_missing_dir", "rc=%d %s", rc, err);
    }
    /* Read-only directory: only meaningful when permissions apply to us. */
    if (geteuid() != 0) {
        path_in_dir(sub, sizeof sub, "ro");
        mkdir(sub, 0755);
        char p2[192];
        snprintf(p2, sizeof p2, "%s/ckpt.safetensors", sub);
        int rc = st_write_atomic(p2, &t, 1, NULL, NULL, 0, err);
        fp = fopen(p2, "rb");
        size_t n1 = fread(old, 1, sizeof old, fp);
        fclose(fp);
        chmod(sub, 0555);
        float y[4] = {9, 9, 9, 9};
        StTensorOut t2 = {"x", DTYPE_F32, 1, s, y};
        rc = st_write_atomic(p2, &t2, 1, NULL, NULL, 0, err);
        chmod(sub, 0755);
        check(rc == -1 && strstr(err, p2) && file_equals(p2, old, n1), "atomic_readonly_dir_keeps_old", "rc=%d %s", rc,
              err);
        unlink(p2);
        rmdir(sub);
    } else {
        check_skip("atomic_readonly_dir_keeps_old", "running as root, directory permissions do not apply");
    }
    /* A successful overwrite replaces the content. */
    {
        float y[4] = {5, 6, 7, 8};
        StTensorOut t2 = {"x", DTYPE_F32, 1, s, y};
        StFile f;
        int rc = st_write_atomic(path, &t2, 1, NULL, NULL, 0, err);
        if (rc == 0) rc = st_read(path, &f, err);
        check(rc == 0 && memcmp(st_data(&f, st_find(&f, "x")), y, sizeof y) == 0, "atomic_overwrite_replaces",
              "%s", err);
        if (rc == 0) st_free(&f);
    }
    unlink(path);
}

/* ------------------------------------------------------------------ */

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d) return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void) {
    strcpy(g_dir, "/tmp/tf_st_test.XXXXXX");
    if (!mkdtemp(g_dir)) {
        check(0, "setup", "mkdtemp: %s", strerror(errno));
        return 1;
    }
    test_round_trip();
    test_writer_rejects();
    test_dtypes();
    test_atomic_overwrite();
    test_read_errors();
    test_hostile_inputs();
    remove_dir(g_dir);
    return check_exit("test_safetensors");
}
