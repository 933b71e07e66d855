#include "testutil.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

const char *shared_path(const char *rel) {
    static char bufs[8][1024];
    static int slot;
    const char *root = getenv("QUIRE_SHARED");
    char dir[900];
    if (root) snprintf(dir, sizeof dir, "%s", root);
    else snprintf(dir, sizeof dir, "%s/../shared", QUIRE_SOURCE_DIR);
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "test data missing: %s (the shared/ folder must sit beside the project)\n", dir);
        fail();
    }
    char *b = bufs[slot++ % 8];
    snprintf(b, 1024, "%s/%s", dir, rel);
    return b;
}

void *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); fail(); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

double nrmse(const float *a, const float *ref, size_t n) {
    double mean = 0, err = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += ref[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        err += d * d;
        double v = ref[i] - mean;
        var += v * v;
    }
    return sqrt(err / (double)n) / sqrt(var / (double)n);
}

int run_quire(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", QUIRE_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) fail();
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) { cap *= 2; buf = realloc(buf, cap); }
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf; else free(buf);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* ------------------------------------------------------------------------ */
/* quire serve over loopback */
static pid_t live[32];
static int n_live;
static void kill_live(void) {
    for (int i = 0; i < n_live; i++)
        if (live[i] > 0) kill(live[i], SIGKILL);
}

test_server srv_start(const char *extra) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "exec %s serve -m %s --port 0 --ready-fd %d -t 1 %s 2>>${QUIRE_SERVE_LOG:-/dev/null}", QUIRE_BINARY,
                 shared_path("models/stories260K.gguf"), fds[1], extra);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (n_live == 0) atexit(kill_live);
    char buf[32] = {0};
    struct pollfd p = {fds[0], POLLIN, 0};
    if (n_live < 32) live[n_live++] = pid;
    assert_true(poll(&p, 1, 60000) == 1);
    assert_true(read(fds[0], buf, sizeof buf - 1) > 0);
    close(fds[0]);
    test_server s = {pid, atoi(buf)};
    assert_true(s.port > 0);
    return s;
}

void srv_forget(pid_t pid) {
    for (int i = 0; i < n_live; i++)
        if (live[i] == pid) live[i] = 0;
}

int srv_stop(test_server *s) {
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    srv_forget(s->pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int srv_dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

void srv_send_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

char *srv_recv_until_close(int fd, int timeout_ms) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        if (n + 4096 > cap) b = realloc(b, cap *= 2);
        ssize_t r = recv(fd, b + n, cap - n - 1, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    b[n] = 0;
    return b;
}

char *srv_request(int port, const char *method, const char *path, const char *body, const char *headers) {
    int fd = srv_dial(port);
    size_t blen = body ? strlen(body) : 0;
    size_t cap = blen + strlen(path) + (headers ? strlen(headers) : 0) + 512;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s", method, path, headers ? headers : "");
    if (body) n += snprintf(req + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) memcpy(req + n, body, blen);
    srv_send_all(fd, req, (size_t)n + blen);
    free(req);
    char *out = srv_recv_until_close(fd, 300000); /* generous: sanitizer builds are slow */
    close(fd);
    return out;
}

int srv_status(const char *resp) { return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : -1; }

const char *srv_body(const char *resp) {
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

long long srv_metric(int port, const char *name) {
    char *m = srv_request(port, "GET", "/metrics", NULL, NULL);
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(m, pat);
    long long v = p ? atoll(p + strlen(pat)) : -1;
    free(m);
    return v;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **test_list_json(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "cannot open %s\n", dir); fail(); }
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
        if (cnt == cap) { cap = cap ? cap * 2 : 64; v = realloc(v, cap * sizeof *v); }
        v[cnt++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(v, cnt, sizeof *v, name_cmp);
    *n = cnt;
    return v;
}

json *test_json_parse(const char *text) {
    json *v = NULL;
    qerr e;
    if (!text || json_parse(text, strlen(text), NULL, &v, &e)) {
        fprintf(stderr, "bad JSON (%s): %.300s\n", text ? e.msg : "no body", text ? text : "");
        fail();
    }
    return v;
}

json *srv_call_json(int port, const char *method, const char *path, const char *body, const char *headers, int *status) {
    char *r = srv_request(port, method, path, body, headers);
    *status = srv_status(r);
    json *v = test_json_parse(srv_body(r));
    free(r);
    return v;
}

const char *test_json_str(const json *o, const char *ptr) {
    const json *v = json_pointer_get(o, ptr, strlen(ptr));
    return json_is_string(v) ? json_string(v) : "";
}

struct sgr_vocab *test_load_vocab(const char *rel, struct tokenizer **tk) {
    gguf *gg;
    qerr e;
    assert_int_equal(gguf_open(&gg, shared_path(rel), &e), 0);
    assert_int_equal(tokenizer_load(tk, gg, &e), 0);
    gguf_close(gg);
    sgr_vocab *v;
    assert_int_equal(sgr_vocab_new(*tk, &v, &e), 0);
    return v;
}

int test_min_tokens(struct sgr_grammar *G, struct sgr_vocab *v) {
    sgr_matcher *m;
    qerr e;
    assert_int_equal(sgr_matcher_new(G, v, &m, &e), 0);
    char *c;
    size_t cn;
    assert_int_equal(sgr_matcher_shortest(m, &c, &cn, &e), 0);
    int32_t *ids;
    size_t n;
    int rc = sgr_vocab_greedy(v, c, cn, &ids, &n);
    free(c);
    free(ids);
    sgr_matcher_free(m);
    return rc < 0 ? -1 : (int)n;
}
