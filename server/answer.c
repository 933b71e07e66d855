/* answer.c — POST /v1/answer after retrieval (docs.c): the prompt, the
 * streamed text, and the response with citations.
 *
 * The prompt is one chat turn through the model's chat template: a system
 * message asking for an answer from the numbered passages with [n]
 * citations, and a user message listing "[n] text" passages and the
 * question. The generated text passes through a marker filter: a "[n]"
 * whose n names no retrieved passage is removed (so every [n] left maps to
 * a passage). Citations list the passages the answer cites, in order of
 * first mention ("citations_mode": "cited"); when it cites none, every
 * retrieved passage is listed ("citations_mode": "retrieved"). */
#include "server/server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char system_prompt[] =
    "Answer the question using only the numbered passages. Cite the passages you use as [1], [2], ... "
    "If the passages do not contain the answer, say so.";

int answer_render(srv *s, const char *question, const passage *ps, int n, sbuf *out, qerr *e) {
    sbuf user = {0}, msgs = {0};
    sb_puts(&user, "Passages:\n");
    if (n == 0) sb_puts(&user, "(no passage matched)\n");
    for (int i = 0; i < n; i++) {
        sb_printf(&user, "[%d] ", i + 1);
        sb_puts(&user, ps[i].text);
        sb_puts(&user, "\n\n");
    }
    sb_puts(&user, "Question: ");
    sb_puts(&user, question);
    sb_puts(&msgs, "[{\"role\":\"system\",\"content\":");
    sb_json_str(&msgs, system_prompt, strlen(system_prompt));
    sb_puts(&msgs, "},{\"role\":\"user\",\"content\":");
    sb_json_str(&msgs, user.p, user.n);
    sb_puts(&msgs, "}]");
    sb_free(&user);
    if (msgs.oom) { sb_free(&msgs); return qerr_set(e, "out of memory"); }
    json *m;
    int rc = json_parse(msgs.p, msgs.n, NULL, &m, e);
    sb_free(&msgs);
    if (rc) return -1;
    rc = chat_render(s->m->g, s->tok, s->chat_template, m, out, e);
    json_free(m);
    return rc;
}

/* Marker filter: text goes to *keep, except "[n]" with n outside
 * 1..n_passages (any number of digits: a long one is out of range). */
void answer_filter_markers(sbuf *h, int n_passages, const char *text, size_t len, sbuf *keep) {
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (h->n == 0) {
            if (ch == '[') sb_put(h, "[", 1);
            else sb_put(keep, &ch, 1);
            continue;
        }
        if (ch >= '0' && ch <= '9') { sb_put(h, &ch, 1); continue; }
        if (ch == ']' && h->n > 1) {
            long n = h->n - 1 <= 6 ? strtol(h->p + 1, NULL, 10) : 0;
            if (n >= 1 && n <= n_passages) { sb_put(keep, h->p, h->n); sb_put(keep, "]", 1); }
            h->n = 0;
            continue;
        }
        /* not a marker: release what was held, then look at ch again */
        sb_put(keep, h->p, h->n);
        h->n = 0;
        i--;
    }
}

int answer_cited(const char *text, int n_passages, int *order) {
    int n_order = 0;
    for (const char *p = text; (p = strchr(p, '[')) != NULL; p++) {
        size_t d = strspn(p + 1, "0123456789");
        if (d == 0 || d > 6 || p[1 + d] != ']') continue;
        int n = atoi(p + 1);
        if (n < 1 || n > n_passages) continue;
        bool seen = false;
        for (int i = 0; i < n_order && !seen; i++) seen = order[i] == n - 1;
        if (!seen) order[n_order++] = n - 1;
    }
    return n_order;
}

static void delta_event(conn *c, const job *j, const char *text, size_t len) {
    sbuf b = {0};
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"answer.chunk\",\"created\":%ld,\"model\":", j->id, (long)time(NULL));
    sb_json_str(&b, c->s->model_id, strlen(c->s->model_id));
    sb_puts(&b, ",\"delta\":");
    sb_json_str(&b, text, len);
    sb_puts(&b, "}");
    srv_stream_event(c, b.p, b.n, false);
    sb_free(&b);
}

void answer_stream_delta(conn *c, job *j, const char *text, size_t len) {
    sbuf keep = {0};
    answer_filter_markers(&j->cite_hold, j->n_passages, text, len, &keep);
    if (!keep.n) return;
    sb_put(&j->out, keep.p, keep.n);
    if (j->stream) {
        if (!c->stream_open) srv_stream_begin(c);
        delta_event(c, j, keep.p, keep.n);
    }
    sb_free(&keep);
}

void answer_finish(conn *c, job *j) {
    srv *s = c->s;
    if (j->cite_hold.n) { /* an unfinished "[12" at the end is text */
        sb_put(&j->out, j->cite_hold.p, j->cite_hold.n);
        if (j->stream) {
            if (!c->stream_open) srv_stream_begin(c);
            delta_event(c, j, j->cite_hold.p, j->cite_hold.n);
        }
        j->cite_hold.n = 0;
    }
    const char *text = j->out.p ? j->out.p : "";
    int *order = calloc((size_t)j->n_passages + 1, sizeof *order), n_order = 0;
    if (order) n_order = answer_cited(text, j->n_passages, order);
    bool cited = n_order > 0;
    if (!cited && order)
        for (int i = 0; i < j->n_passages; i++) order[n_order++] = i;
    sbuf b = {0};
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"answer\",\"created\":%ld,\"model\":", j->id, (long)time(NULL));
    sb_json_str(&b, s->model_id, strlen(s->model_id));
    sb_puts(&b, ",\"answer\":");
    sb_json_str(&b, text, j->out.n);
    sb_puts(&b, ",\"citations\":[");
    for (int i = 0; i < n_order; i++) {
        const passage *p = &j->passages[order[i]];
        sb_printf(&b, "%s{\"n\":%d,\"id\":", i ? "," : "", order[i] + 1);
        sb_json_str(&b, p->doc_id, strlen(p->doc_id));
        sb_printf(&b, ",\"start\":%zu,\"end\":%zu,\"score\":%.6g,\"text\":", p->start, p->end, p->score);
        sb_json_str(&b, p->text, strlen(p->text));
        sb_puts(&b, "}");
    }
    sb_printf(&b, "],\"citations_mode\":\"%s\",\"finish_reason\":\"%s\",", cited ? "cited" : "retrieved",
              strcmp(j->finish, "length") == 0 ? "length" : "stop");
    srv_usage_json(&b, j);
    sb_puts(&b, "}");
    free(order);
    if (b.oom) {
        sb_free(&b);
        if (c->stream_open) srv_stream_event(c, "[DONE]", 6, true);
        else srv_send_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
    if (j->stream) {
        if (!c->stream_open) srv_stream_begin(c);
        srv_stream_event(c, b.p, b.n, false);
        srv_stream_event(c, "[DONE]", 6, true);
    } else {
        srv_send_json(c, 200, &b);
    }
    sb_free(&b);
}
