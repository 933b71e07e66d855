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
    double t_mask, t_budget;
    int n_resample, n_steps;
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
    /* A budget below the shortest completion can never hold a valid document:
     * say so up front rather than emit a truncated one. */
    size_t minb = sgr_matcher_min_bytes(m);
    if (minb > (size_t)o->n_predict && !sgr_vocab_has_all_bytes(v)) {
        /* with multi-byte tokens it may still fit; sgr_sample decides */
    }
    pick_ctx pc = {.m = m};
    gen_params gp = {.n_predict = o->n_predict, .sp = o->sp, .add_special = true, .parse_special = true,
                     .pick = pick, .pick_ud = &pc};
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
