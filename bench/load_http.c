/* load_http.c — load test for `quire serve` (built as build/bench-http).
 *
 * N client threads on loopback each run streaming completions back to back
 * (one connection per request) for D seconds, while a prober GETs /health
 * every 20 ms and a sampler reads the server's VmRSS from /proc/PID/status
 * every second. With --baseline S it first runs the same requests one at a
 * time for S seconds, for the throughput comparison. Reports requests ok /
 * 503 / failed, TTFT p50/p99, tokens/s, /health p50/p99/max and RSS over
 * time, as JSON (--json FILE) and a markdown summary on stdout.
 *
 *   bench-http --port 8080 --pid PID [--clients 64] [--duration 60]
 *              [--max-tokens 64] [--baseline 20] [--warmup 10] [--json F]
 *              [--mode ingest]   (batches of 8 documents to POST /v1/documents
 *                                 instead: /health while the index embeds)
 *
 * Not a test: timings here are measurements, never pass/fail. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct opts {
    int port, pid, clients, max_tokens;
    bool ingest;              /* POST /v1/documents batches instead of completions */
    double duration, baseline, warmup, timeout;
    const char *json_path;
} opts;

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static void dv_push(dvec *d, double x) {
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->v = realloc(d->v, d->cap * sizeof *d->v);
        if (!d->v) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    d->v[d->n++] = x;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(dvec *d, double p) {
    if (!d->n) return 0;
    qsort(d->v, d->n, sizeof *d->v, cmp_d);
    size_t i = (size_t)(p * (double)(d->n - 1) + 0.5);
    return d->v[i];
}

/* One phase's results (shared by its client threads under mu). */
typedef struct phase {
    const opts *o;
    pthread_mutex_t mu;
    atomic_bool stop;
    double t0, t1;
    long ok, busy, failed, tokens;
    dvec ttft, e2e;
    char first_error[256];
} phase;

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static bool send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        s += w, n -= (size_t)w;
    }
    return true;
}

/* An ingestion request: a batch of 8 documents of ~200 words each (ids
 * unique per request). *n_docs gets 8. Caller frees. */
static char *ingest_request(int seq, size_t *len) {
    static const char *words[] = {"invoice", "river", "contract", "lantern", "payment", "harbor", "clause", "meadow",
                                  "supplier", "falcon", "delivery", "copper", "warranty", "willow", "term", "stone"};
    size_t cap = 65536, n = 0;
    char *body = malloc(cap);
    n += (size_t)snprintf(body + n, cap - n, "{\"documents\":[");
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(seq + 1);
    for (int d = 0; d < 8; d++) {
        n += (size_t)snprintf(body + n, cap - n, "%s{\"id\":\"load-%d-%d\",\"metadata\":{\"batch\":%d},\"text\":\"", d ? "," : "",
                              seq, d, seq);
        for (int w = 0; w < 200; w++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            n += (size_t)snprintf(body + n, cap - n, "%s%s", words[x % 16], w % 12 == 11 ? ". " : " ");
        }
        n += (size_t)snprintf(body + n, cap - n, "\"}");
    }
    n += (size_t)snprintf(body + n, cap - n, "]}");
    char *req = malloc(n + 256);
    *len = (size_t)sprintf(req, "POST /v1/documents HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\n\r\n", n);
    memcpy(req + *len, body, n);
    *len += n;
    free(body);
    return req;
}

/* One streaming completion (or one ingestion batch). Returns 200, 503, or
 * -1 (failure, *err set). */
