/* test_crash.c — durability of the index directory.
 * 1. A child process adds (and sometimes removes) documents, reporting each
 *    acknowledged operation on a pipe after index_add/index_rm returned (the
 *    log was fsync'd); the parent kills it with SIGKILL at a random moment,
 *    >= 50 times over one growing index with frequent checkpoints (so kills
 *    land in adds, checkpoints and open/replay). After each kill the index
 *    must verify clean and every acknowledged document must be searchable
 *    (and every acknowledged removal gone).
 * 2. Flipping one byte in each index file gives a clear error naming it.
 * 3. A torn final log record is dropped; earlier records survive. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "rag/rag.h"

static const char *bert_path(void) { return shared_path("models/synthetic/syn-bert-F16.gguf"); }

enum { MAX_DOC = 200000 };

static void doc_text(int n, char *buf, size_t cap) {
    snprintf(buf, cap, "Document number %d carries the unique marker u%dx.\n\nA second paragraph about topic %d.", n, n, n % 17);
}

/* Child: never returns. */
static void child_run(const char *db, int wfd, int start, bool model, unsigned seed) {
    qerr e;
    index_config cfg;
    index_config_default(&cfg);
    if (model) snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", bert_path());
    rag_index *x;
    if (index_open(&x, db, INDEX_CREATE, &cfg, &e)) { fprintf(stderr, "child open: %s\n", e.msg); _exit(3); }
    index_set_checkpoint_bytes(x, 3000 + seed % 5000);
    index_set_threads(x, 1, &e);
    for (int n = start;; n++) {
        char id[32], text[256];
        snprintf(id, sizeof id, "d%d", n);
        doc_text(n, text, sizeof text);
        index_doc d = {.id = id, .text = text, .text_len = strlen(text)};
        if (index_add(x, &d, 1, &e)) { fprintf(stderr, "child add: %s\n", e.msg); _exit(4); }
        int32_t ack = n;
        if (write(wfd, &ack, 4) != 4) _exit(5);
        if (n % 7 == 0 && n - 3 >= start) {
            snprintf(id, sizeof id, "d%d", n - 3);
            ack = -(n - 3) - 1 - MAX_DOC; /* intent: until acknowledged, either outcome is correct */
            if (write(wfd, &ack, 4) != 4) _exit(5);
            bool found;
            if (index_rm(x, id, &found, &e)) { fprintf(stderr, "child rm: %s\n", e.msg); _exit(6); }
            ack = -(n - 3) - 1;
            if (write(wfd, &ack, 4) != 4) _exit(5);
        }
    }
}

