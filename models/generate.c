/* generate.c — the generation loop shared by `quire run` and the server. */
#include "models/models.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

/* At most this many forced tokens join one decode step. */
#define GEN_MAX_FORCED 64

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 boundary
 * (an incomplete trailing sequence is held back for the next token). */
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = n;
    int back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xc0) != 0x80) { /* lead or ASCII byte at i-1 */
            size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
            return (n - (i - 1) >= need) ? n : i - 1;
        }
        i--;
        back++;
    }
    return n; /* stray continuation bytes: pass them through */
}

/* Bytes at the end of s that could start one of the stop strings. */
static size_t stop_holdback(const char *s, size_t n, const char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int k = 0; k < n_stop; k++) {
        size_t L = strlen(stop[k]);
        for (size_t m = L - 1 < n ? L - 1 : n; m > hold; m--)
            if (memcmp(s + n - m, stop[k], m) == 0) { hold = m; break; }
    }
    return hold;
}

void gen_text_init(gen_text *g, const char *const *stop, int n_stop) {
    memset(g, 0, sizeof *g);
    g->stop = stop;
    g->n_stop = n_stop;
}

void gen_text_free(gen_text *g) {
    free(g->buf);
    memset(g, 0, sizeof *g);
}

int gen_text_feed(gen_text *g, const char *piece, size_t len, const char **out, size_t *out_len, qerr *e) {
    *out = "";
    *out_len = 0;
    if (g->stopped) return 0;
    if (g->n + len + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->n + len + 1) cap *= 2;
        char *b = realloc(g->buf, cap);
        if (!b) return qerr_set(e, "out of memory");
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->n, piece, len);
    g->n += len;
    g->buf[g->n] = 0;
    size_t upto = g->n;
    for (int k = 0; k < g->n_stop; k++) {
        /* An occurrence cannot start before `emitted`: we would have stopped.
         * memmem, not strstr: token bytes may contain NUL. */
        if (!g->stop[k][0]) continue;
        const char *hit = memmem(g->buf, g->n, g->stop[k], strlen(g->stop[k]));
        if (hit && (size_t)(hit - g->buf) < upto) { upto = (size_t)(hit - g->buf); g->stopped = true; }
    }
    if (!g->stopped) upto = utf8_complete(g->buf, g->n - stop_holdback(g->buf, g->n, g->stop, g->n_stop));
    if (upto > g->emitted) {
        *out = g->buf + g->emitted;
        *out_len = upto - g->emitted;
        g->emitted = upto;
    }
    return 0;
}

void gen_text_flush(gen_text *g, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (g->stopped || g->n <= g->emitted) return;
    *out = g->buf + g->emitted;
    *out_len = g->n - g->emitted;
    g->emitted = g->n;
}

