/* Saving and loading checkpoints (format in docs/FORMAT.md). */
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "common.h"
#include "crc32.h"
#include "schedule.h"
#include "data.h"
#include "safetensors.h"


/* A checkpoint without a recorded split was trained on the default one. */
static void set_default_split(int split[3]) {
    static const int parts[3] = DATA_SPLIT_DEFAULT;
    memcpy(split, parts, sizeof parts);
}

void train_state_init(TrainState *ts) {
    memset(ts, 0, sizeof *ts);
    ts->best_val = INFINITY;
    set_default_split(ts->split);
}

/* ---------------- growth history ---------------- */

int train_state_add_growth(TrainState *ts, int step, const GrowthEvent *e, char *err) {
    cJSON *arr = ts->growth[0] ? cJSON_Parse(ts->growth) : cJSON_CreateArray();
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return tf_err(err, "growth history is not a JSON array");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iter", ts->iter);
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddStringToObject(o, "kind", e->kind);
    cJSON_AddNumberToObject(o, "amount", e->amount);
    cJSON_AddStringToObject(o, "init", e->init);
    cJSON_AddStringToObject(o, "layers", e->layers);
    cJSON_AddNumberToObject(o, "key_scale", e->key_scale);
    cJSON_AddStringToObject(o, "tau", e->tau);
    cJSON_AddItemToArray(arr, o);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    int rc = 0;
    if (strlen(s) >= sizeof ts->growth)
        rc = tf_err(err, "growth history: more than %d bytes of events", GROWTH_HISTORY_LEN - 1);
    else
        snprintf(ts->growth, sizeof ts->growth, "%s", s);
    free(s);
    return rc;
}

void growth_history_print(const TrainState *ts) {
    cJSON *arr = cJSON_Parse(ts->growth);
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind"));
        const char *init = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "init"));
        const char *layers = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "layers"));
        const char *tau = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "tau"));
        int is_depth = kind && !strcmp(kind, "layers");
        printf(is_depth ? "  iteration %d (step %d): %s %+d, init %s, at %s (key scale %g, tau %s)\n"
                        : "  iteration %d (step %d): %s %+d, init %s, layers %s, key scale %g, tau %s\n",
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "iter")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "step")), kind ? kind : "?",
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "amount")), init ? init : "?",
               layers ? layers : "?", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "key_scale")),
               tau ? tau : "?");
    }
    cJSON_Delete(arr);
}

/* Optional: a checkpoint without it was never grown (or grown before the history existed). */
static int growth_history_load(const StFile *f, TrainState *ts, char *err) {
    const char *s = st_meta(f, "growth_history");
    if (!s || !*s) return 0;
    cJSON *arr = cJSON_Parse(s);
    int ok = cJSON_IsArray(arr);
    cJSON_Delete(arr);
    if (!ok) return tf_err(err, "metadata 'growth_history' is not a JSON array");
    if (strlen(s) >= sizeof ts->growth) return tf_err(err, "metadata 'growth_history' is too long");
    snprintf(ts->growth, sizeof ts->growth, "%s", s);
    return 0;
}

/* ---------------- lineage metadata: 'text' and 'run_id' (optional) ---------------- */

static void lineage_meta_format(const TrainState *ts, char **text, char run_id[24]) {
    *text = ts->text.known ? text_record_json(&ts->text) : NULL;
    if (ts->run_id) snprintf(run_id, 24, "%016llx", (unsigned long long)ts->run_id);
    else run_id[0] = '\0';
}

static int parse_run_id(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16) return -1;
    *out = strtoull(s, &end, 16);
    return errno || *end ? -1 : 0;
}

static int lineage_meta_load(const StFile *f, TrainState *ts, char *err) {
    const char *text = st_meta(f, "text"), *run = st_meta(f, "run_id");
    if (text && *text && text_record_parse(text, &ts->text, err)) return -1;
    if (run && *run && parse_run_id(run, &ts->run_id))
        return tf_err(err, "metadata 'run_id' is not 16 hex digits");
    return 0;
}

/* ---------------- data accounting metadata (tokenizer, split, tokens, FLOPs) ----------------
 * Optional keys: a checkpoint without them is a character-tokenizer model on
 * the 90/10 split with no accounting yet. */

#define DATA_META_KEYS 4

static void data_meta_format(const Vocab *v, const TrainState *ts, char vals[DATA_META_KEYS][48]) {
    snprintf(vals[0], 48, "%s", vocab_kind_name(v));
    snprintf(vals[1], 48, "%d,%d,%d", ts->split[0], ts->split[1], ts->split[2]);
    snprintf(vals[2], 48, "%.17g", ts->train_tokens);
    snprintf(vals[3], 48, "%.17g", ts->train_flops);
}

static const char *DATA_META_NAMES[DATA_META_KEYS] = {"tokenizer", "data_split", "train_tokens", "train_flops"};

static int parse_nonneg_double(const char *s, double *out) {
    char *end = NULL;
    double x = strtod(s, &end);
    if (end == s || *end || !isfinite(x) || x < 0) return -1;
    *out = x;
    return 0;
}

/* The tokenizer kind decides the vocabulary, so it is read before it. */
static int data_meta_is_bytes(const StFile *f, int *bytes, char *err) {
    const char *kind = st_meta(f, "tokenizer");
    *bytes = kind && !strcmp(kind, "bytes");
    if (kind && !*bytes && strcmp(kind, "chars"))
        return tf_err(err, "metadata 'tokenizer' is '%.32s', expected 'chars' or 'bytes'", kind);
    return 0;
}

