/* logprobs.c — token log-probabilities in OpenAI's two response shapes:
 * chat ("logprobs": {"content": [{token, logprob, bytes, top_logprobs}]})
 * and legacy completions ("logprobs": {tokens, token_logprobs,
 * top_logprobs: [{token: logprob}], text_offset}). A token's text is its
 * vocabulary piece (raw bytes; a piece that is not valid UTF-8 on its own
 * shows U+FFFD in "token" and its true bytes in "bytes"). */
#include "server/server_int.h"

#include <math.h>

static void num(sbuf *b, float v) {
    if (isfinite(v)) sb_printf(b, "%.9g", v);
    else sb_puts(b, "-9999.0"); /* -inf: a token the model gives no mass (JSON has no infinity) */
}

static void token_fields(sbuf *b, const tokenizer *tok, int32_t id, float lp) {
    size_t n;
    const char *p = tokenizer_piece(tok, id, &n);
    if (!p) p = "", n = 0;
    sb_puts(b, "\"token\":");
    sb_json_str(b, p, n);
    sb_puts(b, ",\"logprob\":");
    num(b, lp);
    sb_puts(b, ",\"bytes\":[");
    for (size_t i = 0; i < n; i++) sb_printf(b, "%s%u", i ? "," : "", (unsigned)(unsigned char)p[i]);
    sb_puts(b, "]");
}

void logprobs_chat_json(sbuf *b, const tokenizer *tok, const tok_lp *lp, int n, int n_top) {
    sb_puts(b, "{\"content\":[");
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{" : "{");
        token_fields(b, tok, lp[i].id, lp[i].logprob);
        sb_puts(b, ",\"top_logprobs\":[");
        for (int k = 0; k < n_top; k++) {
            sb_puts(b, k ? ",{" : "{");
            token_fields(b, tok, lp[i].top[k].id, lp[i].top[k].logprob);
            sb_puts(b, "}");
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "],\"refusal\":null}");
}

void logprobs_completion_json(sbuf *b, const tokenizer *tok, const tok_lp *lp, int n, int n_top, size_t *text_offset) {
    size_t len;
    const char *p;
    sb_puts(b, "{\"tokens\":[");
    for (int i = 0; i < n; i++) {
        p = tokenizer_piece(tok, lp[i].id, &len);
        if (i) sb_puts(b, ",");
        sb_json_str(b, p ? p : "", p ? len : 0);
    }
    sb_puts(b, "],\"token_logprobs\":[");
    for (int i = 0; i < n; i++) {
        if (i) sb_puts(b, ",");
        num(b, lp[i].logprob);
    }
    sb_puts(b, "],\"top_logprobs\":[");
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{" : "{");
        int written = 0;
        for (int k = 0; k < n_top; k++) {
            p = tokenizer_piece(tok, lp[i].top[k].id, &len);
            if (!p) p = "", len = 0;
            /* two ids with the same text would repeat a key: keep the first (more likely) */
            bool dup = false;
            for (int q = 0; q < k && !dup; q++) {
                size_t l2;
                const char *p2 = tokenizer_piece(tok, lp[i].top[q].id, &l2);
                dup = p2 && l2 == len && memcmp(p2, p, len) == 0;
            }
            if (dup) continue;
            if (written++) sb_puts(b, ",");
            sb_json_str(b, p, len);
            sb_puts(b, ":");
            num(b, lp[i].top[k].logprob);
        }
        sb_puts(b, "}");
    }
    sb_puts(b, "],\"text_offset\":[");
    for (int i = 0; i < n; i++) {
        sb_printf(b, "%s%zu", i ? "," : "", *text_offset);
        p = tokenizer_piece(tok, lp[i].id, &len);
        *text_offset += p ? len : 0;
    }
    sb_puts(b, "]}");
}
