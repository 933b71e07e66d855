/* chat.c — OpenAI chat messages to a prompt, through the model's own chat
 * template (the tokenizer's Jinja-subset interpreter renders the real
 * tokenizer.chat_template). A model without a template gets ChatML, as
 * documented; --chat-template names "chatml" or a file holding a Jinja
 * template. A template the interpreter cannot render is an error, never a
 * silent fallback. */
#include "server/server_int.h"

#include <stdio.h>
#include <stdlib.h>

/* A message's text: a string, or an array of {type: "text", text} parts. */
static int content_of(const json *msg, sbuf *out, qerr *e) {
    const json *c = json_get(msg, "content");
    if (!c || json_typeof(c) == JSON_NULL) { sb_put(out, "", 0); return 0; }
    if (json_is_string(c)) { sb_put(out, json_string(c), json_string_len(c)); if (!out->p) sb_put(out, "", 0); return 0; }
    if (!json_is_array(c)) return qerr_set(e, "message content must be a string or an array of parts");
    for (size_t i = 0; i < json_size(c); i++) {
        const json *p = json_at(c, i), *type = json_get(p, "type"), *text = json_get(p, "text");
        if (!json_is_string(type) || strcmp(json_string(type), "text") != 0 || !json_is_string(text))
            return qerr_set(e, "only text content parts are supported");
        sb_put(out, json_string(text), json_string_len(text));
    }
    if (!out->p) sb_put(out, "", 0);
    return 0;
}

int chat_render(const gguf *g, const tokenizer *tok, const char *override_tmpl, const json *messages, sbuf *out,
                qerr *e) {
    (void)g;
    if (!json_is_array(messages) || json_size(messages) == 0) return qerr_set(e, "messages must be a non-empty array");
    size_t n = json_size(messages);
    chat_msg *msgs = calloc(n, sizeof *msgs);
    sbuf *texts = calloc(n, sizeof *texts);
    int rc = 0;
    if (!msgs || !texts) { rc = qerr_set(e, "out of memory"); goto done; }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const json *m = json_at(messages, i), *role = json_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) { rc = qerr_set(e, "messages[%zu] needs a role", i); break; }
        const char *r = json_string(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer")) {
            rc = qerr_set(e, "messages[%zu]: role '%s' is not supported", i, r);
            break;
        }
        msgs[i].role = strcmp(r, "developer") ? r : "system";
        if (content_of(m, &texts[i], e)) { rc = -1; break; }
        msgs[i].content = texts[i].p;
    }
    if (rc == 0) {
        const char *tmpl = override_tmpl ? override_tmpl : tokenizer_chat_template(tok);
        if (!tmpl) tmpl = chat_template_chatml;
        char *text;
        size_t len;
        if (tokenizer_chat_apply(tok, tmpl, msgs, n, true, &text, &len, e)) {
            qerr_wrap(e, "chat template");
            rc = -1;
        } else {
            sb_put(out, text, len);
            free(text);
            if (out->oom) rc = qerr_set(e, "out of memory");
        }
    }
done:
    if (texts)
        for (size_t i = 0; i < n; i++) sb_free(&texts[i]);
    free(texts);
    free(msgs);
    return rc;
}
