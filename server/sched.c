/* sched.c — continuous batching. One thread owns the model context; every
 * step it admits waiting requests into free slots (reusing the longest
 * cached prompt prefix), builds one batch with a chunk of prompt tokens for
 * requests still prefilling and one token for each request decoding, runs
 * the multi-sequence forward pass, samples, and sends text to the loop.
 * Requests join and leave between steps; a cancelled request leaves at the
 * next step. Each entry's logits do not depend on what else is in the batch
 * (the forward pass guarantees it), so greedy output is the same alone or
 * batched. */
#include "server/server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void job_release(job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->ids);
    sampler_free(j->smp);
    gen_text_free(&j->text);
    sb_free(&j->out);
    sb_free(&j->cite_hold);
    free(j->lp_pending);
    free(j->lp);
    structured_release(j);
    free(j->doc_text);
    free(j->doc_id);
    for (int i = 0; i < j->n_passages; i++) { free(j->passages[i].doc_id); free(j->passages[i].text); }
    free(j->passages);
    free(j);
}

static void emit(sched *s, job *j, const char *text, size_t len, bool done) {
    pthread_mutex_lock(&s->mu);
    if (s->n_ev == s->cap_ev) {
        int cap = s->cap_ev ? s->cap_ev * 2 : 64;
        job_event *ev = realloc(s->ev, (size_t)cap * sizeof *ev);
        if (!ev) abort(); /* cannot report: out of memory in the event path */
        s->ev = ev;
        s->cap_ev = cap;
    }
    char *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) abort();
        memcpy(copy, text, len);
    }
    /* the logprobs of the tokens this text completes go with it */
    s->ev[s->n_ev++] = (job_event){j, copy, len, done, j->lp_pending, j->n_lp_pending};
    j->lp_pending = NULL;
    j->n_lp_pending = j->cap_lp_pending = 0;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(s->async);
}

job_event *sched_take_events(sched *s, int *n) {
    pthread_mutex_lock(&s->mu);
    job_event *ev = s->ev;
    *n = s->n_ev;
    s->ev = NULL;
    s->n_ev = s->cap_ev = 0;
    pthread_mutex_unlock(&s->mu);
    return ev;
}

static void finish(sched *s, job *j, const char *reason) {
    snprintf(j->finish, sizeof j->finish, "%s", reason);
    j->t_done = q_now();
    if (j->slot >= 0) {
        /* the slot keeps the K/V of what it computed, for prefix reuse */
        int n = j->n_past;
        int32_t *cache = realloc(s->slot_cache[j->slot], ((size_t)n + 1) * sizeof(int32_t));
        if (cache) {
            memcpy(cache, j->ids, (size_t)n * sizeof(int32_t));
            s->slot_cache[j->slot] = cache;
            s->slot_cache_n[j->slot] = n;
        } else {
            kv_cache_seq_truncate(&s->ctx.kv, j->slot, 0);
            s->slot_cache_n[j->slot] = 0;
        }
        s->slots[j->slot] = NULL;
        atomic_fetch_sub(&s->n_busy, 1);
    }
    emit(s, j, NULL, 0, true);
    job_release(j);
}

static void fail_job(sched *s, job *j, int status, const char *msg) {
    j->err_status = status;
    snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
    finish(s, j, "error");
}

static int push_id(job *j, int32_t id) {
    if (j->n_ids == j->cap_ids) {
        int cap = j->cap_ids ? j->cap_ids * 2 : 64;
        int32_t *ids = realloc(j->ids, (size_t)cap * sizeof *ids);
        if (!ids) return -1;
        j->ids = ids;
        j->cap_ids = cap;
    }
    j->ids[j->n_ids++] = id;
    return 0;
}

/* The sampled token's log-probability (after penalties, before filters and
 * temperature, as quire run --logprobs reports) and its alternatives;
 * sent with the next text event. */
