/* server.c — the libuv side: connections, request routing, responses,
 * metrics, authentication, CORS and shutdown. Nothing here waits for
 * inference: generation runs on the scheduler thread (sched.c), embeddings
 * on libuv's work queue; results come back as events. */
#include "server/server_int.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* metrics (updated on the loop thread only, except the scheduler's atomics) */
static const char *route_names[N_ROUTES] = {"/health", "/ready", "/metrics", "/v1/models", "/v1/completions",
                                            "/v1/chat/completions", "/v1/embeddings", "/v1/documents",
                                            "/v1/documents/{id}", "/v1/search", "/v1/answer", "/v1/extract", "other"};
static const double buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

static void histo_add(histo *h, double v) {
    size_t i = 0;
    while (i < N_BUCKETS && v > buckets[i]) i++;
    h->b[i]++;
    h->sum += v;
    h->count++;
}

typedef struct wreq {
    uv_write_t w;
    conn *c;
    bool last; /* the response is complete once this write is done */
    char data[];
} wreq;

static void conn_close(conn *c);
static void process_input(conn *c);

static void count_request(srv *s, int route, int status) {
    for (int i = 0; i < s->n_counts; i++)
        if (s->counts[i].route == route && s->counts[i].status == status) { s->counts[i].n++; return; }
    if (s->n_counts < (int)(sizeof s->counts / sizeof *s->counts)) s->counts[s->n_counts++] = (status_count){route, status, 1};
}

/* ------------------------------------------------------------------------ */
/* writing */
static void request_done(conn *c) {
    srv *s = c->s;
    c->busy = false;
    c->stream_open = false;
    s->n_busy--;
    if (c->closing) return;
    if (!c->keep_alive || s->draining) { conn_close(c); return; }
    process_input(c); /* a pipelined request may be waiting */
}

static void on_write(uv_write_t *w, int status) {
    wreq *r = (wreq *)w;
    conn *c = r->c;
    bool last = r->last;
    free(r);
    c->pending_work--;
    if (status < 0) {
        if (!c->closing) conn_close(c);
    } else if (last && !c->closing) {
        request_done(c);
    }
    srv_conn_maybe_free(c);
}

static void conn_write(conn *c, const char *data, size_t len, bool last) {
    if (c->closing) return;
    wreq *r = malloc(sizeof *r + len);
    if (!r) { conn_close(c); return; }
    memcpy(r->data, data, len);
    r->c = c;
    r->last = last;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
    c->pending_work++;
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->pending_work--;
        free(r);
        conn_close(c);
    }
}

static void common_headers(conn *c, sbuf *h) {
    srv *s = c->s;
    sb_printf(h, "Server: quire/%s\r\nX-Request-Id: %s\r\n", QUIRE_VERSION, c->req_id);
    if (c->trace_id[0]) {
        uint64_t span = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ s->req_seq;
        sb_printf(h, "traceparent: 00-%s-%016llx-01\r\n", c->trace_id, (unsigned long long)span);
    }
    if (c->origin[0]) {
        for (int i = 0; i < s->cfg.n_cors; i++)
            if (strcmp(s->cfg.cors_origins[i], c->origin) == 0) {
                sb_printf(h, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", c->origin);
                break;
            }
    }
    sb_printf(h, "Connection: %s\r\n", c->keep_alive && !s->draining ? "keep-alive" : "close");
}

static void audit(conn *c, int status, const job *j) {
    srv *s = c->s;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "{\"ts\":\"%s\",\"event\":\"request\",\"id\":\"%s\",\"trace_id\":\"%s\",\"route\":\"%s\",\"status\":%d,"
                    "\"principal\":\"%s\",\"duration_s\":%.4f",
            ts, c->req_id, c->trace_id, route_names[c->route], status, c->principal[0] ? c->principal : "-",
            q_now() - c->t_start);
    if (j) fprintf(stderr, ",\"prompt_tokens\":%d,\"cached_tokens\":%d,\"completion_tokens\":%d,\"finish\":\"%s\"", j->n_prompt,
                   j->n_cached, j->n_gen, j->finish);
    if (c->audit_docs.n) fprintf(stderr, ",\"docs\":[%.*s]", (int)c->audit_docs.n, c->audit_docs.p);
    fprintf(stderr, "}\n");
    sb_free(&c->audit_docs);
    (void)s;
}

/* Names a document id in this request's audit line (JSON-escaped). */
void srv_audit_doc(conn *c, const char *doc_id) {
    if (c->audit_docs.n) sb_put(&c->audit_docs, ",", 1);
    sb_json_str(&c->audit_docs, doc_id, strlen(doc_id));
}

void srv_conn_maybe_free(conn *c) {
    if (c->closing && c->open_handles == 0 && c->pending_work == 0) {
        sb_free(&c->audit_docs);
        free(c);
    }
}