static int data_meta_load(const StFile *f, TrainState *ts, char *err) {
    const char *split = st_meta(f, "data_split"), *tok = st_meta(f, "train_tokens"),
               *flops = st_meta(f, "train_flops");
    char inner[TF_ERRLEN];
    if (split && data_split_parse(split, ts->split, inner))
        return tf_err(err, "metadata 'data_split' is invalid: '%.32s'", split);
    if (tok && parse_nonneg_double(tok, &ts->train_tokens))
        return tf_err(err, "metadata 'train_tokens' is not a non-negative number");
    if (flops && parse_nonneg_double(flops, &ts->train_flops))
        return tf_err(err, "metadata 'train_flops' is not a non-negative number");
    return 0;
}
/* ---------------- end of data accounting metadata ---------------- */

static void tau_name(int l, int w, char *out, size_t len) {
    snprintf(out, len, "h.%d.%s.tau", l, model_patt_name(w));
}

/* ---------------- metadata JSON ---------------- */

static void adapters_config_to_json(const ModelConfig *c, cJSON *j);

static char *model_config_json(const ModelConfig *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "arch", arch_name(c->arch));
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "d_model", c->d_model);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "n_attn", c->n_attn);
    cJSON_AddNumberToObject(j, "n_ffn", c->n_ffn);
    cJSON_AddNumberToObject(j, "block_size", c->block_size);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "rope_frac", c->rope_frac);
    cJSON_AddNumberToObject(j, "dropout", c->dropout);
    cJSON_AddStringToObject(j, "pnorm", pnorm_name(c->pnorm));
    adapters_config_to_json(c, j);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static char *train_config_json(const TrainState *ts) {
    const TrainConfig *t = &ts->train;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "batch_size", t->batch_size);
    cJSON_AddNumberToObject(j, "grad_accum", t->grad_accum);
    cJSON_AddNumberToObject(j, "max_iters", t->max_iters);
    cJSON_AddNumberToObject(j, "lr", t->lr);
    cJSON_AddNumberToObject(j, "min_lr", t->min_lr);
    cJSON_AddNumberToObject(j, "warmup_iters", t->warmup_iters);
    cJSON_AddNumberToObject(j, "weight_decay", t->weight_decay);
    cJSON_AddNumberToObject(j, "beta1", t->beta1);
    cJSON_AddNumberToObject(j, "beta2", t->beta2);
    cJSON_AddNumberToObject(j, "adam_eps", t->adam_eps);
    cJSON_AddNumberToObject(j, "grad_clip", t->grad_clip);
    cJSON_AddNumberToObject(j, "eval_interval", t->eval_interval);
    cJSON_AddNumberToObject(j, "eval_iters", t->eval_iters);
    cJSON_AddNumberToObject(j, "log_interval", t->log_interval);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", t->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "stage_start", ts->stage_start);
    cJSON_AddNumberToObject(j, "new_row_lr_mult", t->new_row_lr_mult);
    if (ts->grow_plan[0]) cJSON_AddStringToObject(j, "grow_plan", ts->grow_plan);
    if (t->lr_schedule != LR_COSINE) { /* absent: cosine, as every checkpoint before wsd */
        cJSON_AddStringToObject(j, "lr_schedule", lr_schedule_name(t->lr_schedule));
        cJSON_AddNumberToObject(j, "decay_frac", t->decay_frac);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Segments are written only for parameters that have grown or are frozen. */
static char *segments_json(const Model *m) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        if (p->n_seg == 1 && p->seg[0].birth == 0 && !p->seg[0].frozen) continue;
        cJSON *arr = cJSON_AddArrayToObject(j, p->t.name);
        for (int k = 0; k < p->n_seg; k++) {
            int v[3] = {p->seg[k].row_start, p->seg[k].birth, p->seg[k].frozen};
            cJSON_AddItemToArray(arr, cJSON_CreateIntArray(v, 3));
        }
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int json_int(const cJSON *obj, const char *key, long lo, long hi, int *out, char *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < lo ||
        it->valuedouble > hi)
        return tf_err(err, "config field '%s' is missing or not an integer in [%ld, %ld]", key, lo, hi);
    *out = (int)it->valuedouble;
    return 0;
}

static int json_float(const cJSON *obj, const char *key, float *out, char *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return tf_err(err, "config field '%s' is missing or not a number", key);
    *out = (float)it->valuedouble;
    return 0;
}

/* ---- the adaptation fields: written only when present, optional to read ---- */

static void adapters_config_to_json(const ModelConfig *c, cJSON *j) {
    char sites[64];
    if (c->adapter_kv > 0) {
        adapter_sites_format(c->adapter_sites, sites, sizeof sites);
        cJSON_AddNumberToObject(j, "adapter_kv", c->adapter_kv);
        cJSON_AddStringToObject(j, "adapter_sites", sites);
        cJSON_AddStringToObject(j, "adapter_pnorm", pnorm_name(c->adapter_pnorm));
    }
    if (c->lora_rank > 0) {
        lora_sites_format(c->lora_sites, sites, sizeof sites);
        cJSON_AddNumberToObject(j, "lora_rank", c->lora_rank);
        cJSON_AddStringToObject(j, "lora_sites", sites);
        cJSON_AddNumberToObject(j, "lora_alpha", c->lora_alpha);
    }
}

static int adapters_config_from_json(const cJSON *j, ModelConfig *c, char *err) {
    char inner[TF_ERRLEN];
    if (cJSON_GetObjectItemCaseSensitive(j, "adapter_kv")) {
        const char *sites = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "adapter_sites"));
        const char *pn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "adapter_pnorm"));
        if (json_int(j, "adapter_kv", 1, PATT_MAX_ROWS, &c->adapter_kv, err)) return -1;
        if (!sites || adapter_sites_parse(sites, &c->adapter_sites, inner))
            return tf_err(err, "config 'adapter_sites' is missing or invalid");
        if (!pn || (c->adapter_pnorm = pnorm_parse(pn)) < 0)
            return tf_err(err, "config 'adapter_pnorm' is missing or unknown");
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "lora_rank")) {
        const char *sites = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "lora_sites"));
        if (json_int(j, "lora_rank", 1, 65536, &c->lora_rank, err) ||
            json_float(j, "lora_alpha", &c->lora_alpha, err))
            return -1;
        if (!sites || lora_sites_parse(sites, &c->lora_sites, inner))
            return tf_err(err, "config 'lora_sites' is missing or invalid");
    }
    return adapters_config_validate(c, err);
}

