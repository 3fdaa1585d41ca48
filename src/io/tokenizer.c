/* Character tokenizer: strict UTF-8 <-> code points, and the vocabulary (the
 * sorted set of distinct code points) that maps code points to token ids. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lineage.h" /* fnv1a64_byte: the text reader hashes as it decodes */

#define UNICODE_MAX 0x10FFFFu
#define SURROGATE_FIRST 0xD800u
#define SURROGATE_LAST 0xDFFFu
#define REPLACEMENT_CHAR 0xFFFDu

static int is_surrogate(uint32_t cp) { return cp >= SURROGATE_FIRST && cp <= SURROGATE_LAST; }

static int is_scalar_value(uint32_t cp) { return cp <= UNICODE_MAX && !is_surrogate(cp); }

static int is_continuation_byte(unsigned char b) { return (b & 0xC0) == 0x80; }

/* ---------------------------------------------------------------- decoding */

/* Length of the sequence a lead byte announces, or 0 when the byte cannot
 * start one (a stray continuation byte, or 0xF8..0xFF which UTF-8 never uses).
 * 0xC0/0xC1 could only start overlong 2-byte forms, so they are rejected here
 * too; the remaining overlong cases are caught after decoding. */
static int sequence_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead < 0xC2) return 0;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    if (lead < 0xF5) return 4;
    return 0;
}

/* Smallest code point that needs `len` bytes; anything below is overlong. */
static uint32_t min_codepoint_for_length(int len) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    return min_cp[len];
}

/* Decode the sequence starting at s[0] (at most `avail` bytes available).
 * Returns its length and stores the code point, or 0 if it is invalid. */
static int decode_one(const unsigned char *s, size_t avail, uint32_t *cp) {
    int len = sequence_length(s[0]);
    if (len == 0 || (size_t)len > avail) return 0;
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    static const unsigned char lead_payload_mask[5] = {0, 0, 0x1F, 0x0F, 0x07};
    uint32_t value = s[0] & lead_payload_mask[len];
    for (int i = 1; i < len; i++) {
        if (!is_continuation_byte(s[i])) return 0;
        value = (value << 6) | (s[i] & 0x3Fu);
    }
    if (value < min_codepoint_for_length(len) || !is_scalar_value(value)) return 0;
    *cp = value;
    return len;
}

/* The longest UTF-8 sequence: fewer bytes than this left before the end of
 * a piece of a stream may be the start of a sequence the next piece ends. */
#define UTF8_MAX_SEQUENCE 4

int utf8_decode_stream(const unsigned char *s, size_t len, size_t base, int final, uint32_t *out, size_t *n_out,
                       size_t *used, uint64_t *hash, char *err) {
    size_t n = 0;
    size_t pos = 0;
    uint64_t h = hash ? *hash : 0;
    while (pos < len) {
        if (s[pos] > 0 && s[pos] < 0x80) { /* ASCII, most of most texts: one byte, no checks */
            h = fnv1a64_byte(h, s[pos]);
            out[n++] = s[pos++];
            continue;
        }
        if (!final && len - pos < UTF8_MAX_SEQUENCE) break; /* the rest may be completed by the next piece */
        if (s[pos] == 0) return tf_err(err, "binary data (NUL byte) at byte offset %zu", base + pos);
        uint32_t cp;
        int seq = decode_one(s + pos, len - pos, &cp);
        /* The offset is that of the sequence's first byte: where a hex dump
         * of the file should be looked at. */
        if (seq == 0) return tf_err(err, "invalid UTF-8 at byte offset %zu", base + pos);
        for (int i = 0; i < seq; i++) h = fnv1a64_byte(h, s[pos + i]);
        out[n++] = cp;
        pos += (size_t)seq;
    }
    if (hash) *hash = h;
    *n_out = n;
    *used = pos;
    return 0;
}

int utf8_decode(const unsigned char *s, size_t len, uint32_t **out, size_t *n_out, char *err) {
    *out = NULL;
    *n_out = 0;
    /* Never more code points than bytes, so one allocation suffices. */
    uint32_t *cps = tf_malloc(len * sizeof *cps, "decoded text");
    size_t used;
    if (utf8_decode_stream(s, len, 0, 1, cps, n_out, &used, NULL, err)) {
        free(cps);
        return -1;
    }
    *out = cps;
    return 0;
}

/* Invalid code points (surrogates, > U+10FFFF) encode as U+FFFD, so that the
 * output is always valid UTF-8 whatever the caller passes. */