void srv_send(conn *c, int status, const char *ctype, const char *body, size_t len, const char *extra) {
    sbuf h = {0};
    sb_printf(&h, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    common_headers(c, &h);
    if (extra) sb_puts(&h, extra);
    sb_printf(&h, "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n", ctype, len);
    sb_put(&h, body, len);
    count_request(c->s, c->route, status);
    if (c->route != R_HEALTH && c->route != R_METRICS && c->route != R_READY) audit(c, status, c->job);
    if (!h.oom) conn_write(c, h.p, h.n, true);
    else conn_close(c);
    sb_free(&h);
}

void srv_send_json(conn *c, int status, const sbuf *b) { srv_send(c, status, "application/json", b->p ? b->p : "{}", b->p ? b->n : 2, NULL); }

void srv_send_error(conn *c, int status, const char *type, const char *param, const char *msg) {
    sbuf b = {0};
    sb_puts(&b, "{\"error\":{\"message\":");
    sb_json_str(&b, msg, strlen(msg));
    sb_puts(&b, ",\"type\":");
    sb_json_str(&b, type, strlen(type));
    sb_puts(&b, ",\"param\":");
    if (param) sb_json_str(&b, param, strlen(param));
    else sb_puts(&b, "null");
    sb_printf(&b, ",\"code\":%d}}", status);
    const char *extra = status == 503 ? "Retry-After: 1\r\n" : status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL;
    srv_send(c, status, "application/json", b.p, b.n, extra);
    sb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* streaming (Server-Sent Events over chunked transfer coding) */
void srv_stream_begin(conn *c) {
    sbuf h = {0};
    sb_puts(&h, "HTTP/1.1 200 OK\r\n");
    common_headers(c, &h);
    sb_puts(&h, "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
    conn_write(c, h.p, h.n, false);
    sb_free(&h);
    c->stream_open = true;
}

void srv_stream_event(conn *c, const char *data, size_t len, bool last) {
    sbuf b = {0};
    sb_printf(&b, "%zx\r\ndata: ", len + 8);
    sb_put(&b, data, len);
    sb_puts(&b, "\n\n\r\n");
    if (last) sb_puts(&b, "0\r\n\r\n");
    conn_write(c, b.p, b.n, last);
    sb_free(&b);
}

/* ------------------------------------------------------------------------ */
/* responses for generation jobs */
void srv_usage_json(sbuf *b, const job *j) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
              j->n_prompt, j->n_gen, j->n_prompt + j->n_gen, j->n_cached);
}

static const char *finish_reason(const job *j) { return strcmp(j->finish, "length") == 0 ? "length" : "stop"; }

static void logprobs_json(sbuf *b, srv *s, job *j, const tok_lp *lp, int n) {
    if (j->n_logprobs < 0) { sb_puts(b, "null"); return; }
    if (j->kind == JOB_CHAT) logprobs_chat_json(b, s->tok, lp, n, j->n_logprobs);
    else logprobs_completion_json(b, s->tok, lp, n, j->n_logprobs, &j->text_offset);
}

static void chunk_json(conn *c, job *j, const char *text, size_t len, const char *finish, bool first, const tok_lp *lp,
                       int n_lp) {
    sbuf b = {0};
    long created = (long)time(NULL);
    if (j->kind == JOB_CHAT) {
        sb_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":", j->id, created);
        sb_json_str(&b, c->s->model_id, strlen(c->s->model_id));
        sb_puts(&b, ",");
        if (finish) structured_annotate(&b, j, j->out.p ? j->out.p : "", j->out.n); /* best effort: the last chunk says */
        sb_puts(&b, "\"choices\":[{\"index\":0,\"delta\":{");
        if (first) sb_puts(&b, "\"role\":\"assistant\",");
        if (!finish) { sb_puts(&b, "\"content\":"); sb_json_str(&b, text, len); }
        else if (first) b.n--, b.p[b.n] = 0; /* drop the trailing comma */
        sb_puts(&b, "},\"logprobs\":");
        if (finish) sb_puts(&b, "null");
        else logprobs_json(&b, c->s, j, lp, n_lp);
        sb_puts(&b, ",\"finish_reason\":");
    } else {
        sb_printf(&b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", j->id, created);
        sb_json_str(&b, c->s->model_id, strlen(c->s->model_id));
        sb_puts(&b, ",");
        if (finish) structured_annotate(&b, j, j->out.p ? j->out.p : "", j->out.n);
        sb_puts(&b, "\"choices\":[{\"index\":0,\"text\":");
        sb_json_str(&b, text, len);
        sb_puts(&b, ",\"logprobs\":");
        if (finish) sb_puts(&b, "null");
        else logprobs_json(&b, c->s, j, lp, n_lp);
        sb_puts(&b, ",\"finish_reason\":");
    }
    if (finish) sb_printf(&b, "\"%s\"", finish);
    else sb_puts(&b, "null");
    sb_puts(&b, "}]}");
    srv_stream_event(c, b.p, b.n, false);
    sb_free(&b);
}

static void job_finished(conn *c, job *j) {
    srv *s = c->s;
    if (j->t_first > 0) {
        histo_add(&s->ttft, j->t_first - j->t_arrive);
        if (j->n_gen > 1) histo_add(&s->tpot, (j->t_done - j->t_first) / (j->n_gen - 1));
    }
    if (j->t_admit > 0) histo_add(&s->queue, j->t_admit - j->t_arrive);
    histo_add(&s->e2e, j->t_done - j->t_arrive);
    if (!strcmp(j->finish, "error")) {
        if (c->stream_open) { /* headers are out: report in the stream, then end it */
            sbuf b = {0};
            sb_puts(&b, "{\"error\":{\"message\":");
            sb_json_str(&b, j->err_msg, strlen(j->err_msg));
            sb_printf(&b, ",\"type\":\"server_error\",\"param\":null,\"code\":%d}}", j->err_status);
            srv_stream_event(c, b.p, b.n, false);
            sb_free(&b);
            srv_stream_event(c, "[DONE]", 6, true);
            count_request(s, c->route, 200);
            audit(c, 200, j);
        } else {
            srv_send_error(c, j->err_status, j->err_status >= 500 ? "server_error" : "invalid_request_error", NULL, j->err_msg);
        }
        return;
    }
    if (j->kind == JOB_EXTRACT) {
        extract_finish(c, j);
        return;
    }
    if (j->kind == JOB_ANSWER) {
        if (j->stream) {
            count_request(s, c->route, 200);
            audit(c, 200, j);
        }
        answer_finish(c, j);
        return;
    }
    if (j->stream) {
        if (!c->stream_open) srv_stream_begin(c);
        chunk_json(c, j, "", 0, finish_reason(j), !j->headers_sent, NULL, 0);
        if (j->include_usage) {
            sbuf b = {0};
            sb_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", j->id,
                      j->kind == JOB_CHAT ? "chat.completion.chunk" : "text_completion", (long)time(NULL));
            sb_json_str(&b, s->model_id, strlen(s->model_id));
            sb_puts(&b, ",\"choices\":[],");
            srv_usage_json(&b, j);
            sb_puts(&b, "}");
            srv_stream_event(c, b.p, b.n, false);
            sb_free(&b);
        }
        count_request(s, c->route, 200);
        audit(c, 200, j);
        srv_stream_event(c, "[DONE]", 6, true);
        return;
    }
    sbuf b = {0};
    const char *text = j->out.p ? j->out.p : "";
    if (j->kind == JOB_CHAT) {
        sb_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":", j->id, (long)time(NULL));
        sb_json_str(&b, s->model_id, strlen(s->model_id));
        sb_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(&b, text, j->out.n);
        sb_puts(&b, "},\"logprobs\":");
        logprobs_json(&b, s, j, j->lp, j->n_lp);
        sb_printf(&b, ",\"finish_reason\":\"%s\"}],", finish_reason(j));
        structured_annotate(&b, j, text, j->out.n);
    } else {
        sb_printf(&b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", j->id, (long)time(NULL));
        sb_json_str(&b, s->model_id, strlen(s->model_id));
        sb_puts(&b, ",\"choices\":[{\"index\":0,\"text\":");
        sb_json_str(&b, text, j->out.n);
        sb_puts(&b, ",\"logprobs\":");
        logprobs_json(&b, s, j, j->lp, j->n_lp);
        sb_printf(&b, ",\"finish_reason\":\"%s\"}],", finish_reason(j));
        structured_annotate(&b, j, text, j->out.n);
    }
    srv_usage_json(&b, j);
    sb_puts(&b, "}");
    char timing[256];
    double prefill_end = j->t_first > 0 ? j->t_first : j->t_done;
    snprintf(timing, sizeof timing, "Server-Timing: queue;dur=%.2f, prefill;dur=%.2f, decode;dur=%.2f\r\n",
             1e3 * (j->t_admit - j->t_arrive), 1e3 * (prefill_end - j->t_admit), 1e3 * (j->t_done - prefill_end));
    srv_send(c, 200, "application/json", b.p, b.n, timing);
    sb_free(&b);
}

