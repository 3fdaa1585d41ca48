/* The training text: read and validated, tokenized, split (90/10 by
 * default, or train/val/test), and served as seeded random windows
 * (docs/MODEL.md, training). */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* madvise(MADV_HUGEPAGE) */
#include "data.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common.h"

/* ------------------------------------------------------------- reading */

/* Texts past 1 GiB are refused: an endless stream (/dev/zero, a runaway
 * pipe) must end in an error, not in the out-of-memory killer. */
#define TEXT_MAX_BYTES ((size_t)1 << 30)
/* Bytes read at a time: the piece and its code points stay in cache while
 * they are hashed, decoded and stored as symbols. */
#define READ_CHUNK ((size_t)1 << 16)
/* Room for the carry: the 1..3 bytes of a sequence that the next piece completes. */
#define READ_CARRY 4
#define CODEPOINT_LIMIT 0x110000u
#define BYTE_LIMIT 256u
/* The symbol store's first size when the file's size is unknown (a pipe). */
#define STREAM_FIRST_CAP ((size_t)1 << 20)

/* Open and check that `path` names something we can read text from. */
static FILE *open_text_file(const char *path, size_t *size_hint, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tf_err(err, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        tf_err(err, "cannot stat '%s': %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    /* glibc's fopen succeeds on a directory; only the first read fails. */
    if (S_ISDIR(st.st_mode)) {
        tf_err(err, "'%s' is a directory", path);
        fclose(f);
        return NULL;
    }
    /* Only a first guess: pipes and /proc files report 0, and a file may grow meanwhile. */
    *size_hint = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 0;
    if (*size_hint > TEXT_MAX_BYTES) {
        tf_err(err, "'%s' is larger than 1 GiB; tokenformer trains on texts up to 1 GiB", path);
        fclose(f);
        return NULL;
    }
    return f;
}

/* One streaming pass: read, hash, decode, give each character its symbol. */
typedef struct {
    const char *path;
    int bytes;           /* byte tokenizer */
    Text *t;
    size_t cap;          /* symbols t->syms has room for */
    int alphabet_cap;
    int32_t *symbol_of;  /* code point -> symbol + 1, 0 when not seen yet */
    uint32_t *cps;       /* one piece's code points, then its symbols */
    uint64_t hash;
} TextReader;

static int symbol_size_for(int n_symbols) { return n_symbols <= 256 ? 1 : n_symbols <= 65536 ? 2 : 4; }

/* The next symbol, for a character seen for the first time. */
static uint32_t new_symbol(TextReader *r, uint32_t cp) {
    Text *t = r->t;
    if (t->n_alphabet == r->alphabet_cap) {
        r->alphabet_cap = r->alphabet_cap ? r->alphabet_cap * 2 : 256;
        t->alphabet = tf_realloc(t->alphabet, (size_t)r->alphabet_cap * sizeof *t->alphabet, "alphabet");
    }
    t->alphabet[t->n_alphabet] = cp;
    r->symbol_of[cp] = ++t->n_alphabet;
    return (uint32_t)(t->n_alphabet - 1);
}

static uint32_t symbol_at(const void *syms, int size, size_t i) {
    if (size == 1) return ((const uint8_t *)syms)[i];
    if (size == 2) return ((const uint16_t *)syms)[i];
    return ((const uint32_t *)syms)[i];
}

static void store_symbols(void *dst, int size, const uint32_t *src, size_t n) {
    if (size == 1)
        for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)src[i];
    else if (size == 2)
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = (uint16_t)src[i];
    else
        memcpy(dst, src, n * sizeof *src);
}

/* A large text's symbols fault in 2 MiB pages, not 4 KiB ones, where the
 * kernel allows it: touching 512 MiB of fresh memory took the development VM
 * 3.2 s in 4 KiB pages, 2.1 s in 2 MiB ones. A hint: failure changes nothing. */
static void advise_huge_pages(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* Room for `more` symbols of the width that the alphabet now needs. A wider
 * store is a new one (the old one is copied over, then freed); a fuller one
 * grows. Untouched capacity costs address space, not memory. */
static void reserve_symbols(TextReader *r, size_t more) {
    Text *t = r->t;
    int size = symbol_size_for(t->n_alphabet);
    size_t cap = r->cap;
    while (cap < t->n + more) cap = cap ? cap * 2 : STREAM_FIRST_CAP;
    if (size != t->sym_size) {
        void *wider = tf_malloc(cap * (size_t)size, "text symbols");
        uint32_t buf[1024];
        for (size_t i = 0; i < t->n; i += 1024) {
            size_t k = t->n - i < 1024 ? t->n - i : 1024;
            for (size_t j = 0; j < k; j++) buf[j] = symbol_at(t->syms, t->sym_size, i + j);
            store_symbols((char *)wider + i * (size_t)size, size, buf, k);
        }
        free(t->syms);
        t->syms = wider;
        t->sym_size = size;
    } else if (cap != r->cap) {
        t->syms = tf_realloc(t->syms, cap * (size_t)size, "text symbols");
    } else {
        return;
    }
    advise_huge_pages(t->syms, cap * (size_t)size);
    r->cap = cap;
}

/* The code points of a piece become symbols, appended to the text. */
static void append_piece(TextReader *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t s = r->symbol_of[r->cps[i]];
        r->cps[i] = s ? (uint32_t)(s - 1) : new_symbol(r, r->cps[i]);
    }
    reserve_symbols(r, n);
    Text *t = r->t;
    store_symbols((char *)t->syms + t->n * (size_t)t->sym_size, t->sym_size, r->cps, n);
    t->n += n;
}

/* buf[0, len) holds the stream from offset `at`; decode what is complete
 * (all of it when `final`). Returns the bytes used, or -1 with err. */
static long decode_piece(TextReader *r, const unsigned char *buf, size_t len, size_t at, int final, char *err) {
    size_t n = 0, used = len;
    if (r->bytes) {
        uint64_t h = r->hash;
        for (size_t i = 0; i < len; i++) {
            h = fnv1a64_byte(h, buf[i]);
            r->cps[i] = buf[i];
        }
        r->hash = h;
        n = len;
    } else {
        char why[TF_ERRLEN];
        if (utf8_decode_stream(buf, len, at, final, r->cps, &n, &used, &r->hash, why))
            return tf_err(err, "'%s': %s; a character model needs UTF-8 text: convert it (e.g. iconv -t UTF-8) or "
                               "train a byte model with --tokenizer bytes", r->path, why);
    }
    append_piece(r, n);
    return (long)used;
}

/* A byte order mark is an encoding marker, not text: it must not become a
 * vocabulary character. Returns the bytes to skip. */
static size_t skip_byte_order_mark(const TextReader *r, const unsigned char *buf, size_t len) {
    if (r->bytes || len < 3 || buf[0] != 0xEF || buf[1] != 0xBB || buf[2] != 0xBF) return 0;
    fprintf(stderr, "note: '%s' starts with a UTF-8 byte order mark; skipped\n", r->path);
    return 3;
}

static int read_error(const char *path, char *err) {
    int saved = errno;
    return tf_err(err, "error reading '%s': %s", path, saved ? strerror(saved) : "read failed");
}

/* Read the stream to its end piece by piece: buf holds the carry (bytes
 * that the last piece left undecoded) and then what is read. */
static int read_pieces(TextReader *r, FILE *f, char *err) {
    unsigned char *buf = tf_malloc(READ_CHUNK + READ_CARRY, "read buffer");
    size_t carry = 0, total = 0;
    int rc = 0;
    for (;;) {
        size_t got = fread(buf + carry, 1, READ_CHUNK, f);
        if (got == 0 && ferror(f)) {
            rc = read_error(r->path, err);
            break;
        }
        if (total + got > TEXT_MAX_BYTES) {
            rc = tf_err(err, "'%s' is larger than 1 GiB; tokenformer trains on texts up to 1 GiB", r->path);
            break;
        }
        size_t skip = total == 0 ? skip_byte_order_mark(r, buf, got) : 0;
        r->hash = fnv1a64(buf, skip, r->hash); /* the rest is hashed as it is decoded */
        int final = got < READ_CHUNK; /* fread stops short only at the end or on an error */
        if (final && ferror(f)) {
            rc = read_error(r->path, err);
            break;
        }
        size_t len = carry + got - skip;
        long used = decode_piece(r, buf + skip, len, total - carry + skip, final, err);
        if (used < 0) {
            rc = -1;
            break;
        }
        total += got;
        carry = len - (size_t)used;
        memmove(buf, buf + skip + used, carry);
        if (final) break;
    }
    free(buf);
    r->t->file_bytes = total;
    return rc;
}

int text_load(const char *path, int bytes, Text *t, TextRecord *rec, char *err) {
    double t0 = tf_now_seconds();
    memset(t, 0, sizeof *t);
    size_t size_hint;
    FILE *f = open_text_file(path, &size_hint, err);
    if (!f) return -1;
    TextReader r = {.path = path, .bytes = bytes, .t = t, .hash = FNV1A64_INIT};
    r.symbol_of = tf_calloc(bytes ? BYTE_LIMIT : CODEPOINT_LIMIT, sizeof *r.symbol_of, "symbol table");
    r.cps = tf_malloc((READ_CHUNK + READ_CARRY) * sizeof *r.cps, "decoded piece");
    t->sym_size = 1;
    t->bytes = bytes;
    reserve_symbols(&r, size_hint); /* a regular file: its size, which no text of it exceeds */
    int rc = read_pieces(&r, f, err);
    fclose(f);
    free(r.symbol_of);
    free(r.cps);
    if (rc == 0 && t->n == 0) rc = tf_err(err, "'%s' is empty", path); /* or a byte order mark only */
    if (rc) {
        text_free(t);
        return -1;
    }
    t->syms = tf_realloc(t->syms, t->n * (size_t)t->sym_size, "text symbols"); /* give back what it did not use */
    if (rec) text_record_init(rec, path, t->file_bytes, r.hash);
    t->seconds = tf_now_seconds() - t0;
    return 0;
}

void text_free(Text *t) {
    free(t->syms);
    free(t->alphabet);
    memset(t, 0, sizeof *t);
}

uint32_t text_char(const Text *t, size_t i) { return t->alphabet[symbol_at(t->syms, t->sym_size, i)]; }

void text_print_loaded(const char *path, const Text *t) {
    printf("loaded %s: %.1f MB, %zu %s (%d distinct) in %.2fs\n", path, (double)t->file_bytes / 1e6, t->n,
           t->bytes ? "bytes" : "characters", t->n_alphabet, t->seconds);
}

int text_file_read(const char *path, uint32_t **cps, size_t *n, char *err) {
    Text t;
    *cps = NULL;
    *n = 0;
    if (text_load(path, 0, &t, NULL, err)) return -1;
    uint32_t *out = tf_malloc(t.n * sizeof *out, "text");
    for (size_t i = 0; i < t.n; i++) out[i] = text_char(&t, i);
    *cps = out;
    *n = t.n;
    text_free(&t);
    return 0;
}

int data_split_parse(const char *s, int parts[3], char *err) {
    long v[3] = {0, 0, 0};
    int k = 0;
    const char *p = s ? s : "";
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 1000 || *p == '-' || *p == '+' || *p == ' ') break;
        v[k++] = x;
        p = end;
        if (*p == '\0' || k == 3) break;
        if (*p != ',') break;
        p++;
    }
    if (k < 2 || *p != '\0' || v[0] == 0 || v[1] == 0 || v[0] + v[1] + v[2] > 1000)
        return tf_err(err, "--split: expected TRAIN,VAL[,TEST] as non-negative integers with TRAIN and VAL > 0 "
                           "(e.g. 90,5,5), got '%s'", s ? s : "");
    for (int i = 0; i < 3; i++) parts[i] = (int)v[i];
    return 0;
}

