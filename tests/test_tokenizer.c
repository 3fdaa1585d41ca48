/* Tests of the tokenizer (strict UTF-8, vocabulary) and of the dataset
 * (file reading errors, 90/10 split, batch windows). Prints one PASS/FAIL
 * line per check and exits 1 if any failed. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "data.h"
#include "rng.h"
#include "tokenizer.h"
#include "check.h"

/* What text_file_read adds to a decoding error: what to do about it. */
#define UTF8_HINT "; a character model needs UTF-8 text: convert it (e.g. iconv -t UTF-8) or train a byte model with --tokenizer bytes"

/* Decode a C string (the literal's bytes; `len` allows embedded NULs). */
static int decode(const char *s, size_t len, uint32_t **cps, size_t *n, char *err) {
    return utf8_decode((const unsigned char *)s, len, cps, n, err);
}

/* ------------------------------------------------------------ UTF-8 */

static void test_round_trip(const char *name, const char *text) {
    uint32_t *cps;
    size_t n;
    char err[TF_ERRLEN] = "";
    if (decode(text, strlen(text), &cps, &n, err)) {
        check(0, name, "decode failed: %s", err);
        return;
    }
    char *back = tf_malloc(n * 4 + 1, "test");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += (size_t)utf8_encode(cps[i], back + len);
    back[len] = '\0';
    check(strcmp(back, text) == 0, name, "round trip gave '%s'", back);
    free(back);
    free(cps);
}

static void test_multibyte_codepoints(void) {
    /* 'a', e-acute (2 bytes), euro sign (3 bytes), G clef (4 bytes). */
    const char *text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9E";
    const uint32_t want[] = {0x61, 0xE9, 0x20AC, 0x1D11E};
    uint32_t *cps;
    size_t n;
    char err[TF_ERRLEN] = "";
    int rc = decode(text, strlen(text), &cps, &n, err);
    int ok = rc == 0 && n == 4 && memcmp(cps, want, sizeof want) == 0;
    check(ok, "utf8_decode_multibyte_codepoints", "rc=%d n=%zu err='%s'", rc, n, err);
    if (rc == 0) free(cps);
}

static void test_encode_lengths(void) {
    char buf[4];
    int ok = utf8_encode(0x7F, buf) == 1 && utf8_encode(0x80, buf) == 2 && utf8_encode(0x7FF, buf) == 2 &&
             utf8_encode(0x800, buf) == 3 && utf8_encode(0xFFFF, buf) == 3 && utf8_encode(0x10000, buf) == 4 &&
             utf8_encode(0x10FFFF, buf) == 4;
    check(ok, "utf8_encode_lengths_at_boundaries", "wrong byte count at a length boundary");
    int len = utf8_encode(0xD800, buf);
    ok = len == 3 && memcmp(buf, "\xEF\xBF\xBD", 3) == 0;
    check(ok, "utf8_encode_invalid_gives_replacement", "surrogate encoded as %d bytes", len);
}

static void test_empty_decode(void) {
    uint32_t *cps;
    size_t n = 99;
    char err[TF_ERRLEN] = "";
    int rc = decode("", 0, &cps, &n, err);
    check(rc == 0 && n == 0, "utf8_decode_empty", "rc=%d n=%zu", rc, n);
    if (rc == 0) free(cps);
}

/* Each malformed input must be rejected with this exact message. */
static void expect_decode_error(const char *name, const char *bytes, size_t len, const char *want) {
    uint32_t *cps = (uint32_t *)1;
    size_t n = 7;
    char err[TF_ERRLEN] = "";
    int rc = decode(bytes, len, &cps, &n, err);
    int ok = rc == -1 && strcmp(err, want) == 0 && cps == NULL && n == 0;
    check(ok, name, "rc=%d err='%s' want '%s'", rc, err, want);
    if (rc == 0) free(cps);
}

