/* server_int.h — what the server's files share (not part of the module's
 * public header). Threads: the libuv loop thread owns connections and
 * responses; one scheduler thread owns the model context and decodes all
 * admitted requests together; jobs pass between them with a refcount, and
 * events come back through a mutex-protected queue and uv_async_send. */
#ifndef QUIRE_SERVER_INT_H
#define QUIRE_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "models/models.h"
#include "rag/rag.h"
#include "server/server.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

/* Growable string with JSON helpers. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;
void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_str(sbuf *b, const char *s, size_t n); /* quoted, escaped */
void sb_free(sbuf *b);

enum job_kind { JOB_COMPLETION = 0, JOB_CHAT = 1, JOB_ANSWER = 2, JOB_EXTRACT = 3 };
/* response_format kinds (structured.c) */
enum { RF_NONE = 0, RF_JSON_OBJECT = 1, RF_JSON_SCHEMA = 2 };
typedef struct gentry gentry;   /* a cached compiled grammar */

/* A retrieved passage a /v1/answer prompt cites as [n] (n = index + 1). */
typedef struct passage {
    char *doc_id;
    char *text;
    size_t start, end;
    float score;
} passage;

/* One generated token's log-probability and its alternatives. */
typedef struct tok_lp {
    int32_t id;
    float logprob;
    token_logprob top[20];
} tok_lp;

typedef struct job {
    atomic_int refs;          /* loop + scheduler */
    atomic_bool cancelled;    /* set by the loop when the client leaves */
    int kind;
    char id[64];
    /* request */
    char *prompt;             /* rendered text (chat template applied) */
    size_t prompt_len;
    int max_tokens;
    sampler_params sp;
    char **stop;
    int n_stop;
    bool stream, include_usage;
    bool add_special;        /* add BOS: false when the rendered template already has it */
    int n_logprobs;           /* -1: off; else alternatives per token (0..20) */
    int rf_kind;              /* RF_*: structured output (also JOB_EXTRACT) */
    json *rf_schema;          /* RF_JSON_SCHEMA: the schema (until compiled) */
    bool rf_strict;           /* false: best effort, validated afterwards */
    const char *rf_param;     /* the parameter a failed preparation names (static text) */
    gentry *ge;               /* the compiled grammar (shared, refcounted) */
    sgr_matcher *gm;          /* this request's grammar state */
    float *lp_logits;         /* logits before the grammar mask, for logprobs */
    char *doc_text;           /* JOB_EXTRACT: the document, for source spans */
    size_t doc_len;
    char *doc_id;             /* JOB_EXTRACT: when it came from the index */
    passage *passages;        /* JOB_ANSWER: what the prompt cites */
    int n_passages;
    double t_arrive, deadline; /* q_now() seconds; deadline 0: none */
    /* filled by the scheduler */
    double t_admit, t_first, t_done;
    int n_prompt, n_cached, n_gen;
    char finish[16];          /* "stop", "length", "error", "cancelled" */
    int err_status;           /* for finish == "error" */
    char err_msg[512];
    /* scheduler-private */
    int slot;
    int32_t *ids;             /* prompt then generated ids */
    int n_ids, cap_ids;
    int n_past;               /* ids already in the KV cache */
    sampler *smp;
    gen_text text;
    tok_lp *lp_pending;       /* logprobs not yet sent with an event */
    int n_lp_pending, cap_lp_pending;
    /* loop-private */
    struct conn *conn;
    sbuf out;                 /* accumulated text (non-streaming, and answers) */
    bool headers_sent;
    tok_lp *lp;               /* logprobs received (non-streaming) */
    int n_lp, cap_lp;
    size_t text_offset;       /* completions logprobs: bytes of text so far */
    sbuf cite_hold;           /* answers: a possible "[n]" marker being read */
} job;

typedef struct job_event {
    job *j;
    char *text;
    size_t len;
    bool done;
    tok_lp *lp;               /* the tokens this event completes (logprobs on) */
    int n_lp;
} job_event;

typedef struct sched {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    /* waiting jobs (FIFO) */
    job **queue;
    int q_head, q_len, q_cap;
    /* events to the loop */
    job_event *ev;
    int n_ev, cap_ev;
    uv_async_t *async;
    /* model */
    const model *m;
    const tokenizer *tok;
    model_ctx ctx;
    int n_slots, prefill_chunk;
    job **slots;
    int32_t **slot_cache;     /* ids whose K/V the slot's sequence holds */
    int *slot_cache_n;
    atomic_int n_busy, n_waiting;
    atomic_llong n_steps, n_cancelled, n_tokens_out, n_tokens_in, n_cached_tokens;
} sched;

int sched_start(sched *s, const model *m, const tokenizer *tok, const server_config *c, uv_async_t *async, qerr *e);
void sched_stop(sched *s);
/* false when the queue is full (the caller answers 503). Takes a ref. */
bool sched_submit(sched *s, job *j);
/* Moves pending events out (caller frees the array). */
job_event *sched_take_events(sched *s, int *n);
void job_release(job *j);

/* ------------------------------------------------------------------------ */
/* The libuv side (server.c), shared with the document/search/answer routes. */
enum { R_HEALTH, R_READY, R_METRICS, R_MODELS, R_COMPLETIONS, R_CHAT, R_EMBEDDINGS, R_DOCUMENTS, R_DOCUMENT,
       R_SEARCH, R_ANSWER, R_EXTRACT, R_OTHER, N_ROUTES };
#define N_BUCKETS 13

typedef struct histo {
    uint64_t b[N_BUCKETS + 1];
    double sum;
    uint64_t count;
} histo;