/* ------------------------------------------------------------- dataset */

/* floor(n * num / den) without overflowing n * num for huge n. */
static size_t scaled(size_t n, size_t num, size_t den) { return n / den * num + n % den * num / den; }

/* A split must fit one full window: block_size inputs plus the next target.
 * smallest is the shortest split, which bounds the block_size that fits. */
static int check_split_fits_block(const char *name, size_t len, size_t smallest, int block_size, char *err) {
    size_t need = (size_t)block_size + 1;
    if (len < need && smallest >= 2)
        return tf_err(err, "text too short: the %s split has %zu characters but block_size %d needs at least %zu; "
                           "give a longer text, or --block-size %zu or less for a new run",
                      name, len, block_size, need, smallest - 1);
    if (len < need)
        return tf_err(err, "text too short: the %s split has %zu characters but block_size %d needs at least %zu; "
                           "give a longer text", name, len, block_size, need);
    return 0;
}

int dataset_build(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size, char *err) {
    static const int parts[3] = DATA_SPLIT_DEFAULT;
    return dataset_build_split(d, cps, n, v, block_size, parts, err);
}

/* The split boundaries, checked before tokenizing: the error is cheaper and
 * more useful. */
static int split_bounds(Dataset *d, size_t n, int block_size, const int parts[3], char *err) {
    memset(d, 0, sizeof *d);
    if (block_size < 1) return tf_err(err, "block_size must be at least 1 (got %d)", block_size);
    size_t sum = (size_t)parts[0] + (size_t)parts[1] + (size_t)parts[2];
    size_t n_train = scaled(n, (size_t)parts[0], sum);
    size_t val_end = parts[2] ? scaled(n, (size_t)parts[0] + (size_t)parts[1], sum) : n;
    size_t smallest = n_train < val_end - n_train ? n_train : val_end - n_train;
    if (parts[2] && n - val_end < smallest) smallest = n - val_end;
    if (check_split_fits_block("train", n_train, smallest, block_size, err)) return -1;
    if (check_split_fits_block("val", val_end - n_train, smallest, block_size, err)) return -1;
    if (parts[2] && check_split_fits_block("test", n - val_end, smallest, block_size, err)) return -1;
    d->n = n;
    d->n_train = n_train;
    d->n_val = val_end - n_train;
    return 0;
}

