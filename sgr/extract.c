/* extract.c — schema-guided extraction: a document and a JSON Schema become
 * one conforming JSON instance. The prompt carries the schema and the
 * document through the model's chat template; generation runs under the
 * schema's grammar (sgr_sample as the sampling stage, with the token budget),
 * so the output conforms by construction; it is parsed and re-validated
 * anyway, and the result says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

const char *const sgr_extract_default_system =
    "You extract structured data from a document. Reply with one JSON value that conforms to the "
    "JSON Schema below, and nothing else. Fill the fields in the order the schema lists them: "
    "fields that come first (analysis, reasoning, checks) are steps toward the later ones. Use only "
    "what the document says.\n\nJSON Schema:\n";

/* ------------------------------------------------------------------------ */
/* The schema as prompt text without annotations: a model with a short
 * context may not fit a schema's descriptions, and the decoder enforces the
 * schema whatever the prompt shows. Only annotation keywords of *schema*
 * objects are dropped: a property named "title" stays. */

typedef struct tbuf {
    char *p;
    size_t n, cap;
    bool oom;
} tbuf;

static void tb_put(tbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void tb_json(tbuf *b, const json *v) {
    char *t;
    size_t n;
    qerr e;
    if (json_serialize(v, NULL, &t, &n, &e)) { b->oom = true; return; }
    tb_put(b, t, n);
    free(t);
}

static void tb_key(tbuf *b, const json_member *m) {
    json k = {.type = JSON_STRING};
    k.u.str.s = m->key;
    k.u.str.len = m->klen;
    tb_json(b, &k);
    tb_put(b, ":", 1);
}

static bool key_is(const json_member *m, const char *const *set) {
    for (; *set; set++)
        if (strlen(*set) == m->klen && memcmp(*set, m->key, m->klen) == 0) return true;
    return false;
}

static const char *const annotation_kw[] = {"title",    "description", "examples",  "example", "$comment", "default",
                                            "deprecated", "readOnly",  "writeOnly", "$schema", NULL};
/* values that are maps of name -> schema */
static const char *const schema_map_kw[] = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas",
                                            "dependencies", NULL};
/* values that are a schema, or an array of schemas */
static const char *const schema_kw[] = {"items", "additionalItems", "additionalProperties", "not", "if", "then", "else",
                                        "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
                                        "allOf", "anyOf", "oneOf", "prefixItems", NULL};

static void tb_schema(tbuf *b, const json *v, int depth) {
    if (depth > 256 || !json_is_object(v)) { /* booleans, data; depth: the parser's limit is far lower */
        if (json_is_array(v)) {
            tb_put(b, "[", 1);
            for (size_t i = 0; i < v->u.arr.n; i++) {
                if (i) tb_put(b, ",", 1);
                tb_schema(b, v->u.arr.items[i], depth + 1);
            }
            tb_put(b, "]", 1);
        } else tb_json(b, v);
        return;
    }
    tb_put(b, "{", 1);
    bool first = true;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const json_member *m = &v->u.obj.m[i];
        if (key_is(m, annotation_kw)) continue;
        if (!first) tb_put(b, ",", 1);
        first = false;
        tb_key(b, m);
        if (key_is(m, schema_map_kw) && json_is_object(m->val)) {
            tb_put(b, "{", 1);
            for (size_t k = 0; k < m->val->u.obj.n; k++) {
                if (k) tb_put(b, ",", 1);
                tb_key(b, &m->val->u.obj.m[k]);
                tb_schema(b, m->val->u.obj.m[k].val, depth + 1);
            }
            tb_put(b, "}", 1);
        } else if (key_is(m, schema_kw)) {
            tb_schema(b, m->val, depth + 1);
        } else {
            tb_json(b, m->val); /* enum, const, required, bounds, ... as they are */
        }
    }
    tb_put(b, "}", 1);
}

int sgr_schema_prompt_text(const json *schema, char **out, size_t *len, qerr *e) {
    tbuf b = {0};
    tb_schema(&b, schema, 0);
    if (b.oom || !b.p) {
        free(b.p);
        return qerr_set(e, "out of memory");
    }
    *out = b.p;
    *len = b.n;
    return 0;
}

