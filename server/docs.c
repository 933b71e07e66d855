/* docs.c — the document index over HTTP: POST /v1/documents (chunk, embed,
 * index durably), GET and DELETE /v1/documents/{id}, POST /v1/search, and
 * the retrieval half of POST /v1/answer (answer.c renders and generates).
 *
 * Threads: the index handle has one owner at a time (srv.idx_mu) and is
 * only touched on libuv's worker threads; the loop thread copies the body
 * and the caller's principals into an op, queues it, and sends what the
 * worker built. Body parsing happens on the worker too, so a large upload
 * never stalls /health.
 *
 * ACL policy (principals come from the caller's API key line):
 *  - the principal "admin" reads and writes every document;
 *  - any other key reads public documents (no ACL) and documents whose ACL
 *    names one of its principals; search filters inside the index, so k
 *    results come back when k readable ones exist;
 *  - on write, an omitted "acl" means the key's own principals (public when
 *    the key has none, and for admin); "acl": [] makes the document public; a non-empty
 *    ACL must name at least one of the key's principals (403 otherwise);
 *    replacing or deleting an existing id needs read access to it;
 *  - a document the caller may not read is "not found" (404), never 403;
 *  - without --api-key-file every caller is anonymous with no principals:
 *    documents are public and "acl" is rejected (ACLs need keys). */
#include "server/server_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#define ADMIN_PRINCIPAL "admin"
#define MAX_BATCH_DOCS 1024
#define MAX_K 100

enum { OP_ADD, OP_GET, OP_DELETE, OP_SEARCH, OP_ANSWER, OP_EXTRACT };

typedef struct doc_op {
    int kind;
    char *body;               /* request body copy (parsed on the worker) */
    size_t body_len;
    char *doc_id;             /* GET/DELETE */
    char **principals;
    int n_principals;
    bool admin, keyed;
    /* result */
    int status;
    char param[32];
    char msg[512];
    sbuf out;
    char **touched;           /* document ids, for the audit line */
    int n_touched;
    /* answer */
    char *question;
    passage *ps;
    int n_ps;
    int max_tokens;
    double temperature, seed;
    bool has_seed, stream, include_usage;
    /* extract */
    job *xj;                  /* prepared on the worker, submitted after */
} doc_op;

static void op_free(doc_op *o) {
    if (!o) return;
    free(o->body);
    free(o->doc_id);
    for (int i = 0; i < o->n_principals; i++) free(o->principals[i]);
    free(o->principals);
    sb_free(&o->out);
    for (int i = 0; i < o->n_touched; i++) free(o->touched[i]);
    free(o->touched);
    free(o->question);
    for (int i = 0; i < o->n_ps; i++) { free(o->ps[i].doc_id); free(o->ps[i].text); }
    free(o->ps);
    if (o->xj) job_release(o->xj);
    free(o);
}

