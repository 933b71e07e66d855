/* test_server.c — `quire serve` end to end over raw sockets on loopback:
 * health, malformed and oversized requests, slow clients, pipelining,
 * keep-alive, batch invariance of greedy output, a client that leaves
 * mid-stream (generation stops, seen in /metrics), the bounded queue (503 +
 * Retry-After), API keys, and graceful shutdown on SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "testutil.h"

/* The "text" of a non-streamed completion (escaped JSON is fine to compare). */
static char *completion_text(const char *resp) {
    const char *p = strstr(resp, "\"text\":\"");
    if (!p) return strdup("");
    p += 8;
    const char *e = p;
    while (*e && !(*e == '"' && e[-1] != '\\')) e++;
    return strndup(p, (size_t)(e - p));
}

static void test_basics(void **state) {
    (void)state;
    test_server s = srv_start("--slots 4 --header-timeout 1");
    char *r = srv_request(s.port, "GET", "/health", NULL, NULL);
    assert_int_equal(srv_status(r), 200);
    free(r);
    r = srv_request(s.port, "GET", "/nope", NULL, NULL);
    assert_int_equal(srv_status(r), 404);
    assert_non_null(strstr(r, "\"error\":{\"message\""));
    free(r);
    r = srv_request(s.port, "POST", "/v1/completions", "{\"prompt\": 5}", NULL);
    assert_int_equal(srv_status(r), 400);
    assert_non_null(strstr(r, "\"param\":\"prompt\""));
    free(r);
    r = srv_request(s.port, "POST", "/v1/completions", "{not json", NULL);
    assert_int_equal(srv_status(r), 400);
    free(r);
    /* a prompt longer than the context: 400, not truncation */
    r = srv_request(s.port, "POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":1000000}", NULL);
    assert_int_equal(srv_status(r), 400);
    assert_non_null(strstr(r, "exceeds the context"));
    free(r);

    /* malformed request line: 400 and the connection closes */
    int fd = srv_dial(s.port);
    srv_send_all(fd, "GARBAGE\r\n\r\n", 11);
    r = srv_recv_until_close(fd, 5000);
    assert_int_equal(srv_status(r), 400);
    free(r);
    close(fd);
    /* oversized head: 431 */
    fd = srv_dial(s.port);
    char *big = malloc(40000);
    int n = snprintf(big, 40000, "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(big + n, 'a', 39000 - (size_t)n);
    srv_send_all(fd, big, 39000);
    r = srv_recv_until_close(fd, 5000);
    assert_int_equal(srv_status(r), 431);
    free(r);
    free(big);
    close(fd);
    /* oversized body: 413 */
    fd = srv_dial(s.port);
    const char *huge = "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n";
    srv_send_all(fd, huge, strlen(huge));
    r = srv_recv_until_close(fd, 5000);
    assert_int_equal(srv_status(r), 413);
    free(r);
    close(fd);

    /* slow loris: a head that never completes gets 408 after the header
     * timeout, while /health keeps answering */
    fd = srv_dial(s.port);
    srv_send_all(fd, "GET /health HTTP/1.1\r\nHo", 24);
    double t0 = q_now();
    r = srv_request(s.port, "GET", "/health", NULL, NULL);
    assert_int_equal(srv_status(r), 200);
    assert_true(q_now() - t0 < 0.5);
    free(r);
    r = srv_recv_until_close(fd, 5000);
    assert_int_equal(srv_status(r), 408);
    free(r);
    close(fd);

    /* pipelining and keep-alive: three requests in one write, three
     * responses in order on one connection */
    fd = srv_dial(s.port);
    const char *three = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    srv_send_all(fd, three, strlen(three));
    r = srv_recv_until_close(fd, 5000);
    const char *a = strstr(r, "HTTP/1.1 200"), *b = a ? strstr(a + 1, "HTTP/1.1 200") : NULL;
    const char *c = b ? strstr(b + 1, "HTTP/1.1 200") : NULL;
    assert_non_null(c);
    assert_true(strstr(r, "\"object\":\"list\"") > a && strstr(r, "\"object\":\"list\"") < c);
    free(r);
    close(fd);
    assert_int_equal(srv_stop(&s), 0);
}

typedef struct call {
    int port;
    char body[512];
    char *resp;
} call;

static void *call_main(void *arg) {
    call *c = arg;
    c->resp = srv_request(c->port, "POST", "/v1/completions", c->body, NULL);
    return NULL;
}

/* The same greedy request alone and among 8 others returns identical text. */
static void test_batch_invariance(void **state) {
    (void)state;
    test_server s = srv_start("--slots 9");
    const char *req = "{\"prompt\":\"Once upon a time, in a small town\",\"max_tokens\":48,\"temperature\":0}";
    char *alone = srv_request(s.port, "POST", "/v1/completions", req, NULL);
    assert_int_equal(srv_status(alone), 200);
    char *want = completion_text(alone);
    call calls[9];
    pthread_t th[9];
    const char *prompts[8] = {"The cat", "Lily went", "A big red", "Tom and Sue", "One day,", "The sun", "Ben had a", "Mom said"};
    for (int i = 0; i < 9; i++) {
        calls[i].port = s.port;
        if (i == 4) snprintf(calls[i].body, sizeof calls[i].body, "%s", req);
        else snprintf(calls[i].body, sizeof calls[i].body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%d}",
                      prompts[i < 4 ? i : i - 1], 20 + 7 * i, i);
        pthread_create(&th[i], NULL, call_main, &calls[i]);
    }
    for (int i = 0; i < 9; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 9; i++) assert_int_equal(srv_status(calls[i].resp), 200);
    char *got = completion_text(calls[4].resp);
    assert_string_equal(got, want);
    printf("  batched text equals alone: %.40s...\n", want);
    for (int i = 0; i < 9; i++) free(calls[i].resp);
    free(got);
    free(want);
    free(alone);
    assert_true(srv_metric(s.port, "quire_prompt_tokens_total") > 0);
    assert_int_equal(srv_stop(&s), 0);
}

