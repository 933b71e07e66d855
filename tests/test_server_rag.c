/* test_server_rag.c — `quire serve --db` over loopback: the document round
 * trip (chunk offsets against the original text, durability across a
 * SIGKILL), search modes and filters, DELETE, the ACL over HTTP with two
 * keys (key A never sees B's documents in any mode, with or without
 * filters, nor via GET, DELETE or /v1/answer citations, and still gets k
 * results when k readable ones exist), bad bodies (400 naming the param),
 * and logprobs (the values `quire run --logprobs` gives for the same greedy
 * request; streamed equals non-streamed), and batch invariance of a greedy
 * answer and of greedy logprobs (alone vs among 8 concurrent requests). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/engine.h"
#include "server/server_int.h"
#include "sgr/sgr.h"
#include "testutil.h"

#define KEY_A "Authorization: Bearer key-alice-0123456789\r\n"
#define KEY_B "Authorization: Bearer key-bob-0123456789ab\r\n"
#define KEY_ADMIN "Authorization: Bearer key-admin-0123456789\r\n"

static void expect_400(int port, const char *path, const char *body, const char *key, const char *param) {
    int st;
    json *v = srv_call_json(port, "POST", path, body, key, &st);
    if (st != 400 || strcmp(test_json_str(v, "/error/param"), param) != 0) {
        fprintf(stderr, "%s %s: status %d, param '%s' (want 400, '%s')\n", path, body, st, test_json_str(v, "/error/param"), param);
        fail();
    }
    json_free(v);
}

static char *tmpdir(void) {
    char *d = strdup("/tmp/quire-srvdb-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rmtree(const char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static void test_documents_roundtrip(void **state) {
    (void)state;
    char *dir = tmpdir();
    char extra[1024];
    snprintf(extra, sizeof extra, "--db %s/db --embed-model %s", dir, shared_path("models/synthetic/syn-bert-F16.gguf"));
    test_server s = srv_start(extra);
    int st;
    /* a long document: several chunks whose offsets index the original text */
    size_t cap = 200000, n = 0;
    char *text = malloc(cap);
    const char *words[] = {"river", "stone", "lantern", "harbor", "meadow", "falcon", "copper", "willow"};
    for (int i = 0; i < 3000; i++) {
        n += (size_t)snprintf(text + n, cap - n, "%s%s%s", words[(i * 7 + i / 5) % 8], i % 13 == 12 ? "." : "",
                              i % 40 == 39 ? "\n\n" : " ");
    }
    text[n] = 0;
    size_t bcap = n + 1024;
    char *body = malloc(bcap);
    snprintf(body, bcap, "{\"id\":\"long\",\"title\":\"Long one\",\"text\":\"%s\",\"metadata\":{\"lang\":\"en\",\"year\":2021}}", text);
    for (char *p = body; *p; p++)
        if (*p == '\n') *p = ' '; /* JSON strings cannot hold raw newlines: spaces keep offsets equal */
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\n') text[i] = ' ';
    json *v = srv_call_json(s.port, "POST", "/v1/documents", body, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(test_json_str(v, "/ids/0"), "long");
    double chunks = json_number(json_get(v, "chunks"));
    assert_true(chunks >= 2);
    json_free(v);
    free(body);
    v = srv_call_json(s.port, "POST", "/v1/documents",
             "{\"documents\":[{\"id\":\"de\",\"text\":\"Der Fluss und der Stein am Hafen.\",\"metadata\":{\"lang\":\"de\"}},"
             "{\"id\":\"en\",\"text\":\"The river and the stone at the harbor.\",\"metadata\":{\"lang\":\"en\"}}]}",
             NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_size(json_get(v, "ids")), 2);
    json_free(v);

    /* GET: metadata, acl, chunks whose [start, end) is their text */
    v = srv_call_json(s.port, "GET", "/v1/documents/long", NULL, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(test_json_str(v, "/title"), "Long one");
    assert_string_equal(test_json_str(v, "/metadata/lang"), "en");
    assert_int_equal(json_size(json_get(v, "acl")), 0);
    const json *ch = json_get(v, "chunks");
    assert_int_equal((double)json_size(ch), chunks);
    size_t prev = 0;
    for (size_t i = 0; i < json_size(ch); i++) {
        const json *c = json_at(ch, i);
        size_t a = (size_t)json_number(json_get(c, "start")), b = (size_t)json_number(json_get(c, "end"));
        assert_true(a < b && b <= n && (i == 0 || a >= prev));
        assert_int_equal(json_string_len(json_get(c, "text")), b - a);
        assert_memory_equal(json_string(json_get(c, "text")), text + a, b - a);
        prev = a;
    }
    json_free(v);

    /* search in every mode finds the document; hits carry offsets into it */
    const char *modes[] = {"bm25", "vector", "hybrid"};
    for (int m = 0; m < 3; m++) {
        char q[256];
        snprintf(q, sizeof q, "{\"query\":\"river stone harbor\",\"mode\":\"%s\",\"k\":3}", modes[m]);
        v = srv_call_json(s.port, "POST", "/v1/search", q, NULL, &st);
        assert_int_equal(st, 200);
        const json *res = json_get(v, "results");
        assert_int_equal(json_size(res), 3);
        for (size_t i = 0; i < json_size(res); i++) {
            const json *h = json_at(res, i);
            if (strcmp(test_json_str(h, "/id"), "long") == 0) {
                size_t a = (size_t)json_number(json_get(h, "start")), b = (size_t)json_number(json_get(h, "end"));
                assert_memory_equal(json_string(json_get(h, "text")), text + a, b - a);
            }
        }
        json_free(v);
        /* a metadata filter inside the index */
        snprintf(q, sizeof q, "{\"query\":\"river stone Fluss Stein\",\"mode\":\"%s\",\"k\":3,\"filter\":\"lang = \\\"de\\\"\"}", modes[m]);
        v = srv_call_json(s.port, "POST", "/v1/search", q, NULL, &st);
        assert_int_equal(st, 200);
        assert_int_equal(json_size(json_get(v, "results")), 1);
        assert_string_equal(test_json_str(v, "/results/0/id"), "de");
        json_free(v);
    }

    /* bad bodies: 400 naming the parameter */
    expect_400(s.port, "/v1/documents", "{}", NULL, "text");
    expect_400(s.port, "/v1/documents", "{\"text\":5}", NULL, "text");
    expect_400(s.port, "/v1/documents", "{\"text\":\"x\",\"metadata\":[1]}", NULL, "metadata");
    expect_400(s.port, "/v1/documents", "{\"documents\":[]}", NULL, "documents");
    expect_400(s.port, "/v1/documents", "{\"text\":\"x\",\"format\":\"pdf\"}", NULL, "format");
    expect_400(s.port, "/v1/documents", "{\"text\":\"x\",\"acl\":[\"a\"]}", NULL, "acl"); /* no keys: no ACLs */
    expect_400(s.port, "/v1/documents", "{\"documents\":[{\"id\":\"x\",\"text\":\"a\"},{\"id\":\"x\",\"text\":\"b\"}]}", NULL, "id");
    expect_400(s.port, "/v1/search", "{\"query\":\"\"}", NULL, "query");
    expect_400(s.port, "/v1/search", "{\"query\":\"x\",\"mode\":\"nope\"}", NULL, "mode");
    expect_400(s.port, "/v1/search", "{\"query\":\"x\",\"filter\":\"lang ==\"}", NULL, "filter");
    expect_400(s.port, "/v1/search", "{\"query\":\"x\",\"k\":0}", NULL, "k");
    expect_400(s.port, "/v1/search", "{\"query\":\"x\",\"k\":1.5}", NULL, "k");
    expect_400(s.port, "/v1/search", "{\"query\":\"x\",\"fusion\":\"max\"}", NULL, "fusion");
    expect_400(s.port, "/v1/answer", "{\"question\":5}", NULL, "question");
    expect_400(s.port, "/v1/answer", "{\"question\":\"x\",\"max_tokens\":0}", NULL, "max_tokens");
    char *r = srv_request(s.port, "POST", "/v1/search", "{not json", NULL);
    assert_int_equal(srv_status(r), 400);
    free(r);
    r = srv_request(s.port, "PUT", "/v1/documents/long", "{}", NULL);
    assert_int_equal(srv_status(r), 405);
    free(r);

    /* ids are percent-decoded from the path */
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"a b/c\",\"text\":\"odd id\"}", NULL, &st);
    assert_int_equal(st, 200);
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/a%20b%2Fc", NULL, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(test_json_str(v, "/id"), "a b/c");
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/a%zz", NULL, NULL, &st);
    assert_int_equal(st, 400);
    assert_string_equal(test_json_str(v, "/error/param"), "id");
    json_free(v);

    /* DELETE: gone from GET and search; a second DELETE is 404 */
    v = srv_call_json(s.port, "DELETE", "/v1/documents/en", NULL, NULL, &st);
    assert_int_equal(st, 200);
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/en", NULL, NULL, &st);
    assert_int_equal(st, 404);
    json_free(v);
    assert_int_equal(srv_metric(s.port, "quire_index_documents"), 3); /* long, de, "a b/c" */
    v = srv_call_json(s.port, "DELETE", "/v1/documents/en", NULL, NULL, &st);
    assert_int_equal(st, 404);
    json_free(v);
    v = srv_call_json(s.port, "POST", "/v1/search", "{\"query\":\"river stone harbor\",\"k\":10}", NULL, &st);
    for (size_t i = 0; i < json_size(json_get(v, "results")); i++)
        assert_string_not_equal(test_json_str(json_at(json_get(v, "results"), i), "/id"), "en");
    json_free(v);

    /* durability: an acknowledged document survives a SIGKILL (WAL replay) */
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"late\",\"text\":\"written just before the crash\"}", NULL, &st);
    assert_int_equal(st, 200);
    json_free(v);
    kill(s.pid, SIGKILL);
    waitpid(s.pid, NULL, 0);
    srv_forget(s.pid);
    s = srv_start(extra);
    v = srv_call_json(s.port, "GET", "/v1/documents/late", NULL, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(test_json_str(v, "/chunks/0/text"), "written just before the crash");
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/en", NULL, NULL, &st);
    assert_int_equal(st, 404);
    json_free(v);
    assert_int_equal(srv_stop(&s), 0);
    /* a clean stop checkpoints: the directory verifies */
    char args[1024];
    snprintf(args, sizeof args, "index verify %s/db > /dev/null", dir);
    assert_int_equal(run_quire(args, NULL), 0);
    free(text);
    rmtree(dir);
    free(dir);
}