static int push_logprob(job *j, int32_t t, const float *logits) {
    if (j->n_lp_pending == j->cap_lp_pending) {
        int cap = j->cap_lp_pending ? j->cap_lp_pending * 2 : 4;
        tok_lp *p = realloc(j->lp_pending, (size_t)cap * sizeof *p);
        if (!p) return -1;
        j->lp_pending = p;
        j->cap_lp_pending = cap;
    }
    tok_lp *x = &j->lp_pending[j->n_lp_pending++];
    memset(x, 0, sizeof *x);
    x->id = t;
    x->logprob = sampler_logprobs(j->smp, logits, t, j->n_logprobs, x->top);
    return 0;
}

/* Blocks a sequence holds or will need. */
static int blocks_for(int n) { return (n + KV_BLOCK - 1) / KV_BLOCK; }

/* Tries to place the job at the head of the queue; returns false if it must
 * wait (no slot or not enough KV), true if it was placed or failed. */
static bool admit(sched *s, job *j) {
    kv_cache *kv = &s->ctx.kv;
    if (!j->ids) {
        qerr e;
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(s->tok, j->prompt, j->prompt_len, j->add_special, j->kind != JOB_COMPLETION, &ids, &n, &e)) {
            fail_job(s, j, 400, e.msg);
            return true;
        }
        j->ids = ids;
        j->n_ids = j->cap_ids = (int)n;
        j->n_prompt = (int)n;
        if (n == 0) { fail_job(s, j, 400, "the prompt is empty and the model adds no BOS token"); return true; }
        int capacity = kv->n_blocks * KV_BLOCK;
        if ((int)n + j->max_tokens > capacity) {
            char msg[256];
            snprintf(msg, sizeof msg, "prompt of %zu tokens plus max_tokens %d exceeds the context of %d", n, j->max_tokens,
                     capacity);
            fail_job(s, j, 400, msg);
            return true;
        }
    }
    /* the free slot with the longest common prefix */
    int best = -1, best_common = -1;
    for (int i = 0; i < s->n_slots; i++) {
        if (s->slots[i]) continue;
        int c = 0, lim = s->slot_cache_n[i] < j->n_prompt ? s->slot_cache_n[i] : j->n_prompt;
        while (c < lim && s->slot_cache[i][c] == j->ids[c]) c++;
        if (c > best_common) best = i, best_common = c;
    }
    if (best < 0) return false;
    /* the last prompt token is always evaluated, for its logits */
    if (best_common >= j->n_prompt) best_common = j->n_prompt - 1;
    int need = blocks_for(j->n_prompt + j->max_tokens) - blocks_for(best_common);
    /* blocks idle slots hold only as cache can be reclaimed, and so can the
     * chosen slot's blocks past the shared prefix */
    int held = kv->seqs[best].n_blocks - blocks_for(best_common);
    if (held < 0) held = 0;
    for (int i = 0; i < s->n_slots; i++)
        if (!s->slots[i] && i != best) held += kv->seqs[i].n_blocks;
    if (need > kv->n_free + held) return false;
    kv_cache_seq_truncate(kv, best, best_common);
    for (int i = 0; i < s->n_slots && need > kv->n_free; i++)
        if (!s->slots[i] && i != best && kv->seqs[i].n_blocks > 0) {
            kv_cache_seq_truncate(kv, i, 0);
            s->slot_cache_n[i] = 0;
        }
    kv_cache_seq_truncate(kv, best, best_common);
    qerr e;
    if (kv_cache_seq_reserve(kv, best, j->n_prompt + j->max_tokens, &e)) { fail_job(s, j, 503, e.msg); return true; }
    j->slot = best;
    j->n_past = best_common;
    j->n_cached = best_common;
    j->t_admit = q_now();
    j->smp = sampler_new(&j->sp, s->m->hp.n_vocab);
    if (!j->smp) { fail_job(s, j, 500, "out of memory"); return true; }
    gen_text_init(&j->text, (const char *const *)j->stop, j->n_stop);
    s->slots[best] = j;
    s->slot_cache_n[best] = 0; /* the slot's cache now belongs to the job */
    atomic_fetch_add(&s->n_busy, 1);
    atomic_fetch_add(&s->n_tokens_in, j->n_prompt);
    atomic_fetch_add(&s->n_cached_tokens, best_common);
    return true;
}