static void on_async(uv_async_t *a) {
    srv *s = a->data;
    int n;
    job_event *ev = sched_take_events(&s->sch, &n);
    for (int i = 0; i < n; i++) {
        job *j = ev[i].j;
        conn *c = j->conn;
        if (c && !c->closing) {
            if (j->kind == JOB_ANSWER) {
                if (ev[i].len) answer_stream_delta(c, j, ev[i].text, ev[i].len);
            } else if (j->stream) {
                /* text, or logprobs of tokens whose text was held back to the end */
                /* best-effort structured output is validated at the end:
                 * keep the text (enforced grammars need no copy) */
                if (ev[i].len && !structured_enforced(j)) sb_put(&j->out, ev[i].text, ev[i].len);
                if (ev[i].len || ev[i].n_lp) {
                    if (!c->stream_open) srv_stream_begin(c);
                    chunk_json(c, j, ev[i].text ? ev[i].text : "", ev[i].len, NULL, !j->headers_sent, ev[i].lp, ev[i].n_lp);
                    j->headers_sent = true;
                }
            } else {
                if (ev[i].len) sb_put(&j->out, ev[i].text, ev[i].len);
                if (ev[i].n_lp) {
                    if (j->n_lp + ev[i].n_lp > j->cap_lp) {
                        int cap = (j->n_lp + ev[i].n_lp) * 2;
                        tok_lp *p = realloc(j->lp, (size_t)cap * sizeof *p);
                        if (p) j->lp = p, j->cap_lp = cap;
                    }
                    if (j->n_lp + ev[i].n_lp <= j->cap_lp) {
                        memcpy(j->lp + j->n_lp, ev[i].lp, (size_t)ev[i].n_lp * sizeof *j->lp);
                        j->n_lp += ev[i].n_lp;
                    }
                }
            }
            if (ev[i].done) {
                c->job = j; /* for the audit line */
                job_finished(c, j);
                c->job = NULL;
            }
        }
        if (ev[i].done) {
            if (c) c->job = NULL;
            job_release(j);
        }
        free(ev[i].text);
        free(ev[i].lp);
    }
    free(ev);
}

/* ------------------------------------------------------------------------ */
/* request handlers */
bool srv_get_num(const json *o, const char *k, double lo, double hi, double *out, conn *c) {
    const json *v = json_get(o, k);
    if (!v || json_typeof(v) == JSON_NULL) return true;
    if (!json_is_number(v) || json_number(v) < lo || json_number(v) > hi || isnan(json_number(v))) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' must be a number between %g and %g", k, lo, hi);
        srv_send_error(c, 400, "invalid_request_error", k, msg);
        return false;
    }
    *out = json_number(v);
    return true;
}