int sgr_extract_prompt(const struct tokenizer *t, const char *tmpl, const char *system, const char *schema_text,
                       size_t schema_len, const char *doc, size_t doc_len, char **out, size_t *out_len, qerr *e) {
    if (!system) system = sgr_extract_default_system;
    size_t sl = strlen(system);
    char *sys = malloc(sl + schema_len + 1);
    char *usr = malloc(doc_len + 1);
    if (!sys || !usr) {
        free(sys); free(usr);
        return qerr_set(e, "out of memory");
    }
    memcpy(sys, system, sl);
    memcpy(sys + sl, schema_text, schema_len);
    sys[sl + schema_len] = 0;
    memcpy(usr, doc, doc_len);
    usr[doc_len] = 0;
    chat_msg msgs[2] = {{"system", sys}, {"user", usr}};
    if (!tmpl) tmpl = tokenizer_chat_template(t);
    if (!tmpl) tmpl = chat_template_chatml;
    int rc = tokenizer_chat_apply(t, tmpl, msgs, 2, true, out, out_len, e);
    if (rc) qerr_wrap(e, "chat template");
    free(sys);
    free(usr);
    return rc;
}

typedef struct pick_ctx {
    sgr_matcher *m;
    const struct tokenizer *tok;
    const sgr_vocab *v;
    bool fast_forward;
    double t_mask, t_budget, t_forced;
    int n_resample, n_steps, n_forced;
} pick_ctx;

static int32_t pick(void *ud, sampler *s, float *logits, const int32_t *hist, int n_hist, int budget, qerr *e) {
    pick_ctx *pc = ud;
    sgr_sample_stats st = {0};
    int32_t tok = sgr_sample(pc->m, s, logits, hist, n_hist, budget, &st, e);
    pc->t_mask += st.t_mask;
    pc->t_budget += st.t_budget;
    pc->n_resample += st.n_resample;
    pc->n_steps++;
    return tok;
}

/* The tokenizer's own spelling of s when its pieces are exactly s (no added
 * space prefix), else the greedy spelling over the vocabulary. */
static int spell(const pick_ctx *pc, const char *s, size_t n, int32_t **ids, size_t *n_ids) {
    qerr e;
    if (tokenizer_encode(pc->tok, s, n, false, false, ids, n_ids, &e) == 0) {
        size_t p = 0;
        bool ok = true;
        for (size_t i = 0; i < *n_ids && ok; i++) {
            size_t pl;
            const char *piece = tokenizer_piece(pc->tok, (*ids)[i], &pl);
            ok = piece && pl && p + pl <= n && !memcmp(s + p, piece, pl);
            p += pl;
        }
        if (ok && p == n) return 0;
        free(*ids);
    }
    return sgr_vocab_greedy(pc->v, s, n, ids, n_ids);
}

/* Fast-forward: the bytes every continuation starts with are appended as
 * tokens without sampling (they join the next forward pass). Kept only when
 * the document can still close within the budget left after them — the
 * shortest completion spelled one byte per token — otherwise undone. */
static int forced(void *ud, int32_t *out, int max, qerr *e) {
    pick_ctx *pc = ud;
    if (!pc->fast_forward || max <= 0 || !sgr_vocab_has_all_bytes(pc->v)) return 0;
    double t0 = q_now();
    char *f;
    size_t n;
    if (sgr_matcher_forced(pc->m, &f, &n, e)) return -1;
    int got = 0;
    int32_t *ids = NULL;
    size_t nid = 0;
    if (n > 0 && spell(pc, f, n, &ids, &nid) == 0 && nid > 0 && nid <= (size_t)max) {
        size_t k = 0;
        while (k < nid && sgr_matcher_accept_token(pc->m, ids[k]) == 0) k++;
        if (k == nid && sgr_matcher_min_bytes(pc->m) <= (size_t)max - nid) {
            memcpy(out, ids, nid * sizeof *ids);
            got = (int)nid;
        } else {
            sgr_matcher_rollback(pc->m, k);
        }
    }
    free(ids);
    free(f);
    pc->n_forced += got;
    pc->t_forced += q_now() - t0;
    return got;
}

typedef struct text_acc { char *p; size_t n, cap; bool oom; } text_acc;

static bool on_text(void *ud, const char *s, size_t n) {
    text_acc *a = ud;
    if (a->oom) return false;
    if (a->n + n + 1 > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 1024;
        while (nc < a->n + n + 1) nc *= 2;
        char *q = realloc(a->p, nc);
        if (!q) { a->oom = true; return false; }
        a->p = q;
        a->cap = nc;
    }
    memcpy(a->p + a->n, s, n);
    a->n += n;
    a->p[a->n] = 0;
    return true;
}

