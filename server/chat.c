/* chat.c — renders OpenAI chat messages into a prompt with the model's chat
 * template. Templates are recognised by the markers of the families users
 * run (ChatML/Qwen, Llama 2, Llama 3, Mistral, Phi-3, Gemma, Zephyr); a model
 * without a template gets ChatML (documented); a template we do not
 * recognise is an error unless the caller names one to use instead. */
#include "server/server_int.h"

#include <stdio.h>

enum { T_CHATML, T_LLAMA2, T_LLAMA3, T_MISTRAL, T_PHI3, T_GEMMA, T_ZEPHYR, T_UNKNOWN };
static const char *names[] = {"chatml", "llama2", "llama3", "mistral", "phi3", "gemma", "zephyr"};

static int detect(const char *t) {
    if (!t) return T_CHATML;
    if (strstr(t, "<|im_start|>")) return T_CHATML;
    if (strstr(t, "<|start_header_id|>")) return T_LLAMA3;
    if (strstr(t, "<start_of_turn>")) return T_GEMMA;
    if (strstr(t, "<|user|>") && strstr(t, "<|end|>")) return T_PHI3;
    if (strstr(t, "<|user|>")) return T_ZEPHYR;
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>")) return T_LLAMA2;
    if (strstr(t, "[INST]")) return T_MISTRAL;
    return T_UNKNOWN;
}

/* A message's text: a string, or an array of {type: "text", text} parts. */
static int content_of(const json *msg, sbuf *out, qerr *e) {
    const json *c = json_get(msg, "content");
    if (!c || json_typeof(c) == JSON_NULL) return 0;
    if (json_is_string(c)) { sb_put(out, json_string(c), json_string_len(c)); return 0; }
    if (!json_is_array(c)) return qerr_set(e, "message content must be a string or an array of parts");
    for (size_t i = 0; i < json_size(c); i++) {
        const json *p = json_at(c, i), *type = json_get(p, "type"), *text = json_get(p, "text");
        if (!json_is_string(type) || strcmp(json_string(type), "text") != 0 || !json_is_string(text))
            return qerr_set(e, "only text content parts are supported");
        sb_put(out, json_string(text), json_string_len(text));
    }
    return 0;
}

int chat_render(const gguf *g, const tokenizer *tok, const char *override_name, const json *messages, sbuf *out,
                qerr *e) {
    (void)tok;
    int t;
    if (override_name) {
        t = T_UNKNOWN;
        for (int i = 0; i < T_UNKNOWN; i++)
            if (strcmp(names[i], override_name) == 0) t = i;
        if (t == T_UNKNOWN)
            return qerr_set(e, "unknown chat template '%s' (chatml, llama2, llama3, mistral, phi3, gemma, zephyr)",
                            override_name);
    } else {
        t = detect(gguf_get_str(g, "tokenizer.chat_template"));
        if (t == T_UNKNOWN)
            return qerr_set(e, "the model's chat template is not one Quire recognises; start the server with "
                               "--chat-template NAME (chatml, llama2, llama3, mistral, phi3, gemma, zephyr)");
    }
    if (!json_is_array(messages) || json_size(messages) == 0) return qerr_set(e, "messages must be a non-empty array");
    sbuf sys = {0};
    for (size_t i = 0; i < json_size(messages); i++) {
        const json *m = json_at(messages, i), *role = json_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) { sb_free(&sys); return qerr_set(e, "messages[%zu] needs a role", i); }
        const char *r = json_string(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer")) {
            sb_free(&sys);
            return qerr_set(e, "messages[%zu]: role '%s' is not supported", i, r);
        }
        if (!strcmp(r, "developer")) r = "system";
        sbuf c = {0};
        if (content_of(m, &c, e)) { sb_free(&c); sb_free(&sys); return -1; }
        const char *text = c.p ? c.p : "";
        bool is_sys = !strcmp(r, "system");
        switch (t) {
        case T_CHATML: sb_printf(out, "<|im_start|>%s\n%s<|im_end|>\n", r, text); break;
        case T_LLAMA3: sb_printf(out, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", r, text); break;
        case T_GEMMA:
            if (is_sys) { sb_puts(&sys, text); sb_puts(&sys, "\n\n"); break; }
            sb_printf(out, "<start_of_turn>%s\n%s%s<end_of_turn>\n", strcmp(r, "assistant") ? "user" : "model",
                      sys.p && strcmp(r, "user") == 0 ? sys.p : "", text);
            if (!strcmp(r, "user")) sb_free(&sys);
            break;
        case T_PHI3: sb_printf(out, "<|%s|>\n%s<|end|>\n", r, text); break;
        case T_ZEPHYR: sb_printf(out, "<|%s|>\n%s</s>\n", r, text); break;
        case T_LLAMA2:
        case T_MISTRAL:
            if (is_sys) { sb_puts(&sys, text); break; }
            if (!strcmp(r, "user")) {
                if (sys.p && t == T_LLAMA2) sb_printf(out, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys.p, text);
                else if (sys.p) sb_printf(out, "[INST] %s\n\n%s [/INST]", sys.p, text);
                else sb_printf(out, "[INST] %s [/INST]", text);
                sb_free(&sys);
            } else {
                sb_printf(out, " %s</s>", text);
            }
            break;
        }
        sb_free(&c);
    }
    sb_free(&sys);
    /* the generation prompt */
    switch (t) {
    case T_CHATML: sb_puts(out, "<|im_start|>assistant\n"); break;
    case T_LLAMA3: sb_puts(out, "<|start_header_id|>assistant<|end_header_id|>\n\n"); break;
    case T_GEMMA: sb_puts(out, "<start_of_turn>model\n"); break;
    case T_PHI3: sb_puts(out, "<|assistant|>\n"); break;
    case T_ZEPHYR: sb_puts(out, "<|assistant|>\n"); break;
    default: break;
    }
    if (out->oom) return qerr_set(e, "out of memory");
    return 0;
}