static void test_invalid_utf8(void) {
    const char *off5 = "invalid UTF-8 at byte offset 5";
    expect_decode_error("utf8_rejects_stray_continuation", "hello\x80", 6, off5);
    expect_decode_error("utf8_rejects_overlong_2byte", "hello\xC0\xAF", 7, off5);
    expect_decode_error("utf8_rejects_overlong_3byte", "hello\xE0\x80\xAF", 8, off5);
    expect_decode_error("utf8_rejects_overlong_4byte", "hello\xF0\x8F\xBF\xBF", 9, off5);
    expect_decode_error("utf8_rejects_surrogate_low_end", "hello\xED\xA0\x80", 8, off5);
    expect_decode_error("utf8_rejects_surrogate_high_end", "hello\xED\xBF\xBF", 8, off5);
    expect_decode_error("utf8_rejects_above_10FFFF", "hello\xF4\x90\x80\x80", 9, off5);
    expect_decode_error("utf8_rejects_F5_lead", "hello\xF5\x80\x80\x80", 9, off5);
    expect_decode_error("utf8_rejects_FF_byte", "hello\xFF", 6, off5);
    expect_decode_error("utf8_rejects_truncated_at_end", "hello\xE2\x82", 7, off5);
    expect_decode_error("utf8_rejects_truncated_before_ascii", "hello\xE2\x82x", 8, off5);
    expect_decode_error("utf8_rejects_nul_byte", "ab\0cd", 5, "binary data (NUL byte) at byte offset 2");
    /* The offset counts bytes, not characters: 2 two-byte characters first. */
    expect_decode_error("utf8_offset_counts_bytes", "\xC3\xA9\xC3\xA9\x80", 5, "invalid UTF-8 at byte offset 4");
    /* Largest valid values just next to the rejected ranges still decode. */
    uint32_t *cps;
    size_t n;
    char err[TF_ERRLEN] = "";
    const char *edges = "\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF"; /* U+D7FF U+E000 U+10FFFF */
    int rc = decode(edges, strlen(edges), &cps, &n, err);
    int ok = rc == 0 && n == 3 && cps[0] == 0xD7FF && cps[1] == 0xE000 && cps[2] == 0x10FFFF;
    check(ok, "utf8_accepts_range_edges", "rc=%d err='%s'", rc, err);
    if (rc == 0) free(cps);
}

/* ------------------------------------------------------------ vocab */

static int decode_or_die(const char *text, uint32_t **cps, size_t *n) {
    char err[TF_ERRLEN];
    if (decode(text, strlen(text), cps, n, err)) {
        check(0, "setup", "cannot decode test text: %s", err);
        exit(1);
    }
    return 0;
}

static void test_vocab_sorted_unique(void) {
    uint32_t *cps;
    size_t n;
    decode_or_die("hello world \xC3\xA9\xE2\x82\xAC hello", &cps, &n);
    Vocab v;
    char err[TF_ERRLEN] = "";
    int rc = vocab_build(&v, cps, n, err);
    const uint32_t want[] = {' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w', 0xE9, 0x20AC};
    int ok = rc == 0 && v.size == 10 && memcmp(v.codepoints, want, sizeof want) == 0;
    check(ok, "vocab_sorted_unique", "rc=%d size=%d err='%s'", rc, v.size, err);
    ok = rc == 0 && vocab_lookup(&v, 'h') == 3 && vocab_lookup(&v, 0x20AC) == 9 && vocab_lookup(&v, 'z') == -1 &&
         vocab_lookup(&v, 0) == -1;
    check(ok, "vocab_lookup", "lookup gave wrong ids");

    int *ids = tf_malloc(n * sizeof *ids, "test");
    rc = vocab_encode(&v, cps, n, ids, err);
    ok = rc == 0;
    for (size_t i = 0; ok && i < n; i++) ok = v.codepoints[ids[i]] == cps[i];
    check(ok, "vocab_encode_maps_back", "rc=%d err='%s'", rc, err);
    free(ids);

    char *s = vocab_to_utf8(&v);
    ok = strcmp(s, " dehlorw\xC3\xA9\xE2\x82\xAC") == 0;
    check(ok, "vocab_to_utf8", "got '%s'", s);
    Vocab back;
    rc = vocab_from_utf8(&back, s, err);
    ok = rc == 0 && back.size == v.size && memcmp(back.codepoints, v.codepoints, sizeof want) == 0;
    check(ok, "vocab_utf8_round_trip", "rc=%d err='%s'", rc, err);
    if (rc == 0) vocab_free(&back);
    free(s);
    vocab_free(&v);
    free(cps);
    check(v.codepoints == NULL && v.size == 0, "vocab_free_resets", "vocab not reset");
}