static int parse_model_config(const char *s, ModelConfig *c, char *err) {
    cJSON *j = cJSON_Parse(s);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return tf_err(err, "metadata 'config' is not a JSON object");
    }
    memset(c, 0, sizeof *c);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(j, "arch");
    const cJSON *pn = cJSON_GetObjectItemCaseSensitive(j, "pnorm");
    int rc = 0;
    /* a config without "arch" is a tokenformer's */
    if (arch && (!cJSON_IsString(arch) || (c->arch = arch_parse(arch->valuestring)) < 0))
        rc = tf_err(err, "config 'arch' is not one of %s", arch_names());
    else if (json_int(j, "n_layer", 1, 256, &c->n_layer, err) ||
             json_int(j, "d_model", 1, 65536, &c->d_model, err) ||
             json_int(j, "n_head", 1, 65536, &c->n_head, err) ||
             json_int(j, "n_attn", 1, PATT_MAX_ROWS, &c->n_attn, err) ||
             json_int(j, "n_ffn", 1, PATT_MAX_ROWS, &c->n_ffn, err) ||
             json_int(j, "block_size", 1, 1 << 16, &c->block_size, err) ||
             json_int(j, "vocab_size", 1, 0x110000, &c->vocab_size, err) ||
             json_float(j, "rope_frac", &c->rope_frac, err) ||
             json_float(j, "dropout", &c->dropout, err))
        rc = -1;
    else if (!cJSON_IsString(pn) || (c->pnorm = pnorm_parse(pn->valuestring)) < 0)
        rc = tf_err(err, "config 'pnorm' is missing or unknown");
    else if (adapters_config_from_json(j, c, err))
        rc = -1;
    cJSON_Delete(j);
    return rc ? rc : model_config_validate(c, err);
}

/* A decimal uint64 with nothing else around it (seeds, sampler states). */
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Optional: absent means cosine (checkpoints before --lr-schedule). */
static int parse_lr_schedule(const cJSON *j, TrainConfig *t, char *err) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "lr_schedule");
    t->lr_schedule = LR_COSINE;
    t->decay_frac = 0.0f;
    if (!name) return 0;
    if (!cJSON_IsString(name) || (t->lr_schedule = lr_schedule_parse(name->valuestring)) < 0)
        return tf_err(err, "train_config field 'lr_schedule' is not cosine or wsd");
    return t->lr_schedule == LR_WSD ? json_float(j, "decay_frac", &t->decay_frac, err) : 0;
}

/* Optional: the growth points a train --grow run has not reached yet. */
static int parse_grow_plan(const cJSON *j, TrainState *ts, char *err) {
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(j, "grow_plan");
    ts->grow_plan[0] = '\0';
    if (!plan) return 0;
    if (!cJSON_IsString(plan) || strlen(plan->valuestring) >= sizeof ts->grow_plan)
        return tf_err(err, "train_config field 'grow_plan' is not a string of at most %zu bytes",
                      sizeof ts->grow_plan - 1);
    snprintf(ts->grow_plan, sizeof ts->grow_plan, "%s", plan->valuestring);
    return 0;
}

/* The training settings, when present, must be whole: a silently skipped
 * field would make --resume continue with other settings. */
static int parse_train_config(const char *s, TrainState *ts, char *err) {
    cJSON *j = cJSON_Parse(s);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return tf_err(err, "metadata 'train_config' is not a JSON object");
    }
    TrainConfig *t = &ts->train;
    t->grad_accum = 1;
    uint64_t seed = 0;
    int rc = 0;
    /* optional: checkpoints written before growth recipes train every row alike */
    t->new_row_lr_mult = 1.0f;
    if (cJSON_GetObjectItemCaseSensitive(j, "new_row_lr_mult") &&
        json_float(j, "new_row_lr_mult", &t->new_row_lr_mult, err)) {
        cJSON_Delete(j);
        return -1;
    }
    if (json_int(j, "batch_size", 1, 1 << 16, &t->batch_size, err) ||
        json_int(j, "max_iters", 0, 1 << 30, &t->max_iters, err) || json_float(j, "lr", &t->lr, err) ||
        json_float(j, "min_lr", &t->min_lr, err) ||
        json_int(j, "warmup_iters", 0, 1 << 30, &t->warmup_iters, err) ||
        json_float(j, "weight_decay", &t->weight_decay, err) || json_float(j, "beta1", &t->beta1, err) ||
        json_float(j, "beta2", &t->beta2, err) || json_float(j, "adam_eps", &t->adam_eps, err) ||
        json_float(j, "grad_clip", &t->grad_clip, err) ||
        json_int(j, "eval_interval", 1, 1 << 30, &t->eval_interval, err) ||
        json_int(j, "eval_iters", 1, 1 << 30, &t->eval_iters, err) ||
        json_int(j, "log_interval", 1, 1 << 30, &t->log_interval, err) ||
        json_int(j, "stage_start", 0, 1 << 30, &ts->stage_start, err))
        rc = -1;
    else if (cJSON_GetObjectItemCaseSensitive(j, "grad_accum") && /* absent before --grad-accum: 1 */
             json_int(j, "grad_accum", 1, 1 << 16, &t->grad_accum, err))
        rc = -1;
    else if (parse_lr_schedule(j, t, err) || parse_grow_plan(j, ts, err))
        rc = -1;
    else if (parse_u64(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "seed")), &seed))
        rc = tf_err(err, "train_config field 'seed' is missing or not a decimal string");
    else if (train_config_validate(t, err))
        rc = -1;
    cJSON_Delete(j);
    if (rc) return rc;
    t->seed = seed;
    ts->has_train = 1;
    return 0;
}

