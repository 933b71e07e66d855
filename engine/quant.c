/* quant.c — the table of tensor types. Each row says how a type is laid out
 * (elements and bytes per block) and how to convert it; everything else in
 * the engine is driven from this table. */
#include "engine/engine.h"

#include <strings.h>

static void f32_to_float(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

static void f16_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = q_fp16_to_f32(h);
    }
}
static void f16_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = q_f32_to_fp16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}
static void bf16_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = q_bf16_to_f32(h);
    }
}
static void bf16_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = q_f32_to_bf16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static const qtype_traits traits[QT_COUNT] = {
    [QT_F32] = {"F32", 1, 4, f32_to_float, f32_from_float},
    [QT_F16] = {"F16", 1, 2, f16_to_float, f16_from_float},
    [QT_BF16] = {"BF16", 1, 2, bf16_to_float, bf16_from_float},
    [QT_Q4_0] = {"Q4_0", 32, 18, NULL, NULL},
    [QT_Q4_1] = {"Q4_1", 32, 20, NULL, NULL},
    [QT_Q5_0] = {"Q5_0", 32, 22, NULL, NULL},
    [QT_Q5_1] = {"Q5_1", 32, 24, NULL, NULL},
    [QT_Q8_0] = {"Q8_0", 32, 34, NULL, NULL},
    [QT_Q8_1] = {"Q8_1", 32, 36, NULL, NULL},
    [QT_Q2_K] = {"Q2_K", QK_K, 84, NULL, NULL},
    [QT_Q3_K] = {"Q3_K", QK_K, 110, NULL, NULL},
    [QT_Q4_K] = {"Q4_K", QK_K, 144, NULL, NULL},
    [QT_Q5_K] = {"Q5_K", QK_K, 176, NULL, NULL},
    [QT_Q6_K] = {"Q6_K", QK_K, 210, NULL, NULL},
    [QT_Q8_K] = {"Q8_K", QK_K, 292, NULL, NULL},
    [QT_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, NULL, NULL},
    [QT_IQ2_XS] = {"IQ2_XS", QK_K, 74, NULL, NULL},
    [QT_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, NULL, NULL},
    [QT_IQ1_S] = {"IQ1_S", QK_K, 50, NULL, NULL},
    [QT_IQ4_NL] = {"IQ4_NL", 32, 18, NULL, NULL},
    [QT_IQ3_S] = {"IQ3_S", QK_K, 110, NULL, NULL},
    [QT_IQ2_S] = {"IQ2_S", QK_K, 82, NULL, NULL},
    [QT_IQ4_XS] = {"IQ4_XS", QK_K, 136, NULL, NULL},
    [QT_I8] = {"I8", 1, 1, NULL, NULL},
    [QT_I16] = {"I16", 1, 2, NULL, NULL},
    [QT_I32] = {"I32", 1, 4, NULL, NULL},
    [QT_I64] = {"I64", 1, 8, NULL, NULL},
    [QT_F64] = {"F64", 1, 8, NULL, NULL},
    [QT_IQ1_M] = {"IQ1_M", QK_K, 56, NULL, NULL},
    [QT_TQ1_0] = {"TQ1_0", QK_K, 54, NULL, NULL},
    [QT_TQ2_0] = {"TQ2_0", QK_K, 66, NULL, NULL},
    [QT_MXFP4] = {"MXFP4", 32, 17, NULL, NULL},
};

const qtype_traits *qtype_get(int type) {
    if (type < 0 || type >= QT_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

int qtype_from_name(const char *name) {
    for (int t = 0; t < QT_COUNT; t++)
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t qtype_row_size(int type, int64_t n) {
    const qtype_traits *t = qtype_get(type);
    if (!t || n < 0 || n % t->blck) return 0;
    return (size_t)(n / t->blck) * t->size;
}

bool qtype_is_supported(int type) {
    const qtype_traits *t = qtype_get(type);
    return t && t->to_float;
}

float qtype_dot_row(int type, const void *row, const float *x, int64_t n) {
    const qtype_traits *t = qtype_get(type);
    if (type == QT_F32) {
        const float *w = row;
        float s = 0;
        for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
        return s;
    }
    /* Dequantize a chunk of blocks at a time and accumulate in f32. */
    float tmp[QK_K];
    int64_t chunk = t->blck >= QK_K ? t->blck : (QK_K / t->blck) * t->blck;
    const uint8_t *p = row;
    float s = 0;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        t->to_float(p, tmp, m);
        p += (size_t)(m / t->blck) * t->size;
        for (int64_t j = 0; j < m; j++) s += tmp[j] * x[i + j];
    }
    return s;
}