static bool has_id(const json *list, const char *prefix) {
    for (size_t i = 0; i < json_size(list); i++)
        if (strncmp(test_json_str(json_at(list, i), "/id"), prefix, strlen(prefix)) == 0) return true;
    return false;
}

static void test_acl(void **state) {
    (void)state;
    char *dir = tmpdir();
    char keys[512], extra[2048];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    FILE *f = fopen(keys, "w");
    assert_non_null(f);
    fputs("key-alice-0123456789 alice\nkey-bob-0123456789ab bob,team\nkey-admin-0123456789 admin\n", f);
    fclose(f);
    snprintf(extra, sizeof extra, "--db %s/db --embed-model %s --api-key-file %s", dir,
             shared_path("models/synthetic/syn-bert-F16.gguf"), keys);
    test_server s = srv_start(extra);
    int st;
    char body[1024];
    /* alice: 5 private documents (default ACL: her principals) */
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof body, "{\"id\":\"alice-%d\",\"text\":\"quick notes from alice number %d\",\"metadata\":{\"tag\":\"x\"}}", i, i);
        json *v = srv_call_json(s.port, "POST", "/v1/documents", body, KEY_A, &st);
        assert_int_equal(st, 200);
        json_free(v);
    }
    /* bob: 20 documents that match the query better */
    char *batch = malloc(65536);
    size_t n = (size_t)snprintf(batch, 65536, "{\"documents\":[");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(batch + n, 65536 - n, "%s{\"id\":\"bob-%d\",\"text\":\"quick quick notes notes secret %d\",\"metadata\":{\"tag\":\"x\"}}",
                              i ? "," : "", i, i);
    snprintf(batch + n, 65536 - n, "]}");
    json *v = srv_call_json(s.port, "POST", "/v1/documents", batch, KEY_B, &st);
    assert_int_equal(st, 200);
    json_free(v);
    free(batch);
    /* a public one, and one alice shares with bob */
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"pub\",\"text\":\"quick public notes\",\"acl\":[],\"metadata\":{\"tag\":\"x\"}}", KEY_B, &st);
    assert_int_equal(st, 200);
    json_free(v);
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"shared\",\"text\":\"quick shared notes\",\"acl\":[\"alice\",\"bob\"],\"metadata\":{\"tag\":\"x\"}}", KEY_A, &st);
    assert_int_equal(st, 200);
    json_free(v);
    /* alice may not write a document only bob can read, nor replace bob's */
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"sneaky\",\"text\":\"quick\",\"acl\":[\"bob\"]}", KEY_A, &st);
    assert_int_equal(st, 403);
    assert_string_equal(test_json_str(v, "/error/param"), "acl");
    json_free(v);
    v = srv_call_json(s.port, "POST", "/v1/documents", "{\"id\":\"bob-0\",\"text\":\"overwritten\"}", KEY_A, &st);
    assert_int_equal(st, 403);
    json_free(v);
    v = srv_call_json(s.port, "POST", "/v1/search", "{\"query\":\"quick\"}", NULL, &st); /* no key */
    assert_int_equal(st, 401);
    json_free(v);

    /* alice's searches: never bob's documents; k results when k readable exist (7 readable) */
    const char *modes[] = {"bm25", "vector", "hybrid"};
    const char *filters[] = {NULL, "tag = \\\"x\\\"", "not _id in [\\\"zzz\\\"]"};
    for (int m = 0; m < 3; m++)
        for (int fi = 0; fi < 3; fi++)
            for (int k = 5; k <= 8; k += 3) {
                if (filters[fi]) snprintf(body, sizeof body, "{\"query\":\"quick notes secret\",\"mode\":\"%s\",\"k\":%d,\"filter\":\"%s\"}", modes[m], k, filters[fi]);
                else snprintf(body, sizeof body, "{\"query\":\"quick notes secret\",\"mode\":\"%s\",\"k\":%d}", modes[m], k);
                v = srv_call_json(s.port, "POST", "/v1/search", body, KEY_A, &st);
                assert_int_equal(st, 200);
                const json *res = json_get(v, "results");
                if (has_id(res, "bob-")) { fprintf(stderr, "leak: %s\n", body); fail(); }
                assert_int_equal(json_size(res), k == 5 ? 5 : 7);
                json_free(v);
                /* bob sees his own and the shared/public ones, never alice's private ones */
                v = srv_call_json(s.port, "POST", "/v1/search", body, KEY_B, &st);
                assert_int_equal(st, 200);
                assert_false(has_id(json_get(v, "results"), "alice-"));
                assert_int_equal(json_size(json_get(v, "results")), k);
                json_free(v);
            }
    /* the admin principal reads everything */
    v = srv_call_json(s.port, "POST", "/v1/search", "{\"query\":\"quick\",\"k\":40}", KEY_ADMIN, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_size(json_get(v, "results")), 27);
    json_free(v);

    /* GET and DELETE of bob's document by alice: not found (never 403) */
    v = srv_call_json(s.port, "GET", "/v1/documents/bob-3", NULL, KEY_A, &st);
    assert_int_equal(st, 404);
    json_free(v);
    v = srv_call_json(s.port, "DELETE", "/v1/documents/bob-3", NULL, KEY_A, &st);
    assert_int_equal(st, 404);
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/bob-3", NULL, KEY_B, &st);
    assert_int_equal(st, 200);
    assert_string_equal(test_json_str(v, "/acl/0"), "bob");
    json_free(v);
    v = srv_call_json(s.port, "GET", "/v1/documents/shared", NULL, KEY_B, &st);
    assert_int_equal(st, 200);
    json_free(v);

    /* answers: citations come only from what alice may read */
    for (int m = 0; m < 3; m++) {
        snprintf(body, sizeof body, "{\"question\":\"quick notes secret?\",\"mode\":\"%s\",\"k\":6,\"max_tokens\":8,\"temperature\":0}", modes[m]);
        v = srv_call_json(s.port, "POST", "/v1/answer", body, KEY_A, &st);
        assert_int_equal(st, 200);
        const json *cit = json_get(v, "citations");
        assert_true(json_size(cit) >= 1);
        assert_false(has_id(cit, "bob-"));
        if (strcmp(test_json_str(v, "/citations_mode"), "retrieved") == 0) assert_int_equal(json_size(cit), 6);
        json_free(v);
    }
    assert_int_equal(srv_stop(&s), 0);
    rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* logprobs */