typedef struct status_count {
    int route, status;
    uint64_t n;
} status_count;

typedef struct api_key {
    uint8_t hash[32];
    char principals[256];
} api_key;

/* The grammar cache (structured.c): compiled schemas shared by requests. */
typedef struct gcache {
    pthread_mutex_t mu;
    gentry **e;
    int n, cap;
    uint64_t tick, hits, misses;
    sgr_vocab *v;             /* the generation model's vocabulary */
    const tokenizer *tok;
} gcache;

typedef struct srv {
    server_config cfg;
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t async;
    uv_signal_t sig_term, sig_int;
    uv_timer_t drain_timer;
    http_limits lim;
    model *m;
    tokenizer *tok;
    bert_model *bert;
    tokenizer *btok;
    char *chat_template; /* override template source, or NULL */
    qpool *bpool;
    pthread_mutex_t bert_mu;
    sched sch;
    api_key *keys;
    int n_keys;
    bool draining;
    int n_conns, n_busy;
    char model_id[128];
    uint64_t req_seq;
    status_count counts[128];
    int n_counts;
    histo ttft, tpot, e2e, queue;
    uint64_t tokens_embedded;
    /* the document index: one owner at a time (idx_mu), used from libuv's
     * worker threads only, never on the loop thread */
    rag_index *idx;
    pthread_mutex_t idx_mu;
    atomic_llong idx_docs, idx_chunks; /* for /metrics, refreshed after each index operation */
    gcache gc;
} srv;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    srv *s;
    char *in;
    size_t in_n, in_cap;
    bool busy, closing, keep_alive, stream_open;
    int open_handles, pending_work;
    job *job;
    double t_start;
    int route;
    char req_id[40];
    char trace_id[33];
    char principal[256];
    char origin[256];
    /* embeddings work */
    uv_work_t work;
    json *emb_req;
    int emb_status;
    sbuf emb_out;
    /* document/search/answer work (docs.c) */
    struct doc_op *op;
    job *rf_job;              /* structured output: the job whose grammar a worker prepares */
    sbuf audit_docs;          /* document ids this request touched, for the audit line */
} conn;

void srv_send(conn *c, int status, const char *ctype, const char *body, size_t len, const char *extra);
void srv_send_json(conn *c, int status, const sbuf *b);
void srv_send_error(conn *c, int status, const char *type, const char *param, const char *msg);
void srv_stream_begin(conn *c);
void srv_stream_event(conn *c, const char *data, size_t len, bool last);
/* Frees a closed connection once its handles and queued work are gone. */
void srv_conn_maybe_free(conn *c);
void srv_audit_doc(conn *c, const char *doc_id);
/* Hands a prepared job to the scheduler (503 when the queue is full). */
void srv_submit_job(conn *c, job *j);
/* Compiles the job's response grammar on a worker, then submits it. */
void structured_start(conn *c, job *j);
/* Generation response pieces (server.c), for answers too. */
void srv_usage_json(sbuf *b, const job *j);
/* Validates a numeric field; on a bad value answers 400 and returns false. */
bool srv_get_num(const json *o, const char *k, double lo, double hi, double *out, conn *c);

/* docs.c — POST/GET/DELETE /v1/documents, POST /v1/search, POST /v1/answer
 * (retrieval side). Each runs on a libuv worker under idx_mu. */
void docs_handle(conn *c, const http_request *r);
/* answer.c — the answer's prompt (numbered passages through the chat
 * template) and its response with citations. */
int answer_render(srv *s, const char *question, const passage *ps, int n, sbuf *out, qerr *e);
void answer_stream_delta(conn *c, job *j, const char *text, size_t len);
void answer_finish(conn *c, job *j);

/* structured.c — response_format and the grammar cache */
int gcache_init(gcache *c, const tokenizer *tok, qerr *e);
void gcache_free(gcache *c);
int gcache_get(gcache *c, int kind, const json *sch, bool strict, gentry **out, int *status, qerr *e);
void gcache_release(gentry *g);
int rf_parse(const json *rf, int *kind, const json **sch, bool *strict, const char **param, qerr *e);
/* On a worker: compiles (or finds) the grammar, checks max_tokens against
 * the shortest document, makes the matcher. */
int structured_prepare(srv *s, job *j, int *status, const char **param, qerr *e);
void structured_release(job *j);
/* Whether the grammar enforces every keyword (false: best effort). */
bool structured_enforced(const job *j);
void structured_annotate(sbuf *b, const job *j, const char *text, size_t len);
/* extract.c — /v1/extract's response: the JSON and its source spans */
void extract_finish(conn *c, job *j);
/* Streams text through the marker filter: "[n]" with n outside 1..n_passages
 * is dropped, all else goes to *keep; a possible marker waits in *hold. */
void answer_filter_markers(sbuf *hold, int n_passages, const char *text, size_t len, sbuf *keep);
/* The passages "[n]" markers cite (0-based, first mention first, each
 * once) into order[n_passages]; returns how many. */
int answer_cited(const char *text, int n_passages, int *order);

/* logprobs.c — OpenAI's logprobs objects for chat and for completions
 * (text_offset advances over the tokens written). */
void logprobs_chat_json(sbuf *b, const tokenizer *tok, const tok_lp *lp, int n, int n_top);
void logprobs_completion_json(sbuf *b, const tokenizer *tok, const tok_lp *lp, int n, int n_top, size_t *text_offset);

/* chat.c — render OpenAI messages with the model's chat template (or the
 * override template's source). */
int chat_render(const gguf *g, const tokenizer *tok, const char *override_tmpl, const json *messages, sbuf *out,
                qerr *e);

#endif
