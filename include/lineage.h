/* A run's lineage: the text it was trained on (path, size, content hash)
 * and the id of the run, recorded in every checkpoint (docs/FORMAT.md
 * 'text', 'run_id'). Commands that read text without a FILE find it there
 * and refuse a text that is gone or changed; the best guard compares losses
 * only within one lineage; a --log continues only its own run. */
#ifndef TF_LINEAGE_H
#define TF_LINEAGE_H

#include <stddef.h>
#include <stdint.h>

#define TEXT_PATH_LEN 4096
#define FNV1A64_INIT 0xcbf29ce484222325ULL

typedef struct {
    int known;                   /* a text is recorded (older checkpoints have none) */
    char path[TEXT_PATH_LEN];    /* as given on the command line */
    char abspath[TEXT_PATH_LEN]; /* absolute, symbolic links resolved */
    uint64_t bytes;              /* file size */
    uint64_t hash;               /* FNV-1a 64 over the file's bytes */
} TextRecord;

/* FNV-1a, 64 bit, continuing from h (FNV1A64_INIT to start). */
uint64_t fnv1a64(const void *data, size_t n, uint64_t h);
/* One byte of it, for loops that hash while they do other work per byte
 * (the text reader): the multiply chain then overlaps that work. */
static inline uint64_t fnv1a64_byte(uint64_t h, unsigned char b) { return (h ^ b) * 0x100000001b3ULL; }

/* The record of the text at `path` whose contents are bytes[0, n). */
void text_record_set(TextRecord *r, const char *path, const unsigned char *bytes, size_t n);
/* The same from its size and hash (text_load hashes while it reads). */
void text_record_init(TextRecord *r, const char *path, uint64_t bytes, uint64_t hash);
/* Same size and content hash (paths may differ: a copy is the same text). */
int text_record_same_content(const TextRecord *a, const TextRecord *b);
/* "'PATH' (N bytes, fnv1a64 H)". */
void text_record_describe(const TextRecord *r, char *out, size_t len);
/* The checkpoint's 'text' metadata: JSON {path, abspath, bytes, fnv1a64}
 * (the caller frees); and back, with a one-line error. */
char *text_record_json(const TextRecord *r);
int text_record_parse(const char *json, TextRecord *r, char *err);

/* A run's id (never 0) from the digest of what defines a fresh run at its
 * start (checkpoint_run_digest): kept by --resume and grow. Identical fresh
 * runs get the same id, so that their checkpoints stay byte-identical. */
uint64_t lineage_run_id(uint64_t digest);

/* s quoted for a shell when it needs it (for the commands that hints print). */
void shell_quote(const char *s, char *out, size_t len);

/* The text a command over checkpoint `ckpt` (whose record is `rec`) uses:
 * `given` (the FILE argument, or NULL), else the recorded text, else (an
 * older checkpoint) data/input.txt with a note. A text that is gone, or
 * whose content differs from the record, is refused with one line that ends
 * in `how_to_pass` unless allow_other, which prints what it uses instead.
 * Fills *text as text_load(bytes) does, *used with the record of the text read and
 * *path with its path (given, recorded or the default; static storage).
 * Returns 1 when the text is not the recorded one (allowed), 0 when it is or
 * nothing was recorded, -1 with err. */
struct Text;
int lineage_read_text(const char *given, int allow_other, const char *ckpt, const TextRecord *rec, int bytes,
                      const char *how_to_pass, struct Text *text, TextRecord *used, const char **path, char *err);

#endif
