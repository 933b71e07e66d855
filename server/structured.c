/* structured.c — structured output for the server: response_format
 * (json_object / json_schema) and /v1/extract share one grammar cache. A
 * schema is compiled once (on a libuv worker, never on the loop) into a
 * grammar whose token-mask cache every later request with the same schema
 * reuses; each request gets its own matcher, and the scheduler samples
 * through sgr_sample with the request's remaining max_tokens as the budget,
 * so the JSON always closes. A schema keyword that cannot be enforced is a
 * 400 naming it, unless the caller asked for best effort (json_schema with
 * "strict": false), in which case the output is validated afterwards and the
 * response says whether it conforms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define GCACHE_MAX 64

struct gentry {
    uint64_t hash;
    char *key;             /* kind + strictness + schema text: the cache key */
    size_t key_len;
    sgr_grammar *g;
    schema *s;             /* for validating best-effort output; NULL for json_object */
    int shortest;          /* tokens of the shortest valid document */
    bool enforced;         /* every keyword enforced by the grammar */
    char skipped[600];     /* the first keyword not enforced, "kw at /ptr" */
    int refs;              /* the cache's own + requests' */
    gcache *owner;
    uint64_t used;
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int gcache_init(gcache *c, const tokenizer *tok, qerr *e) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->tok = tok;
    return sgr_vocab_new(tok, &c->v, e);
}

static void gentry_free(gentry *g) {
    if (!g) return;
    sgr_grammar_free(g->g);
    if (g->s) schema_free(g->s);
    free(g->key);
    free(g);
}

void gcache_free(gcache *c) {
    for (int i = 0; i < c->n; i++) gentry_free(c->e[i]);
    free(c->e);
    sgr_vocab_free(c->v);
    pthread_mutex_destroy(&c->mu);
}

void gcache_release(gentry *g) {
    if (!g) return;
    gcache *c = g->owner;
    pthread_mutex_lock(&c->mu);
    bool gone = --g->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (gone) gentry_free(g);
}

/* Compiles outside the lock (a hostile schema may take its bounded time
 * without holding up cache hits). */
static int compile(gcache *c, int kind, const json *sch, bool strict, gentry **out, int *status, qerr *e) {
    gentry *g = calloc(1, sizeof *g);
    if (!g) return qerr_set(e, "out of memory");
    g->enforced = true;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) { free(g); return qerr_set(e, "out of memory"); }
    int32_t start;
    sgr_schema_opts so = {.best_effort = !strict};
    if (kind == RF_JSON_OBJECT) {
        start = sgr_schema_any_json_object(b, &so, 16, e);
    } else {
        schema_opts sco = {0}; /* remote $refs are an error: nothing is fetched */
        if (schema_compile(sch, &sco, &g->s, e)) {
            sgr_gb_free(b);
            free(g);
            *status = 400;
            return qerr_wrap(e, "response schema");
        }
        sgr_unenforced *sk = NULL;
        size_t nsk = 0;
        start = sgr_schema_to_grammar(g->s, &so, b, &sk, &nsk, e);
        if (nsk) {
            g->enforced = false;
            snprintf(g->skipped, sizeof g->skipped, "%s at %s", sk[0].keyword, sk[0].pointer[0] ? sk[0].pointer : "/");
        }
        free(sk);
    }
    int rc = start < 0 ? -1 : sgr_grammar_build(b, start, &g->g, e);
    sgr_gb_free(b);
    if (rc) {
        gentry_free(g);
        *status = 400;
        return -1;
    }
    char *txt;
    size_t tl;
    if (sgr_extract_shortest(g->g, c->v, c->tok, &txt, &tl, &g->shortest, e)) {
        gentry_free(g);
        *status = 400;
        return -1;
    }
    free(txt);
    *out = g;
    return 0;
}

int gcache_get(gcache *c, int kind, const json *sch, bool strict, gentry **out, int *status, qerr *e) {
    *status = 500;
    char *text = NULL;
    size_t tl = 0;
    if (kind == RF_JSON_SCHEMA && json_serialize(sch, NULL, &text, &tl, e)) return -1;
    size_t kl = tl + 2;
    char *key = malloc(kl + 1);
    if (!key) { free(text); return qerr_set(e, "out of memory"); }
    key[0] = (char)('0' + kind);
    key[1] = strict ? 's' : 'b';
    if (tl) memcpy(key + 2, text, tl);
    key[kl] = 0;
    free(text);
    uint64_t h = fnv1a(key, kl);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        gentry *g = c->e[i];
        if (g->hash == h && g->key_len == kl && !memcmp(g->key, key, kl)) {
            g->refs++;
            g->used = ++c->tick;
            c->hits++;
            pthread_mutex_unlock(&c->mu);
            free(key);
            *out = g;
            return 0;
        }
    }
    c->misses++;
    pthread_mutex_unlock(&c->mu);
    gentry *g = NULL;
    if (compile(c, kind, sch, strict, &g, status, e)) { free(key); return -1; }
    g->hash = h;
    g->key = key;
    g->key_len = kl;
    g->refs = 2; /* the cache's and the caller's */
    g->owner = c;
    pthread_mutex_lock(&c->mu);
    g->used = ++c->tick;
    if (c->n == GCACHE_MAX) { /* evict the least recently used */
        int lru = 0;
        for (int i = 1; i < c->n; i++)
            if (c->e[i]->used < c->e[lru]->used) lru = i;
        gentry *old = c->e[lru];
        c->e[lru] = c->e[--c->n];
        if (--old->refs == 0) {
            pthread_mutex_unlock(&c->mu);
            gentry_free(old);
            pthread_mutex_lock(&c->mu);
        }
    }
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 8;
        gentry **p = realloc(c->e, (size_t)nc * sizeof *p);
        if (p) c->e = p, c->cap = nc;
    }
    if (c->n < c->cap) c->e[c->n++] = g;
    else g->refs--; /* could not cache it: the caller's reference only */
    pthread_mutex_unlock(&c->mu);
    *out = g;
    return 0;
}