static const json *top_find(const json *top, const char *piece) {
    return json_get(top, piece);
}

static void test_logprobs_match_run(void **state) {
    (void)state;
    char *out;
    char args[1024];
    snprintf(args, sizeof args, "run -m %s -p 'Once upon a time' -n 12 --temp 0 --json --logprobs 3 -t 1 2>/dev/null",
             shared_path("models/stories260K.gguf"));
    assert_int_equal(run_quire(args, &out), 0);
    json *ref = test_json_parse(out);
    free(out);
    test_server s = srv_start("");
    int st;
    json *v = srv_call_json(s.port, "POST", "/v1/completions",
                   "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0,\"logprobs\":3}", NULL, &st);
    assert_int_equal(st, 200);
    const json *lp = json_pointer_get(v, "/choices/0/logprobs", strlen("/choices/0/logprobs"));
    const json *rl = json_get(ref, "logprobs");
    assert_int_equal(json_size(json_get(lp, "tokens")), json_size(rl));
    assert_true(json_size(rl) > 0);
    size_t off = 0;
    for (size_t i = 0; i < json_size(rl); i++) {
        const json *r = json_at(rl, i);
        assert_string_equal(json_string(json_at(json_get(lp, "tokens"), i)), test_json_str(r, "/piece"));
        double a = json_number(json_at(json_get(lp, "token_logprobs"), i)), b = json_number(json_get(r, "logprob"));
        assert_true(a - b < 1e-4 && b - a < 1e-4);
        assert_int_equal((size_t)json_number(json_at(json_get(lp, "text_offset"), i)), off);
        off += strlen(test_json_str(r, "/piece"));
        /* the alternatives: the reference's top ids as pieces, same values */
        const json *top = json_at(json_get(lp, "top_logprobs"), i);
        assert_true(json_size(top) >= 1 && json_size(top) <= 3);
        const json *rt = json_get(r, "top");
        const json *best = top_find(top, test_json_str(r, "/piece"));
        assert_non_null(best); /* greedy: the chosen token is the best one */
        double t0 = json_number(json_get(json_at(rt, 0), "logprob"));
        assert_true(json_number(best) - t0 < 1e-4 && t0 - json_number(best) < 1e-4);
    }
    json_free(v);
    json_free(ref);

    /* chat: non-streamed and streamed carry the same tokens and values */
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":10,\"temperature\":0,"
                      "\"logprobs\":true,\"top_logprobs\":2%s}";
    char body[512];
    snprintf(body, sizeof body, req, "");
    v = srv_call_json(s.port, "POST", "/v1/chat/completions", body, NULL, &st);
    assert_int_equal(st, 200);
    const json *content = json_pointer_get(v, "/choices/0/logprobs/content", strlen("/choices/0/logprobs/content"));
    assert_int_equal(json_size(content), 10);
    for (size_t i = 0; i < json_size(content); i++) {
        const json *t = json_at(content, i);
        assert_int_equal(json_size(json_get(t, "top_logprobs")), 2);
        assert_true(json_number(json_get(t, "logprob")) <= 0);
        assert_int_equal(json_size(json_get(t, "bytes")), json_string_len(json_get(t, "token")) > 0 ? json_size(json_get(t, "bytes")) : 0);
    }
    snprintf(body, sizeof body, req, ",\"stream\":true");
    char *r = srv_request(s.port, "POST", "/v1/chat/completions", body, NULL);
    assert_int_equal(srv_status(r), 200);
    size_t k = 0;
    for (const char *p = r; (p = strstr(p, "data: {")) != NULL;) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        char *one = strndup(p, (size_t)(e - p));
        json *ev = test_json_parse(one);
        free(one);
        const json *c = json_pointer_get(ev, "/choices/0/logprobs/content", strlen("/choices/0/logprobs/content"));
        for (size_t i = 0; i < json_size(c); i++, k++) {
            const json *a = json_at(c, i), *b = json_at(content, k);
            assert_non_null(b);
            assert_string_equal(test_json_str(a, "/token"), test_json_str(b, "/token"));
            assert_true(json_number(json_get(a, "logprob")) == json_number(json_get(b, "logprob")));
        }
        json_free(ev);
        p = e;
    }
    assert_int_equal(k, 10);
    free(r);
    json_free(v);

    /* bad values: 400 naming the parameter */
    expect_400(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":\"yes\"}", NULL, "logprobs");
    expect_400(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}", NULL, "top_logprobs");
    expect_400(s.port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", NULL, "top_logprobs");
    expect_400(s.port, "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":21}", NULL, "logprobs");
    expect_400(s.port, "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":true}", NULL, "logprobs");
    /* no --db: the document routes say so */
    expect_400(s.port, "/v1/search", "{\"query\":\"x\"}", NULL, "");
    assert_int_equal(srv_stop(&s), 0);
}

