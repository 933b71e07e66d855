/* test_http.c — the HTTP/1.1 request parser: valid requests in every framing,
 * pipelining, incremental arrival, and each malformed or hostile request
 * answered with the right status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "testutil.h"

static const http_limits lim = {.max_header_bytes = 4096, .max_headers = 32, .max_body = 1 << 16};

static int parse(const char *s, http_request *r, size_t *used) {
    return http_parse_request(s, strlen(s), &lim, r, used);
}

static void expect_status(const char *req, int status) {
    http_request r;
    size_t used;
    int rc = parse(req, &r, &used);
    if (rc != HTTP_ERROR || r.status != status) {
        fprintf(stderr, "request %.60s...: rc %d status %d (%s), want %d\n", req, rc, r.status, r.error, status);
        fail();
    }
}

static void test_valid(void **state) {
    (void)state;
    http_request r;
    size_t used;
    const char *a = "POST /v1/completions?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(parse(a, &r, &used), HTTP_OK);
    assert_int_equal(used, strlen(a));
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/v1/completions");
    assert_string_equal(r.target + r.query, "x=1");
    assert_string_equal(http_header_get(&r, "content-type"), "application/json");
    assert_int_equal(r.body_len, 5);
    assert_string_equal(r.body, "hello");
    assert_true(r.keep_alive);
    http_request_free(&r);

    /* chunked with extensions and trailers */
    const char *b = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    assert_int_equal(parse(b, &r, &used), HTTP_OK);
    assert_int_equal(used, strlen(b));
    assert_string_equal(r.body, "hello world");
    http_request_free(&r);

    /* HTTP/1.0 defaults to close; Connection: close on 1.1 */
    assert_int_equal(parse("GET /health HTTP/1.0\r\n\r\n", &r, &used), HTTP_OK);
    assert_false(r.keep_alive);
    http_request_free(&r);
    assert_int_equal(parse("GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r, &used), HTTP_OK);
    assert_false(r.keep_alive);
    http_request_free(&r);
}

/* Every prefix of a valid request needs more; the whole parses; two
 * requests back to back come out one at a time. */
static void test_incremental_and_pipelined(void **state) {
    (void)state;
    const char *one = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    char two[512];
    snprintf(two, sizeof two, "%sGET /y HTTP/1.1\r\nHost: h\r\n\r\n", one);
    http_request r;
    size_t used;
    for (size_t k = 0; k < strlen(one); k++) {
        int rc = http_parse_request(one, k, &lim, &r, &used);
        if (rc != HTTP_NEED_MORE) { fprintf(stderr, "prefix %zu: rc %d (%s)\n", k, rc, r.error); fail(); }
    }
    assert_int_equal(http_parse_request(two, strlen(two), &lim, &r, &used), HTTP_OK);
    assert_int_equal(used, strlen(one));
    assert_string_equal(r.body, "abc");
    http_request_free(&r);
    assert_int_equal(http_parse_request(two + used, strlen(two) - used, &lim, &r, &used), HTTP_OK);
    assert_string_equal(r.path, "/y");
    http_request_free(&r);
}

static void test_malformed(void **state) {
    (void)state;
    expect_status("GET\r\n\r\n", 400);
    expect_status("GET /x\r\n\r\n", 400);
    expect_status("GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400);          /* not origin-form */
    expect_status("GET /x HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    expect_status("GET /x HTTP/1.1\r\n\r\n", 400);                    /* no Host */
    expect_status("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\nHost: h\n\n", 400);               /* bare LF */
    expect_status("GET /x HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400); /* obs-fold */
    expect_status("GET /x HTTP/1.1\r\nHost: h\r\nBad Header: v\r\n\r\n", 400);
    expect_status("GET /x HTTP/1.1\r\nHost: h\r\nX: a\x01" "b\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1e3\r\n\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400);
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n", 413); /* over max_body */
    expect_status("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n11000\r\n", 413);
    expect_status("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    /* oversized head: 431 even before the end of the head arrives */
    char big[6000];
    int n = snprintf(big, sizeof big, "GET /x HTTP/1.1\r\nHost: h\r\nX: ");
    memset(big + n, 'a', sizeof big - (size_t)n - 1);
    big[sizeof big - 1] = 0;
    expect_status(big, 431);
    /* too many fields */
    char many[4000];
    n = snprintf(many, sizeof many, "GET /x HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 40; i++) n += snprintf(many + n, sizeof many - (size_t)n, "X-%d: v\r\n", i);
    snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    expect_status(many, 431);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_incremental_and_pipelined),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