/* A Text of the code points cps[0, n): what text_load gives for a file of them. */
static int text_from_codepoints(Text *t, const uint32_t *cps, size_t n, char *err) {
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < n; i++)
        if (cps[i] >= CODEPOINT_LIMIT)
            return tf_err(err, "character %zu of the text is 0x%X, past the last code point U+10FFFF", i,
                          (unsigned)cps[i]);
    TextReader r = {.t = t};
    r.symbol_of = tf_calloc(CODEPOINT_LIMIT, sizeof *r.symbol_of, "symbol table");
    r.cps = tf_malloc(READ_CHUNK * sizeof *r.cps, "symbols");
    t->sym_size = 1;
    reserve_symbols(&r, n);
    for (size_t i = 0; i < n; i += READ_CHUNK) {
        size_t k = n - i < READ_CHUNK ? n - i : READ_CHUNK;
        memcpy(r.cps, cps + i, k * sizeof *r.cps);
        append_piece(&r, k);
    }
    free(r.symbol_of);
    free(r.cps);
    return 0;
}

int dataset_build_split(Dataset *d, const uint32_t *cps, size_t n, const Vocab *v, int block_size,
                        const int parts[3], char *err) {
    Text t;
    if (text_from_codepoints(&t, cps, n, err)) {
        memset(d, 0, sizeof *d);
        return -1;
    }
    return dataset_from_text(d, &t, v, block_size, parts, err);
}