static void expect_from_utf8_error(const char *name, const char *s, const char *want_substr) {
    Vocab v;
    char err[TF_ERRLEN] = "";
    int rc = vocab_from_utf8(&v, s, err);
    int ok = rc == -1 && strstr(err, want_substr) != NULL && v.codepoints == NULL && v.size == 0;
    check(ok, name, "rc=%d err='%s'", rc, err);
    if (rc == 0) vocab_free(&v);
}

static void test_vocab_from_utf8_rejects(void) {
    expect_from_utf8_error("vocab_from_utf8_rejects_unsorted", "abdc", "not sorted");
    expect_from_utf8_error("vocab_from_utf8_rejects_duplicate", "abbc", "twice");
    expect_from_utf8_error("vocab_from_utf8_rejects_empty", "", "empty");
    expect_from_utf8_error("vocab_from_utf8_rejects_bad_utf8", "ab\xC0\xAF", "invalid UTF-8 at byte offset 2");
}

static void test_vocab_build_errors(void) {
    Vocab v;
    char err[TF_ERRLEN] = "";
    int rc = vocab_build(&v, NULL, 0, err);
    check(rc == -1 && strstr(err, "empty"), "vocab_build_rejects_empty", "rc=%d err='%s'", rc, err);
    const uint32_t surrogate[] = {'a', 0xDC00};
    rc = vocab_build(&v, surrogate, 2, err);
    check(rc == -1 && strstr(err, "U+DC00"), "vocab_build_rejects_surrogate", "rc=%d err='%s'", rc, err);
}

static void expect_unknown_char(const char *name, uint32_t cp, const char *want) {
    const uint32_t known[] = {'a', 'b'};
    Vocab v;
    char err[TF_ERRLEN] = "";
    vocab_build(&v, known, 2, err);
    const uint32_t text[] = {'a', cp, 'b'};
    int ids[3];
    int rc = vocab_encode(&v, text, 3, ids, err);
    check(rc == -1 && strcmp(err, want) == 0, name, "rc=%d err='%s' want '%s'", rc, err, want);
    vocab_free(&v);
}

static void test_unknown_char_errors(void) {
    expect_unknown_char("vocab_encode_names_unknown_char", 'Z',
                        "character 'Z' (U+005A) is not in the model's vocabulary");
    expect_unknown_char("vocab_encode_names_unknown_multibyte", 0xE9,
                        "character '\xC3\xA9' (U+00E9) is not in the model's vocabulary");
    expect_unknown_char("vocab_encode_unprintable_as_codepoint", '\t',
                        "character U+0009 is not in the model's vocabulary");
    expect_unknown_char("vocab_encode_names_unknown_astral", 0x1F600,
                        "character '\xF0\x9F\x98\x80' (U+1F600) is not in the model's vocabulary");
    expect_unknown_char("vocab_encode_format_char_as_codepoint", 0x200B,
                        "character U+200B is not in the model's vocabulary");
}

/* ------------------------------------------------------------ files */

static char g_tmpdir[] = "/tmp/tf_test_tokenizer_XXXXXX";

