/* testutil.h — helpers shared by the cmocka tests. */
#ifndef QUIRE_TESTUTIL_H
#define QUIRE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Path of a file under ../shared (relative to the project root); aborts the
 * test with a clear message if ../shared is missing. Returns a static buffer
 * rotated over 8 slots. */
const char *shared_path(const char *rel);
/* Reads a whole file or fails the test. Caller frees. */
void *test_read_file(const char *path, size_t *len);
/* nrmse = rms(a - ref) / std(ref). */
double nrmse(const float *a, const float *ref, size_t n);
/* Runs build/quire with the arguments (a shell string) and captures stdout;
 * returns the exit status. Caller frees *out (may pass NULL). */
int run_quire(const char *args, char **out);

/* ---- quire serve over loopback (tests of the HTTP service) ---- */
#include <sys/types.h>
typedef struct test_server {
    pid_t pid;
    int port;
} test_server;
/* Starts `quire serve -m stories260K --port 0 -t 1 EXTRA` (stderr to
 * /dev/null) and waits until it listens. Servers still running at exit are
 * killed (a failed assertion jumps past srv_stop). */
test_server srv_start(const char *extra);
/* SIGTERM, wait; returns the exit status (128 + signal if killed). */
int srv_stop(test_server *s);
/* The server exited by other means: do not kill it at exit. */
void srv_forget(pid_t pid);
int srv_dial(int port);
void srv_send_all(int fd, const char *s, size_t n);
/* Reads until the peer closes or timeout_ms passes; NUL-terminated. */
char *srv_recv_until_close(int fd, int timeout_ms);
/* One request on a fresh connection (Connection: close); body as JSON. */
char *srv_request(int port, const char *method, const char *path, const char *body, const char *headers);
int srv_status(const char *resp);
/* The body after the head (a pointer into resp; "" if none). */
const char *srv_body(const char *resp);
/* A counter or gauge from /metrics; -1 when absent. */
long long srv_metric(int port, const char *name);


/* Sorted names of the *.json files in dir (fails the test if it cannot be
 * read). Free each name and the array. */
char **test_list_json(const char *dir, size_t *n);
/* A tokenizer and its SGR vocabulary from a GGUF under ../shared (asserts). */
struct tokenizer;
struct sgr_vocab *test_load_vocab(const char *rel, struct tokenizer **tk);
/* Tokens in the greedy spelling of the grammar's shortest document (the
 * smallest budget that works); -1 when it cannot be spelled. */
struct sgr_grammar;
int test_min_tokens(struct sgr_grammar *G, struct sgr_vocab *v);

/* JSON over HTTP for the server tests (sgr's parser). */
struct json;
/* Parses text or fails the test naming it. */
struct json *test_json_parse(const char *text);
/* Sends a request and returns its parsed JSON body; *status gets the code. */
struct json *srv_call_json(int port, const char *method, const char *path, const char *body, const char *headers,
                           int *status);
/* The string at a JSON pointer, "" when absent or not a string. */
const char *test_json_str(const struct json *o, const char *ptr);

#endif