static void handle_generate(conn *c, const http_request *r, int kind) {
    srv *s = c->s;
    qerr e;
    json *body;
    if (json_parse(r->body ? r->body : "", r->body_len, NULL, &body, &e)) {
        srv_send_error(c, 400, "invalid_request_error", NULL, e.msg);
        return;
    }
    if (!json_is_object(body)) { json_free(body); srv_send_error(c, 400, "invalid_request_error", NULL, "the body must be a JSON object"); return; }
    job *j = calloc(1, sizeof *j);
    if (!j) { json_free(body); srv_send_error(c, 500, "server_error", NULL, "out of memory"); return; }
    atomic_store(&j->refs, 1);
    j->kind = kind;
    j->slot = -1;
    j->t_arrive = q_now();
    snprintf(j->id, sizeof j->id, "%s-%s", kind == JOB_CHAT ? "chatcmpl" : "cmpl", c->req_id);
    j->sp = (sampler_params){.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f,
                             .penalty_last_n = 64, .seed = ((uint64_t)time(NULL) << 20) ^ s->req_seq};
    j->max_tokens = kind == JOB_CHAT ? 256 : 16;
    double v;
    bool ok = true;
    /* the prompt */
    sbuf prompt = {0};
    if (kind == JOB_CHAT) {
        if (chat_render(s->m->g, s->tok, s->chat_template, json_get(body, "messages"), &prompt, &e)) {
            srv_send_error(c, 400, "invalid_request_error", "messages", e.msg);
            ok = false;
        }
    } else {
        const json *p = json_get(body, "prompt");
        if (json_is_array(p) && json_size(p) == 1) p = json_at(p, 0);
        if (!json_is_string(p)) {
            srv_send_error(c, 400, "invalid_request_error", "prompt", "'prompt' must be a string (one prompt per request)");
            ok = false;
        } else {
            sb_put(&prompt, json_string(p), json_string_len(p));
            if (!prompt.p) sb_put(&prompt, "", 0);
        }
    }
    /* parameters */
    if (ok && (ok = srv_get_num(body, "max_tokens", 1, 1 << 20, &v, c))) {
        if (json_get(body, "max_tokens") && json_is_number(json_get(body, "max_tokens"))) j->max_tokens = (int)v;
    }
    if (ok && (ok = srv_get_num(body, "max_completion_tokens", 1, 1 << 20, &v, c)) && json_is_number(json_get(body, "max_completion_tokens")))
        j->max_tokens = (int)v;
    if (ok && (ok = srv_get_num(body, "temperature", 0, 100, &v, c)) && json_is_number(json_get(body, "temperature"))) j->sp.temp = (float)v;
    if (ok && (ok = srv_get_num(body, "top_p", 0, 1, &v, c)) && json_is_number(json_get(body, "top_p"))) j->sp.top_p = (float)v;
    if (ok && (ok = srv_get_num(body, "top_k", 0, 1e9, &v, c)) && json_is_number(json_get(body, "top_k"))) j->sp.top_k = (int)v;
    if (ok && (ok = srv_get_num(body, "min_p", 0, 1, &v, c)) && json_is_number(json_get(body, "min_p"))) j->sp.min_p = (float)v;
    if (ok && (ok = srv_get_num(body, "presence_penalty", -2, 2, &v, c)) && json_is_number(json_get(body, "presence_penalty"))) j->sp.presence_penalty = (float)v;
    if (ok && (ok = srv_get_num(body, "frequency_penalty", -2, 2, &v, c)) && json_is_number(json_get(body, "frequency_penalty"))) j->sp.freq_penalty = (float)v;
    if (ok && (ok = srv_get_num(body, "repeat_penalty", 0, 10, &v, c)) && json_is_number(json_get(body, "repeat_penalty"))) j->sp.repeat_penalty = (float)v;
    if (ok && (ok = srv_get_num(body, "seed", -9.2e18, 9.2e18, &v, c)) && json_is_number(json_get(body, "seed"))) j->sp.seed = (uint64_t)(int64_t)v;
    if (ok && (ok = srv_get_num(body, "n", 1, 1, &v, c))) {}
    j->n_logprobs = -1;
    if (ok) {
        /* chat: logprobs true + top_logprobs 0..20; completions: logprobs N (0..20) */
        const json *lp = json_get(body, "logprobs"), *tlp = json_get(body, "top_logprobs");
        bool lp_null = !lp || json_typeof(lp) == JSON_NULL, tlp_null = !tlp || json_typeof(tlp) == JSON_NULL;
        if (kind == JOB_CHAT) {
            if (!lp_null && !json_is_bool(lp)) {
                srv_send_error(c, 400, "invalid_request_error", "logprobs", "'logprobs' must be a boolean");
                ok = false;
            } else if (!tlp_null && (!json_is_number(tlp) || !json_number_is_integer(tlp) || json_number(tlp) < 0 || json_number(tlp) > 20)) {
                srv_send_error(c, 400, "invalid_request_error", "top_logprobs", "'top_logprobs' must be an integer between 0 and 20");
                ok = false;
            } else if (!tlp_null && (lp_null || json_typeof(lp) != JSON_TRUE)) {
                srv_send_error(c, 400, "invalid_request_error", "top_logprobs", "'top_logprobs' needs 'logprobs': true");
                ok = false;
            } else if (!lp_null && json_typeof(lp) == JSON_TRUE) {
                j->n_logprobs = tlp_null ? 0 : (int)json_number(tlp);
            }
        } else if (!lp_null) {
            if (!json_is_number(lp) || !json_number_is_integer(lp) || json_number(lp) < 0 || json_number(lp) > 20) {
                srv_send_error(c, 400, "invalid_request_error", "logprobs", "'logprobs' must be an integer between 0 and 20");
                ok = false;
            } else {
                j->n_logprobs = (int)json_number(lp);
            }
        }
    }
    if (ok) {
        const json *sch;
        const char *param;
        if (rf_parse(json_get(body, "response_format"), &j->rf_kind, &sch, &j->rf_strict, &param, &e)) {
            srv_send_error(c, 400, "invalid_request_error", param, e.msg);
            ok = false;
        } else if (sch && !(j->rf_schema = json_clone(sch))) {
            srv_send_error(c, 500, "server_error", NULL, "out of memory");
            ok = false;
        }
    }
    if (ok) {
        const json *st = json_get(body, "stop");
        if (st && json_typeof(st) != JSON_NULL) {
            size_t n = json_is_array(st) ? json_size(st) : 1;
            if ((!json_is_string(st) && !json_is_array(st)) || n > 16) {
                srv_send_error(c, 400, "invalid_request_error", "stop", "'stop' must be a string or up to 16 strings");
                ok = false;
            } else {
                j->stop = calloc(n + 1, sizeof(char *));
                for (size_t i = 0; ok && i < n; i++) {
                    const json *x = json_is_array(st) ? json_at(st, i) : st;
                    if (!json_is_string(x) || json_string_len(x) == 0) {
                        srv_send_error(c, 400, "invalid_request_error", "stop", "stop strings must be non-empty strings");
                        ok = false;
                        break;
                    }
                    j->stop[j->n_stop++] = strndup(json_string(x), json_string_len(x));
                }
            }
        }
        if (ok && j->n_stop && j->rf_kind) {
            /* a stop string would cut the document short of valid JSON */
            srv_send_error(c, 400, "invalid_request_error", "stop", "'stop' cannot be combined with a JSON response_format");
            ok = false;
        }
        const json *stream = json_get(body, "stream");
        j->stream = stream && json_typeof(stream) == JSON_TRUE;
        const json *so = json_get(body, "stream_options");
        const json *iu = so ? json_get(so, "include_usage") : NULL;
        j->include_usage = iu && json_typeof(iu) == JSON_TRUE;
    }
    json_free(body);
    if (!ok) { sb_free(&prompt); job_release(j); return; }
    j->prompt = prompt.p;
    j->prompt_len = prompt.n;
    /* a template that writes the BOS text itself must not get a second one */
    j->add_special = true;
    int32_t bos = tokenizer_bos(s->tok);
    if (kind == JOB_CHAT && bos >= 0) {
        size_t bl;
        const char *bt = tokenizer_token_text(s->tok, bos, &bl);
        if (bt && bl && prompt.n >= bl && memcmp(prompt.p, bt, bl) == 0) j->add_special = false;
    }
    if (s->cfg.request_timeout > 0) j->deadline = j->t_arrive + s->cfg.request_timeout;
    j->conn = c;
    if (j->rf_kind) { structured_start(c, j); return; }
    srv_submit_job(c, j);
}

void srv_submit_job(conn *c, job *j) {
    srv *s = c->s;
    if (!sched_submit(&s->sch, j)) {
        job_release(j);
        srv_send_error(c, 503, "server_error", NULL, "the server is at capacity; retry shortly");
        return;
    }
    c->job = j; /* the loop's reference is released when the job's done event arrives */
}

/* Structured output: the grammar is compiled (or found in the cache) on a
 * worker thread, then the job goes to the scheduler like any other. */
