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

enum job_kind { JOB_COMPLETION = 0, JOB_CHAT = 1 };

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
    /* loop-private */
    struct conn *conn;
    sbuf out;                 /* accumulated text (non-streaming) */
    bool headers_sent;
} job;

typedef struct job_event {
    job *j;
    char *text;
    size_t len;
    bool done;
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

/* chat.c — render OpenAI messages with the model's chat template. */
int chat_render(const gguf *g, const tokenizer *tok, const char *override_name, const json *messages, sbuf *out,
                qerr *e);

#endif
