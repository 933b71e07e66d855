/* test_chat_template.c — the Jinja-subset chat template interpreter against
 * outputs of Jinja2 itself (rendered as the Hugging Face runner does) for
 * common model templates, plus error handling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "testutil.h"

/* Generated once with Jinja2 3.1.6 (trim_blocks, lstrip_blocks, the Hugging Face tojson). */
static const char *const tmpl_src[][2] = {
    {"chatml", "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama2", "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    {"llama3", "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"zephyr", "{% for message in messages %}\n    {% if message['role'] == 'user' %}\n        {{ '<|user|>\\n' + message['content'] + eos_token }}\n    {% elif message['role'] == 'system' %}\n        {{ '<|system|>\\n' + message['content'] + eos_token }}\n    {% elif message['role'] == 'assistant' %}\n        {{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n    {% endif %}\n    {% if loop.last and add_generation_prompt %}\n        {{ '<|assistant|>' }}\n    {% endif %}\n{% endfor %}"},
    {"gemma", "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"},
    {"misc", "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}|{{ messages|length }}|{{ (messages|last).content|upper }}|{{ 7 // 2 }}{{ 'a' ~ 3 }}{{ 'x' if 1 > 2 else 'y' }}{% for k, v in {'a': 1}.items() %}{{k}}={{v}}{% endfor %}{{ messages[-1]['content'][1:3] }}|{{ \"a,b\".split(\",\") | join(\"+\") }}{{ 'Hi' in messages[0].content }}{% for m in messages if m.role != 'system' %}{{ loop.index }}{% endfor %}\n  {#- comment -#}  \n{%- if messages[0].tool_calls is not defined and not false -%} ok {%- endif %}\n{{ messages[0] | tojson }} {{ [1, 'a', none, true] }}"},
};

static const chat_msg msgs_a[] = {{"user", "Hello"}};
static const chat_msg msgs_b[] = {{"system", "Be nice"}, {"user", "Hi there"}, {"assistant", " Hello! "}, {"user", "Bye"}};
static const chat_msg msgs_c[] = {{"user", "Hi"}, {"assistant", "Yo"}};