static void rf_work(uv_work_t *w) {
    conn *c = w->data;
    job *j = c->rf_job;
    qerr e;
    int status;
    const char *param;
    if (structured_prepare(c->s, j, &status, &param, &e)) {
        j->err_status = status;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", e.msg);
        j->rf_param = param;
    }
}

static void rf_after(uv_work_t *w, int status) {
    conn *c = w->data;
    job *j = c->rf_job;
    (void)status;
    c->rf_job = NULL;
    c->pending_work--;
    if (c->closing) job_release(j);
    else if (j->err_status) {
        srv_send_error(c, j->err_status, j->err_status >= 500 ? "server_error" : "invalid_request_error", j->rf_param, j->err_msg);
        job_release(j);
    } else {
        srv_submit_job(c, j);
    }
    srv_conn_maybe_free(c);
}

void structured_start(conn *c, job *j) {
    c->rf_job = j;
    c->work.data = c;
    c->pending_work++;
    uv_queue_work(c->s->loop, &c->work, rf_work, rf_after);
}

/* base64 (RFC 4648) of little-endian float32s: encoding_format "base64". */
static void sb_base64_f32(sbuf *b, const float *v, int n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = (const uint8_t *)v; /* x86-64 and aarch64 Linux are little-endian */
    size_t len = (size_t)n * 4;
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < len ? p[i + 2] : 0);
        char o[4] = {tab[x >> 18], tab[(x >> 12) & 63], i + 1 < len ? tab[(x >> 6) & 63] : '=', i + 2 < len ? tab[x & 63] : '='};
        sb_put(b, o, 4);
    }
    sb_put(b, "\"", 1);
}

static void embed_work(uv_work_t *w) {
    conn *c = w->data;
    srv *s = c->s;
    const json *in = json_get(c->emb_req, "input");
    size_t n = json_is_array(in) ? json_size(in) : 1;
    sbuf *b = &c->emb_out;
    c->emb_status = 200;
    int d = s->bert->n_embd;
    float *vec = malloc((size_t)d * sizeof(float));
    sb_puts(b, "{\"object\":\"list\",\"data\":[");
    long total = 0;
    pthread_mutex_lock(&s->bert_mu);
    for (size_t i = 0; i < n && c->emb_status == 200; i++) {
        const json *x = json_is_array(in) ? json_at(in, i) : in;
        qerr e;
        int32_t *ids = NULL;
        size_t nt = 0;
        if (!json_is_string(x)) { c->emb_status = 400; sb_free(b); sb_puts(b, "'input' must be a string or an array of strings"); break; }
        if (tokenizer_encode(s->btok, json_string(x), json_string_len(x), true, false, &ids, &nt, &e)) {
            c->emb_status = 400; sb_free(b); sb_puts(b, e.msg); break;
        }
        int st[2] = {0, (int)nt};
        if (bert_embed(s->bert, s->bpool, ids, st, 1, -1, vec, &e)) {
            free(ids); c->emb_status = 400; sb_free(b); sb_puts(b, e.msg); break;
        }
        free(ids);
        total += (long)nt;
        sb_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        const json *fmt = json_get(c->emb_req, "encoding_format");
        if (json_is_string(fmt) && strcmp(json_string(fmt), "base64") == 0) {
            sb_base64_f32(b, vec, d);
        } else {
            sb_puts(b, "[");
            for (int k = 0; k < d; k++) sb_printf(b, "%s%.8g", k ? "," : "", vec[k]);
            sb_puts(b, "]");
        }
        sb_puts(b, "}");
    }
    pthread_mutex_unlock(&s->bert_mu);
    free(vec);
    if (c->emb_status == 200) {
        sb_puts(b, "],\"model\":");
        sb_json_str(b, s->cfg.embed_model, strlen(s->cfg.embed_model));
        sb_printf(b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", total, total);
    }
}

static void embed_after(uv_work_t *w, int status) {
    conn *c = w->data;
    (void)status;
    c->pending_work--;
    json_free(c->emb_req);
    c->emb_req = NULL;
    if (!c->closing) {
        if (c->emb_status == 200) srv_send_json(c, 200, &c->emb_out);
        else srv_send_error(c, c->emb_status, "invalid_request_error", "input", c->emb_out.p ? c->emb_out.p : "bad input");
    }
    sb_free(&c->emb_out);
    srv_conn_maybe_free(c);
}

static void handle_embeddings(conn *c, const http_request *r) {
    srv *s = c->s;
    if (!s->bert) { srv_send_error(c, 400, "invalid_request_error", "model", "no embedding model loaded (start with --embed-model)"); return; }
    qerr e;
    if (json_parse(r->body ? r->body : "", r->body_len, NULL, &c->emb_req, &e)) { srv_send_error(c, 400, "invalid_request_error", NULL, e.msg); return; }
    const json *in = json_get(c->emb_req, "input");
    const json *fmt = json_get(c->emb_req, "encoding_format");
    if (fmt && (!json_is_string(fmt) || (strcmp(json_string(fmt), "float") && strcmp(json_string(fmt), "base64")))) {
        json_free(c->emb_req);
        c->emb_req = NULL;
        srv_send_error(c, 400, "invalid_request_error", "encoding_format", "encoding_format must be \"float\" or \"base64\"");
        return;
    }
    if (!in || (!json_is_string(in) && !json_is_array(in)) || (json_is_array(in) && (json_size(in) == 0 || json_size(in) > 2048))) {
        json_free(c->emb_req);
        c->emb_req = NULL;
        srv_send_error(c, 400, "invalid_request_error", "input", "'input' must be a string or an array of 1 to 2048 strings");
        return;
    }
    c->work.data = c;
    c->pending_work++;
    memset(&c->emb_out, 0, sizeof c->emb_out);
    uv_queue_work(s->loop, &c->work, embed_work, embed_after);
}

static void handle_metrics(conn *c) {
    srv *s = c->s;
    sbuf b = {0};
    sb_puts(&b, "# HELP quire_http_requests_total HTTP requests by route and status.\n# TYPE quire_http_requests_total counter\n");
    for (int i = 0; i < s->n_counts; i++)
        sb_printf(&b, "quire_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_names[s->counts[i].route],
                  s->counts[i].status, (unsigned long long)s->counts[i].n);
    sb_printf(&b, "# HELP quire_queue_depth Requests waiting for a slot.\n# TYPE quire_queue_depth gauge\nquire_queue_depth %d\n",
              atomic_load(&s->sch.n_waiting));
    sb_printf(&b, "# HELP quire_slots_busy Slots decoding.\n# TYPE quire_slots_busy gauge\nquire_slots_busy %d\n",
              atomic_load(&s->sch.n_busy));
    sb_printf(&b, "# HELP quire_slots Slots configured.\n# TYPE quire_slots gauge\nquire_slots %d\n", s->sch.n_slots);
    if (s->idx)
        sb_printf(&b, "# HELP quire_index_documents Documents in the --db index.\n# TYPE quire_index_documents gauge\n"
                      "quire_index_documents %lld\n# HELP quire_index_chunks Chunks in the --db index.\n"
                      "# TYPE quire_index_chunks gauge\nquire_index_chunks %lld\n",
                  atomic_load(&s->idx_docs), atomic_load(&s->idx_chunks));
    struct { const char *name, *help; long long v; } ctr[] = {
        {"quire_prompt_tokens_total", "Prompt tokens admitted.", atomic_load(&s->sch.n_tokens_in)},
        {"quire_prompt_cached_tokens_total", "Prompt tokens reused from the KV cache.", atomic_load(&s->sch.n_cached_tokens)},
        {"quire_generation_tokens_total", "Tokens generated.", atomic_load(&s->sch.n_tokens_out)},
        {"quire_requests_cancelled_total", "Requests stopped because the client left.", atomic_load(&s->sch.n_cancelled)},
        {"quire_decode_steps_total", "Scheduler steps (one batched forward pass each).", atomic_load(&s->sch.n_steps)},
    };
    for (size_t i = 0; i < sizeof ctr / sizeof *ctr; i++)
        sb_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", ctr[i].name, ctr[i].help, ctr[i].name, ctr[i].name, ctr[i].v);
    struct { const char *name, *help; const histo *h; } hs[] = {
        {"quire_time_to_first_token_seconds", "Arrival to first generated token.", &s->ttft},
        {"quire_time_per_output_token_seconds", "Mean time between generated tokens of a request.", &s->tpot},
        {"quire_request_duration_seconds", "Arrival to completion of generation requests.", &s->e2e},
        {"quire_queue_time_seconds", "Arrival to admission into a slot.", &s->queue},
    };
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hs[i].name, hs[i].help, hs[i].name);
        uint64_t cum = 0;
        for (size_t k = 0; k < N_BUCKETS; k++) {
            cum += hs[i].h->b[k];
            sb_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", hs[i].name, buckets[k], (unsigned long long)cum);
        }
        cum += hs[i].h->b[N_BUCKETS];
        sb_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hs[i].name, (unsigned long long)cum,
                  hs[i].name, hs[i].h->sum, hs[i].name, (unsigned long long)hs[i].h->count);
    }
    srv_send(c, 200, "text/plain; version=0.0.4", b.p, b.n, NULL);
    sb_free(&b);
}