int utf8_encode(uint32_t cp, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (!is_scalar_value(cp)) cp = REPLACEMENT_CHAR;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* -------------------------------------------------------------- vocabulary */

/* One bit per possible code point (136 KiB): marking then scanning gives the
 * sorted distinct set in O(n + 0x110000) without sorting a copy of the text. */
#define BITSET_WORDS ((UNICODE_MAX + 1 + 63) / 64)

static void bitset_set(uint64_t *bits, uint32_t cp) { bits[cp >> 6] |= 1ULL << (cp & 63); }

static int bitset_test(const uint64_t *bits, uint32_t cp) { return (bits[cp >> 6] >> (cp & 63)) & 1; }

/* NUL is excluded because the vocabulary is stored as a C string. */
static int check_vocab_codepoint(uint32_t cp, size_t index, char *err) {
    if (cp == 0) return tf_err(err, "character %zu of the text is NUL, which cannot be in the vocabulary", index);
    if (!is_scalar_value(cp))
        return tf_err(err, "character %zu of the text is U+%04X, which is not a Unicode scalar value", index,
                      (unsigned)cp);
    return 0;
}

void vocab_bytes(Vocab *v) {
    v->size = 256;
    v->bytes = 1;
    v->codepoints = tf_malloc(256 * sizeof *v->codepoints, "vocabulary");
    for (uint32_t b = 0; b < 256; b++) v->codepoints[b] = b;
}

const char *vocab_kind_name(const Vocab *v) { return v->bytes ? "bytes" : "chars"; }

int vocab_build(Vocab *v, const uint32_t *cps, size_t n, char *err) {
    v->size = 0;
    v->codepoints = NULL;
    v->bytes = 0;
    if (n == 0) return tf_err(err, "cannot build a vocabulary from empty text");
    uint64_t *seen = tf_calloc(BITSET_WORDS, sizeof *seen, "vocabulary bitset");
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (check_vocab_codepoint(cps[i], i, err)) {
            free(seen);
            return -1;
        }
        if (!bitset_test(seen, cps[i])) {
            bitset_set(seen, cps[i]);
            distinct++;
        }
    }
    uint32_t *sorted = tf_malloc(distinct * sizeof *sorted, "vocabulary");
    size_t k = 0;
    for (uint32_t cp = 1; cp <= UNICODE_MAX && k < distinct; cp++)
        if (bitset_test(seen, cp)) sorted[k++] = cp;
    free(seen);
    v->size = (int)distinct; /* at most 0x110000, fits an int */
    v->codepoints = sorted;
    return 0;
}

void vocab_free(Vocab *v) {
    free(v->codepoints);
    v->codepoints = NULL;
    v->size = 0;
    v->bytes = 0;
}

/* Binary search: the vocabulary is sorted, and small (tens to thousands). */
int vocab_lookup(const Vocab *v, uint32_t cp) {
    int lo = 0, hi = v->size - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        uint32_t m = v->codepoints[mid];
        if (m == cp) return mid;
        if (m < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Characters that would be invisible or garble a one-line error message if
 * printed as themselves: controls, line/paragraph separators, zero-width and
 * bidi formatting characters, the BOM, and noncharacters. */
static int is_unprintable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return 1;
    if (cp == 0xAD || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E)) return 1;
    if ((cp >= 0x2060 && cp <= 0x206F) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB)) return 1;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) return 1;
    if (cp >= 0xE0000 && cp <= 0xE007F) return 1; /* tag characters */
    return !is_scalar_value(cp);
}

static int unknown_character_error(uint32_t cp, char *err) {
    if (is_unprintable(cp)) return tf_err(err, "character U+%04X is not in the model's vocabulary", (unsigned)cp);
    char glyph[5];
    int len = utf8_encode(cp, glyph);
    glyph[len] = '\0';
    return tf_err(err, "character '%s' (U+%04X) is not in the model's vocabulary", glyph, (unsigned)cp);
}

/* Code points below this are looked up in a table when a text is long
 * enough to pay for it (a binary search per character was most of the
 * time a large text took to load). */
#define ENCODE_TABLE_CPS 0x10000
#define ENCODE_TABLE_MIN_TEXT ((size_t)1 << 20)

int vocab_encode(const Vocab *v, const uint32_t *cps, size_t n, int *ids, char *err) {
    int *table = NULL;
    if (n >= ENCODE_TABLE_MIN_TEXT) {
        table = tf_malloc(sizeof(int) * ENCODE_TABLE_CPS, "vocabulary table");
        for (uint32_t cp = 0; cp < ENCODE_TABLE_CPS; cp++) table[cp] = -1;
        for (int i = 0; i < v->size && v->codepoints[i] < ENCODE_TABLE_CPS; i++) table[v->codepoints[i]] = i;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = cps[i]; /* read before ids[i] is written: the two may be one buffer */
        int id = table && cp < ENCODE_TABLE_CPS ? table[cp] : vocab_lookup(v, cp);
        if (id < 0) {
            free(table);
            return unknown_character_error(cp, err);
        }
        ids[i] = id;
    }
    free(table);
    return 0;
}

char *vocab_to_utf8(const Vocab *v) {
    size_t cap = (size_t)v->size * 4 + 1;
    char *s = tf_malloc(cap, "vocabulary string");
    size_t len = 0;
    for (int i = 0; i < v->size; i++) len += (size_t)utf8_encode(v->codepoints[i], s + len);
    s[len] = '\0';
    return s;
}

/* Checkpoint metadata is untrusted input: the ids a model was trained with
 * are positions in this list, so it must be exactly a sorted distinct set. */
static int check_strictly_increasing(const uint32_t *cps, size_t n, char *err) {
    for (size_t i = 1; i < n; i++) {
        if (cps[i] == cps[i - 1])
            return tf_err(err, "vocabulary string: U+%04X appears twice (entries %zu and %zu)", (unsigned)cps[i],
                          i - 1, i);
        if (cps[i] < cps[i - 1])
            return tf_err(err, "vocabulary string is not sorted: U+%04X (entry %zu) follows U+%04X",
                          (unsigned)cps[i], i, (unsigned)cps[i - 1]);
    }
    return 0;
}

int vocab_from_utf8(Vocab *v, const char *s, char *err) {
    v->size = 0;
    v->codepoints = NULL;
    v->bytes = 0;
    uint32_t *cps;
    size_t n;
    char inner[TF_ERRLEN];
    if (utf8_decode((const unsigned char *)s, strlen(s), &cps, &n, inner))
        return tf_err(err, "vocabulary string: %s", inner);
    if (n == 0) {
        free(cps);
        return tf_err(err, "vocabulary string is empty");
    }
    if (check_strictly_increasing(cps, n, err)) {
        free(cps);
        return -1;
    }
    v->size = (int)n; /* strictly increasing scalar values: at most 0x110000 */
    v->codepoints = cps;
    return 0;
}