static int one_request(const opts *o, int seq, double *ttft, double *e2e, long *tokens, char *err, size_t errn) {
    static const char *prompts[] = {"Once upon a time", "The little dog", "One day, Lily", "Tom had a big red",
                                    "The sun was hot and", "Mom said to Ben", "In the park there was", "A bird sat on"};
    char body[512], req[1024];
    int bl = snprintf(body, sizeof body,
                      "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%d,\"stream\":true,"
                      "\"stream_options\":{\"include_usage\":true}}",
                      prompts[seq % 8], o->max_tokens, seq);
    int rl = snprintf(req, sizeof req,
                      "POST /v1/completions HTTP/1.1\r\nHost: l\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s", bl, body);
    char *ing = NULL;
    size_t ing_len = 0;
    if (o->ingest) ing = ingest_request(seq, &ing_len);
    double t0 = now();
    int fd = dial(o->port);
    if (fd < 0) { free(ing); snprintf(err, errn, "connect: %s", strerror(errno)); return -1; }
    bool sent = ing ? send_all(fd, ing, ing_len) : send_all(fd, req, (size_t)rl);
    free(ing);
    if (!sent) { close(fd); snprintf(err, errn, "send failed"); return -1; }
    size_t cap = 1 << 16, n = 0, scan = 0;
    char *b = malloc(cap);
    *ttft = -1;
    bool done = false;
    while (!done) {
        struct pollfd p = {fd, POLLIN, 0};
        double left = o->timeout - (now() - t0);
        if (left <= 0 || poll(&p, 1, (int)(left * 1000)) <= 0) break;
        if (n + 4096 > cap) b = realloc(b, cap *= 2);
        ssize_t r = recv(fd, b + n, cap - n - 1, 0);
        if (r <= 0) { done = o->ingest && r == 0; break; }
        n += (size_t)r;
        b[n] = 0;
        if (o->ingest) continue;
        if (*ttft < 0) {
            /* the first event that carries text */
            const char *q = b + scan;
            while ((q = strstr(q, "\"text\":\"")) != NULL) {
                if (q[8] != '"') { *ttft = now() - t0; break; }
                q += 8;
            }
        }
        scan = n > 16 ? n - 16 : 0;
        if (strstr(b + (n > 64 + (size_t)r ? n - (size_t)r - 64 : 0), "data: [DONE]")) done = true;
    }
    *e2e = now() - t0;
    close(fd);
    b[n] = 0;
    int status = strncmp(b, "HTTP/1.1 ", 9) == 0 ? atoi(b + 9) : -1;
    const char *u = o->ingest ? strstr(b, "\"ids\":[") : strstr(b, "\"completion_tokens\":");
    *tokens = !u ? 0 : o->ingest ? 8 : atol(u + 20);
    int rc;
    if (status == 503) rc = 503;
    else if (status == 200 && done && u) rc = 200;
    else {
        snprintf(err, errn, "status %d, %s, %zu bytes: %.80s", status, done ? "complete" : "incomplete", n, n > 9 ? b + 9 : "");
        rc = -1;
    }
    free(b);
    return rc;
}

typedef struct client {
    phase *ph;
    int id;
} client;

static void *client_main(void *arg) {
    client *c = arg;
    phase *ph = c->ph;
    int seq = c->id * 100000;
    while (!atomic_load(&ph->stop)) {
        double ttft, e2e;
        long tokens;
        char err[256] = "";
        int rc = one_request(ph->o, seq++, &ttft, &e2e, &tokens, err, sizeof err);
        pthread_mutex_lock(&ph->mu);
        if (rc == 200) {
            ph->ok++;
            ph->tokens += tokens;
            if (ttft >= 0) dv_push(&ph->ttft, ttft);
            dv_push(&ph->e2e, e2e);
        } else if (rc == 503) {
            ph->busy++;
        } else {
            ph->failed++;
            if (!ph->first_error[0]) snprintf(ph->first_error, sizeof ph->first_error, "%s", err);
        }
        pthread_mutex_unlock(&ph->mu);
        if (rc == 503) usleep(200000); /* Retry-After says 1 s; come back sooner to keep the load up */
    }
    return NULL;
}

/* /health prober and RSS sampler, running across both phases. */
typedef struct watch {
    const opts *o;
    atomic_bool stop;
    pthread_mutex_t mu;
    dvec health;           /* seconds, during the load phase only */
    atomic_bool record;
    long health_failed;
    double rss_t[4096];
    long rss_kb[4096];
    int n_rss;
    double t0;
} watch;

static long read_rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) { kb = atol(line + 6); break; }
    fclose(f);
    return kb;
}

