/* extract.c — the response of POST /v1/extract: the conforming JSON object
 * and, for every leaf value, the source spans of the document that contain
 * it (byte offsets [start, end) into the document's text: exact occurrences
 * first, ASCII-case-insensitive ones when there is no exact one). A leaf
 * with no span is reported with an empty list — the value is not quoted
 * from the document, which is what an auditor wants to see. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_int.h"

#define MAX_SPANS 4

static size_t find_spans(const char *doc, size_t dn, const char *v, size_t vn, bool fold, size_t *starts) {
    size_t k = 0;
    if (vn == 0 || vn > dn) return 0;
    for (size_t i = 0; i + vn <= dn && k < MAX_SPANS; i++) {
        size_t j = 0;
        if (fold) while (j < vn && tolower((unsigned char)doc[i + j]) == tolower((unsigned char)v[j])) j++;
        else while (j < vn && doc[i + j] == v[j]) j++;
        if (j == vn) starts[k++] = i, i += vn - 1;
    }
    return k;
}

static void ptr_push(sbuf *p, const char *key, size_t n) {
    sb_put(p, "/", 1);
    for (size_t i = 0; i < n; i++) {
        if (key[i] == '~') sb_put(p, "~0", 2);
        else if (key[i] == '/') sb_put(p, "~1", 2);
        else sb_put(p, key + i, 1);
    }
}

static void spans_walk(sbuf *out, bool *first, const json *v, sbuf *ptr, const char *doc, size_t dn) {
    size_t mark = ptr->n;
    if (json_is_object(v)) {
        for (size_t i = 0; i < v->u.obj.n; i++) {
            ptr_push(ptr, v->u.obj.m[i].key, v->u.obj.m[i].klen);
            spans_walk(out, first, v->u.obj.m[i].val, ptr, doc, dn);
            ptr->n = mark;
        }
        return;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_size(v); i++) {
            char ix[32];
            int n = snprintf(ix, sizeof ix, "/%zu", i);
            sb_put(ptr, ix, (size_t)n);
            spans_walk(out, first, json_at(v, i), ptr, doc, dn);
            ptr->n = mark;
        }
        return;
    }
    const char *txt = NULL;
    size_t tn = 0;
    if (json_is_string(v)) txt = json_string(v), tn = json_string_len(v);
    else if (json_is_number(v)) txt = v->u.num.text, tn = v->u.num.len;
    else return; /* true / false / null quote nothing */
    /* leading/trailing spaces are the model's, not the document's */
    while (tn && isspace((unsigned char)txt[0])) txt++, tn--;
    while (tn && isspace((unsigned char)txt[tn - 1])) tn--;
    size_t st[MAX_SPANS];
    size_t k = find_spans(doc, dn, txt, tn, false, st);
    if (k == 0) k = find_spans(doc, dn, txt, tn, true, st);
    if (!*first) sb_put(out, ",", 1);
    *first = false;
    sb_json_str(out, ptr->n ? ptr->p : "", ptr->n);
    sb_put(out, ":[", 2);
    for (size_t i = 0; i < k; i++) sb_printf(out, "%s{\"start\":%zu,\"end\":%zu}", i ? "," : "", st[i], st[i] + tn);
    sb_put(out, "]", 1);
}

void extract_finish(conn *c, job *j) {
    srv *s = c->s;
    const char *text = j->out.p ? j->out.p : "";
    size_t n = j->out.n;
    json *v = NULL;
    qerr e;
    bool parsed = json_parse(text, n, NULL, &v, &e) == 0;
    sbuf b = {0};
    sb_printf(&b, "{\"id\":\"%s\",\"object\":\"extraction\",\"created\":%ld,\"model\":", j->id, (long)time(NULL));
    sb_json_str(&b, s->model_id, strlen(s->model_id));
    if (j->doc_id) {
        sb_puts(&b, ",\"document_id\":");
        sb_json_str(&b, j->doc_id, strlen(j->doc_id));
    }
    sb_puts(&b, ",\"data\":");
    if (parsed) sb_put(&b, text, n);
    else sb_puts(&b, "null");
    sb_printf(&b, ",\"schema_enforced\":%s,", structured_enforced(j) ? "true" : "false");
    structured_annotate(&b, j, text, n);
    sb_puts(&b, "\"spans\":{");
    if (parsed) {
        bool first = true;
        sbuf ptr = {0};
        spans_walk(&b, &first, v, &ptr, j->doc_text ? j->doc_text : "", j->doc_len);
        sb_free(&ptr);
    }
    sb_printf(&b, "},\"finish_reason\":\"%s\",", strcmp(j->finish, "length") == 0 ? "length" : "stop");
    srv_usage_json(&b, j);
    sb_puts(&b, "}");
    json_free(v);
    if (b.oom) {
        sb_free(&b);
        srv_send_error(c, 500, "server_error", NULL, "out of memory");
        return;
    }
    char timing[256];
    double prefill_end = j->t_first > 0 ? j->t_first : j->t_done;
    snprintf(timing, sizeof timing, "Server-Timing: queue;dur=%.2f, prefill;dur=%.2f, decode;dur=%.2f\r\n",
             1e3 * (j->t_admit - j->t_arrive), 1e3 * (prefill_end - j->t_admit), 1e3 * (j->t_done - prefill_end));
    srv_send(c, parsed ? 200 : 500, "application/json", b.p, b.n, timing);
    sb_free(&b);
}