static void write_file(const char *path, const char *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        check(0, "setup", "cannot write %s", path);
        exit(1);
    }
}

static void expect_read_error(const char *name, const char *path, const char *want) {
    uint32_t *cps;
    size_t n;
    char err[TF_ERRLEN] = "";
    int rc = text_file_read(path, &cps, &n, err);
    check(rc == -1 && strcmp(err, want) == 0, name, "rc=%d err='%s' want '%s'", rc, err, want);
    if (rc == 0) free(cps);
}

static void test_text_file_read(void) {
    char path[256], want[512];

    snprintf(path, sizeof path, "%s/missing.txt", g_tmpdir);
    snprintf(want, sizeof want, "cannot open '%s': No such file or directory", path);
    expect_read_error("read_missing_file", path, want);

    snprintf(want, sizeof want, "'%s' is a directory", g_tmpdir);
    expect_read_error("read_directory", g_tmpdir, want);

    snprintf(path, sizeof path, "%s/empty.txt", g_tmpdir);
    write_file(path, "", 0);
    snprintf(want, sizeof want, "'%s' is empty", path);
    expect_read_error("read_empty_file", path, want);

    snprintf(path, sizeof path, "%s/bad.txt", g_tmpdir);
    write_file(path, "abc\n\xE2\x82\n", 7);
    snprintf(want, sizeof want, "'%s': invalid UTF-8 at byte offset 4%s", path, UTF8_HINT);
    expect_read_error("read_invalid_utf8", path, want);

    snprintf(path, sizeof path, "%s/binary.bin", g_tmpdir);
    write_file(path, "\x7F" "ELF\0\1", 6);
    snprintf(want, sizeof want, "'%s': binary data (NUL byte) at byte offset 4%s", path, UTF8_HINT);
    expect_read_error("read_binary_file", path, want);

    snprintf(path, sizeof path, "%s/good.txt", g_tmpdir);
    write_file(path, "h\xC3\xA9llo\n", 7);
    uint32_t *cps;
    size_t n;
    char err[TF_ERRLEN] = "";
    int rc = text_file_read(path, &cps, &n, err);
    int ok = rc == 0 && n == 6 && cps[0] == 'h' && cps[1] == 0xE9 && cps[5] == '\n';
    check(ok, "read_good_file", "rc=%d n=%zu err='%s'", rc, n, err);
    if (rc == 0) free(cps);
}

/* ------------------------------------------------------------ dataset */

/* Text of n characters over a 26-letter alphabet, deterministic. */
static uint32_t *make_text(size_t n) {
    uint32_t *cps = tf_malloc(n * sizeof *cps, "test text");
    for (size_t i = 0; i < n; i++) cps[i] = 'a' + (uint32_t)((i * 7 + i / 26) % 26);
    return cps;
}

static void test_dataset_split_sizes(void) {
    const size_t sizes[] = {1000, 1001, 1009, 12345};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        uint32_t *cps = make_text(n);
        Vocab v;
        Dataset d;
        char err[TF_ERRLEN] = "", name[64];
        vocab_build(&v, cps, n, err);
        int rc = dataset_build(&d, cps, n, &v, 8, err);
        snprintf(name, sizeof name, "dataset_split_sizes_%zu", n);
        check(rc == 0 && d.n == n && d.n_train == n * 9 / 10, name, "rc=%d n=%zu n_train=%zu err='%s'", rc, d.n,
              d.n_train, err);
        int ok = rc == 0;
        int *ids = tf_malloc(n * sizeof *ids, "test ids");
        if (ok) dataset_tokens(&d, 0, n, ids);
        for (size_t i = 0; ok && i < n; i++) ok = v.codepoints[ids[i]] == cps[i];
        free(ids);
        snprintf(name, sizeof name, "dataset_ids_match_text_%zu", n);
        check(ok, name, "ids do not map back to the text");
        dataset_free(&d);
        vocab_free(&v);
        free(cps);
    }
}

