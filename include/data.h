/* The training text: loaded, validated, tokenized, split 90/10, and served
 * as seeded random windows of T+1 tokens (docs/MODEL.md, training). */
#ifndef TF_DATA_H
#define TF_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "lineage.h"
#include "rng.h"
#include "tokenizer.h"

typedef struct {
    int *ids;        /* whole text as token ids */
    size_t n;
    size_t n_train;  /* ids[0, n_train) is train */
    size_t n_val;    /* then n_val tokens of val; the rest (often none) is test */
} Dataset;

typedef enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2 } Split;

/* The default split, in parts of the text: 90% train, 10% val, no test. */
#define DATA_SPLIT_DEFAULT {90, 10, 0}

/* Read a text file into code points. Errors (one line, naming the file):
 * missing/unreadable, a directory, empty, invalid UTF-8 (with byte offset),
 * binary (NUL bytes). */
int text_file_read(const char *path, uint32_t **cps, size_t *n, char *err);

/* The same, as the byte tokenizer sees it when `bytes`: every byte one
 * token (value 0..255), no UTF-8 check. */
int text_file_read_as(const char *path, int bytes, uint32_t **cps, size_t *n, char *err);

/* The same, and *rec (when not NULL) records the file: its path, size and
 * content hash over the bytes as read (docs/FORMAT.md 'text'). */
int text_file_load(const char *path, int bytes, uint32_t **cps, size_t *n, TextRecord *rec, char *err);

/* Parse "TRAIN,VAL[,TEST]" (non-negative integers, train and val > 0, sum at
 * most 1000) into parts[3]; e.g. "90,5,5" is enwik8's 90M/5M/5M. */
int data_split_parse(const char *s, int parts[3], char *err);

/* Tokenize with vocab (which must cover the text) and split. Each split
 * must hold at least block_size + 1 tokens, else an error says how many. */
int dataset_build(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                  char *err);
/* The same with the text cut into train/val/test in proportion to parts[3]
 * (floor of n * part / sum at each boundary; a test part of 0 is no test). */
int dataset_build_split(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                        const int parts[3], char *err);
/* The same on a text the caller gives up: the code points become the ids in
 * place, so a large text is held once, not twice (a 603 MB text: 2.4 GB less).
 * cps belongs to d afterwards, or is freed on failure. */
int dataset_build_split_owned(Dataset *d, uint32_t *cps, size_t n, const Vocab *v, int block_size,
                              const int parts[3], char *err);
void dataset_free(Dataset *d);
/* Where a split starts in d->ids and how many tokens it has. */
const int *dataset_split(const Dataset *d, Split split, size_t *len);

/* Fill tokens/targets (B*T each) with B random windows of the split. */
void dataset_batch(const Dataset *d, Split split, Rng *rng, int B, int T, int *tokens,
                   int *targets);

#endif
