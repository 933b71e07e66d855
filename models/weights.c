/* weights.c — binding GGUF tensors to model weights, with the shape and
 * type checks every architecture needs. */
#include "models/models.h"

#include <stdlib.h>

/* A weight of shape [ne0 = cols, ne1 = rows] the engine can compute with. */
int model_bind(const gguf *g, const char *name, int64_t ne0, int64_t ne1, bool required,
                const gguf_tensor **out, qerr *e) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    *out = t;
    if (!t) return required ? qerr_set(e, "missing tensor %s", name) : 0;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return qerr_set(e, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", name,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)ne0, (long long)ne1);
    if (!qtype_is_supported(t->type))
        return qerr_set(e, "tensor %s has type %s, which this build cannot compute with", name, qtype_get(t->type)->name);
    return 0;
}

/* A vector (norm weight, bias) copied out as f32. */
int model_bind_vec(const gguf *g, const char *name, int64_t n, bool required, float **out, qerr *e) {
    const gguf_tensor *t;
    *out = NULL;
    if (model_bind(g, name, n, 1, required, &t, e)) return -1;
    if (!t) return 0;
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return qerr_set(e, "out of memory");
    qtype_get(t->type)->to_float(t->data, v, n);
    *out = v;
    return 0;
}