static void *sched_main(void *arg) {
    sched *s = arg;
    const model *m = s->m;
    int nv = m->hp.n_vocab;
    int cap = s->prefill_chunk + s->n_slots;
    int32_t *tok = malloc((size_t)cap * sizeof *tok), *pos = malloc((size_t)cap * sizeof *pos);
    int32_t *seq = malloc((size_t)cap * sizeof *seq);
    bool *want = malloc((size_t)cap * sizeof *want);
    job **owner = malloc((size_t)cap * sizeof *owner);
    float *logits = malloc((size_t)cap * nv * sizeof(float));
    if (!tok || !pos || !seq || !want || !owner || !logits) abort();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && s->q_len == 0 && atomic_load(&s->n_busy) == 0) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop && s->q_len == 0 && atomic_load(&s->n_busy) == 0) { pthread_mutex_unlock(&s->mu); break; }
        /* admit in arrival order; a request that must wait blocks those behind it */
        while (s->q_len > 0) {
            job *j = s->queue[s->q_head];
            if (atomic_load(&j->cancelled)) {
                s->q_head = (s->q_head + 1) % s->q_cap;
                s->q_len--;
                pthread_mutex_unlock(&s->mu);
                atomic_fetch_add(&s->n_cancelled, 1);
                j->slot = -1;
                finish(s, j, "cancelled");
                pthread_mutex_lock(&s->mu);
                continue;
            }
            pthread_mutex_unlock(&s->mu);
            bool placed = admit(s, j);
            pthread_mutex_lock(&s->mu);
            if (!placed) break;
            s->q_head = (s->q_head + 1) % s->q_cap;
            s->q_len--;
        }
        atomic_store(&s->n_waiting, s->q_len);
        pthread_mutex_unlock(&s->mu);

        /* leave: cancelled or past the deadline */
        double now = q_now();
        for (int i = 0; i < s->n_slots; i++) {
            job *j = s->slots[i];
            if (!j) continue;
            if (atomic_load(&j->cancelled)) {
                atomic_fetch_add(&s->n_cancelled, 1);
                finish(s, j, "cancelled");
            } else if (j->deadline > 0 && now > j->deadline) {
                fail_job(s, j, 504, "the request's time limit was reached");
            }
        }
        /* one batch: decoding slots first (one token each), then prompt chunks */
        int n = 0, budget = s->prefill_chunk;
        for (int i = 0; i < s->n_slots; i++) {
            job *j = s->slots[i];
            if (!j || j->n_past < j->n_prompt) continue;
            tok[n] = j->ids[j->n_ids - 1], pos[n] = j->n_ids - 1, seq[n] = i, want[n] = true, owner[n] = j;
            n++;
        }
        for (int i = 0; i < s->n_slots && budget > 0; i++) {
            job *j = s->slots[i];
            if (!j || j->n_past >= j->n_prompt) continue;
            int take = j->n_prompt - j->n_past;
            if (take > budget) take = budget;
            for (int k = 0; k < take; k++) {
                int p = j->n_past + k;
                tok[n] = j->ids[p], pos[n] = p, seq[n] = i, want[n] = (p == j->n_prompt - 1), owner[n] = j;
                n++;
            }
            budget -= take;
        }
        if (n == 0) continue;
        model_batch b = {n, tok, pos, seq, want};
        qerr e;
        if (model_forward(&s->ctx, &b, logits, &e)) {
            /* should not happen (room is reserved at admission): fail them all */
            for (int i = 0; i < s->n_slots; i++)
                if (s->slots[i]) fail_job(s, s->slots[i], 500, e.msg);
            continue;
        }
        atomic_fetch_add(&s->n_steps, 1);
        int row = 0;
        for (int k = 0; k < n; k++) {
            job *j = owner[k];
            if (pos[k] >= j->n_past) j->n_past = pos[k] + 1;
            if (!want[k]) continue;
            float *lg = logits + (size_t)row++ * nv;
            if (j->n_gen >= j->max_tokens) { finish(s, j, "length"); continue; }
            int32_t t;
            float *lp_src = lg;
            if (j->gm) {
                /* structured output: the grammar and the budget (max_tokens
                 * left) choose among the allowed tokens; logprobs report the
                 * model's own distribution */
                if (j->n_logprobs >= 0) {
                    if (!j->lp_logits && !(j->lp_logits = malloc((size_t)nv * sizeof(float)))) { fail_job(s, j, 500, "out of memory"); continue; }
                    memcpy(j->lp_logits, lg, (size_t)nv * sizeof(float));
                    lp_src = j->lp_logits;
                }
                sgr_sample_stats gst;
                t = sgr_sample(j->gm, j->smp, lg, j->ids, j->n_ids, j->max_tokens - j->n_gen, &gst, &e);
                if (t < 0) { fail_job(s, j, 500, e.msg); continue; }
            } else {
                t = sampler_sample(j->smp, lg, j->ids, j->n_ids);
            }
            if (!j->t_first) j->t_first = q_now();
            if (tokenizer_is_eog(s->tok, t)) { finish(s, j, "stop"); continue; }
            if (j->n_logprobs >= 0 && push_logprob(j, t, lp_src)) { fail_job(s, j, 500, "out of memory"); continue; }
            if (push_id(j, t)) { fail_job(s, j, 500, "out of memory"); continue; }
            j->n_gen++;
            atomic_fetch_add(&s->n_tokens_out, 1);
            size_t plen, olen;
            const char *piece = tokenizer_piece(s->tok, t, &plen), *out;
            if (gen_text_feed(&j->text, piece ? piece : "", piece ? plen : 0, &out, &olen, &e)) { fail_job(s, j, 500, e.msg); continue; }
            if (olen) emit(s, j, out, olen, false);
            if (j->text.stopped) { finish(s, j, "stop"); continue; }
            /* a document nothing can follow ends here (saves the step that
             * would only sample the end token); one that is complete when
             * the budget runs out ended well too */
            bool complete = j->gm && sgr_matcher_done(j->gm);
            if (complete || j->n_gen >= j->max_tokens) {
                gen_text_flush(&j->text, &out, &olen);
                if (olen) emit(s, j, out, olen, false);
                finish(s, j, complete || (j->gm && sgr_matcher_can_end(j->gm)) ? "stop" : "length");
            }
        }
    }
    free(tok); free(pos); free(seq); free(want); free(owner); free(logits);
    return NULL;
}