/* ---------------- integrity ---------------- */

/* CRC-32 over the metadata (every key and value but "crc32" itself, in key
 * order, each NUL-terminated) and then the data bytes: a flipped bit
 * anywhere, even one that leaves the header well-formed, is caught. */
static uint32_t checkpoint_crc(const char *const *keys, const char *const *vals, int n,
                               const void *const *chunks, const size_t *chunk_len, int n_chunks) {
    uint32_t crc = 0;
    const char *prev = NULL;
    for (int done = 0; done < n; done++) { /* selection by key: n is a dozen */
        int next = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(keys[i], "crc32") != 0 && (!prev || strcmp(keys[i], prev) > 0) &&
                (next < 0 || strcmp(keys[i], keys[next]) < 0))
                next = i;
        if (next < 0) break;
        crc = crc32_update(crc, keys[next], strlen(keys[next]) + 1);
        crc = crc32_update(crc, vals[next], strlen(vals[next]) + 1);
        prev = keys[next];
    }
    for (int c = 0; c < n_chunks; c++) crc = crc32_update(crc, chunks[c], chunk_len[c]);
    return crc;
}

static int verify_crc(const StFile *f, char *err) {
    const char *stored = st_meta(f, "crc32");
    if (!stored) return tf_err(err, "metadata 'crc32' is missing");
    const void *chunk = f->data;
    size_t len = f->data_len;
    uint32_t crc = checkpoint_crc((const char *const *)f->meta_keys, (const char *const *)f->meta_vals,
                                  f->n_meta, &chunk, &len, 1);
    char want[16];
    snprintf(want, sizeof want, "%08x", crc);
    if (strcmp(stored, want) != 0)
        return tf_err(err, "checksum mismatch (crc32 stored %.16s, computed %s): the file is damaged", stored, want);
    return 0;
}

/* ---------------- save ---------------- */

/* Moment tensors hold the rows that have moments (model.h moment_row0):
 * every row unless the run froze the first ones, and none at all for a
 * parameter frozen whole, which then has no opt.m/opt.v tensor. */
static void moment_shape(const Param *p, int64_t shape[2]) {
    shape[0] = p->t.ndim == 2 ? model_moment_rows(p) : p->t.shape[0];
    shape[1] = p->t.ndim == 2 ? p->t.shape[1] : 0;
}

int checkpoint_save(const char *path, const Model *m, const Vocab *v, const TrainState *ts,
                    int with_optimizer, char *err) {
    const Ops *o = m->ops;
    int L = m->cfg.n_layer, n_tau = model_has_tau(&m->cfg) ? L * PATT_PER_LAYER : 0;
    int n_with_moments = 0;
    for (int i = 0; i < m->n_params && with_optimizer; i++) n_with_moments += model_moment_rows(&m->params[i]) > 0;
    int n_out = m->n_params + 2 * n_with_moments + n_tau;
    StTensorOut *outs = tf_calloc((size_t)n_out, sizeof *outs, "checkpoint table");
    char (*names)[TF_NAME_LEN + 8] = tf_calloc((size_t)n_out, sizeof *names, "checkpoint names");
    int64_t one = 1, (*mshape)[2] = tf_calloc((size_t)m->n_params, sizeof *mshape, "moment shapes");

    /* Everything comes to the host first: params, then m, then v. */
    size_t P = m->n_param_elems, M = with_optimizer ? m->n_moment_elems : 0;
    float *host = tf_malloc((P + 2 * M) * sizeof(float), "checkpoint buffer");
    o->to_host(o, host, m->param_mem, P * sizeof(float));
    if (M) {
        o->to_host(o, host + P, m->m_mem, M * sizeof(float));
        o->to_host(o, host + P + M, m->v_mem, M * sizeof(float));
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        snprintf(names[k], sizeof names[k], "%s", p->t.name);
        outs[k] = (StTensorOut){names[k], DTYPE_F32, p->t.ndim, p->t.shape, host + model_param_offset(m, i)};
        k++;
    }
    static const char *prefix[2] = {"opt.m.", "opt.v."};
    for (int part = 0; part < 2 && with_optimizer; part++)
        for (int i = 0; i < m->n_params; i++) {
            const Param *p = &m->params[i];
            if (!model_moment_rows(p)) continue;
            moment_shape(p, mshape[i]);
            snprintf(names[k], sizeof names[k], "%s%s", prefix[part], p->t.name);
            outs[k] = (StTensorOut){names[k], DTYPE_F32, p->t.ndim, mshape[i],
                                    host + P + part * M + (size_t)(p->m - m->m_mem)};
            k++;
        }
    for (int l = 0; l < L && n_tau; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            tau_name(l, w, names[k], sizeof names[k]);
            outs[k] = (StTensorOut){names[k], DTYPE_F32, 1, &one, &m->tau[l * PATT_PER_LAYER + w]};
            k++;
        }

    char *cfg = model_config_json(&m->cfg), *tcfg = train_config_json(ts), *segs = segments_json(m);
    char *vocab = vocab_to_utf8(v);
    char step[32], iter[32], best[32], rng[32];
    snprintf(step, sizeof step, "%d", m->step);
    snprintf(iter, sizeof iter, "%d", ts->iter);
    snprintf(best, sizeof best, "%.9g", ts->best_val);
    snprintf(rng, sizeof rng, "%llu", (unsigned long long)ts->data_rng);
    char data_meta[DATA_META_KEYS][48];
    data_meta_format(v, ts, data_meta);
    char *text = NULL, run_id[24];
    lineage_meta_format(ts, &text, run_id);
    const char *keys[] = {"format", "config", "train_config", "vocab", "step", "iter",
                          "best_val_loss", "data_rng", "row_segments", "optimizer",
                          DATA_META_NAMES[0], DATA_META_NAMES[1], DATA_META_NAMES[2], DATA_META_NAMES[3],
                          "growth_history", "text", "run_id", "crc32"};
    const char *vals[] = {CHECKPOINT_FORMAT, cfg, tcfg, v->bytes ? "" : vocab, step, iter, best, rng, segs,
                          with_optimizer ? "adamw" : "none",
                          data_meta[0], data_meta[1], data_meta[2], data_meta[3],
                          ts->growth[0] ? ts->growth : "[]", text ? text : "", run_id, ""};
    int n_meta = (int)(sizeof keys / sizeof keys[0]);
    const void **chunks = tf_malloc(sizeof(void *) * (size_t)n_out, "checksum");
    size_t *lens = tf_malloc(sizeof(size_t) * (size_t)n_out, "checksum");
    for (int i = 0; i < n_out; i++) {
        chunks[i] = outs[i].data;
        lens[i] = sizeof(float);
        for (int d = 0; d < outs[i].ndim; d++) lens[i] *= (size_t)outs[i].shape[d];
    }
    char crc[16];
    snprintf(crc, sizeof crc, "%08x", checkpoint_crc(keys, vals, n_meta, chunks, lens, n_out));
    vals[n_meta - 1] = crc;
    free(chunks);
    free(lens);
    int rc = st_write_atomic(path, outs, n_out, keys, vals, n_meta, err);
    free(cfg);
    free(tcfg);
    free(segs);
    free(vocab);
    free(text);
    free(host);
    free(names);
    free(mshape);
    free(outs);
    return rc;
}