static void *health_main(void *arg) {
    watch *w = arg;
    while (!atomic_load(&w->stop)) {
        double t0 = now();
        int fd = dial(w->o->port);
        bool ok = false;
        if (fd >= 0) {
            const char *req = "GET /health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n";
            char buf[1024];
            size_t n = 0;
            if (send_all(fd, req, strlen(req))) {
                for (;;) {
                    struct pollfd p = {fd, POLLIN, 0};
                    if (poll(&p, 1, 5000) <= 0) break;
                    ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
                    if (r <= 0) break;
                    n += (size_t)r;
                }
                buf[n] = 0;
                ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
            }
            close(fd);
        }
        double dt = now() - t0;
        if (atomic_load(&w->record)) {
            pthread_mutex_lock(&w->mu);
            if (ok) dv_push(&w->health, dt);
            else w->health_failed++;
            pthread_mutex_unlock(&w->mu);
        }
        usleep(20000);
    }
    return NULL;
}

static void *rss_main(void *arg) {
    watch *w = arg;
    while (!atomic_load(&w->stop) && w->n_rss < 4096) {
        long kb = read_rss_kb(w->o->pid);
        w->rss_t[w->n_rss] = now() - w->t0;
        w->rss_kb[w->n_rss++] = kb;
        for (int i = 0; i < 10 && !atomic_load(&w->stop); i++) usleep(100000);
    }
    return NULL;
}

