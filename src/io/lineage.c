/* A run's lineage: its text record and run id (include/lineage.h). */
#define _XOPEN_SOURCE 700
#include "lineage.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "data.h"
#include "rng.h"

uint64_t fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = fnv1a64_byte(h, p[i]);
    return h;
}

void text_record_set(TextRecord *r, const char *path, const unsigned char *bytes, size_t n) {
    text_record_init(r, path, n, fnv1a64(bytes, n, FNV1A64_INIT));
}

void text_record_init(TextRecord *r, const char *path, uint64_t bytes, uint64_t hash) {
    memset(r, 0, sizeof *r);
    r->known = 1;
    snprintf(r->path, sizeof r->path, "%s", path);
    char *abs = realpath(path, NULL);
    snprintf(r->abspath, sizeof r->abspath, "%s", abs ? abs : path);
    free(abs);
    r->bytes = bytes;
    r->hash = hash;
}

int text_record_same_content(const TextRecord *a, const TextRecord *b) {
    return a->bytes == b->bytes && a->hash == b->hash;
}

void text_record_describe(const TextRecord *r, char *out, size_t len) {
    snprintf(out, len, "'%s' (%llu bytes, fnv1a64 %016llx)", r->path, (unsigned long long)r->bytes,
             (unsigned long long)r->hash);
}

char *text_record_json(const TextRecord *r) {
    cJSON *j = cJSON_CreateObject();
    char hash[24], bytes[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)r->hash);
    snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)r->bytes);
    cJSON_AddStringToObject(j, "path", r->path);
    cJSON_AddStringToObject(j, "abspath", r->abspath);
    cJSON_AddStringToObject(j, "bytes", bytes); /* a string: JSON numbers lose integers past 2^53 */
    cJSON_AddStringToObject(j, "fnv1a64", hash);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* A string field of at most len - 1 bytes, or NULL. */
static const char *json_string(const cJSON *j, const char *key, size_t len) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
    return s && *s && strlen(s) < len ? s : NULL;
}

static int parse_u64_base(const char *s, int base, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int text_record_parse(const char *json, TextRecord *r, char *err) {
    memset(r, 0, sizeof *r);
    cJSON *j = cJSON_Parse(json);
    const char *path = json_string(j, "path", sizeof r->path), *abs = json_string(j, "abspath", sizeof r->abspath);
    const char *bytes = json_string(j, "bytes", 24), *hash = json_string(j, "fnv1a64", 24);
    int rc = 0;
    if (!cJSON_IsObject(j) || !path || !abs || parse_u64_base(bytes, 10, &r->bytes) ||
        parse_u64_base(hash, 16, &r->hash) || strlen(hash) != 16)
        rc = tf_err(err, "metadata 'text' is not {\"path\", \"abspath\", \"bytes\", \"fnv1a64\"} with a 16-digit hash");
    else {
        snprintf(r->path, sizeof r->path, "%s", path);
        snprintf(r->abspath, sizeof r->abspath, "%s", abs);
        r->known = 1;
    }
    cJSON_Delete(j);
    return rc;
}

uint64_t lineage_run_id(uint64_t digest) {
    uint64_t id = tf_mix64(digest);
    return id ? id : 1;
}

void shell_quote(const char *s, char *out, size_t len) {
    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./-+=:,@%") == strlen(s)) {
        snprintf(out, len, "%s", s);
        return;
    }
    size_t k = 0;
    if (len < 3) { /* not even '' fits */
        if (len) out[0] = '\0';
        return;
    }
    out[k++] = '\'';
    for (const char *p = s; *p && k + 6 < len; p++) {
        if (*p == '\'') { /* close, an escaped quote, reopen */
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *p;
        }
    }
    out[k++] = '\'';
    out[k] = '\0';
}

/* The recorded text's path that still exists: the absolute one (the
 * command may run elsewhere), else the path as given; NULL when neither. */
static const char *recorded_path(const TextRecord *rec) {
    if (access(rec->abspath, F_OK) == 0) return rec->abspath;
    if (access(rec->path, F_OK) == 0) return rec->path;
    return NULL;
}

int lineage_read_text(const char *given, int allow_other, const char *ckpt, const TextRecord *rec, int bytes,
                      const char *how_to_pass, Text *text, TextRecord *used, const char **path, char *err) {
    static char chosen[TEXT_PATH_LEN];
    char then[TEXT_PATH_LEN + 64];
    text_record_describe(rec, then, sizeof then);
    if (given) {
        snprintf(chosen, sizeof chosen, "%s", given);
    } else if (rec->known) {
        const char *found = recorded_path(rec);
        if (!found)
            return tf_err(err, "%s was trained on %s, which is gone; %s", ckpt, then, how_to_pass);
        snprintf(chosen, sizeof chosen, "%s", found);
    } else {
        snprintf(chosen, sizeof chosen, "data/input.txt");
        printf("note: %s records no training text (an older checkpoint); using data/input.txt\n", ckpt);
    }
    *path = chosen;
    if (text_load(chosen, bytes, text, used, err)) return -1;
    if (!rec->known || text_record_same_content(used, rec)) return 0;
    char now[TEXT_PATH_LEN + 64];
    text_record_describe(used, now, sizeof now);
    if (!allow_other) {
        text_free(text);
        if (given)
            return tf_err(err, "'%s' is not the text %s was trained on, %s; give that text, or "
                          "--allow-other-text to use this one", given, ckpt, then);
        return tf_err(err, "the text %s was trained on has changed: then %s, now %llu bytes, fnv1a64 %016llx; "
                      "%s, with --allow-other-text to use it as it is", ckpt, then,
                      (unsigned long long)used->bytes, (unsigned long long)used->hash, how_to_pass);
    }
    printf("note: --allow-other-text: using %s; %s was trained on %s\n", now, ckpt, then);
    return 1;
}