/* ---------------- load ---------------- */

static int expect_f32(const StFile *f, const char *name, int ndim, const int64_t *shape,
                      const StEntry **out, char *err) {
    const StEntry *e = st_find(f, name);
    if (!e) return tf_err(err, "tensor '%s' is missing", name);
    if (e->dtype != DTYPE_F32) return tf_err(err, "tensor '%s' must be F32", name);
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        char want[64] = "", got[64] = "";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), i ? ", %lld" : "%lld", (long long)shape[i]);
        for (int i = 0; i < e->ndim && i < 4; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), i ? ", %lld" : "%lld", (long long)e->shape[i]);
        return tf_err(err, "tensor '%s' has shape [%s], expected [%s]", name, got, want);
    }
    *out = e;
    return 0;
}

/* Row counts of every Pattention, read off the key tensors. */
static int read_rows(const StFile *f, const ModelConfig *c, int *rows, char *err) {
    for (int l = 0; l < c->n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            char name[TF_NAME_LEN];
            model_param_name(c, model_config_site_param(c, l, w), name, sizeof name);
            const StEntry *e = st_find(f, name);
            if (!e) return tf_err(err, "tensor '%s' is missing", name);
            if (e->ndim != 2 || e->shape[0] < 1 || e->shape[0] > PATT_MAX_ROWS || e->shape[1] != c->d_model)
                return tf_err(err, "tensor '%s' must have shape [n, %d] with 1 <= n <= %d", name, c->d_model, PATT_MAX_ROWS);
            rows[l * PATT_PER_LAYER + w] = (int)e->shape[0];
        }
    return 0;
}

static int load_segments(Model *m, const char *json, char *err) {
    if (!json) return 0;
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return tf_err(err, "metadata 'row_segments' is not a JSON object");
    }
    int rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, j) {
        Param *p = NULL;
        for (int i = 0; i < m->n_params && !p; i++)
            if (strcmp(m->params[i].t.name, item->string) == 0) p = &m->params[i];
        int n = cJSON_GetArraySize(item);
        if (!p || !cJSON_IsArray(item) || n < 1 || n > MAX_SEGMENTS) {
            rc = tf_err(err, "row_segments: bad entry '%s'", item->string);
            break;
        }
        int rows = p->t.ndim == 2 ? (int)p->t.shape[0] : 1, prev = -1;
        p->n_seg = n;
        for (int k = 0; k < n && !rc; k++) {
            const cJSON *s = cJSON_GetArrayItem(item, k);
            const cJSON *a = cJSON_GetArrayItem(s, 0), *b = cJSON_GetArrayItem(s, 1),
                        *c = cJSON_GetArrayItem(s, 2);
            if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || !cJSON_IsNumber(c) ||
                a->valueint <= prev || a->valueint >= rows || (k == 0 && a->valueint != 0) ||
                b->valueint < 0 || b->valueint > m->step) {
                rc = tf_err(err, "row_segments: bad segment %d of '%s'", k, item->string);
                break;
            }
            p->seg[k] = (RowSegment){a->valueint, b->valueint, c->valueint != 0};
            prev = a->valueint;
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* A tensor that a checkpoint of this model holds: a parameter, its Adam
 * moments (with_opt), or a Pattention tau. */
static int is_expected_tensor(const Model *m, const char *name, int with_opt) {
    int moment = with_opt && (strncmp(name, "opt.m.", 6) == 0 || strncmp(name, "opt.v.", 6) == 0);
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].t.name, moment ? name + 6 : name) == 0) return 1;
    for (int l = 0; l < m->cfg.n_layer && !moment && model_has_tau(&m->cfg); l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            char tau[TF_NAME_LEN];
            tau_name(l, w, tau, sizeof tau);
            if (strcmp(tau, name) == 0) return 1;
        }
    return 0;
}

/* Index of the first nan/inf among nbytes of little-endian float32, or -1. */
static long first_nonfinite(const void *data, size_t nbytes) {
    const unsigned char *b = data;
    for (size_t i = 0; i + 4 <= nbytes; i += 4) {
        float x;
        memcpy(&x, b + i, sizeof x);
        if (!isfinite(x)) return (long)(i / 4);
    }
    return -1;
}

/* A tensor's data to the device at dst, refusing non-finite values, which
 * would only surface later as a nan loss. */