bool sched_submit(sched *s, job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->q_len == s->q_cap || s->stop) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    atomic_fetch_add(&j->refs, 1);
    j->slot = -1;
    s->queue[(s->q_head + s->q_len) % s->q_cap] = j;
    s->q_len++;
    atomic_store(&s->n_waiting, s->q_len);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

int sched_start(sched *s, const model *m, const tokenizer *tok, const server_config *c, uv_async_t *async, qerr *e) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->async = async;
    s->n_slots = c->n_slots > 0 ? c->n_slots : 4;
    s->prefill_chunk = c->prefill_chunk > 0 ? c->prefill_chunk : 256;
    s->q_cap = c->max_queue > 0 ? c->max_queue : 64;
    s->queue = calloc((size_t)s->q_cap, sizeof *s->queue);
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->slot_cache = calloc((size_t)s->n_slots, sizeof *s->slot_cache);
    s->slot_cache_n = calloc((size_t)s->n_slots, sizeof *s->slot_cache_n);
    if (!s->queue || !s->slots || !s->slot_cache || !s->slot_cache_n) return qerr_set(e, "out of memory");
    int n_ctx = c->n_ctx > 0 ? c->n_ctx : s->n_slots * (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    model_ctx_params cp = {.n_ctx = n_ctx, .n_seq = s->n_slots, .n_batch = s->prefill_chunk + s->n_slots,
                           .n_threads = c->n_threads};
    if (model_ctx_init(&s->ctx, m, &cp, e)) return -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        model_ctx_free(&s->ctx);
        return qerr_set(e, "cannot start the scheduler thread");
    }
    return 0;
}

void sched_stop(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    model_ctx_free(&s->ctx);
    for (int i = 0; i < s->n_slots; i++) free(s->slot_cache[i]);
    free(s->slot_cache);
    free(s->slot_cache_n);
    free(s->slots);
    free(s->queue);
    for (int i = 0; i < s->n_ev; i++) { free(s->ev[i].text); free(s->ev[i].lp); }
    free(s->ev);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}