/* Constant-time: every key is compared in full, whatever matches. */
static bool authorize(conn *c, const http_request *r) {
    srv *s = c->s;
    if (s->n_keys == 0) return true;
    const char *h = http_header_get(r, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    uint8_t hash[32];
    q_sha256(h + 7, strlen(h + 7), hash);
    int found = -1;
    for (int i = 0; i < s->n_keys; i++) {
        uint8_t diff = 0;
        for (int k = 0; k < 32; k++) diff |= (uint8_t)(hash[k] ^ s->keys[i].hash[k]);
        found = diff == 0 ? i : found;
    }
    if (found < 0) return false;
    snprintf(c->principal, sizeof c->principal, "%s", s->keys[found].principals);
    return true;
}

static int route_of(const char *path) {
    for (int i = 0; i < R_OTHER; i++)
        if (strcmp(path, route_names[i]) == 0 && i != R_DOCUMENT) return i;
    if (strncmp(path, "/v1/documents/", 14) == 0 && path[14]) return R_DOCUMENT;
    return R_OTHER;
}

static void handle_request(conn *c, const http_request *r) {
    srv *s = c->s;
    c->busy = true;
    s->n_busy++;
    c->t_start = q_now();
    c->keep_alive = r->keep_alive;
    c->principal[0] = 0;
    c->route = route_of(r->path);
    snprintf(c->req_id, sizeof c->req_id, "%08llx%04x", (unsigned long long)++s->req_seq, (unsigned)(rand() & 0xffff));
    const char *o = http_header_get(r, "origin");
    snprintf(c->origin, sizeof c->origin, "%s", o ? o : "");
    /* W3C trace context: keep the caller's trace id, else start one */
    const char *tp = http_header_get(r, "traceparent");
    c->trace_id[0] = 0;
    if (tp && strlen(tp) == 55 && tp[2] == '-' && tp[35] == '-' && tp[52] == '-' && strspn(tp + 3, "0123456789abcdef") >= 32) {
        memcpy(c->trace_id, tp + 3, 32);
        c->trace_id[32] = 0;
        if (strspn(c->trace_id, "0") == 32) c->trace_id[0] = 0;
    }
    if (!c->trace_id[0])
        snprintf(c->trace_id, sizeof c->trace_id, "%016llx%016llx", (unsigned long long)(((uint64_t)rand() << 31) ^ (uint64_t)time(NULL)),
                 (unsigned long long)(((uint64_t)rand() << 33) ^ s->req_seq));

    bool get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
    if (strcmp(r->method, "OPTIONS") == 0) {
        bool allowed = false;
        for (int i = 0; i < s->cfg.n_cors; i++) allowed |= c->origin[0] && strcmp(s->cfg.cors_origins[i], c->origin) == 0;
        srv_send(c, 204, "text/plain", "", 0,
                      allowed ? "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\nAccess-Control-Allow-Headers: Authorization, Content-Type\r\nAccess-Control-Max-Age: 600\r\n" : NULL);
        return;
    }
    switch (c->route) {
    case R_HEALTH:
        if (!get) break;
        srv_send(c, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
        return;
    case R_READY: {
        if (!get) break;
        bool ready = !s->draining && atomic_load(&s->sch.n_waiting) < s->sch.q_cap;
        if (ready) srv_send(c, 200, "application/json", "{\"status\":\"ready\"}", 18, NULL);
        else srv_send_error(c, 503, "server_error", NULL, s->draining ? "shutting down" : "queue full");
        return;
    }
    case R_METRICS:
        if (!get) break;
        handle_metrics(c);
        return;
    default: break;
    }
    if (strncmp(r->path, "/v1/", 4) == 0 && !authorize(c, r)) {
        srv_send_error(c, 401, "authentication_error", NULL, "missing or invalid API key");
        return;
    }
    if (c->route == R_MODELS && get) {
        sbuf b = {0};
        sb_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
        sb_json_str(&b, s->model_id, strlen(s->model_id));
        sb_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"quire\"}", (long)time(NULL));
        if (s->bert) {
            sb_puts(&b, ",{\"id\":");
            sb_json_str(&b, s->cfg.embed_model, strlen(s->cfg.embed_model));
            sb_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"quire\"}", (long)time(NULL));
        }
        sb_puts(&b, "]}");
        srv_send_json(c, 200, &b);
        sb_free(&b);
        return;
    }
    if (c->route == R_DOCUMENTS || c->route == R_DOCUMENT || c->route == R_SEARCH || c->route == R_ANSWER ||
        c->route == R_EXTRACT) {
        if (s->draining) { srv_send_error(c, 503, "server_error", NULL, "shutting down"); return; }
        docs_handle(c, r);
        return;
    }
    if (post && (c->route == R_COMPLETIONS || c->route == R_CHAT || c->route == R_EMBEDDINGS)) {
        const char *ct = http_header_get(r, "content-type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            srv_send_error(c, 415, "invalid_request_error", NULL, "Content-Type must be application/json");
            return;
        }
        if (s->draining) { srv_send_error(c, 503, "server_error", NULL, "shutting down"); return; }
        if (c->route == R_EMBEDDINGS) handle_embeddings(c, r);
        else handle_generate(c, r, c->route == R_CHAT ? JOB_CHAT : JOB_COMPLETION);
        return;
    }
    if (c->route != R_OTHER) srv_send_error(c, 405, "invalid_request_error", NULL, "method not allowed");
    else srv_send_error(c, 404, "invalid_request_error", NULL, "no such route");
}