/* A streaming client that leaves: generation stops within a step. */
static void test_disconnect_cancels(void **state) {
    (void)state;
    test_server s = srv_start("--slots 2");
    int fd = srv_dial(s.port);
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":1900,\"temperature\":1.0,\"stream\":true}";
    char req[1024];
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    srv_send_all(fd, req, strlen(req));
    char buf[4096];
    struct pollfd p = {fd, POLLIN, 0};
    assert_true(poll(&p, 1, 10000) == 1);
    assert_true(recv(fd, buf, sizeof buf, 0) > 0); /* the stream started */
    close(fd);
    long long cancelled = 0;
    for (int i = 0; i < 100 && cancelled < 1; i++) {
        usleep(20000);
        cancelled = srv_metric(s.port, "quire_requests_cancelled_total");
    }
    assert_int_equal(cancelled, 1);
    long long t1 = srv_metric(s.port, "quire_generation_tokens_total");
    usleep(200000);
    long long t2 = srv_metric(s.port, "quire_generation_tokens_total");
    assert_true(t1 == t2);  /* nothing generated after the cancellation */
    assert_true(t1 < 1900); /* and it did not run to the end */
    printf("  cancelled after %lld tokens\n", t1);
    assert_int_equal(srv_stop(&s), 0);
}

/* More requests than slots + queue: the rest get 503 with Retry-After. */
static void test_backpressure(void **state) {
    (void)state;
    test_server s = srv_start("--slots 1 --queue 2");
    enum { N = 10 };
    call calls[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        calls[i].port = s.port;
        snprintf(calls[i].body, sizeof calls[i].body, "{\"prompt\":\"Once\",\"max_tokens\":300,\"temperature\":1.0,\"seed\":%d}", i);
        pthread_create(&th[i], NULL, call_main, &calls[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        int st = srv_status(calls[i].resp);
        if (st == 200) ok++;
        if (st == 503) { busy++; assert_non_null(strstr(calls[i].resp, "Retry-After: 1")); }
        free(calls[i].resp);
    }
    printf("  %d served, %d refused with 503\n", ok, busy);
    assert_int_equal(ok + busy, N);
    assert_true(ok >= 1 && busy >= 1);
    assert_int_equal(srv_stop(&s), 0);
}

static void test_api_keys(void **state) {
    (void)state;
    char path[] = "/tmp/quire-keys-XXXXXX";
    int fd = mkstemp(path);
    /* one plain key, one stored as its hash: sha256("another-secret-key-42") */
    const char *keys = "# keys\nsecret-key-for-tenant-a tenant-a\n"
                       "sha256:6ade3dc5fa6e09a600d213ff2746a0c59fbca60f402fcb71124705f30ce96c3b tenant-b\n";
    assert_true(write(fd, keys, strlen(keys)) == (ssize_t)strlen(keys));
    close(fd);
    char extra[256];
    snprintf(extra, sizeof extra, "--api-key-file %s", path);
    test_server s = srv_start(extra);
    char *r = srv_request(s.port, "GET", "/v1/models", NULL, NULL);
    assert_int_equal(srv_status(r), 401);
    free(r);
    r = srv_request(s.port, "GET", "/v1/models", NULL, "Authorization: Bearer wrong-key-wrong-key\r\n");
    assert_int_equal(srv_status(r), 401);
    free(r);
    r = srv_request(s.port, "GET", "/v1/models", NULL, "Authorization: Bearer secret-key-for-tenant-a\r\n");
    assert_int_equal(srv_status(r), 200);
    free(r);
    /* the key stored only as its SHA-256 (checks our hash against sha256sum) */
    r = srv_request(s.port, "GET", "/v1/models", NULL, "Authorization: Bearer another-secret-key-42\r\n");
    assert_int_equal(srv_status(r), 200);
    free(r);
    r = srv_request(s.port, "GET", "/health", NULL, NULL); /* health needs no key */
    assert_int_equal(srv_status(r), 200);
    free(r);
    assert_int_equal(srv_stop(&s), 0);
    unlink(path);
}

/* SIGTERM while a request runs: it completes, then the server exits 0. */
static void test_graceful_shutdown(void **state) {
    (void)state;
    test_server s = srv_start("--slots 1");
    call c = {.port = s.port};
    snprintf(c.body, sizeof c.body, "{\"prompt\":\"Once upon a time\",\"max_tokens\":600,\"temperature\":1.0}");
    pthread_t th;
    pthread_create(&th, NULL, call_main, &c);
    usleep(100000);
    kill(s.pid, SIGTERM);
    pthread_join(th, NULL);
    assert_int_equal(srv_status(c.resp), 200);
    assert_non_null(strstr(c.resp, "\"completion_tokens\":"));
    free(c.resp);
    int st = 0;
    waitpid(s.pid, &st, 0);
    srv_forget(s.pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),      cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_disconnect_cancels), cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_api_keys),    cmocka_unit_test(test_graceful_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