static int finite_to_device(const Ops *o, float *dst, const StFile *f, const StEntry *e, size_t skip_bytes,
                            char *err) {
    long bad = first_nonfinite(st_data(f, e), e->nbytes);
    if (bad >= 0) return tf_err(err, "tensor '%s' holds a non-finite value (nan or inf) at element %ld", e->name, bad);
    if (dst) o->to_device(o, dst, (const char *)st_data(f, e) + skip_bytes, e->nbytes - skip_bytes);
    return 0;
}

/* Copies the weights and the taus to the device; *n_found counts the tensors read. */
static int load_weights(Model *m, const StFile *f, int *n_found, char *err) {
    const Ops *o = m->ops;
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        const StEntry *e = NULL;
        if (expect_f32(f, p->t.name, p->t.ndim, p->t.shape, &e, err) ||
            finite_to_device(o, tensor_f32(&p->t), f, e, 0, err))
            return -1;
    }
    int64_t one = 1, n_tau = model_has_tau(&m->cfg) ? m->cfg.n_layer * PATT_PER_LAYER : 0;
    for (int l = 0; l < m->cfg.n_layer && n_tau; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            char name[TF_NAME_LEN];
            tau_name(l, w, name, sizeof name);
            const StEntry *e = NULL;
            if (expect_f32(f, name, 1, &one, &e, err)) return -1;
            float tau;
            memcpy(&tau, st_data(f, e), sizeof tau);
            if (!isfinite(tau) || tau <= 0.0f) return tf_err(err, "tensor '%s' must be a positive number", name);
            *model_patt_tau(m, l, w) = tau;
        }
    *n_found = m->n_params + (int)n_tau;
    return 0;
}

/* The rows before the first unfrozen segment, as the file records the
 * segments: the rows whose moments the file may leave out. */
static int *recorded_frozen_rows(const Model *m) {
    int *rows = tf_malloc(sizeof(int) * (size_t)m->n_params, "frozen rows");
    for (int i = 0; i < m->n_params; i++) rows[i] = model_first_trainable_row(&m->params[i]);
    return rows;
}

/* A moment tensor of p in the file: all of p's rows (every checkpoint
 * before frozen rows lost their moments), or the rows from frozen_rows on
 * (those that the writing run trained). Its first row's index into *row0. */
static int moment_tensor_rows(const StEntry *e, const Param *p, int frozen_rows, int *row0, char *err) {
    int rows = model_param_rows(p), same = e->ndim == p->t.ndim && e->dtype == DTYPE_F32;
    int64_t have = p->t.ndim == 2 && same ? e->shape[0] : rows;
    same = same && e->shape[e->ndim - 1] == p->t.shape[p->t.ndim - 1] && (have == rows || have == rows - frozen_rows);
    if (!same || have < 1) {
        char alt[64] = ""; /* what a run that froze rows writes instead */
        if (frozen_rows == rows) snprintf(alt, sizeof alt, " or be absent (it is frozen)");
        else if (frozen_rows > 0) snprintf(alt, sizeof alt, " or its last %d rows (the others frozen)", rows - frozen_rows);
        return tf_err(err, "optimizer tensor '%s' must be F32 with the shape of '%s'%s", e->name, p->t.name, alt);
    }
    *row0 = rows - (int)have;
    return 0;
}

/* One parameter's moments from the file into the model's rows that have
 * them: rows the file has none of stay zero and count in *zeroed; rows the
 * model has none of (frozen) are dropped. */
static int load_param_moments(Model *m, const StFile *f, const Param *p, int frozen_rows, size_t *zeroed,
                              int *n_found, char *err) {
    static const char *prefix[2] = {"opt.m.", "opt.v."};
    float *dst[2] = {p->m, p->v};
    size_t re = model_param_row_elems(p);
    for (int part = 0; part < 2; part++) {
        char name[TF_NAME_LEN + 8];
        snprintf(name, sizeof name, "%s%s", prefix[part], p->t.name);
        const StEntry *e = st_find(f, name);
        int row0 = model_param_rows(p);
        if (!e && frozen_rows < model_param_rows(p))
            return tf_err(err, "optimizer tensor '%s' is missing", name);
        if (e && moment_tensor_rows(e, p, frozen_rows, &row0, err)) return -1;
        int from = row0 > p->moment_row0 ? row0 : p->moment_row0; /* first row both have */
        if (part == 0 && row0 > p->moment_row0) *zeroed += (size_t)(row0 - p->moment_row0) * re;
        if (!e) continue;
        (*n_found)++;
        float *to = model_moment_rows(p) && from < model_param_rows(p) ? dst[part] + (size_t)(from - p->moment_row0) * re
                                                                        : NULL;
        if (finite_to_device(m->ops, to, f, e, (size_t)(from - row0) * re * sizeof(float), err)) return -1;
    }
    return 0;
}

/* The metadata 'optimizer' against the tensors: "adamw" with moment tensors, "none" without. */
static int optimizer_in_file(const StFile *f, int *has_opt, char *err) {
    const char *opt = st_meta(f, "optimizer");
    *has_opt = 0;
    for (int i = 0; i < f->n_entries && !*has_opt; i++) *has_opt = strncmp(f->entries[i].name, "opt.m.", 6) == 0;
    if (!opt || strcmp(opt, *has_opt ? "adamw" : "none") != 0)
        return tf_err(err, "metadata 'optimizer' does not match the file: optimizer tensors are %s",
                      *has_opt ? "present" : "absent");
    return 0;
}