static void expect_dataset_error(const char *name, size_t n, int block_size, const char *want) {
    uint32_t *cps = make_text(n);
    Vocab v;
    Dataset d;
    char err[TF_ERRLEN] = "";
    vocab_build(&v, cps, n, err);
    int rc = dataset_build(&d, cps, n, &v, block_size, err);
    check(rc == -1 && strcmp(err, want) == 0 && d.text.syms == NULL, name, "rc=%d err='%s' want '%s'", rc, err, want);
    if (rc == 0) dataset_free(&d);
    vocab_free(&v);
    free(cps);
}

static void test_dataset_errors(void) {
    expect_dataset_error("dataset_too_short_val", 400, 64,
                         "text too short: the val split has 40 characters but block_size 64 needs at least 65; "
                         "give a longer text, or --block-size 39 or less for a new run");
    expect_dataset_error("dataset_too_short_train", 50, 64,
                         "text too short: the train split has 45 characters but block_size 64 needs at least 65; "
                         "give a longer text, or --block-size 4 or less for a new run");
    /* Exactly block_size + 1 in the val split is enough. */
    uint32_t *cps = make_text(650);
    Vocab v;
    Dataset d;
    char err[TF_ERRLEN] = "";
    vocab_build(&v, cps, 650, err);
    int rc = dataset_build(&d, cps, 650, &v, 64, err);
    check(rc == 0 && d.n - d.n_train == 65, "dataset_minimum_size_ok", "rc=%d err='%s'", rc, err);
    if (rc == 0) dataset_free(&d);
    vocab_free(&v);

    /* A vocabulary from another text: the unknown character is named. */
    const uint32_t other[] = {'a', 'b'};
    vocab_build(&v, other, 2, err);
    rc = dataset_build(&d, cps, 650, &v, 8, err);
    check(rc == -1 && strstr(err, "is not in the model's vocabulary"), "dataset_unknown_char", "rc=%d err='%s'", rc,
          err);
    vocab_free(&v);
    free(cps);
}

/* Every row: targets are tokens shifted by one, and the window of T+1 lies
 * inside the split (found by matching it at its offset in the split). */
static int batch_rows_valid(const Dataset *d, Split split, int B, int T, const int *tokens, const int *targets,
                            size_t *min_off, size_t *max_off) {
    size_t len, start = dataset_split(d, split, &len);
    int base[256];
    if (len > 256) return 0;
    dataset_tokens(d, start, len, base);
    for (int b = 0; b < B; b++) {
        const int *tok = tokens + (size_t)b * T, *tgt = targets + (size_t)b * T;
        for (int t = 0; t + 1 < T; t++)
            if (tgt[t] != tok[t + 1]) return 0;
        int found = 0;
        for (size_t off = 0; off + (size_t)T + 1 <= len && !found; off++) {
            if (memcmp(base + off, tok, (size_t)T * sizeof *tok) == 0 && base[off + (size_t)T] == tgt[T - 1]) {
                found = 1;
                if (off < *min_off) *min_off = off;
                if (off > *max_off) *max_off = off;
            }
        }
        if (!found) return 0;
    }
    return 1;
}

/* Text whose ids equal positions, so a window's offset is its first token:
 * n distinct characters in ascending order. */
static void build_identity_dataset(Dataset *d, size_t n) {
    uint32_t *cps = tf_malloc(n * sizeof *cps, "test text");
    for (size_t i = 0; i < n; i++) cps[i] = 0x100 + (uint32_t)i;
    Vocab v;
    char err[TF_ERRLEN] = "";
    if (vocab_build(&v, cps, n, err) || dataset_build(d, cps, n, &v, 8, err)) {
        check(0, "setup", "identity dataset: %s", err);
        exit(1);
    }
    vocab_free(&v);
    free(cps);
}