typedef struct tcase { const char *tmpl; char msgs; bool gen; const char *want; const char *err; } tcase;
static const tcase cases[] = {
    {"chatml", 'a', false, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n", NULL},
    {"chatml", 'a', true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", NULL},
    {"chatml", 'b', false, "<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nBye<|im_end|>\n", NULL},
    {"chatml", 'b', true, "<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n", NULL},
    {"chatml", 'c', false, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n", NULL},
    {"chatml", 'c', true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>assistant\n", NULL},
    {"llama2", 'a', false, "<s>[INST] Hello [/INST]", NULL},
    {"llama2", 'a', true, "<s>[INST] Hello [/INST]", NULL},
    {"llama2", 'b', false, "<s>[INST] <<SYS>>\nBe nice\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Bye [/INST]", NULL},
    {"llama2", 'b', true, "<s>[INST] <<SYS>>\nBe nice\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Bye [/INST]", NULL},
    {"llama2", 'c', false, "<s>[INST] Hi [/INST] Yo </s>", NULL},
    {"llama2", 'c', true, "<s>[INST] Hi [/INST] Yo </s>", NULL},
    {"llama3", 'a', false, "<s><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>", NULL},
    {"llama3", 'a', true, "<s><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", NULL},
    {"llama3", 'b', false, "<s><|start_header_id|>system<|end_header_id|>\n\nBe nice<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>", NULL},
    {"llama3", 'b', true, "<s><|start_header_id|>system<|end_header_id|>\n\nBe nice<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", NULL},
    {"llama3", 'c', false, "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>", NULL},
    {"llama3", 'c', true, "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", NULL},
    {"zephyr", 'a', false, "        <|user|>\nHello</s>\n", NULL},
    {"zephyr", 'a', true, "        <|user|>\nHello</s>\n        <|assistant|>\n", NULL},
    {"zephyr", 'b', false, "        <|system|>\nBe nice</s>\n        <|user|>\nHi there</s>\n        <|assistant|>\n Hello! </s>\n        <|user|>\nBye</s>\n", NULL},
    {"zephyr", 'b', true, "        <|system|>\nBe nice</s>\n        <|user|>\nHi there</s>\n        <|assistant|>\n Hello! </s>\n        <|user|>\nBye</s>\n        <|assistant|>\n", NULL},
    {"zephyr", 'c', false, "        <|user|>\nHi</s>\n        <|assistant|>\nYo</s>\n", NULL},
    {"zephyr", 'c', true, "        <|user|>\nHi</s>\n        <|assistant|>\nYo</s>\n        <|assistant|>\n", NULL},
    {"gemma", 'a', false, "<s><start_of_turn>user\nHello<end_of_turn>\n", NULL},
    {"gemma", 'a', true, "<s><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n", NULL},
    {"gemma", 'b', false, NULL, "System role not supported"},
    {"gemma", 'b', true, NULL, "System role not supported"},
    {"gemma", 'c', false, "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n", NULL},
    {"gemma", 'c', true, "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n<start_of_turn>model\n", NULL},
    {"misc", 'a', false, "False|1|HELLO|3a3ya=1el|a+bFalse1ok{\"role\": \"user\", \"content\": \"Hello\"} [1, 'a', None, True]", NULL},
    {"misc", 'a', true, "False|1|HELLO|3a3ya=1el|a+bFalse1ok{\"role\": \"user\", \"content\": \"Hello\"} [1, 'a', None, True]", NULL},
    {"misc", 'b', false, "True|4|BYE|3a3ya=1ye|a+bFalse123ok{\"role\": \"system\", \"content\": \"Be nice\"} [1, 'a', None, True]", NULL},
    {"misc", 'b', true, "True|4|BYE|3a3ya=1ye|a+bFalse123ok{\"role\": \"system\", \"content\": \"Be nice\"} [1, 'a', None, True]", NULL},
    {"misc", 'c', false, "False|2|YO|3a3ya=1o|a+bTrue12ok{\"role\": \"user\", \"content\": \"Hi\"} [1, 'a', None, True]", NULL},
    {"misc", 'c', true, "False|2|YO|3a3ya=1o|a+bTrue12ok{\"role\": \"user\", \"content\": \"Hi\"} [1, 'a', None, True]", NULL},
};

static const char *find_tmpl(const char *name) {
    for (size_t i = 0; i < sizeof tmpl_src / sizeof *tmpl_src; i++)
        if (!strcmp(tmpl_src[i][0], name)) return tmpl_src[i][1];
    return NULL;
}

static void test_templates_match_jinja(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tcase *tc = &cases[i];
        const chat_msg *m = tc->msgs == 'a' ? msgs_a : tc->msgs == 'b' ? msgs_b : msgs_c;
        size_t n = tc->msgs == 'a' ? 1 : tc->msgs == 'b' ? 4 : 2;
        char *out;
        size_t len;
        qerr e = {{0}};
        int rc = chat_template_render(find_tmpl(tc->tmpl), m, n, tc->gen, "<s>", "</s>", &out, &len, &e);
        if (tc->want) {
            if (rc || strlen(tc->want) != len || memcmp(out, tc->want, len)) {
                fprintf(stderr, "%s/%c/%d: rc=%d %s\n want: '%s'\n got:  '%s'\n", tc->tmpl, tc->msgs, tc->gen, rc, e.msg,
                        tc->want, rc ? "" : out);
                bad++;
            }
            if (!rc) free(out);
        } else {
            if (rc == 0 || !strstr(e.msg, tc->err)) {
                fprintf(stderr, "%s/%c: expected error '%s', got rc=%d '%s'\n", tc->tmpl, tc->msgs, tc->err, rc, e.msg);
                bad++;
            }
            if (!rc) free(out);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_template_errors(void **state) {
    (void)state;
    const char *bad[] = {"{% if x %}unclosed", "{{ 1 + }}", "{% for %}{% endfor %}", "{{ 'abc }}", "{% macro m() %}{% endmacro %}",
                         "{{ x | nosuchfilter }}", "{% endif %}", "{{ 1 / 0 }}", "{{ (((((1))))) ", "{# open"};
    chat_msg m = {"user", "hi"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out = NULL;
        size_t len;
        qerr e = {{0}};
        int rc = chat_template_render(bad[i], &m, 1, true, "", "", &out, &len, &e);
        if (rc == 0) { fprintf(stderr, "accepted: %s -> '%s'\n", bad[i], out); free(out); fail(); }
        assert_true(strlen(e.msg) > 0);
        assert_null(strchr(e.msg, '\n'));
    }
    /* deep nesting is refused, not a stack overflow */
    char deep[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n] = 0;
    char tmpl[4200];
    snprintf(tmpl, sizeof tmpl, "{{ %s }}", deep);
    char *out;
    size_t len;
    qerr e;
    assert_int_not_equal(chat_template_render(tmpl, &m, 1, true, "", "", &out, &len, &e), 0);
}

/* A model without a template says so; a given template renders with the
 * vocabulary's BOS/EOS texts. */
static void test_tokenizer_chat_apply(void **state) {
    (void)state;
    gguf *g;
    qerr e;
    assert_int_equal(gguf_open(&g, shared_path("models/stories260K.gguf"), &e), 0);
    tokenizer *t;
    assert_int_equal(tokenizer_load(&t, g, &e), 0);
    gguf_close(g);
    assert_null(tokenizer_chat_template(t));
    chat_msg m = {"user", "hi"};
    char *out;
    size_t len;
    assert_int_not_equal(tokenizer_chat_apply(t, NULL, &m, 1, true, &out, &len, &e), 0);
    assert_non_null(strstr(e.msg, "no chat template"));
    assert_int_equal(tokenizer_chat_apply(t, "{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}", &m, 1, true, &out, &len, &e), 0);
    assert_string_equal(out, "<s>[hi]</s>");
    free(out);
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates_match_jinja),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_tokenizer_chat_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