int sgr_extract_shortest(const sgr_grammar *g, const sgr_vocab *v, const struct tokenizer *t, char **text, size_t *len,
                         int *n_tokens, qerr *e) {
    sgr_matcher *m;
    if (sgr_matcher_new(g, v, &m, e)) return -1;
    int rc = sgr_matcher_shortest(m, text, len, e);
    sgr_matcher_free(m);
    if (rc) return -1;
    pick_ctx pc = {.tok = t, .v = v};
    int32_t *ids = NULL;
    size_t nid = 0;
    if (spell(&pc, *text, *len, &ids, &nid)) {
        free(*text);
        return qerr_set(e, "the vocabulary cannot spell the shortest document");
    }
    free(ids);
    *n_tokens = (int)nid;
    return 0;
}

void sgr_extract_result_free(sgr_extract_result *r) {
    if (!r) return;
    free(r->json);
    memset(r, 0, sizeof *r);
}

int sgr_extract_run(model_ctx *c, const struct tokenizer *t, const sgr_grammar *g, const sgr_vocab *v, const schema *s,
                    const char *prompt, size_t prompt_len, const sgr_extract_opts *o, sgr_extract_result *r, qerr *e) {
    memset(r, 0, sizeof *r);
    if (o->n_predict <= 0) return qerr_set(e, "the token budget must be positive (got %d)", o->n_predict);
    sgr_matcher *m;
    if (sgr_matcher_new(g, v, &m, e)) return -1;
    pick_ctx pc = {.m = m, .tok = t, .v = v, .fast_forward = !o->no_fast_forward};
    gen_params gp = {.n_predict = o->n_predict, .sp = o->sp, .add_special = true, .parse_special = true,
                     .pick = pick, .pick_ud = &pc, .forced = forced};
    /* A template that renders BOS itself must not get a second one. */
    int32_t bos = tokenizer_bos(t);
    size_t bl = 0;
    const char *bt = bos >= 0 ? tokenizer_token_text(t, bos, &bl) : NULL;
    if (bt && bl && prompt_len >= bl && !memcmp(prompt, bt, bl)) gp.add_special = false;
    text_acc acc = {0};
    gen_stats st;
    int rc = gen_run(c, t, o->seq, prompt, prompt_len, &gp, on_text, &acc, NULL, NULL, &st, e);
    if (rc == 0 && acc.oom) rc = qerr_set(e, "out of memory");
    if (rc == 0 && !sgr_matcher_can_end(m))
        rc = qerr_set(e, "generation ended before the document was complete (%s after %d tokens)", st.stop_reason,
                      st.n_gen);
    sgr_matcher_free(m);
    if (rc) { free(acc.p); return -1; }
    r->json = acc.p ? acc.p : strdup("");
    r->len = acc.n;
    r->n_prompt = st.n_prompt;
    r->n_gen = st.n_gen;
    r->t_tokenize = st.t_tokenize;
    r->t_prefill = st.t_prefill;
    r->t_decode = st.t_decode;
    r->t_sample = st.t_sample - pc.t_mask - pc.t_budget;
    if (r->t_sample < 0) r->t_sample = 0;
    r->t_mask = pc.t_mask;
    r->t_budget = pc.t_budget;
    r->t_detokenize = st.t_detokenize;
    r->n_resample = pc.n_resample;
    r->n_forced = pc.n_forced;
    r->t_forced = pc.t_forced;
    r->stop_reason = st.stop_reason;
    /* Conforms by construction; checked anyway, with the strict parser. */
    json *inst = NULL;
    qerr pe;
    if (json_parse(r->json, r->len, NULL, &inst, &pe)) {
        r->valid = false;
        snprintf(r->verr, sizeof r->verr, "not JSON: %s", pe.msg);
    } else if (s) {
        schema_error se;
        int v_ok = schema_validate(s, inst, &se);
        r->valid = v_ok == 1;
        if (v_ok == 0) snprintf(r->verr, sizeof r->verr, "%s at '%s' (%s)", se.keyword, se.instance_ptr, se.msg);
        else if (v_ok < 0) snprintf(r->verr, sizeof r->verr, "validation did not finish: %s", se.msg);
    } else {
        r->valid = true;
    }
    json_free(inst);
    return 0;
}