/* ------------------------------------------------------------------------ */
/* connections */
static void on_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    --c->open_handles;
    srv_conn_maybe_free(c);
}

static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = true;
    srv *s = c->s;
    s->n_conns--;
    if (c->busy) s->n_busy--;
    if (c->job) { /* the client left: the scheduler drops the request at its next step */
        atomic_store(&c->job->cancelled, true);
        c->job->conn = NULL;
        c->job = NULL;
    }
    free(c->in);
    c->in = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_timeout(uv_timer_t *t) {
    conn *c = t->data;
    if (c->closing || c->busy) return;
    if (c->in_n > 0) { /* a request started but did not finish in time */
        c->keep_alive = false;
        c->busy = true;
        c->s->n_busy++;
        c->route = R_OTHER;
        snprintf(c->req_id, sizeof c->req_id, "timeout");
        srv_send_error(c, 408, "invalid_request_error", NULL, "request not received in time");
        return;
    }
    conn_close(c); /* idle keep-alive connection */
}

static void process_input(conn *c) {
    srv *s = c->s;
    while (!c->busy && !c->closing) {
        if (c->in_n == 0) {
            uv_timer_start(&c->timer, on_timeout, (uint64_t)(s->cfg.idle_timeout * 1000), 0);
            return;
        }
        http_request r;
        size_t used;
        int rc = http_parse_request(c->in, c->in_n, &s->lim, &r, &used);
        if (rc == HTTP_NEED_MORE) {
            if (!uv_is_active((uv_handle_t *)&c->timer) || uv_timer_get_due_in(&c->timer) > (uint64_t)(s->cfg.header_timeout * 1000))
                uv_timer_start(&c->timer, on_timeout, (uint64_t)(s->cfg.header_timeout * 1000), 0);
            return;
        }
        uv_timer_stop(&c->timer);
        if (rc == HTTP_ERROR) {
            c->busy = true;
            s->n_busy++;
            c->keep_alive = false;
            c->route = R_OTHER;
            snprintf(c->req_id, sizeof c->req_id, "bad");
            srv_send_error(c, r.status, "invalid_request_error", NULL, r.error);
            c->in_n = 0;
            return;
        }
        memmove(c->in, c->in + used, c->in_n - used);
        c->in_n -= used;
        handle_request(c, &r);
        http_request_free(&r);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *c = h->data;
    (void)suggested;
    size_t want = 65536;
    size_t limit = c->s->lim.max_header_bytes + c->s->lim.max_body + 65536;
    if (c->in_n + want > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 65536;
        while (cap < c->in_n + want) cap *= 2;
        if (cap > limit + want) cap = limit + want;
        char *p = cap > c->in_cap ? realloc(c->in, cap) : c->in;
        if (!p) { buf->base = NULL; buf->len = 0; return; }
        c->in = p;
        c->in_cap = cap;
    }
    buf->base = c->in + c->in_n;
    buf->len = c->in_cap - c->in_n;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    conn *c = st->data;
    (void)buf;
    if (n < 0) { conn_close(c); return; }
    if (n == 0 || c->closing) return;
    c->in_n += (size_t)n;
    if (c->in_n >= c->in_cap && !c->busy) { /* larger than any acceptable request */
        http_request r;
        size_t used;
        if (http_parse_request(c->in, c->in_n, &c->s->lim, &r, &used) == HTTP_NEED_MORE) { conn_close(c); return; }
        if (r.body) http_request_free(&r);
    }
    process_input(c);
}

static void on_connection(uv_stream_t *server, int status) {
    srv *s = server->data;
    if (status < 0 || s->draining) return;
    conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    s->n_conns++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    uv_timer_start(&c->timer, on_timeout, (uint64_t)(s->cfg.header_timeout * 1000), 0);
}

/* ------------------------------------------------------------------------ */
/* shutdown: stop accepting, let in-flight requests finish, then stop */
static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_drain_check(uv_timer_t *t) {
    srv *s = t->data;
    if (s->n_busy > 0) return;
    uv_timer_stop(t);
    uv_stop(s->loop);
}

static void on_signal(uv_signal_t *h, int sig) {
    srv *s = h->data;
    (void)sig;
    if (s->draining) return;
    s->draining = true;
    fprintf(stderr, "{\"event\":\"shutdown\",\"in_flight\":%d}\n", s->n_busy);
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_timer_start(&s->drain_timer, on_drain_check, 0, 20);
}

static int load_keys(srv *s, const char *path, qerr *e) {
    char *text;
    if (q_read_file(path, &text, NULL, e)) return -1;
    int cap = 16;
    s->keys = calloc((size_t)cap, sizeof *s->keys);
    int lineno = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t') line++;
        if (!*line || *line == '#') continue;
        char *sp = line + strcspn(line, " \t\r");
        char *rest = *sp ? sp + 1 : sp;
        *sp = 0;
        while (*rest == ' ' || *rest == '\t') rest++;
        rest[strcspn(rest, "\r")] = 0;
        if (s->n_keys == cap) s->keys = realloc(s->keys, (size_t)(cap *= 2) * sizeof *s->keys);
        api_key *k = &s->keys[s->n_keys];
        if (strncmp(line, "sha256:", 7) == 0) {
            if (strlen(line + 7) != 64) { free(text); return qerr_set(e, "%s:%d: sha256: needs 64 hex digits", path, lineno); }
            for (int i = 0; i < 32; i++) {
                unsigned v;
                if (sscanf(line + 7 + 2 * i, "%2x", &v) != 1) { free(text); return qerr_set(e, "%s:%d: bad hex", path, lineno); }
                k->hash[i] = (uint8_t)v;
            }
        } else {
            if (strlen(line) < 16) { free(text); return qerr_set(e, "%s:%d: API keys must be at least 16 characters", path, lineno); }
            q_sha256(line, strlen(line), k->hash);
        }
        snprintf(k->principals, sizeof k->principals, "%s", rest);
        s->n_keys++;
    }
    free(text);
    if (s->n_keys == 0) return qerr_set(e, "%s: no API keys", path);
    return 0;
}

