/* Character tokenizer: Unicode code points of UTF-8 text. The vocabulary is
 * the sorted set of distinct code points of the training text. */
#ifndef TF_TOKENIZER_H
#define TF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int size;
    uint32_t *codepoints; /* sorted ascending, `size` entries */
    int bytes;            /* 1: byte tokenizer (ids are the 256 byte values) */
} Vocab;

/* Decode UTF-8 into code points (malloc'd *out, *n_out). Invalid UTF-8
 * (bad lead/continuation byte, overlong, surrogate, > U+10FFFF, truncated)
 * is an error naming the byte offset. NUL bytes are rejected as binary. */
int utf8_decode(const unsigned char *s, size_t len, uint32_t **out, size_t *n_out, char *err);
/* The same for one piece of a stream, into out (room for len code points):
 * decodes s[0, *used) into *n_out code points and, unless `final`, stops
 * before the last 1..3 bytes when they may start a sequence that the next
 * piece completes (the caller passes them again in front of it). Offsets
 * in errors are base + the offset in s. *hash (when not NULL) continues the
 * FNV-1a 64 of the stream over the bytes decoded, each byte once. */
int utf8_decode_stream(const unsigned char *s, size_t len, size_t base, int final, uint32_t *out, size_t *n_out,
                       size_t *used, uint64_t *hash, char *err);
/* Encode one code point; returns bytes written (1..4) into buf[4]. */
int utf8_encode(uint32_t cp, char *buf);

/* The byte tokenizer's vocabulary: all 256 byte values, so that bits per
 * character on byte-level benchmarks (enwik8) are comparable with published
 * tables. Its "code points" are the byte values 0..255. */
void vocab_bytes(Vocab *v);
/* "chars" or "bytes". */
const char *vocab_kind_name(const Vocab *v);

int vocab_build(Vocab *v, const uint32_t *cps, size_t n, char *err);
void vocab_free(Vocab *v);
/* Token id of a code point, or -1. */
int vocab_lookup(const Vocab *v, uint32_t cp);
/* Map code points to ids; an unknown character is an error naming it. */
int vocab_encode(const Vocab *v, const uint32_t *cps, size_t n, int *ids, char *err);
/* The vocabulary as a UTF-8 string (for checkpoint metadata), malloc'd. */
char *vocab_to_utf8(const Vocab *v);
/* Parse it back: must be strictly increasing distinct code points. */
int vocab_from_utf8(Vocab *v, const char *s, char *err);

#endif