int dataset_from_text(Dataset *d, Text *t, const Vocab *v, int block_size, const int parts[3], char *err) {
    if (split_bounds(d, t->n, block_size, parts, err)) {
        text_free(t);
        return -1;
    }
    /* The alphabet is in order of first appearance: the first character
     * that the vocabulary lacks is the first such in the text too. */
    int *token_of = tf_malloc((size_t)t->n_alphabet * sizeof *token_of, "token table");
    if (vocab_encode(v, t->alphabet, (size_t)t->n_alphabet, token_of, err)) {
        free(token_of);
        text_free(t);
        memset(d, 0, sizeof *d);
        return -1;
    }
    d->text = *t;
    d->token_of = token_of;
    memset(t, 0, sizeof *t);
    return 0;
}

size_t dataset_split(const Dataset *d, Split split, size_t *len) {
    if (split == SPLIT_TRAIN) {
        *len = d->n_train;
        return 0;
    }
    if (split == SPLIT_VAL) {
        *len = d->n_val;
        return d->n_train;
    }
    *len = d->n - d->n_train - d->n_val;
    return d->n_train + d->n_val;
}

void dataset_tokens(const Dataset *d, size_t pos, size_t count, int *out) {
    const Text *t = &d->text;
    if (t->sym_size == 1) {
        const uint8_t *s = (const uint8_t *)t->syms + pos;
        for (size_t i = 0; i < count; i++) out[i] = d->token_of[s[i]];
    } else if (t->sym_size == 2) {
        const uint16_t *s = (const uint16_t *)t->syms + pos;
        for (size_t i = 0; i < count; i++) out[i] = d->token_of[s[i]];
    } else {
        const uint32_t *s = (const uint32_t *)t->syms + pos;
        for (size_t i = 0; i < count; i++) out[i] = d->token_of[s[i]];
    }
}

void dataset_free(Dataset *d) {
    text_free(&d->text);
    free(d->token_of);
    memset(d, 0, sizeof *d);
}

/* --------------------------------------------------------------- batches */

/* One draw per row, in row order, so a run is reproducible from its seed and
 * the same on every backend. Offsets cover [0, len - T - 1]: every window of
 * T+1 tokens that lies wholly inside the split. */
void dataset_batch(const Dataset *d, Split split, Rng *rng, int B, int T, int *tokens, int *targets) {
    size_t len;
    size_t start = dataset_split(d, split, &len);
    assert(T >= 1 && (size_t)T + 1 <= len); /* dataset_build guaranteed it for T <= block_size */
    size_t n_offsets = len - (size_t)T;
    for (int b = 0; b < B; b++) {
        size_t window = start + (size_t)rng_below(rng, n_offsets);
        dataset_tokens(d, window, (size_t)T, tokens + (size_t)b * T);
        dataset_tokens(d, window + 1, (size_t)T, targets + (size_t)b * T);
    }
}