/* ------------------------------------------------------------------------ */
/* batch invariance: a greedy answer and a greedy completion with logprobs
 * return the same bytes alone and among 8 other requests */
typedef struct req_thread {
    int port;
    const char *path;
    char body[512];
    char *resp;
} req_thread;

static void *req_main(void *arg) {
    req_thread *t = arg;
    t->resp = srv_request(t->port, "POST", t->path, t->body, NULL);
    return NULL;
}

/* The response body without the fields that differ per request (id, created). */
static char *stable_body(const char *resp) {
    json *v = test_json_parse(srv_body(resp));
    /* usage differs by cached_tokens (the prompt cache) */
    const char *keep[] = {"answer", "citations", "choices"};
    char *out = calloc(1, 1);
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        const json *x = json_get(v, keep[i]);
        if (!x) continue;
        char *t;
        size_t len;
        qerr e;
        assert_int_equal(json_serialize(x, NULL, &t, &len, &e), 0);
        out = realloc(out, n + len + 2);
        memcpy(out + n, t, len);
        n += len;
        out[n++] = '\n';
        out[n] = 0;
        free(t);
    }
    json_free(v);
    return out;
}

static void test_batch_invariance_answer_logprobs(void **state) {
    (void)state;
    char *dir = tmpdir();
    char extra[512];
    snprintf(extra, sizeof extra, "--db %s/db --slots 10", dir);
    test_server s = srv_start(extra);
    int st;
    json *v = srv_call_json(s.port, "POST", "/v1/documents",
                   "{\"documents\":[{\"id\":\"d1\",\"text\":\"Lily had a red ball. She played with it in the park.\"},"
                   "{\"id\":\"d2\",\"text\":\"Tom saw a big dog in the park. The dog was happy.\"}]}", NULL, &st);
    assert_int_equal(st, 200);
    json_free(v);
    const char *answer = "{\"question\":\"What did Lily play with in the park?\",\"k\":2,\"max_tokens\":40}";
    const char *cmpl = "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,\"logprobs\":5}";
    char *r = srv_request(s.port, "POST", "/v1/answer", answer, NULL);
    assert_int_equal(srv_status(r), 200);
    char *want_answer = stable_body(r);
    free(r);
    r = srv_request(s.port, "POST", "/v1/completions", cmpl, NULL);
    assert_int_equal(srv_status(r), 200);
    char *want_cmpl = stable_body(r);
    free(r);
    enum { N = 10 };
    req_thread t[N];
    pthread_t th[N];
    const char *prompts[8] = {"The cat", "Lily went", "A big red", "Tom and Sue", "One day,", "The sun", "Ben had a", "Mom said"};
    for (int i = 0; i < N; i++) {
        t[i].port = s.port;
        t[i].path = i < 2 ? (i == 0 ? "/v1/answer" : "/v1/completions") : "/v1/completions";
        if (i == 0) snprintf(t[i].body, sizeof t[i].body, "%s", answer);
        else if (i == 1) snprintf(t[i].body, sizeof t[i].body, "%s", cmpl);
        else snprintf(t[i].body, sizeof t[i].body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0.9,\"seed\":%d}",
                      prompts[i - 2], 20 + 5 * i, i);
    }
    for (int i = N - 1; i >= 0; i--) pthread_create(&th[i], NULL, req_main, &t[i]); /* the others first */
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) assert_int_equal(srv_status(t[i].resp), 200);
    char *got_answer = stable_body(t[0].resp), *got_cmpl = stable_body(t[1].resp);
    assert_true(strlen(want_answer) > 20 && strlen(want_cmpl) > 200);
    assert_string_equal(got_answer, want_answer);
    assert_string_equal(got_cmpl, want_cmpl);
    for (int i = 0; i < N; i++) free(t[i].resp);
    free(got_answer);
    free(got_cmpl);
    free(want_answer);
    free(want_cmpl);

    /* a streamed answer whose client leaves: generation stops (seen in /metrics) */
    long long before = srv_metric(s.port, "quire_requests_cancelled_total");
    int fd = srv_dial(s.port);
    const char *body = "{\"question\":\"What did Lily play with?\",\"max_tokens\":300,\"temperature\":1,\"seed\":7,\"stream\":true}";
    char req[1024];
    snprintf(req, sizeof req, "POST /v1/answer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    srv_send_all(fd, req, strlen(req));
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1 && !memmem(buf, got, "answer.chunk", 12)) { /* the stream started */
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fd);
    long long cancelled = before;
    for (int i = 0; i < 200 && cancelled == before; i++) {
        usleep(20000);
        cancelled = srv_metric(s.port, "quire_requests_cancelled_total");
    }
    assert_int_equal(cancelled, before + 1);
    assert_int_equal(srv_stop(&s), 0);
    rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------ */