static bool searchable(rag_index *x, int n) {
    qerr e;
    char q[32], id[32];
    snprintf(q, sizeof q, "u%dx", n);
    snprintf(id, sizeof id, "d%d", n);
    search_opts o;
    search_opts_default(&o);
    o.k = 1;
    search_result r;
    if (index_search(x, q, &o, &r, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    bool ok = r.n == 1 && strcmp(r.hits[0].doc_id, id) == 0;
    search_result_free(&r);
    return ok;
}

static void rm_rf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct crash_db {
    char path[160];
    bool model;
    signed char *state; /* 1: acked present, -1: acked removed, 2: removal in flight, 0: never acked */
    int next, acks;
    int mid_checkpoint; /* kills that left a snapshot the MANIFEST does not list */
    int log_replays;    /* kills after which the log held records to replay */
} crash_db;

/* One kill cycle on db; then the checks. */
static void crash_cycle(crash_db *c, int kill_no, bool sanitized) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        child_run(c->path, p[1], c->next, c->model, (unsigned)rand());
    }
    close(p[1]);
    int ms = 2 + rand() % 58; /* 2..60 ms, then SIGKILL */
    if (sanitized) ms *= 4;
    if (c->model) ms *= 3;
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
        fprintf(stderr, "child exited on its own (status %d)\n", st);
        fail();
    }
    int32_t ack;
    int last = c->next - 1;
    while (read(p[0], &ack, 4) == 4) {
        if (ack >= 0) {
            assert_true(ack < MAX_DOC);
            c->state[ack] = 1;
            if (ack > last) last = ack;
        } else if (ack >= -MAX_DOC) c->state[-ack - 1] = -1;
        else c->state[-ack - 1 - MAX_DOC] = 2;
        c->acks++;
    }
    close(p[0]);
    c->next = last + 1;
    /* the index may not exist yet if the kill came very early */
    struct stat sb;
    char mf[200];
    snprintf(mf, sizeof mf, "%s/MANIFEST", c->path);
    if (stat(mf, &sb) != 0) { assert_int_equal(c->acks, 0); return; }
    /* where did the kill land? (informational) */
    DIR *dd = opendir(c->path);
    int snaps = 0;
    if (dd) {
        struct dirent *de;
        while ((de = readdir(dd))) snaps += strncmp(de->d_name, "docs-", 5) == 0;
        closedir(dd);
    }
    if (snaps > 1) c->mid_checkpoint++;
    char wal[200];
    snprintf(wal, sizeof wal, "%s/wal.log", c->path);
    if (stat(wal, &sb) == 0 && sb.st_size > 0) c->log_replays++;
    qerr e;
    if (index_verify(c->path, &e)) { fprintf(stderr, "after kill %d: %s\n", kill_no, e.msg); fail(); }
    rag_index *x;
    if (index_open(&x, c->path, INDEX_READ, NULL, &e)) { fprintf(stderr, "after kill %d: %s\n", kill_no, e.msg); fail(); }
    for (int n = 0; n < c->next; n++) {
        char id[32];
        snprintf(id, sizeof id, "d%d", n);
        if (c->state[n] == 1 && (!index_has_doc(x, id) || !searchable(x, n))) {
            fprintf(stderr, "after kill %d: acknowledged document %s lost (has %d, searchable %d; %zu docs)\n", kill_no, id,
                    index_has_doc(x, id), searchable(x, n), index_doc_count(x));
            fail();
        }
        if (c->state[n] == -1 && index_has_doc(x, id)) {
            fprintf(stderr, "after kill %d: removed document %s is back\n", kill_no, id);
            fail();
        }
    }
    index_free(x);
}

static void test_kill9(void **state) {
    (void)state;
    char dir[] = "/tmp/quire-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    crash_db dbs[2];
    memset(dbs, 0, sizeof dbs);
    for (int i = 0; i < 2; i++) {
        snprintf(dbs[i].path, sizeof dbs[i].path, "%s/db%d", dir, i);
        dbs[i].model = i == 1;
        dbs[i].state = calloc(MAX_DOC, 1);
        assert_non_null(dbs[i].state);
    }
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    bool sanitized = getenv("QUIRE_TEST_SANITIZED") != NULL;
    int kills = 0;
    for (int it = 0; it < 64; it++) {
        crash_db *c = &dbs[it % 4 == 3 ? 1 : 0]; /* every 4th cycle: the index with an embedding model */
        crash_cycle(c, ++kills, sanitized);
    }
    printf("seed %u: %d kills; plain index %d docs / %d acks, embedding index %d docs / %d acks; "
           "kills inside a checkpoint (stray snapshot left) %d, with a log to replay %d\n",
           seed, kills, dbs[0].next, dbs[0].acks, dbs[1].next, dbs[1].acks, dbs[0].mid_checkpoint + dbs[1].mid_checkpoint,
           dbs[0].log_replays + dbs[1].log_replays);
    assert_true(kills >= 50);
    assert_true(dbs[0].acks > 50 && dbs[1].acks > 0);
    for (int i = 0; i < 2; i++) free(dbs[i].state);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------ */
static void copy_dir(const char *from, const char *to) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    assert_int_equal(system(cmd), 0);
}

static void flip_byte(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x20, f);
    fclose(f);
}

static long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void build_small(const char *db, int n_ckpt, int n_log) {
    qerr e;
    index_config cfg;
    index_config_default(&cfg);
    snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", bert_path());
    rag_index *x;
    assert_int_equal(index_open(&x, db, INDEX_CREATE, &cfg, &e), 0);
    for (int n = 0; n < n_ckpt + n_log; n++) {
        char id[32], text[256];
        snprintf(id, sizeof id, "d%d", n);
        doc_text(n, text, sizeof text);
        index_doc d = {.id = id, .text = text, .text_len = strlen(text)};
        assert_int_equal(index_add(x, &d, 1, &e), 0);
        if (n == n_ckpt - 1) assert_int_equal(index_checkpoint(x, &e), 0);
    }
    index_free(x); /* no checkpoint: the last n_log documents live in the log */
}