/* response_format → kind, schema, strictness; 0 with kind RF_NONE when
 * absent or "text". Errors name the parameter. */
int rf_parse(const json *rf, int *kind, const json **sch, bool *strict, const char **param, qerr *e) {
    *kind = RF_NONE;
    *sch = NULL;
    *strict = true;
    *param = "response_format";
    if (!rf || json_typeof(rf) == JSON_NULL) return 0;
    const json *t = json_get(rf, "type");
    if (!json_is_object(rf) || !json_is_string(t))
        return qerr_set(e, "'response_format' must be an object with a 'type' (text, json_object or json_schema)");
    const char *ts = json_string(t);
    if (!strcmp(ts, "text")) return 0;
    if (!strcmp(ts, "json_object")) { *kind = RF_JSON_OBJECT; return 0; }
    if (strcmp(ts, "json_schema") != 0)
        return qerr_set(e, "response_format type '%s' is not supported (text, json_object or json_schema)", ts);
    const json *js = json_get(rf, "json_schema");
    *param = "response_format.json_schema";
    if (!json_is_object(js)) return qerr_set(e, "response_format json_schema needs a 'json_schema' object");
    const json *s = json_get(js, "schema"), *st = json_get(js, "strict");
    *param = "response_format.json_schema.schema";
    if (!s || (!json_is_object(s) && !json_is_bool(s))) return qerr_set(e, "'json_schema.schema' must be a JSON Schema (an object)");
    if (st && json_typeof(st) != JSON_NULL && !json_is_bool(st)) {
        *param = "response_format.json_schema.strict";
        return qerr_set(e, "'json_schema.strict' must be a boolean");
    }
    /* OpenAI's default is strict false: best effort, validated afterwards. */
    *strict = st && json_typeof(st) == JSON_TRUE;
    *kind = RF_JSON_SCHEMA;
    *sch = s;
    return 0;
}

/* Worker side of a structured request: the grammar (cached) and the budget
 * check; the matcher is made here too (cheap) so the scheduler only samples. */
int structured_prepare(srv *s, job *j, int *status, const char **param, qerr *e) {
    *param = j->rf_kind == RF_JSON_SCHEMA ? "response_format.json_schema.schema" : "response_format";
    if (j->kind == JOB_EXTRACT) *param = "schema";
    if (gcache_get(&s->gc, j->rf_kind, j->rf_schema, j->rf_strict, &j->ge, status, e)) return -1;
    if (j->max_tokens < j->ge->shortest) {
        *status = 400;
        *param = "max_tokens";
        return qerr_set(e, "max_tokens %d cannot hold the shortest JSON the schema allows (%d tokens)", j->max_tokens,
                        j->ge->shortest);
    }
    if (sgr_matcher_new(j->ge->g, s->gc.v, &j->gm, e)) { *status = 500; return -1; }
    return 0;
}

void structured_release(job *j) {
    sgr_matcher_free(j->gm);
    j->gm = NULL;
    free(j->lp_logits);
    j->lp_logits = NULL;
    if (j->ge) gcache_release(j->ge);
    j->ge = NULL;
    json_free(j->rf_schema);
    j->rf_schema = NULL;
}

/* For best-effort output: whether it conforms, as response fields. Enforced
 * grammars conform by construction and add nothing. */
void structured_annotate(sbuf *b, const job *j, const char *text, size_t len) {
    if (!j->ge || j->ge->enforced) return;
    bool valid = false;
    char why[1400] = "";
    json *inst = NULL;
    qerr pe;
    if (json_parse(text, len, NULL, &inst, &pe)) {
        snprintf(why, sizeof why, "not JSON: %s", pe.msg);
    } else if (j->ge->s) {
        schema_error se;
        int v = schema_validate(j->ge->s, inst, &se);
        valid = v == 1;
        if (v == 0) snprintf(why, sizeof why, "%s at '%s': %s", se.keyword, se.instance_ptr, se.msg);
        else if (v < 0) snprintf(why, sizeof why, "validation did not finish: %s", se.msg);
    }
    json_free(inst);
    sb_puts(b, "\"quire_schema\":{\"enforced\":false,\"not_enforced\":");
    sb_json_str(b, j->ge->skipped, strlen(j->ge->skipped));
    sb_printf(b, ",\"valid\":%s", valid ? "true" : "false");
    if (!valid) {
        sb_puts(b, ",\"error\":");
        sb_json_str(b, why, strlen(why));
    }
    sb_puts(b, "},");
}

bool structured_enforced(const job *j) { return !j->ge || j->ge->enforced; }