/* the answer's marker filter and citation order (server/answer.c) */
static char *filter_all(const char *text, int n_passages, size_t piece) {
    sbuf hold = {0}, keep = {0};
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += piece)
        answer_filter_markers(&hold, n_passages, text + i, i + piece <= n ? piece : n - i, &keep);
    sb_put(&keep, hold.p ? hold.p : "", hold.n); /* the end: what is held is text */
    sb_free(&hold);
    return keep.p;
}

static void test_answer_markers(void **state) {
    (void)state;
    const char *in = "Cats like fish [1]. Also [7] and [2][12345678] and [x] [0][03] end [";
    const char *want = "Cats like fish [1]. Also  and [2] and [x] [03] end [";
    for (size_t piece = 1; piece <= strlen(in); piece++) { /* however the text arrives */
        char *got = filter_all(in, 3, piece);
        assert_string_equal(got, want);
        free(got);
    }
    int order[8];
    assert_int_equal(answer_cited(want, 3, order), 3);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 2); /* [03] is passage 3 */
    assert_int_equal(answer_cited("[2] then [1] then [2] and [4]", 3, order), 2);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 0);
    assert_int_equal(answer_cited("no markers [a] [] [-1]", 3, order), 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_markers),
        cmocka_unit_test(test_documents_roundtrip),
        cmocka_unit_test(test_acl),
        cmocka_unit_test(test_logprobs_match_run),
        cmocka_unit_test(test_batch_invariance_answer_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