static void test_corruption_detected(void **state) {
    (void)state;
    char dir[] = "/tmp/quire-corrupt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[160], bad[160];
    snprintf(db, sizeof db, "%s/db", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    build_small(db, 5, 3);
    qerr e;
    assert_int_equal(index_verify(db, &e), 0);
    DIR *d = opendir(db);
    assert_non_null(d);
    struct dirent *de;
    int checked = 0;
    char names[16][256];
    int nn = 0;
    while ((de = readdir(d)) && nn < 16)
        if (de->d_name[0] != '.' && strcmp(de->d_name, "LOCK") != 0) snprintf(names[nn++], sizeof names[0], "%s", de->d_name);
    closedir(d);
    for (int i = 0; i < nn; i++) {
        for (int where = 0; where < 3; where++) {
            copy_dir(db, bad);
            char path[700];
            snprintf(path, sizeof path, "%.300s/%.255s", bad, names[i]);
            long sz = file_size(path);
            assert_true(sz > 0);
            /* for the log: inside its first record (a damaged final record is
             * indistinguishable from a torn write and is dropped) */
            long off = strcmp(names[i], "wal.log") == 0 ? (where == 0 ? 1 : where == 1 ? 6 : 40)
                                                         : (where == 0 ? 0 : where == 1 ? sz / 2 : sz - 1);
            flip_byte(path, off);
            rag_index *x;
            int rc = index_open(&x, bad, INDEX_READ, NULL, &e);
            if (rc == 0) { fprintf(stderr, "flipped byte %ld of %s not detected\n", off, names[i]); fail(); }
            if (!strstr(e.msg, names[i])) { fprintf(stderr, "error does not name %s: %s\n", names[i], e.msg); fail(); }
            assert_int_equal(index_verify(bad, &e), -1);
            checked++;
        }
    }
    printf("%d corruptions of %d files detected, e.g. \"%s\"\n", checked, nn, e.msg);
    assert_true(nn >= 5); /* MANIFEST, docs-G.dat, hnsw-G.bin, bm25-G.bin, wal.log */
    bool has_bm25 = false;
    for (int i = 0; i < nn; i++) has_bm25 |= strncmp(names[i], "bm25-", 5) == 0;
    assert_true(has_bm25);
    /* the CLI reports it as bad input, one line */
    char args[400];
    snprintf(args, sizeof args, "search %s -q marker 2>/dev/null", bad);
    assert_int_equal(run_quire(args, NULL), 2);
    snprintf(args, sizeof args, "index verify %s 2>/dev/null", bad);
    assert_int_equal(run_quire(args, NULL), 1);
    rm_rf(dir);
}

static void test_torn_tail(void **state) {
    (void)state;
    char dir[] = "/tmp/quire-torn-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[160], wal[200];
    snprintf(db, sizeof db, "%s/db", dir);
    snprintf(wal, sizeof wal, "%s/wal.log", db);
    build_small(db, 2, 3);
    long sz = file_size(wal);
    for (int cut = 1; cut <= 3; cut++) {
        assert_int_equal(truncate(wal, sz - cut * 7), 0);
        qerr e;
        rag_index *x;
        if (index_open(&x, db, INDEX_READ, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        assert_true(index_has_doc(x, "d0") && index_has_doc(x, "d3"));
        assert_false(index_has_doc(x, "d4")); /* the torn record */
        assert_true(searchable(x, 3));
        index_free(x);
        sz -= cut * 7;
    }
    /* a writer drops the torn tail and appends after the good records */
    qerr e;
    rag_index *x;
    assert_int_equal(index_open(&x, db, INDEX_WRITE, NULL, &e), 0);
    char text[256];
    doc_text(9, text, sizeof text);
    index_doc d = {.id = "d9", .text = text, .text_len = strlen(text)};
    assert_int_equal(index_add(x, &d, 1, &e), 0);
    index_free(x);
    assert_int_equal(index_verify(db, &e), 0);
    assert_int_equal(index_open(&x, db, INDEX_READ, NULL, &e), 0);
    assert_true(searchable(x, 9) && searchable(x, 3));
    index_free(x);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9),
        cmocka_unit_test(test_corruption_detected),
        cmocka_unit_test(test_torn_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
