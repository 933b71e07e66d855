/* fuzz_chat_template.c — render arbitrary bytes as a chat template: must
 * end (work and output are bounded) with a rendering or a one-line error. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *tmpl = malloc(size + 1);
    if (!tmpl) return 0;
    memcpy(tmpl, data, size);
    tmpl[size] = 0;
    static const chat_msg msgs[] = {{"system", "sys"}, {"user", "Hello"}, {"assistant", "Hi!"}, {"user", "Bye"}};
    char *out;
    size_t len;
    qerr e;
    if (chat_template_render(tmpl, msgs, 4, true, "<s>", "</s>", &out, &len, &e) == 0) {
        if (strlen(out) > len) abort();
        free(out);
    } else if (strchr(e.msg, '\n')) {
        abort();
    }
    free(tmpl);
    return 0;
}