void server_config_default(server_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->n_slots = 4;
    c->max_queue = 64;
    c->prefill_chunk = 256;
    c->header_timeout = 10;
    c->idle_timeout = 30;
    c->max_body = 8u << 20;
    c->ready_fd = -1;
}

int server_run(const server_config *cfg, qerr *e) {
    srv *s = calloc(1, sizeof *s);
    if (!s) return qerr_set(e, "out of memory");
    s->cfg = *cfg;
    s->lim = (http_limits){.max_header_bytes = 16384, .max_headers = HTTP_MAX_HEADERS, .max_body = cfg->max_body};
    int rc = -1;
    srand((unsigned)(time(NULL) ^ getpid()));
    if (model_load(&s->m, cfg->model_path, e)) goto out;
    if (tokenizer_load(&s->tok, s->m->g, e)) { qerr_wrap(e, "%s", cfg->model_path); goto out; }
    if (gcache_init(&s->gc, s->tok, e)) { qerr_wrap(e, "%s", cfg->model_path); goto out; }
    const char *base = strrchr(cfg->model_path, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s", cfg->model_name ? cfg->model_name : base ? base + 1 : cfg->model_path);
    if (cfg->embed_model) {
        if (bert_load(&s->bert, cfg->embed_model, e)) goto out;
        if (tokenizer_load(&s->btok, s->bert->g, e)) { qerr_wrap(e, "%s", cfg->embed_model); goto out; }
        s->bpool = qpool_new(1);
        pthread_mutex_init(&s->bert_mu, NULL);
    }
    if (cfg->api_key_file && load_keys(s, cfg->api_key_file, e)) goto out;
    if (cfg->db_dir) {
        index_config ic;
        index_config_default(&ic);
        if (cfg->embed_model) snprintf(ic.embed_model, sizeof ic.embed_model, "%s", cfg->embed_model);
        if (index_open(&s->idx, cfg->db_dir, INDEX_CREATE, &ic, e)) { qerr_wrap(e, "--db"); goto out; }
        pthread_mutex_init(&s->idx_mu, NULL);
        const index_config *have = index_get_config(s->idx);
        if (cfg->embed_model && have->embed_model[0] && strcmp(have->embed_model, cfg->embed_model) != 0) {
            qerr_set(e, "--db %s was built with embedding model %s, not %s", cfg->db_dir, have->embed_model, cfg->embed_model);
            goto out;
        }
        if (cfg->n_threads > 0) index_set_threads(s->idx, cfg->n_threads, e);
        atomic_store(&s->idx_docs, (long long)index_doc_count(s->idx));
        atomic_store(&s->idx_chunks, (long long)index_chunk_count(s->idx));
    }
    if (cfg->chat_template) {
        if (strcmp(cfg->chat_template, "chatml") == 0) {
            s->chat_template = strdup(chat_template_chatml);
        } else if (q_read_file(cfg->chat_template, &s->chat_template, NULL, e)) {
            qerr_wrap(e, "--chat-template");
            goto out;
        }
    }

    s->loop = uv_default_loop();
    uv_async_init(s->loop, &s->async, on_async);
    s->async.data = s;
    if (sched_start(&s->sch, s->m, s->tok, cfg, &s->async, e)) goto out;
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    struct sockaddr_storage addr;
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr) != 0) {
        qerr_set(e, "bad host address '%s'", cfg->host);
        goto stop;
    }
    int r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (r != 0) { qerr_set(e, "cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(r)); goto stop; }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_signal_init(s->loop, &s->sig_term);
    uv_signal_init(s->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "{\"event\":\"listening\",\"host\":\"%s\",\"port\":%d,\"model\":\"%s\",\"slots\":%d}\n", cfg->host, port,
            s->model_id, s->sch.n_slots);
    if (cfg->ready_fd >= 0) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "%d\n", port);
        if (write(cfg->ready_fd, msg, (size_t)n) != n) { /* the parent will time out */ }
    }
    uv_run(s->loop, UV_RUN_DEFAULT);
    rc = 0;
stop:
    sched_stop(&s->sch);
    on_async(&s->async); /* release what the scheduler finished last */
    uv_walk(s->loop, close_walk, NULL);
    uv_run(s->loop, UV_RUN_DEFAULT);
    uv_loop_close(s->loop);
out:
    if (s->idx) {
        qerr e2;
        if (rc != 0) index_free(s->idx);
        else if (index_close(s->idx, &e2) != 0) { *e = e2; qerr_wrap(e, "closing --db"); rc = -1; }
        pthread_mutex_destroy(&s->idx_mu);
    }
    if (s->bpool) { qpool_free(s->bpool); pthread_mutex_destroy(&s->bert_mu); }
    tokenizer_free(s->btok);
    bert_free(s->bert);
    if (s->gc.tok) gcache_free(&s->gc);
    tokenizer_free(s->tok);
    model_free(s->m);
    free(s->keys);
    free(s->chat_template);
    free(s);
    return rc;
}