static void run_phase(phase *ph, const opts *o, int clients, double duration) {
    memset(ph, 0, sizeof *ph);
    ph->o = o;
    pthread_mutex_init(&ph->mu, NULL);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    client *cl = calloc((size_t)clients, sizeof *cl);
    ph->t0 = now();
    for (int i = 0; i < clients; i++) {
        cl[i] = (client){ph, i};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    while (now() - ph->t0 < duration) usleep(50000);
    atomic_store(&ph->stop, true);
    for (int i = 0; i < clients; i++) pthread_join(th[i], NULL);
    ph->t1 = now();
    free(th);
    free(cl);
}

static void phase_json(FILE *f, const char *name, phase *ph, int clients) {
    double secs = ph->t1 - ph->t0;
    fprintf(f, "\"%s\":{\"clients\":%d,\"seconds\":%.2f,\"ok\":%ld,\"503\":%ld,\"failed\":%ld,\"tokens\":%ld,"
               "\"tokens_per_s\":%.1f,\"requests_per_s\":%.2f,\"ttft_p50_ms\":%.1f,\"ttft_p99_ms\":%.1f,"
               "\"e2e_p50_ms\":%.1f,\"e2e_p99_ms\":%.1f,\"first_error\":\"",
            name, clients, secs, ph->ok, ph->busy, ph->failed, ph->tokens, (double)ph->tokens / secs,
            (double)ph->ok / secs, 1e3 * pct(&ph->ttft, 0.5), 1e3 * pct(&ph->ttft, 0.99), 1e3 * pct(&ph->e2e, 0.5),
            1e3 * pct(&ph->e2e, 0.99));
    for (const char *p = ph->first_error; *p; p++)
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if ((unsigned char)*p >= 0x20) fputc(*p, f);
    fprintf(f, "\"}");
}

static void phase_md(const char *name, phase *ph, int clients) {
    double secs = ph->t1 - ph->t0;
    printf("| %s | %d | %.0f | %ld | %ld | %ld | %.1f | %.1f | %.1f | %.2f |\n", name, clients, secs, ph->ok, ph->busy,
           ph->failed, 1e3 * pct(&ph->ttft, 0.5), 1e3 * pct(&ph->ttft, 0.99), (double)ph->tokens / secs,
           (double)ph->ok / secs);
}

static int usage(void) {
    fprintf(stderr, "usage: bench-http --port P --pid PID [--clients 64] [--duration 60] [--max-tokens 64]\n"
                    "                  [--baseline S] [--warmup 10] [--timeout 120] [--json FILE]\n"
                    "                  [--mode complete|ingest]   (ingest: POST /v1/documents, 8 docs per request;\n"
                    "                                              the tokens/s column is then documents/s)\n");
    return 2;
}

int main(int argc, char **argv) {
    opts o = {.port = 0, .pid = 0, .clients = 64, .max_tokens = 64, .duration = 60, .baseline = 0, .warmup = 10,
              .timeout = 120};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) o.port = atoi(v);
        else if (!strcmp(a, "--pid")) o.pid = atoi(v);
        else if (!strcmp(a, "--clients")) o.clients = atoi(v);
        else if (!strcmp(a, "--duration")) o.duration = atof(v);
        else if (!strcmp(a, "--max-tokens")) o.max_tokens = atoi(v);
        else if (!strcmp(a, "--baseline")) o.baseline = atof(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atof(v);
        else if (!strcmp(a, "--timeout")) o.timeout = atof(v);
        else if (!strcmp(a, "--json")) o.json_path = v;
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "ingest")) o.ingest = true;
            else if (strcmp(v, "complete")) return usage();
        }
        else return usage();
    }
    if (o.port <= 0 || o.pid <= 0 || o.clients <= 0 || o.clients > 4096 || o.duration <= 0 || o.max_tokens <= 0)
        return usage();
    if (read_rss_kb(o.pid) < 0) { fprintf(stderr, "bench-http: cannot read /proc/%d/status\n", o.pid); return 2; }
    watch w;
    memset(&w, 0, sizeof w);
    w.o = &o;
    w.t0 = now();
    pthread_mutex_init(&w.mu, NULL);
    pthread_t th_h, th_r;
    pthread_create(&th_h, NULL, health_main, &w);
    pthread_create(&th_r, NULL, rss_main, &w);
    phase base, load;
    memset(&base, 0, sizeof base);
    double t_base = 0;
    if (o.baseline > 0) {
        t_base = now() - w.t0;
        run_phase(&base, &o, 1, o.baseline);
    }
    double t_load = now() - w.t0;
    atomic_store(&w.record, true);
    run_phase(&load, &o, o.clients, o.duration);
    atomic_store(&w.record, false);
    double t_end = now() - w.t0;
    atomic_store(&w.stop, true);
    pthread_join(th_h, NULL);
    pthread_join(th_r, NULL);

    /* RSS: after warm-up (t_load + warmup) vs the end of the load phase */
    long rss_warm = -1, rss_end = -1, rss_max = 0;
    for (int i = 0; i < w.n_rss; i++) {
        if (w.rss_t[i] >= t_load + o.warmup && rss_warm < 0) rss_warm = w.rss_kb[i];
        if (w.rss_t[i] <= t_end) rss_end = w.rss_kb[i];
        if (w.rss_kb[i] > rss_max) rss_max = w.rss_kb[i];
    }
    double hp50 = 1e3 * pct(&w.health, 0.5), hp99 = 1e3 * pct(&w.health, 0.99);
    double hmax = w.health.n ? 1e3 * w.health.v[w.health.n - 1] : 0;
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        if (!f) { fprintf(stderr, "bench-http: cannot write %s\n", o.json_path); return 1; }
        fprintf(f, "{\"max_tokens\":%d,", o.max_tokens);
        if (o.baseline > 0) { phase_json(f, "sequential", &base, 1); fputc(',', f); }
        phase_json(f, "concurrent", &load, o.clients);
        fprintf(f, ",\"health\":{\"probes\":%zu,\"failed\":%ld,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f},", w.health.n,
                w.health_failed, hp50, hp99, hmax);
        fprintf(f, "\"rss_kb\":{\"after_warmup\":%ld,\"end\":%ld,\"max\":%ld,\"samples\":[", rss_warm, rss_end, rss_max);
        for (int i = 0; i < w.n_rss; i++) fprintf(f, "%s[%.1f,%ld]", i ? "," : "", w.rss_t[i], w.rss_kb[i]);
        fprintf(f, "]},\"phases_s\":{\"sequential\":%.1f,\"concurrent\":%.1f,\"end\":%.1f}}\n", t_base, t_load, t_end);
        fclose(f);
    }
    printf("| phase | clients | seconds | ok | 503 | failed | TTFT p50 ms | TTFT p99 ms | tokens/s | requests/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    if (o.baseline > 0) phase_md("one at a time", &base, 1);
    phase_md("concurrent", &load, o.clients);
    printf("\n/health during the concurrent phase: %zu probes, %ld failed, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           w.health.n, w.health_failed, hp50, hp99, hmax);
    printf("server RSS: %.1f MiB after %.0f s of warm-up, %.1f MiB at the end, %.1f MiB max\n", rss_warm / 1024.0, o.warmup,
           rss_end / 1024.0, rss_max / 1024.0);
    if (load.first_error[0]) printf("first failure: %s\n", load.first_error);
    return 0;
}