int gen_run(model_ctx *c, const struct tokenizer *tok, int seq, const char *prompt, size_t prompt_len,
            const gen_params *p, gen_emit_fn emit, void *ud, int32_t **out_ids, int *n_out, gen_stats *st, qerr *e) {
    const model *m = c->m;
    int nv = m->hp.n_vocab;
    memset(st, 0, sizeof *st);
    if (tokenizer_n_vocab(tok) > nv)
        return qerr_set(e, "the vocabulary (%d tokens) is larger than the model's output (%d)", tokenizer_n_vocab(tok), nv);
    if (kv_cache_seq_len(&c->kv, seq) != 0) return qerr_set(e, "sequence %d is not empty", seq);

    double t0 = q_now();
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (tokenizer_encode(tok, prompt, prompt_len, p->add_special, p->parse_special, &ids, &n_ids, e)) return -1;
    st->t_tokenize = q_now() - t0;
    if (c->trace) qtrace_span(c->trace, "tokenize", "stage", t0, t0 + st->t_tokenize, (long long)n_ids);
    st->bytes_in = prompt_len;
    st->n_prompt = (int)n_ids;
    if (n_ids == 0) {
        free(ids);
        return qerr_set(e, "empty prompt and the vocabulary adds no BOS token: nothing to condition on");
    }
    int cap = c->kv.n_blocks * KV_BLOCK;
    if ((int)n_ids + p->n_predict > cap) {
        free(ids);
        return qerr_set(e, "prompt of %zu tokens plus %d to generate exceeds the context of %d", n_ids, p->n_predict, cap);
    }
    int32_t *hist = malloc(((size_t)n_ids + (size_t)p->n_predict + 1) * sizeof(int32_t));
    float *logits = malloc((size_t)nv * sizeof(float));
    int32_t *pos = malloc(n_ids * sizeof(int32_t)), *sq = malloc(n_ids * sizeof(int32_t));
    bool *want = calloc(n_ids, sizeof(bool));
    float *lp_logits = NULL;
    int32_t step[GEN_MAX_FORCED + 1], spos[GEN_MAX_FORCED + 1], sseq[GEN_MAX_FORCED + 1];
    bool swant[GEN_MAX_FORCED + 1];
    sampler *smp = sampler_new(&p->sp, nv);
    gen_text text;
    gen_text_init(&text, p->stop, p->n_stop);
    int rc = 0;
    if (!hist || !logits || !pos || !sq || !want || !smp) { rc = qerr_set(e, "out of memory"); goto done; }
    memcpy(hist, ids, n_ids * sizeof(int32_t));
    for (size_t i = 0; i < n_ids; i++) pos[i] = (int32_t)i, sq[i] = seq;
    want[n_ids - 1] = true;

    t0 = q_now();
    model_batch b = {(int)n_ids, ids, pos, sq, want};
    if (model_forward(c, &b, logits, e)) { rc = -1; goto done; }
    st->t_prefill = q_now() - t0;
    if (c->trace) qtrace_span(c->trace, "prefill", "stage", t0, t0 + st->t_prefill, (long long)n_ids);

    int n_hist = (int)n_ids;
    st->stop_reason = "length";
    for (int g = 0; g < p->n_predict; g++) {
        t0 = q_now();
        int32_t tok_id;
        if (p->pick) {
            /* logprobs report the model's distribution, not the constrained one */
            if (p->lp_out && !lp_logits) lp_logits = malloc((size_t)nv * sizeof(float));
            if (p->lp_out) {
                if (!lp_logits) { rc = qerr_set(e, "out of memory"); goto done; }
                memcpy(lp_logits, logits, (size_t)nv * sizeof(float));
            }
            tok_id = p->pick(p->pick_ud, smp, logits, hist, n_hist, p->n_predict - g, e);
            if (tok_id < 0) { rc = -1; goto done; }
        } else {
            tok_id = sampler_sample(smp, logits, hist, n_hist);
        }
        double t1 = q_now();
        st->t_sample += t1 - t0;
        if (c->trace) qtrace_span(c->trace, "sample", "stage", t0, t1, -1);
        if (p->lp_out) {
            float lp = sampler_logprobs(smp, lp_logits ? lp_logits : logits, tok_id, p->n_logprobs,
                                        p->top_out ? p->top_out + (size_t)g * (size_t)p->n_logprobs : NULL);
            p->lp_out[g] = (token_logprob){tok_id, lp};
        }
        if (tokenizer_is_eog(tok, tok_id)) { st->stop_reason = "eog"; break; }
        /* the step: the picked token, then any forced ones */
        step[0] = tok_id;
        int n_step = 1;
        if (p->pick && p->forced && !p->lp_out && g + 1 < p->n_predict) {
            int max = p->n_predict - g - 1;
            if (max > GEN_MAX_FORCED) max = GEN_MAX_FORCED;
            int nf = p->forced(p->pick_ud, step + 1, max, e);
            if (nf < 0) { rc = -1; goto done; }
            n_step += nf;
        }
        bool go_on = true;
        t0 = q_now();
        for (int k = 0; k < n_step && go_on && !text.stopped; k++) {
            hist[n_hist++] = step[k];
            st->n_gen++;
            size_t plen, olen;
            const char *piece = tokenizer_piece(tok, step[k], &plen), *out;
            if (gen_text_feed(&text, piece ? piece : "", piece ? plen : 0, &out, &olen, e)) { rc = -1; goto done; }
            if (olen) {
                go_on = emit ? emit(ud, out, olen) : true;
                st->bytes_out += olen;
            }
        }
        double t1d = q_now();
        st->t_detokenize += t1d - t0;
        if (c->trace) qtrace_span(c->trace, "detokenize", "stage", t0, t1d, -1);
        if (!go_on) { st->stop_reason = "cancelled"; break; }
        if (text.stopped) { st->stop_reason = "stop"; break; }
        g += n_step - 1;
        if (g + 1 >= p->n_predict) break;

        t0 = q_now();
        for (int k = 0; k < n_step; k++) spos[k] = n_hist - n_step + k, sseq[k] = seq, swant[k] = k == n_step - 1;
        model_batch one = {n_step, step, spos, sseq, n_step > 1 ? swant : NULL};
        if (model_forward(c, &one, logits, e)) { rc = -1; goto done; }
        t1d = q_now();
        st->t_decode += t1d - t0;
        if (c->trace) qtrace_span(c->trace, "decode", "stage", t0, t1d, n_step);
    }
    /* What was held back (an incomplete UTF-8 tail, a partial stop string)
     * is output at the end: the text is what the model produced. */
    if (strcmp(st->stop_reason, "cancelled") != 0) {
        const char *out;
        size_t olen;
        gen_text_flush(&text, &out, &olen);
        if (olen && emit) emit(ud, out, olen);
        st->bytes_out += olen;
    }
    if (out_ids) {
        int ng = n_hist - (int)n_ids;
        *out_ids = malloc(((size_t)ng + 1) * sizeof(int32_t));
        if (!*out_ids) { rc = qerr_set(e, "out of memory"); goto done; }
        memcpy(*out_ids, hist + n_ids, (size_t)ng * sizeof(int32_t));
        *n_out = ng;
    }
done:
    gen_text_free(&text);
    sampler_free(smp);
    free(want); free(pos); free(sq); free(logits); free(hist); free(ids); free(lp_logits);
    return rc;
}
