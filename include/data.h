/* The training text: loaded, validated, tokenized, split 90/10, and served
 * as seeded random windows of T+1 tokens (docs/MODEL.md, training). */
#ifndef TF_DATA_H
#define TF_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "tokenizer.h"

typedef struct {
    int *ids;        /* whole text as token ids */
    size_t n;
    size_t n_train;  /* first 90% is train, the rest val */
} Dataset;

typedef enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1 } Split;

/* Read a text file into code points. Errors (one line, naming the file):
 * missing/unreadable, a directory, empty, invalid UTF-8 (with byte offset),
 * binary (NUL bytes). */
int text_file_read(const char *path, uint32_t **cps, size_t *n, char *err);

/* Tokenize with vocab (which must cover the text) and split. Each split
 * must hold at least block_size + 1 tokens, else an error says how many. */
int dataset_build(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                  char *err);
void dataset_free(Dataset *d);

/* Fill tokens/targets (B*T each) with B random windows of the split. */
void dataset_batch(const Dataset *d, Split split, Rng *rng, int B, int T, int *tokens,
                   int *targets);

#endif
