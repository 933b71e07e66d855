/* server.h — Quire's HTTP service: a strict HTTP/1.1 parser, a libuv event
 * loop that never blocks on inference, a scheduler thread that decodes many
 * requests together (continuous batching through the multi-sequence forward
 * pass), and the OpenAI-compatible endpoints. */
#ifndef QUIRE_SERVER_H
#define QUIRE_SERVER_H

#include "engine/engine.h"

/* ------------------------------------------------------------------------ */
/* HTTP/1.1 request parsing. */
#define HTTP_MAX_HEADERS 64

enum { HTTP_OK = 0, HTTP_NEED_MORE = 1, HTTP_ERROR = 2 };

typedef struct http_limits {
    size_t max_header_bytes; /* request line + fields */
    int max_headers;
    size_t max_body;
} http_limits;

typedef struct http_header {
    char name[64];
    char value[2048];
} http_header;

typedef struct http_request {
    char method[16];
    char target[2048];
    char path[2048];
    long query;              /* offset of the query in target, -1 if none */
    int version_minor;       /* HTTP/1.0 or 1.1 */
    http_header headers[HTTP_MAX_HEADERS];
    int n_headers;
    bool keep_alive;
    char *body;              /* NUL-terminated, decoded (chunked or not) */
    size_t body_len;
    int status;              /* on HTTP_ERROR: the status to answer with */
    char error[128];
} http_request;

/* Parses one request from the front of buf. HTTP_OK: *consumed bytes were
 * used (what follows is the next request); HTTP_NEED_MORE; HTTP_ERROR with
 * r->status and r->error set. Free with http_request_free after HTTP_OK. */
int http_parse_request(const char *buf, size_t n, const http_limits *lim, http_request *r, size_t *consumed);
void http_request_free(http_request *r);
const char *http_header_get(const http_request *r, const char *name);
const char *http_status_text(int status);

/* ------------------------------------------------------------------------ */
/* SHA-256 (FIPS 180-4), for API keys: the server keeps only key hashes. */
void q_sha256(const void *data, size_t len, uint8_t out[32]);

/* ------------------------------------------------------------------------ */
/* The service. */
typedef struct server_config {
    const char *model_path;      /* decoder for completions (required) */
    const char *embed_model;     /* BERT encoder for /v1/embeddings (optional) */
    const char *db_dir;          /* retrieval index (optional) */
    const char *host;
    int port;
    const char *api_key_file;    /* lines: KEY_OR_sha256:HEX [principal,...] */
    const char *cors_origins[8]; /* exact origins allowed; none: CORS off */
    int n_cors;
    int n_threads;
    int n_slots;                 /* sequences decoded together */
    int n_ctx;                   /* KV cells over all slots */
    int max_queue;               /* waiting requests before 503 */
    int prefill_chunk;           /* prompt tokens per scheduler step */
    double request_timeout;      /* seconds a request may run; 0: none */
    double header_timeout;       /* seconds to receive a request head (slow clients) */
    double idle_timeout;         /* keep-alive idle seconds */
    size_t max_body;
    const char *model_name;      /* id reported by /v1/models */
    const char *chat_template;   /* override: a template name (chatml, llama2, llama3, ...) */
    bool log_prompts;            /* audit log may include prompt text */
    int ready_fd;                /* if >= 0, "PORT\n" is written here once listening */
} server_config;

void server_config_default(server_config *c);
/* Runs until SIGTERM or SIGINT, then finishes in-flight requests and returns
 * 0; -1 with a message when it cannot start. */
int server_run(const server_config *c, qerr *e);

#endif