/* Freezes the rows as `freeze` says (NULL: as the file records them). */
static int apply_freeze(Model *m, const CheckpointFreeze *freeze, char *err) {
    if (!freeze) return 0;
    switch (freeze->mode) {
    case CKPT_UNFREEZE: model_unfreeze(m); return 0;
    case CKPT_FREEZE_OLD: model_freeze_old(m); return 0;
    case CKPT_TRAIN_LAST:
        if (model_train_last_blocks(m, freeze->last_blocks) < 0)
            return tf_err(err, "--train last:%d: the model has %d blocks (N must be 1 to %d)", freeze->last_blocks,
                          m->cfg.n_layer, m->cfg.n_layer);
        return 0;
    }
    return tf_err(err, "internal error: unknown freeze mode %d", (int)freeze->mode);
}

/* Freezes the rows as asked, allocates the moments of the rows that train
 * (or of every row, freeze NULL) and reads the file's moments into them; a
 * run that freezes keeps gradient buffers only for what backward writes
 * (model_alloc_grads). */
static int load_moments(Model *m, const StFile *f, const CheckpointFreeze *freeze, TrainState *ts, int *n_found,
                        char *err) {
    if (optimizer_in_file(f, &ts->has_optimizer, err)) return -1;
    int *frozen_rows = recorded_frozen_rows(m); /* the file's record, before this run freezes */
    int rc = apply_freeze(m, freeze, err);
    if (!rc) rc = model_alloc_moments(m, freeze != NULL, err);
    if (!rc && freeze && freeze->mode != CKPT_UNFREEZE) rc = model_alloc_grads(m, 1, err);
    ts->moments_zeroed = 0;
    for (int i = 0; i < m->n_params && !rc && ts->has_optimizer; i++)
        rc = load_param_moments(m, f, &m->params[i], frozen_rows[i], &ts->moments_zeroed, n_found, err);
    free(frozen_rows);
    return rc;
}

/* Every expected tensor was found (n_found of them) and names are unique, so
 * only a larger count means that the file holds something else: name it. */
static int refuse_extra_tensors(const Model *m, const StFile *f, int n_found, int has_opt, char *err) {
    for (int i = 0; f->n_entries > n_found && i < f->n_entries; i++)
        if (!is_expected_tensor(m, f->entries[i].name, has_opt)) {
            char shown[ST_SHOW_LEN + 4];
            return tf_err(err, "unexpected tensor '%s'", st_show_name(f->entries[i].name, shown));
        }
    return 0;
}

static int parse_int_meta(const StFile *f, const char *key, long lo, long hi, long *out, char *err) {
    const char *s = st_meta(f, key);
    if (!s || tf_parse_int(s, lo, hi, out)) return tf_err(err, "metadata '%s' is missing or invalid", key);
    return 0;
}

/* freeze: how a training run freezes, or NULL (checkpoint_load) for the rows frozen as recorded. */
static int load_from(const StFile *f, const Ops *ops, const CheckpointFreeze *freeze, Model *m, Vocab *v, TrainState *ts,
                     char *err) {
    const char *format = st_meta(f, "format");
    if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0)
        return tf_err(err, "not a tokenformer checkpoint (metadata 'format' is %s%s%s, expected '%s')",
                      format ? "'" : "", format ? format : "missing", format ? "'" : "", CHECKPOINT_FORMAT);
    /* The tensors (in range, not overlapping) must cover the data exactly, as
     * the reference reader requires: a header length off by a few bytes of
     * padding, or a file with bytes appended, would otherwise load shifted data. */
    size_t covered = 0;
    for (int i = 0; i < f->n_entries; i++) covered += f->entries[i].nbytes;
    if (covered != f->data_len)
        return tf_err(err, "the tensors cover %zu bytes but the data after the header is %zu bytes", covered,
                      f->data_len);
    const char *cfg_s = st_meta(f, "config"), *vocab_s = st_meta(f, "vocab");
    if (!cfg_s) return tf_err(err, "metadata 'config' is missing");
    if (!vocab_s) return tf_err(err, "metadata 'vocab' is missing");
    ModelConfig cfg;
    if (parse_model_config(cfg_s, &cfg, err)) return -1;
    int bytes;
    if (data_meta_is_bytes(f, &bytes, err)) return -1;
    if (bytes)
        vocab_bytes(v); /* the byte tokenizer stores an empty 'vocab' */
    else if (vocab_from_utf8(v, vocab_s, err))
        return -1;
    if (v->size != cfg.vocab_size) {
        int n = v->size;
        vocab_free(v);
        return tf_err(err, "vocabulary has %d characters but config says vocab_size %d", n, cfg.vocab_size);
    }
    int *rows = tf_calloc((size_t)cfg.n_layer * PATT_PER_LAYER, sizeof(int), "row counts");
    long step = 0, iter = 0;
    int rc = read_rows(f, &cfg, rows, err);
    if (!rc) rc = parse_int_meta(f, "step", 0, 1L << 30, &step, err);
    if (!rc) rc = parse_int_meta(f, "iter", 0, 1L << 30, &iter, err);
    if (!rc) rc = model_create_params(m, &cfg, rows, ops, err);
    free(rows);
    if (rc) {
        vocab_free(v);
        return -1;
    }
    m->step = (int)step;
    train_state_init(ts);
    ts->iter = (int)iter;
    const char *best = st_meta(f, "best_val_loss"), *rng = st_meta(f, "data_rng");
    const char *tcfg = st_meta(f, "train_config");
    const char *segs = st_meta(f, "row_segments"), *opt = st_meta(f, "optimizer");
    char *end = NULL;
    if (best) ts->best_val = strtof(best, &end);
    /* Everything the writer puts in is required: a missing key is a damaged header. */
    if (!best || !rng || !tcfg || !segs || !opt)
        rc = tf_err(err, "metadata '%s' is missing",
                    !best ? "best_val_loss" : !rng ? "data_rng" : !tcfg ? "train_config" : !segs ? "row_segments" : "optimizer");
    else if (end == best || *end || isnan(ts->best_val))
        rc = tf_err(err, "metadata 'best_val_loss' is not a number");
    else if (parse_u64(rng, &ts->data_rng))
        rc = tf_err(err, "metadata 'data_rng' is not a decimal integer");
    else
        rc = parse_train_config(tcfg, ts, err);
    if (!rc) rc = data_meta_load(f, ts, err);
    if (!rc) rc = growth_history_load(f, ts, err);
    if (!rc) rc = lineage_meta_load(f, ts, err);
    /* The checksum last: structural problems get their own message first. */
    int n_found = 0;
    if (rc || load_weights(m, f, &n_found, err) || load_segments(m, segs, err) ||
        load_moments(m, f, freeze, ts, &n_found, err) ||
        refuse_extra_tensors(m, f, n_found, ts->has_optimizer, err) || verify_crc(f, err)) {
        model_free(m);
        vocab_free(v);
        return -1;
    }
    return 0;
}

