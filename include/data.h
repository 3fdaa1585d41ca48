/* The training text: loaded, validated, tokenized, split 90/10, and served
 * as seeded random windows of T+1 tokens (docs/MODEL.md, training). */
#ifndef TF_DATA_H
#define TF_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "lineage.h"
#include "rng.h"
#include "tokenizer.h"

/* A text as read: every character (every byte with the byte tokenizer) one
 * symbol, its index in `alphabet`, the distinct characters in the order they
 * first appear. Symbols take the fewest bytes that hold them all (1 for at
 * most 256 distinct characters), so a 603 MB English text is held in 603 MB. */
typedef struct Text {
    void *syms;         /* n symbols of sym_size bytes */
    int sym_size;       /* 1, 2 or 4 */
    size_t n;
    uint32_t *alphabet; /* n_alphabet code points (byte values with the byte tokenizer) */
    int n_alphabet;
    int bytes;          /* read for the byte tokenizer */
    size_t file_bytes;  /* the file's size */
    double seconds;     /* reading it took (wall clock) */
} Text;

/* The tokenized text, split: token ids are token_of[symbol]. */
typedef struct {
    Text text;       /* owned */
    int *token_of;   /* token id of each symbol of text.alphabet */
    size_t n;
    size_t n_train;  /* tokens [0, n_train) are train */
    size_t n_val;    /* then n_val tokens of val; the rest (often none) is test */
} Dataset;

typedef enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2 } Split;

/* The default split, in parts of the text: 90% train, 10% val, no test. */
#define DATA_SPLIT_DEFAULT {90, 10, 0}

/* Read a text file in one streaming pass: its symbols, alphabet, size and
 * (when rec is not NULL) its record: path, size and FNV-1a hash over the
 * bytes as read (docs/FORMAT.md 'text'). With `bytes` every byte is a
 * symbol and any bytes go; else the text must be UTF-8 (a leading byte
 * order mark is skipped with a note). Errors (one line, naming the file):
 * missing/unreadable, a directory, empty, larger than 1 GiB, invalid UTF-8
 * (with byte offset), binary (NUL bytes). Memory: the symbols, a 4.4 MB
 * table (touched only where the text's code points are) and buffers for
 * one piece; peak about the file's size for <= 256 distinct characters. */
int text_load(const char *path, int bytes, Text *t, TextRecord *rec, char *err);
void text_free(Text *t);
/* The code point (byte value) of character i. */
uint32_t text_char(const Text *t, size_t i);
/* "loaded PATH: 602.3 MB, 602312760 characters (65 distinct) in 1.23s" on stdout. */
void text_print_loaded(const char *path, const Text *t);

/* Read a text file into code points (text_load, expanded). */
int text_file_read(const char *path, uint32_t **cps, size_t *n, char *err);

/* Parse "TRAIN,VAL[,TEST]" (non-negative integers, train and val > 0, sum at
 * most 1000) into parts[3]; e.g. "90,5,5" is enwik8's 90M/5M/5M. */
int data_split_parse(const char *s, int parts[3], char *err);

/* Tokenize with vocab (which must cover the text: else an error names the
 * first character that it lacks) and split. Each split must hold at least
 * block_size + 1 tokens, else an error says how many. */
int dataset_build(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                  char *err);
/* The same with the text cut into train/val/test in proportion to parts[3]
 * (floor of n * part / sum at each boundary; a test part of 0 is no test). */
int dataset_build_split(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                        const int parts[3], char *err);
/* The same on a loaded text, which d takes over (its symbols are not copied;
 * on failure it is freed). */
int dataset_from_text(Dataset *d, Text *t, const Vocab *v, int block_size, const int parts[3], char *err);
void dataset_free(Dataset *d);
/* Where a split starts (a token position) and how many tokens it has. */
size_t dataset_split(const Dataset *d, Split split, size_t *len);
/* Token ids of positions [pos, pos + count) into out. */
void dataset_tokens(const Dataset *d, size_t pos, size_t count, int *out);

/* Fill tokens/targets (B*T each) with B random windows of the split. */
void dataset_batch(const Dataset *d, Split split, Rng *rng, int B, int T, int *tokens,
                   int *targets);

#endif