static void test_batch_windows(void) {
    Dataset d;
    build_identity_dataset(&d, 200); /* train ids 0..179, val ids 180..199 */
    enum { B = 64, T = 8 };
    int tokens[B * T], targets[B * T];
    Rng rng;
    rng_seed(&rng, 42);
    const Split splits[] = {SPLIT_TRAIN, SPLIT_VAL};
    const char *names[] = {"batch_windows_train", "batch_windows_val"};
    for (int s = 0; s < 2; s++) {
        size_t min_off = SIZE_MAX, max_off = 0;
        int ok = 1;
        for (int rep = 0; rep < 50 && ok; rep++) {
            dataset_batch(&d, splits[s], &rng, B, T, tokens, targets);
            ok = batch_rows_valid(&d, splits[s], B, T, tokens, targets, &min_off, &max_off);
        }
        size_t len = s == 0 ? d.n_train : d.n - d.n_train;
        check(ok, names[s], "a row is not a window of the split shifted by one");
        /* 3200 draws over at most 172 offsets: both ends are hit. */
        char name[64];
        snprintf(name, sizeof name, "%s_cover_range", names[s]);
        check(ok && min_off == 0 && max_off == len - T - 1, name, "offsets seen %zu..%zu, want 0..%zu", min_off,
              max_off, len - T - 1);
    }

    /* A split of exactly T+1 tokens has a single window. */
    Dataset tiny;
    build_identity_dataset(&tiny, 90); /* val = 81..89: 9 tokens = T+1 */
    dataset_batch(&tiny, SPLIT_VAL, &rng, B, T, tokens, targets);
    check(tokens[0] == 81 && targets[T - 1] == 89 && tokens[(B - 1) * T] == 81, "batch_single_window_split",
          "tokens[0]=%d", tokens[0]);
    dataset_free(&tiny);

    /* Same seed => same batches; different seed => different ones. */
    int tok2[B * T], tgt2[B * T];
    Rng r1, r2;
    rng_seed(&r1, 7);
    rng_seed(&r2, 7);
    dataset_batch(&d, SPLIT_TRAIN, &r1, B, T, tokens, targets);
    dataset_batch(&d, SPLIT_TRAIN, &r2, B, T, tok2, tgt2);
    int same = memcmp(tokens, tok2, sizeof tokens) == 0 && memcmp(targets, tgt2, sizeof targets) == 0;
    check(same && r1.state == r2.state, "batch_deterministic_for_seed", "equal seeds gave different batches");
    rng_seed(&r2, 8);
    dataset_batch(&d, SPLIT_TRAIN, &r2, B, T, tok2, tgt2);
    check(memcmp(tokens, tok2, sizeof tokens) != 0, "batch_differs_for_other_seed", "seeds 7 and 8 gave one batch");
    dataset_free(&d);
}

/* ------------------------------------------------------------ main */

static void remove_tmpdir(void) {
    const char *files[] = {"empty.txt", "bad.txt", "binary.bin", "good.txt"};
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", g_tmpdir, files[i]);
        unlink(path);
    }
    rmdir(g_tmpdir);
}

int main(void) {
    if (!mkdtemp(g_tmpdir)) {
        check(0, "setup", "mkdtemp failed");
        return 1;
    }
    test_round_trip("utf8_round_trip_ascii", "Hello, World!\nFirst Citizen: ~`{}|");
    test_round_trip("utf8_round_trip_multibyte", "caf\xC3\xA9 \xE2\x82\xAC \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80");
    test_multibyte_codepoints();
    test_encode_lengths();
    test_empty_decode();
    test_invalid_utf8();
    test_vocab_sorted_unique();
    test_vocab_from_utf8_rejects();
    test_vocab_build_errors();
    test_unknown_char_errors();
    test_text_file_read();
    test_dataset_split_sizes();
    test_dataset_errors();
    test_batch_windows();
    remove_tmpdir();
    return check_exit("test_tokenizer");
}