float checkpoint_peek_best_val(const char *path) {
    char s[64], *end;
    if (st_peek_meta(path, "best_val_loss", s, sizeof s)) return INFINITY;
    float v = strtof(s, &end);
    return end != s && !*end && !isnan(v) ? v : INFINITY;
}

static int load_path(const char *path, const Ops *ops, const CheckpointFreeze *freeze, Model *m, Vocab *v, TrainState *ts,
                     char *err) {
    StFile f;
    char inner[TF_ERRLEN];
    if (st_read(path, &f, inner)) return tf_err(err, "%s", inner);
    int rc = load_from(&f, ops, freeze, m, v, ts, inner);
    st_free(&f);
    if (rc) return tf_err(err, "%s: %s", path, inner);
    return 0;
}

int checkpoint_load(const char *path, const Ops *ops, Model *m, Vocab *v, TrainState *ts, char *err) {
    return load_path(path, ops, NULL, m, v, ts, err);
}

int checkpoint_load_for_training(const char *path, const Ops *ops, CheckpointFreeze freeze, Model *m, Vocab *v,
                                 TrainState *ts, char *err) {
    return load_path(path, ops, &freeze, m, v, ts, err);
}

/* ---------------- lineage of a checkpoint on disk ---------------- */

void checkpoint_lineage_of(const Model *m, const Vocab *v, const TrainState *ts, CheckpointLineage *out) {
    memset(out, 0, sizeof *out);
    out->iter = ts->iter;
    out->best_val = ts->best_val;
    out->run_id = ts->run_id;
    out->text = ts->text;
    out->arch = m->cfg.arch;
    out->bytes = v->bytes;
    out->vocab_size = v->size;
    char *vocab = vocab_to_utf8(v);
    out->vocab_hash = fnv1a64(v->bytes ? "" : vocab, v->bytes ? 0 : strlen(vocab), FNV1A64_INIT);
    free(vocab);
    memcpy(out->split, ts->split, sizeof out->split);
}

int checkpoint_peek_lineage(const char *path, CheckpointLineage *out) {
    memset(out, 0, sizeof *out);
    char *cfg_s = st_peek_meta_dup(path, "config"), *vocab = st_peek_meta_dup(path, "vocab");
    char *text = st_peek_meta_dup(path, "text"), *run = st_peek_meta_dup(path, "run_id");
    char *iter = st_peek_meta_dup(path, "iter"), *kind = st_peek_meta_dup(path, "tokenizer");
    char *split = st_peek_meta_dup(path, "data_split"), err[TF_ERRLEN];
    ModelConfig cfg;
    long it = 0;
    int rc = cfg_s && vocab && iter && !parse_model_config(cfg_s, &cfg, err) && !tf_parse_int(iter, 0, 1L << 30, &it)
                 ? 0 : -1;
    if (!rc) {
        out->iter = (int)it;
        out->best_val = checkpoint_peek_best_val(path);
        out->arch = cfg.arch;
        out->vocab_size = cfg.vocab_size;
        out->bytes = kind && !strcmp(kind, "bytes");
        out->vocab_hash = fnv1a64(vocab, strlen(vocab), FNV1A64_INIT);
        set_default_split(out->split);
        if (split && data_split_parse(split, out->split, err)) rc = -1;
        if (text && *text && text_record_parse(text, &out->text, err)) rc = -1;
        if (run && *run && parse_run_id(run, &out->run_id)) rc = -1;
    }
    free(cfg_s);
    free(vocab);
    free(text);
    free(run);
    free(iter);
    free(kind);
    free(split);
    return rc;
}

const char *checkpoint_lineage_difference(const CheckpointLineage *a, const CheckpointLineage *b) {
    if (a->text.known && b->text.known && !text_record_same_content(&a->text, &b->text)) return "text";
    if (a->bytes != b->bytes) return "tokenizer";
    if (a->vocab_size != b->vocab_size || a->vocab_hash != b->vocab_hash) return "vocabulary";
    if (a->arch != b->arch) return "arch";
    if (memcmp(a->split, b->split, sizeof a->split)) return "split";
    return NULL;
}

uint64_t checkpoint_run_digest(const Model *m, const Vocab *v, const TrainState *ts) {
    const TrainConfig *t = &ts->train;
    char *cfg = model_config_json(&m->cfg), *vocab = vocab_to_utf8(v), settings[512];
    snprintf(settings, sizeof settings, "%016llx|%s|%d,%d,%d|%d,%d,%.9g,%.9g,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%llu",
             (unsigned long long)ts->text.hash, vocab_kind_name(v), ts->split[0], ts->split[1], ts->split[2],
             t->batch_size, t->grad_accum, t->lr, t->min_lr, t->warmup_iters, t->weight_decay, t->beta1, t->beta2,
             t->adam_eps, t->grad_clip, (unsigned long long)t->seed);
    uint64_t h = fnv1a64(cfg, strlen(cfg) + 1, FNV1A64_INIT);
    h = fnv1a64(vocab, strlen(vocab) + 1, h);
    h = fnv1a64(settings, strlen(settings), h);
    free(cfg);
    free(vocab);
    return h;
}