static int op_fail(doc_op *o, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int op_fail(doc_op *o, int status, const char *param, const char *fmt, ...) {
    o->status = status;
    snprintf(o->param, sizeof o->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof o->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static void op_touch(doc_op *o, const char *id) {
    char **t = realloc(o->touched, (size_t)(o->n_touched + 1) * sizeof *t);
    if (!t) return;
    o->touched = t;
    if ((t[o->n_touched] = strdup(id))) o->n_touched++;
}

/* ------------------------------------------------------------------------ */
/* access */
static bool has_principal(const doc_op *o, const char *p) {
    for (int i = 0; i < o->n_principals; i++)
        if (strcmp(o->principals[i], p) == 0) return true;
    return false;
}

static bool may_read(const doc_op *o, const index_doc_info *d) {
    if (o->admin || d->n_acl == 0) return true;
    for (int i = 0; i < d->n_acl; i++)
        if (has_principal(o, d->acl[i])) return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers on the worker */
static int parse_body(doc_op *o, json **out) {
    qerr e;
    if (json_parse(o->body ? o->body : "", o->body_len, NULL, out, &e)) return op_fail(o, 400, NULL, "%s", e.msg);
    if (!json_is_object(*out)) {
        json_free(*out);
        *out = NULL;
        return op_fail(o, 400, NULL, "the body must be a JSON object");
    }
    return 0;
}

/* Optional string field: NULL when absent; an error when of another type. */
static int opt_str(doc_op *o, const json *obj, const char *k, const char *ctx, const char **out) {
    const json *v = json_get(obj, k);
    *out = NULL;
    if (!v || json_typeof(v) == JSON_NULL) return 0;
    if (!json_is_string(v)) return op_fail(o, 400, k, "%s'%s' must be a string", ctx, k);
    if (strlen(json_string(v)) != json_string_len(v)) return op_fail(o, 400, k, "%s'%s' must not contain NUL characters", ctx, k);
    *out = json_string(v);
    return 0;
}

static int opt_num(doc_op *o, const json *obj, const char *k, double lo, double hi, bool integer, double *out, bool *given) {
    const json *v = json_get(obj, k);
    if (given) *given = false;
    if (!v || json_typeof(v) == JSON_NULL) return 0;
    if (!json_is_number(v) || json_number(v) < lo || json_number(v) > hi || (integer && !json_number_is_integer(v)))
        return op_fail(o, 400, k, "'%s' must be %s between %g and %g", k, integer ? "an integer" : "a number", lo, hi);
    *out = json_number(v);
    if (given) *given = true;
    return 0;
}

/* mode, filter, fusion, alpha, k into search options (filter owned by *flt). */
static int parse_search(doc_op *o, const json *b, int k_default, search_opts *so, filter **flt) {
    search_opts_default(so);
    *flt = NULL;
    double k = k_default, alpha = 0.5;
    const char *mode, *fexpr, *fusion;
    if (opt_num(o, b, "k", 1, MAX_K, true, &k, NULL) || opt_num(o, b, "alpha", 0, 1, false, &alpha, NULL)) return -1;
    if (opt_str(o, b, "mode", "", &mode) || opt_str(o, b, "filter", "", &fexpr) || opt_str(o, b, "fusion", "", &fusion)) return -1;
    so->k = (int)k;
    so->alpha = (float)alpha;
    if (!mode || !strcmp(mode, "bm25")) so->mode = SEARCH_BM25;
    else if (!strcmp(mode, "vector")) so->mode = SEARCH_VECTOR;
    else if (!strcmp(mode, "hybrid")) so->mode = SEARCH_HYBRID;
    else return op_fail(o, 400, "mode", "unknown mode '%s' (bm25, vector, hybrid)", mode);
    if (!fusion || !strcmp(fusion, "rrf")) so->fusion = FUSION_RRF;
    else if (!strcmp(fusion, "weighted")) so->fusion = FUSION_WEIGHTED;
    else return op_fail(o, 400, "fusion", "unknown fusion '%s' (rrf, weighted)", fusion);
    if (fexpr) {
        qerr e;
        if (filter_parse(flt, fexpr, &e)) return op_fail(o, 400, "filter", "%s", e.msg);
        so->filter = *flt;
    }
    so->principals = (const char *const *)o->principals;
    so->n_principals = o->n_principals;
    so->ignore_acl = o->admin;
    return 0;
}

/* The chunk's number inside its document (chunk ids are consecutive per document). */
static size_t chunk_number(const rag_index *x, const search_hit *h) {
    index_doc_info d;
    if (!index_get_doc(x, h->doc_id, &d) || d.n_chunks == 0) return 0;
    search_hit first;
    index_doc_chunk(x, &d, 0, &first);
    return (size_t)(h->chunk_id - first.chunk_id);
}

/* The index's own error for a search: a mode the index cannot serve is the
 * caller's mistake (400); anything else is ours (500). */
static int search_failed(doc_op *o, const qerr *e) {
    if (strstr(e->msg, "no embedding model")) return op_fail(o, 400, "mode", "%s", e->msg);
    return op_fail(o, 500, NULL, "%s", e->msg);
}

/* ------------------------------------------------------------------------ */
/* operations (worker thread, idx_mu held) */
static int do_add(srv *s, doc_op *o) {
    json *b;
    if (parse_body(o, &b)) return -1;
    const json *list = json_get(b, "documents");
    size_t n = 1;
    if (list) {
        if (!json_is_array(list) || json_size(list) == 0 || json_size(list) > MAX_BATCH_DOCS) {
            json_free(b);
            return op_fail(o, 400, "documents", "'documents' must be an array of 1 to %d documents", MAX_BATCH_DOCS);
        }
        n = json_size(list);
    }
    index_doc *docs = calloc(n, sizeof *docs);
    char **ids = calloc(n, sizeof *ids), **metas = calloc(n, sizeof *metas);
    const char ***acls = calloc(n, sizeof *acls);
    int rc = 0;
    if (!docs || !ids || !metas || !acls) rc = op_fail(o, 500, NULL, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        const json *d = list ? json_at(list, i) : b;
        char ctx[48] = "";
        if (list) snprintf(ctx, sizeof ctx, "documents[%zu]: ", i);
        if (!json_is_object(d)) { rc = op_fail(o, 400, "documents", "%sa document must be an object", ctx); break; }
        const char *id, *title, *text, *format;
        if (opt_str(o, d, "id", ctx, &id) || opt_str(o, d, "title", ctx, &title) || opt_str(o, d, "text", ctx, &text) ||
            opt_str(o, d, "format", ctx, &format)) { rc = -1; break; }
        if (!text) { rc = op_fail(o, 400, "text", "%s'text' is required", ctx); break; }
        if (id && (!id[0] || strlen(id) > 256)) { rc = op_fail(o, 400, "id", "%s'id' must be 1 to 256 bytes", ctx); break; }
        char gen[64];
        if (!id) {
            snprintf(gen, sizeof gen, "doc-%llx-%zu", (unsigned long long)((uint64_t)q_now() * 1000003u ^ (uint64_t)rand()), i);
            id = gen;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(ids[k], id) == 0) { rc = op_fail(o, 400, "id", "%sid '%s' appears twice in the batch", ctx, id); break; }
        if (rc) break;
        if (!(ids[i] = strdup(id))) { rc = op_fail(o, 500, NULL, "out of memory"); break; }
        docs[i].id = ids[i];
        docs[i].title = title;
        docs[i].text = text;
        docs[i].text_len = strlen(text);
        if (!format || !strcmp(format, "text")) docs[i].format = CHUNK_TEXT;
        else if (!strcmp(format, "markdown")) docs[i].format = CHUNK_MARKDOWN;
        else { rc = op_fail(o, 400, "format", "%sunknown format '%s' (text, markdown)", ctx, format); break; }
        const json *meta = json_get(d, "metadata");
        if (meta && json_typeof(meta) != JSON_NULL) {
            if (!json_is_object(meta)) { rc = op_fail(o, 400, "metadata", "%s'metadata' must be an object", ctx); break; }
            qerr e;
            size_t ml;
            if (json_serialize(meta, NULL, &metas[i], &ml, &e)) { rc = op_fail(o, 500, NULL, "%s", e.msg); break; }
            docs[i].meta_json = metas[i];
        }
        /* the ACL, under the policy at the top of this file */
        const json *acl = json_get(d, "acl");
        if (acl && json_typeof(acl) != JSON_NULL) {
            if (!json_is_array(acl) || json_size(acl) > 64) { rc = op_fail(o, 400, "acl", "%s'acl' must be an array of up to 64 principals", ctx); break; }
            size_t na = json_size(acl);
            if (na && !o->keyed) { rc = op_fail(o, 400, "acl", "%sACLs need API keys (start the server with --api-key-file)", ctx); break; }
            acls[i] = calloc(na + 1, sizeof *acls[i]);
            if (!acls[i]) { rc = op_fail(o, 500, NULL, "out of memory"); break; }
            bool mine = o->admin;
            for (size_t k = 0; k < na && rc == 0; k++) {
                const json *p = json_at(acl, k);
                if (!json_is_string(p) || json_string_len(p) == 0 || json_string_len(p) > 128 || strlen(json_string(p)) != json_string_len(p))
                    rc = op_fail(o, 400, "acl", "%sacl[%zu] must be a non-empty string", ctx, k);
                else {
                    acls[i][k] = json_string(p);
                    mine |= has_principal(o, json_string(p));
                }
            }
            if (rc) break;
            if (na && !mine) { rc = op_fail(o, 403, "acl", "%sthe ACL must include one of this key's principals", ctx); break; }
            docs[i].acl = acls[i];
            docs[i].n_acl = (int)na;
        } else if (!o->admin && o->n_principals > 0) {
            docs[i].acl = (const char *const *)o->principals;
            docs[i].n_acl = o->n_principals;
        }
        index_doc_info old;
        if (index_get_doc(s->idx, ids[i], &old) && !may_read(o, &old)) {
            rc = op_fail(o, 403, "id", "%sdocument '%s' cannot be written with this key", ctx, ids[i]);
            break;
        }
    }
    if (rc == 0) {
        qerr e;
        if (index_add(s->idx, docs, n, &e)) rc = op_fail(o, strstr(e.msg, "out of memory") ? 500 : 400, NULL, "%s", e.msg);
    }
    if (rc == 0) {
        size_t chunks = 0;
        sb_puts(&o->out, "{\"object\":\"list\",\"ids\":[");
        for (size_t i = 0; i < n; i++) {
            index_doc_info d;
            if (index_get_doc(s->idx, ids[i], &d)) chunks += d.n_chunks;
            if (i) sb_puts(&o->out, ",");
            sb_json_str(&o->out, ids[i], strlen(ids[i]));
            op_touch(o, ids[i]);
        }
        sb_printf(&o->out, "],\"chunks\":%zu}", chunks);
        o->status = 200;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids) free(ids[i]);
        if (metas) free(metas[i]);
        if (acls) free(acls[i]);
    }
    free(docs); free(ids); free(metas); free(acls);
    json_free(b);
    return rc;
}

static int do_get(srv *s, doc_op *o) {
    index_doc_info d;
    if (!index_get_doc(s->idx, o->doc_id, &d) || !may_read(o, &d))
        return op_fail(o, 404, "id", "no such document");
    op_touch(o, d.id);
    sbuf *b = &o->out;
    sb_puts(b, "{\"object\":\"document\",\"id\":");
    sb_json_str(b, d.id, strlen(d.id));
    sb_puts(b, ",\"title\":");
    sb_json_str(b, d.title, strlen(d.title));
    sb_puts(b, ",\"metadata\":");
    sb_puts(b, d.meta_json[0] ? d.meta_json : "{}");
    sb_puts(b, ",\"acl\":[");
    for (int i = 0; i < d.n_acl; i++) {
        if (i) sb_puts(b, ",");
        sb_json_str(b, d.acl[i], strlen(d.acl[i]));
    }
    sb_puts(b, "],\"chunks\":[");
    for (size_t k = 0; k < d.n_chunks; k++) {
        search_hit h;
        index_doc_chunk(s->idx, &d, k, &h);
        sb_printf(b, "%s{\"chunk\":%zu,\"start\":%zu,\"end\":%zu,\"text\":", k ? "," : "", k, h.start, h.end);
        sb_json_str(b, h.chunk, h.chunk_len);
        sb_puts(b, "}");
    }
    sb_puts(b, "]}");
    o->status = 200;
    return 0;
}

static int do_delete(srv *s, doc_op *o) {
    index_doc_info d;
    if (!index_get_doc(s->idx, o->doc_id, &d) || !may_read(o, &d))
        return op_fail(o, 404, "id", "no such document");
    qerr e;
    bool found;
    if (index_rm(s->idx, o->doc_id, &found, &e)) return op_fail(o, 500, NULL, "%s", e.msg);
    op_touch(o, o->doc_id);
    sb_puts(&o->out, "{\"object\":\"document.deleted\",\"id\":");
    sb_json_str(&o->out, o->doc_id, strlen(o->doc_id));
    sb_puts(&o->out, ",\"deleted\":true}");
    o->status = 200;
    return 0;
}

static int do_search(srv *s, doc_op *o) {
    json *b;
    if (parse_body(o, &b)) return -1;
    const char *query;
    search_opts so;
    filter *flt = NULL;
    int rc = opt_str(o, b, "query", "", &query);
    if (rc == 0 && (!query || !query[0])) rc = op_fail(o, 400, "query", "'query' must be a non-empty string");
    if (rc == 0) rc = parse_search(o, b, 10, &so, &flt);
    search_result r = {0};
    qerr e;
    if (rc == 0 && index_search(s->idx, query, &so, &r, &e)) rc = search_failed(o, &e);
    if (rc == 0) {
        sbuf *out = &o->out;
        sb_puts(out, "{\"object\":\"list\",\"results\":[");
        for (int i = 0; i < r.n; i++) {
            const search_hit *h = &r.hits[i];
            sb_puts(out, i ? ",{\"id\":" : "{\"id\":");
            sb_json_str(out, h->doc_id, strlen(h->doc_id));
            sb_printf(out, ",\"score\":%.6g,\"chunk\":%zu,\"start\":%zu,\"end\":%zu,\"text\":", h->score,
                      chunk_number(s->idx, h), h->start, h->end);
            sb_json_str(out, h->chunk, h->chunk_len);
            sb_puts(out, "}");
            op_touch(o, h->doc_id);
        }
        sb_puts(out, "]}");
        o->status = 200;
    }
    search_result_free(&r);
    filter_free(flt);
    json_free(b);
    return rc;
}

static int do_answer_retrieve(srv *s, doc_op *o) {
    json *b;
    if (parse_body(o, &b)) return -1;
    const char *q;
    search_opts so;
    filter *flt = NULL;
    double mt = 256, temp = 0, seed = 0;
    int rc = opt_str(o, b, "question", "", &q);
    if (rc == 0 && (!q || !q[0])) rc = op_fail(o, 400, "question", "'question' must be a non-empty string");
    if (rc == 0) rc = parse_search(o, b, 4, &so, &flt);
    if (rc == 0 && so.k > 20) rc = op_fail(o, 400, "k", "'k' must be between 1 and 20 for an answer");
    if (rc == 0) rc = opt_num(o, b, "max_tokens", 1, 1 << 20, true, &mt, NULL);
    if (rc == 0) rc = opt_num(o, b, "temperature", 0, 100, false, &temp, NULL);
    if (rc == 0) rc = opt_num(o, b, "seed", -9.2e18, 9.2e18, true, &seed, &o->has_seed);
    if (rc == 0) {
        const json *st = json_get(b, "stream"), *so_ = json_get(b, "stream_options");
        if (st && !json_is_bool(st) && json_typeof(st) != JSON_NULL) rc = op_fail(o, 400, "stream", "'stream' must be a boolean");
        o->stream = st && json_typeof(st) == JSON_TRUE;
        const json *iu = so_ ? json_get(so_, "include_usage") : NULL;
        o->include_usage = iu && json_typeof(iu) == JSON_TRUE;
    }
    o->max_tokens = (int)mt;
    o->temperature = temp;
    o->seed = seed;
    search_result r = {0};
    qerr e;
    if (rc == 0 && index_search(s->idx, q, &so, &r, &e)) rc = search_failed(o, &e);
    if (rc == 0) {
        o->question = strdup(q);
        o->ps = calloc((size_t)r.n + 1, sizeof *o->ps);
        if (!o->question || !o->ps) rc = op_fail(o, 500, NULL, "out of memory");
        for (int i = 0; i < r.n && rc == 0; i++) {
            passage *p = &o->ps[i];
            p->doc_id = strdup(r.hits[i].doc_id);
            p->text = strndup(r.hits[i].chunk, r.hits[i].chunk_len);
            p->start = r.hits[i].start;
            p->end = r.hits[i].end;
            p->score = r.hits[i].score;
            o->n_ps++;
            if (!p->doc_id || !p->text) rc = op_fail(o, 500, NULL, "out of memory");
            else op_touch(o, p->doc_id);
        }
        if (rc == 0) o->status = 200;
    }
    search_result_free(&r);
    filter_free(flt);
    json_free(b);
    return rc;
}

/* The text of a document the caller may read, stitched from its chunks
 * (overlaps skipped; bytes no chunk covers become spaces, so offsets stay
 * those of the original text). */
static int doc_text(srv *s, doc_op *o, const char *id, char **out, size_t *len) {
    index_doc_info d;
    if (!index_get_doc(s->idx, id, &d) || !may_read(o, &d)) return op_fail(o, 404, "document_id", "no document '%s'", id);
    op_touch(o, id);
    sbuf t = {0};
    for (size_t k = 0; k < d.n_chunks; k++) {
        search_hit h;
        index_doc_chunk(s->idx, &d, k, &h);
        if (h.end <= t.n) continue;
        while (t.n < h.start) sb_put(&t, " ", 1);
        size_t from = t.n - h.start;
        if (from < h.chunk_len) sb_put(&t, h.chunk + from, h.chunk_len - from);
    }
    if (t.oom) { sb_free(&t); return op_fail(o, 500, NULL, "out of memory"); }
    if (!t.p) sb_put(&t, "", 0);
    *out = t.p;
    *len = t.n;
    return 0;
}

/* /v1/extract: a document (by id, ACL-checked, or inline text) and a JSON
 * Schema → the extraction job with its compiled grammar. */
static int do_extract(srv *s, doc_op *o) {
    json *b;
    if (parse_body(o, &b)) return -1;
    const char *id, *text, *system;
    double mt = 512, temp = 0, seed = 0;
    int rc = opt_str(o, b, "document_id", "", &id);
    if (rc == 0) rc = opt_str(o, b, "text", "", &text);
    if (rc == 0) rc = opt_str(o, b, "system", "", &system);
    if (rc == 0 && !!id == !!text) rc = op_fail(o, 400, "text", "give one of 'document_id' or 'text'");
    if (rc == 0 && id && !s->idx) rc = op_fail(o, 400, "document_id", "no document index (start the server with --db DIR)");
    const json *sch = json_get(b, "schema"), *strict = json_get(b, "strict");
    if (rc == 0 && (!sch || (!json_is_object(sch) && !json_is_bool(sch)))) rc = op_fail(o, 400, "schema", "'schema' must be a JSON Schema (an object)");
    if (rc == 0 && strict && !json_is_bool(strict) && json_typeof(strict) != JSON_NULL) rc = op_fail(o, 400, "strict", "'strict' must be a boolean");
    if (rc == 0) rc = opt_num(o, b, "max_tokens", 1, 1 << 20, true, &mt, NULL);
    if (rc == 0) rc = opt_num(o, b, "temperature", 0, 100, false, &temp, NULL);
    if (rc == 0) rc = opt_num(o, b, "seed", -9.2e18, 9.2e18, true, &seed, &o->has_seed);
    const json *st = json_get(b, "stream");
    if (rc == 0 && st && json_typeof(st) == JSON_TRUE) rc = op_fail(o, 400, "stream", "/v1/extract does not stream");
    job *j = NULL;
    if (rc == 0 && !(j = calloc(1, sizeof *j))) rc = op_fail(o, 500, NULL, "out of memory");
    if (rc == 0) {
        atomic_store(&j->refs, 1);
        j->kind = JOB_EXTRACT;
        j->slot = -1;
        j->n_logprobs = -1;
        j->rf_kind = RF_JSON_SCHEMA;
        j->rf_strict = !strict || json_typeof(strict) != JSON_FALSE; /* strict unless asked otherwise */
        j->max_tokens = (int)mt;
        j->sp = (sampler_params){.temp = (float)temp, .top_p = 1.0f, .repeat_penalty = 1.0f, .penalty_last_n = 64,
                                 .seed = o->has_seed ? (uint64_t)(int64_t)seed : ((uint64_t)time(NULL) << 20) ^ s->req_seq};
        if (!(j->rf_schema = json_clone(sch))) rc = op_fail(o, 500, NULL, "out of memory");
    }
    if (rc == 0 && id) {
        j->doc_id = strdup(id);
        pthread_mutex_lock(&s->idx_mu);
        rc = doc_text(s, o, id, &j->doc_text, &j->doc_len);
        pthread_mutex_unlock(&s->idx_mu);
        if (rc == 0 && !j->doc_id) rc = op_fail(o, 500, NULL, "out of memory");
    } else if (rc == 0) {
        j->doc_len = strlen(text);
        if (!(j->doc_text = strdup(text))) rc = op_fail(o, 500, NULL, "out of memory");
    }
    qerr e;
    if (rc == 0) {
        int status;
        const char *param;
        if (structured_prepare(s, j, &status, &param, &e)) rc = op_fail(o, status, param, "%s", e.msg);
    }
    if (rc == 0) {
        char *stext, *prompt;
        size_t sl, pl;
        if (json_serialize(j->rf_schema, NULL, &stext, &sl, &e)) rc = op_fail(o, 500, NULL, "%s", e.msg);
        else {
            if (sgr_extract_prompt(s->tok, s->chat_template, system, stext, sl, j->doc_text, j->doc_len, &prompt, &pl, &e))
                rc = op_fail(o, 400, "text", "%s", e.msg);
            else {
                j->prompt = prompt;
                j->prompt_len = pl;
            }
            free(stext);
        }
    }
    if (rc == 0) {
        j->add_special = true;
        int32_t bos = tokenizer_bos(s->tok);
        size_t bl;
        const char *bt = bos >= 0 ? tokenizer_token_text(s->tok, bos, &bl) : NULL;
        if (bt && bl && j->prompt_len >= bl && memcmp(j->prompt, bt, bl) == 0) j->add_special = false;
        o->xj = j;
        o->status = 200;
    } else if (j) {
        job_release(j);
    }
    json_free(b);
    return rc;
}

static void docs_work(uv_work_t *w) {
    conn *c = w->data;
    srv *s = c->s;
    doc_op *o = c->op;
    if (o->kind == OP_EXTRACT) { do_extract(s, o); return; } /* takes the index lock only to read the document */
    pthread_mutex_lock(&s->idx_mu);
    switch (o->kind) {
    case OP_ADD: do_add(s, o); break;
    case OP_GET: do_get(s, o); break;
    case OP_DELETE: do_delete(s, o); break;
    case OP_SEARCH: do_search(s, o); break;
    default: do_answer_retrieve(s, o); break;
    }
    atomic_store(&s->idx_docs, (long long)index_doc_count(s->idx));
    atomic_store(&s->idx_chunks, (long long)index_chunk_count(s->idx));
    pthread_mutex_unlock(&s->idx_mu);
    if (o->out.oom) { sb_free(&o->out); op_fail(o, 500, NULL, "out of memory"); }
}

/* ------------------------------------------------------------------------ */
/* the answer's generation job (loop thread) */
static void start_answer(conn *c, doc_op *o) {
    srv *s = c->s;
    qerr e;
    sbuf prompt = {0};
    if (answer_render(s, o->question, o->ps, o->n_ps, &prompt, &e)) {
        sb_free(&prompt);
        srv_send_error(c, 400, "invalid_request_error", "question", e.msg);
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) { sb_free(&prompt); srv_send_error(c, 500, "server_error", NULL, "out of memory"); return; }
    atomic_store(&j->refs, 1);
    j->kind = JOB_ANSWER;
    j->slot = -1;
    j->n_logprobs = -1;
    j->t_arrive = c->t_start;
    snprintf(j->id, sizeof j->id, "answer-%s", c->req_id);
    j->sp = (sampler_params){.temp = (float)o->temperature, .top_p = 1.0f, .repeat_penalty = 1.0f, .penalty_last_n = 64,
                             .seed = o->has_seed ? (uint64_t)(int64_t)o->seed : ((uint64_t)time(NULL) << 20) ^ s->req_seq};
    j->max_tokens = o->max_tokens;
    j->stream = o->stream;
    j->include_usage = o->include_usage;
    j->prompt = prompt.p;
    j->prompt_len = prompt.n;
    j->add_special = true;
    int32_t bos = tokenizer_bos(s->tok);
    if (bos >= 0) {
        size_t bl;
        const char *bt = tokenizer_token_text(s->tok, bos, &bl);
        if (bt && bl && prompt.n >= bl && memcmp(prompt.p, bt, bl) == 0) j->add_special = false;
    }
    j->passages = o->ps; /* the job owns them now */
    j->n_passages = o->n_ps;
    o->ps = NULL;
    o->n_ps = 0;
    if (s->cfg.request_timeout > 0) j->deadline = j->t_arrive + s->cfg.request_timeout;
    j->conn = c;
    if (!sched_submit(&s->sch, j)) {
        job_release(j);
        srv_send_error(c, 503, "server_error", NULL, "the server is at capacity; retry shortly");
        return;
    }
    c->job = j;
}

static void docs_after(uv_work_t *w, int status) {
    conn *c = w->data;
    doc_op *o = c->op;
    (void)status;
    c->op = NULL;
    c->pending_work--;
    if (!c->closing) {
        for (int i = 0; i < o->n_touched; i++) srv_audit_doc(c, o->touched[i]);
        if (o->status != 200)
            srv_send_error(c, o->status, o->status >= 500 ? "server_error" : o->status == 403 ? "permission_error"
                                         : o->status == 404 ? "not_found_error" : "invalid_request_error",
                           o->param[0] ? o->param : NULL, o->msg);
        else if (o->kind == OP_ANSWER) start_answer(c, o);
        else if (o->kind == OP_EXTRACT) {
            job *j = o->xj;
            o->xj = NULL;
            j->t_arrive = c->t_start;
            snprintf(j->id, sizeof j->id, "extract-%s", c->req_id);
            if (c->s->cfg.request_timeout > 0) j->deadline = j->t_arrive + c->s->cfg.request_timeout;
            j->conn = c;
            srv_submit_job(c, j);
        }
        else srv_send_json(c, 200, &o->out);
    }
    op_free(o);
    srv_conn_maybe_free(c);
}

/* ------------------------------------------------------------------------ */
/* routing (loop thread) */
static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes a path segment; NULL when malformed or it decodes to NUL. */
static char *path_unescape(const char *p) {
    size_t n = strlen(p);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { free(out); return NULL; }
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else out[k++] = p[i];
    }
    out[k] = 0;
    return out;
}

void docs_handle(conn *c, const http_request *r) {
    srv *s = c->s;
    bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
    int kind;
    if (c->route == R_DOCUMENT && (get || del)) kind = get ? OP_GET : OP_DELETE;
    else if (c->route == R_DOCUMENTS && post) kind = OP_ADD;
    else if (c->route == R_SEARCH && post) kind = OP_SEARCH;
    else if (c->route == R_ANSWER && post) kind = OP_ANSWER;
    else if (c->route == R_EXTRACT && post) kind = OP_EXTRACT;
    else { srv_send_error(c, 405, "invalid_request_error", NULL, "method not allowed"); return; }
    if (!s->idx && kind != OP_EXTRACT) { srv_send_error(c, 400, "invalid_request_error", NULL, "no document index (start the server with --db DIR)"); return; }
    if (post) {
        const char *ct = http_header_get(r, "content-type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            srv_send_error(c, 415, "invalid_request_error", NULL, "Content-Type must be application/json");
            return;
        }
    }
    doc_op *o = calloc(1, sizeof *o);
    if (!o) { srv_send_error(c, 500, "server_error", NULL, "out of memory"); return; }
    o->kind = kind;
    o->keyed = s->n_keys > 0;
    if (kind == OP_GET || kind == OP_DELETE) {
        o->doc_id = path_unescape(r->path + 14);
        if (!o->doc_id || !o->doc_id[0]) {
            op_free(o);
            srv_send_error(c, 400, "invalid_request_error", "id", "bad document id in the path");
            return;
        }
    } else {
        o->body = malloc(r->body_len + 1);
        if (!o->body) { op_free(o); srv_send_error(c, 500, "server_error", NULL, "out of memory"); return; }
        if (r->body_len) memcpy(o->body, r->body, r->body_len);
        o->body[r->body_len] = 0;
        o->body_len = r->body_len;
    }
    /* the caller's principals: "a,b" from its key line */
    for (const char *p = c->principal; *p;) {
        while (*p == ',' || *p == ' ') p++;
        size_t n = strcspn(p, ", ");
        if (!n) break;
        char **np = realloc(o->principals, (size_t)(o->n_principals + 1) * sizeof *np);
        if (!np || !(np[o->n_principals] = strndup(p, n))) {
            if (np) o->principals = np;
            op_free(o);
            srv_send_error(c, 500, "server_error", NULL, "out of memory");
            return;
        }
        o->principals = np;
        o->n_principals++;
        p += n;
    }
    o->admin = o->keyed && has_principal(o, ADMIN_PRINCIPAL);
    c->op = o;
    c->work.data = c;
    c->pending_work++;
    uv_queue_work(s->loop, &c->work, docs_work, docs_after);
}
