/* Tests of text_load, which reads a text in one streaming pass of 64 KiB
 * pieces: characters that straddle two pieces, errors at the right byte
 * offset there, symbols 1 byte wide up to 256 distinct characters and wider
 * past it, the same content hash as the whole file's, and peak memory about
 * the text's own size (VmHWM of this process). Prints one PASS/FAIL line per
 * check and exits 1 if any failed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "data.h"
#include "lineage.h"
#include "tokenizer.h"
#include "check.h"

#define PIECE 65536 /* data.c's READ_CHUNK: where a character may be cut in two */

static char g_dir[] = "/tmp/tf_test_text_stream_XXXXXX";
static char g_path[256];

static void write_text(const unsigned char *bytes, size_t len) {
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        check(0, "setup", "cannot write %s", g_path);
        exit(1);
    }
}

/* Peak resident memory of this process so far, in KiB (0 if unknown). */
static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* A text of `mib` MiB of ASCII prose, written from a small buffer so that
 * writing it does not raise the peak that loading it is measured by. */
static size_t write_prose(int mib) {
    FILE *f = fopen(g_path, "wb");
    char line[128];
    size_t total = 0;
    for (long i = 0; f && total < (size_t)mib << 20; i++) {
        int len = snprintf(line, sizeof line, "ROMEO %ld: what light through yonder window breaks? %ld\n", i % 97, i);
        total += fwrite(line, 1, (size_t)len, f);
    }
    if (!f || fclose(f) != 0) {
        check(0, "setup", "cannot write %s", g_path);
        exit(1);
    }
    return total;
}

/* First, while this process's peak is still small: loading and splitting a
 * 16 MiB text raises it by about 16 MiB (it was 5 bytes a character: the
 * file's bytes, then 4-byte code points). */
static void test_peak_memory(void) {
#if defined(__SANITIZE_ADDRESS__)
    /* shadow memory and the freed-block quarantine: the peak is the sanitizer's */
    printf("SKIP text_load_peak_memory: built with AddressSanitizer\n");
    return;
#endif
    size_t size = write_prose(16);
    long before = peak_rss_kib();
    if (before == 0) {
        printf("SKIP text_load_peak_memory: no VmHWM in /proc/self/status\n");
        return;
    }
    Text t;
    Vocab v;
    Dataset d;
    char err[TF_ERRLEN] = "";
    int rc = text_load(g_path, 0, &t, NULL, err);
    if (rc == 0) rc = vocab_build(&v, t.alphabet, (size_t)t.n_alphabet, err);
    if (rc == 0) {
        static const int parts[3] = DATA_SPLIT_DEFAULT;
        rc = dataset_from_text(&d, &t, &v, 64, parts, err);
        vocab_free(&v);
    }
    long extra = peak_rss_kib() - before, size_kib = (long)(size >> 10), bound = size_kib + size_kib / 4;
    check(rc == 0 && extra <= bound, "text_load_peak_memory",
          "rc=%d err='%s': a %ld KiB text raised the peak by %ld KiB (bound %ld)", rc, err, size_kib, extra, bound);
    if (rc == 0) check(d.text.sym_size == 1, "text_load_one_byte_symbols", "sym_size %d", d.text.sym_size);
    if (rc == 0) dataset_free(&d);
}

/* Load bytes[0, len) from a file; it must equal utf8_decode of the whole. */
static void expect_same_as_whole(const char *name, const unsigned char *bytes, size_t len) {
    write_text(bytes, len);
    uint32_t *want = NULL, *got = NULL;
    size_t n_want = 0, n_got = 0;
    char err[TF_ERRLEN] = "", err2[TF_ERRLEN] = "";
    int rc_want = utf8_decode(bytes, len, &want, &n_want, err);
    int rc = text_file_read(g_path, &got, &n_got, err2);
    int ok = rc == 0 && rc_want == 0 && n_got == n_want && memcmp(got, want, n_want * sizeof *want) == 0;
    check(ok, name, "rc=%d n=%zu want n=%zu err='%s'", rc, n_got, n_want, err2);
    free(want);
    free(got);
}

