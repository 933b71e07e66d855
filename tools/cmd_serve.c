/* cmd_serve.c — `quire serve`: the HTTP service. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server/server.h"

void help_serve(FILE *out) {
    fprintf(out,
            "usage: quire serve -m MODEL [--embed-model M] [--db DIR] [--host 127.0.0.1] [--port 8080]\n"
            "                   [--api-key-file F] [options]\n"
            "  Serves GET /health, /ready, /metrics, /v1/models and POST /v1/completions,\n"
            "  /v1/chat/completions, /v1/embeddings (OpenAI wire format, SSE streaming); with --db also\n"
            "  POST /v1/documents, GET|DELETE /v1/documents/{id}, POST /v1/search and POST /v1/answer.\n"
            "  --db DIR             open (or create) a document index directory (the format of quire index);\n"
            "                       with --embed-model a new index also stores vectors (vector/hybrid search)\n"
            "  --slots N            requests decoded together (default 4)\n"
            "  --ctx N              KV cells over all slots (default slots x min(train ctx, 4096))\n"
            "  --queue N            waiting requests before 503 + Retry-After (default 64)\n"
            "  --prefill-chunk N    prompt tokens per scheduler step (default 256)\n"
            "  --timeout S          per-request time limit in seconds (default none)\n"
            "  --header-timeout S   time to receive a request (slow clients; default 10)\n"
            "  --idle-timeout S     keep-alive idle time (default 30)\n"
            "  --max-body BYTES     request body limit (default 8 MiB)\n"
            "  --api-key-file F     one key per line: KEY or sha256:HEX, then principals (a,b);\n"
            "                       /v1/* then needs 'Authorization: Bearer KEY'\n"
            "  --cors-origin O      allow this exact origin (repeatable; default: CORS off)\n"
            "  --chat-template T    chatml, or a file with a Jinja chat template (default: the model's\n"
            "                       tokenizer.chat_template; ChatML when it has none)\n"
            "  --model-name ID      the id /v1/models reports (default: the file name)\n"
            "  -t N                 threads for the forward pass (default: all CPUs)\n"
            "  --ready-fd FD        write the bound port to FD once listening (for tests)\n"
            "  Port 0 picks a free port. SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit.\n");
}

int cmd_serve(int argc, char **argv) {
    server_config c;
    server_config_default(&c);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long x;
        double f;
#define VAL() do { if (!(v = cli_value("serve", argc, argv, &i))) return EXIT_USAGE; } while (0)
#define INT(dst, lo, hi) do { VAL(); if (!cli_parse_int(v, &x) || x < (lo) || x > (hi)) return cli_fail("serve", "bad value '%s' for %s", v, a); dst = x; } while (0)
#define FLT(dst, lo, hi) do { VAL(); if (!cli_parse_float(v, &f) || f < (lo) || f > (hi)) return cli_fail("serve", "bad value '%s' for %s", v, a); dst = f; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); c.model_path = v; }
        else if (!strcmp(a, "--embed-model")) { VAL(); c.embed_model = v; }
        else if (!strcmp(a, "--db")) { VAL(); c.db_dir = v; }
        else if (!strcmp(a, "--host")) { VAL(); c.host = v; }
        else if (!strcmp(a, "--port")) INT(c.port, 0, 65535);
        else if (!strcmp(a, "--api-key-file")) { VAL(); c.api_key_file = v; }
        else if (!strcmp(a, "--cors-origin")) { VAL(); if (c.n_cors == 8) return cli_fail("serve", "at most 8 CORS origins"); c.cors_origins[c.n_cors++] = v; }
        else if (!strcmp(a, "--chat-template")) { VAL(); c.chat_template = v; }
        else if (!strcmp(a, "--model-name")) { VAL(); c.model_name = v; }
        else if (!strcmp(a, "--slots")) INT(c.n_slots, 1, 256);
        else if (!strcmp(a, "--ctx")) INT(c.n_ctx, 16, 1 << 22);
        else if (!strcmp(a, "--queue")) INT(c.max_queue, 1, 1 << 16);
        else if (!strcmp(a, "--prefill-chunk")) INT(c.prefill_chunk, 1, 1 << 16);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT(c.n_threads, 1, 1024);
        else if (!strcmp(a, "--timeout")) FLT(c.request_timeout, 0, 1e6);
        else if (!strcmp(a, "--header-timeout")) FLT(c.header_timeout, 0.1, 3600);
        else if (!strcmp(a, "--idle-timeout")) FLT(c.idle_timeout, 0.1, 86400);
        else if (!strcmp(a, "--max-body")) INT(c.max_body, 1024, 1ll << 32);
        else if (!strcmp(a, "--ready-fd")) INT(c.ready_fd, 0, 1 << 20);
        else if (!strcmp(a, "--log-prompts")) c.log_prompts = true;
        else return cli_fail("serve", "unknown argument '%s'", a);
#undef VAL
#undef INT
#undef FLT
    }
    if (!c.model_path) return cli_fail("serve", "no model given (-m MODEL)");
    qerr e;
    if (server_run(&c, &e)) return cli_fail("serve", "%s", e.msg);
    return EXIT_OK;
}