/* Every way a 2-, 3- and 4-byte character can be cut by a piece boundary. */
static void test_characters_across_pieces(void) {
    static const char *chars[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    size_t len = 2 * PIECE + 64;
    unsigned char *buf = tf_malloc(len, "text");
    int ok_all = 1;
    for (int c = 0; c < 3; c++) {
        size_t clen = strlen(chars[c]);
        for (size_t cut = 0; cut <= clen; cut++) {
            memset(buf, 'a', len);
            size_t at = PIECE - clen + cut; /* `cut` of its bytes lie past the boundary */
            memcpy(buf + at, chars[c], clen);
            memcpy(buf + PIECE + 7, chars[c], clen);
            char name[96];
            snprintf(name, sizeof name, "text_load_char_%zu_bytes_cut_%zu", clen, cut);
            uint32_t *got = NULL;
            size_t n = 0;
            char err[TF_ERRLEN] = "";
            write_text(buf, len);
            int rc = text_file_read(g_path, &got, &n, err);
            int ok = rc == 0 && n == len - 2 * (clen - 1) && got[at] != 'a' && got[at + 1] == 'a';
            if (!ok) check(0, name, "rc=%d n=%zu err='%s'", rc, n, err);
            ok_all &= ok;
            free(got);
        }
    }
    check(ok_all, "text_load_characters_across_pieces", "see above");
    /* A text of a piece exactly, and one byte more or less: the last read is empty or short. */
    for (size_t n = PIECE - 1; n <= PIECE + 1; n++) {
        memset(buf, 'b', n);
        memcpy(buf + n - 3, "\xE2\x82\xAC", 3);
        char name[64];
        snprintf(name, sizeof name, "text_load_piece_edge_%zu", n);
        expect_same_as_whole(name, buf, n);
    }
    free(buf);
}

static void expect_error_at(const char *name, const unsigned char *bytes, size_t len, const char *want) {
    write_text(bytes, len);
    Text t;
    char err[TF_ERRLEN] = "";
    int rc = text_load(g_path, 0, &t, NULL, err);
    check(rc == -1 && strstr(err, want) != NULL, name, "rc=%d err='%s' want '%s'", rc, err, want);
    if (rc == 0) text_free(&t);
}

/* Offsets are the file's, wherever the pieces end. */
static void test_errors_across_pieces(void) {
    size_t len = PIECE + 100;
    unsigned char *buf = tf_malloc(len, "text");
    memset(buf, 'a', len);
    memcpy(buf + PIECE - 1, "\xE2\x82", 2); /* cut short by an 'a' in the next piece */
    expect_error_at("text_load_invalid_across_pieces", buf, len, "invalid UTF-8 at byte offset 65535;");
    memset(buf, 'a', len);
    buf[PIECE + 3] = 0;
    expect_error_at("text_load_nul_in_second_piece", buf, len, "binary data (NUL byte) at byte offset 65539;");
    memset(buf, 'a', len);
    memcpy(buf + PIECE - 2, "\xF0\x9F", 2); /* truncated at the end of the file, a piece exactly */
    expect_error_at("text_load_truncated_at_piece_end", buf, PIECE, "invalid UTF-8 at byte offset 65534;");
    /* After a byte order mark, offsets still count it: they are the file's. */
    memcpy(buf, "\xEF\xBB\xBFxy\xFF", 6);
    expect_error_at("text_load_offset_after_bom", buf, 6, "invalid UTF-8 at byte offset 5;");
    /* The byte order mark is not text, but it is part of the file's hash. */
    write_text((const unsigned char *)"\xEF\xBB\xBFxy\xC3\xA9", 7);
    Text t;
    TextRecord rec;
    char err[TF_ERRLEN] = "";
    int rc = text_load(g_path, 0, &t, &rec, err);
    check(rc == 0 && t.n == 3 && text_char(&t, 0) == 'x' && text_char(&t, 2) == 0xE9 && rec.bytes == 7 &&
              rec.hash == fnv1a64("\xEF\xBB\xBFxy\xC3\xA9", 7, FNV1A64_INIT),
          "text_load_bom_skipped_but_hashed", "rc=%d n=%zu err='%s'", rc, t.n, err);
    if (rc == 0) text_free(&t);
    free(buf);
}

/* 300 distinct characters need 2-byte symbols, introduced after the text
 * has been stored narrow for a while; the alphabet is in order of first
 * appearance and every character maps back. */
static void test_widening(void) {
    size_t n_cps = 3 * PIECE;
    uint32_t *cps = tf_malloc(n_cps * sizeof *cps, "text");
    for (size_t i = 0; i < n_cps; i++) cps[i] = i < 2 * PIECE ? 'a' + (uint32_t)(i % 26) : 0x4E00 + (uint32_t)(i % 300);
    unsigned char *bytes = tf_malloc(n_cps * 4, "bytes");
    size_t len = 0;
    for (size_t i = 0; i < n_cps; i++) len += (size_t)utf8_encode(cps[i], (char *)bytes + len);
    write_text(bytes, len);
    Text t;
    TextRecord rec;
    char err[TF_ERRLEN] = "";
    int rc = text_load(g_path, 0, &t, &rec, err);
    int ok = rc == 0 && t.n == n_cps && t.sym_size == 2 && t.n_alphabet == 326 && t.alphabet[0] == 'a' &&
             t.alphabet[26] == 0x4E00 + (uint32_t)(2 * PIECE % 300);
    for (size_t i = 0; ok && i < n_cps; i++) ok = text_char(&t, i) == cps[i];
    check(ok, "text_load_widens_past_256_symbols", "rc=%d n=%zu sym_size=%d n_alphabet=%d err='%s'", rc, t.n,
          t.sym_size, t.n_alphabet, err);
    check(rc == 0 && rec.bytes == len && rec.hash == fnv1a64(bytes, len, FNV1A64_INIT) && t.file_bytes == len,
          "text_load_hash_of_whole_file", "bytes %llu want %zu", (unsigned long long)rec.bytes, len);
    if (rc == 0) text_free(&t);
    /* As bytes: every byte a symbol, one byte each, the same hash. */
    TextRecord rec_bytes;
    rc = text_load(g_path, 1, &t, &rec_bytes, err);
    ok = rc == 0 && t.n == len && t.sym_size == 1 && rec_bytes.hash == rec.hash;
    for (size_t i = 0; ok && i < len; i++) ok = text_char(&t, i) == bytes[i];
    check(ok, "text_load_bytes", "rc=%d n=%zu sym_size=%d err='%s'", rc, t.n, t.sym_size, err);
    if (rc == 0) text_free(&t);
    free(cps);
    free(bytes);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        check(0, "setup", "mkdtemp failed");
        return 1;
    }
    snprintf(g_path, sizeof g_path, "%s/text.txt", g_dir);
    test_peak_memory();
    test_characters_across_pieces();
    test_errors_across_pieces();
    test_widening();
    unlink(g_path);
    rmdir(g_dir);
    return check_exit("test_text_stream");
}
