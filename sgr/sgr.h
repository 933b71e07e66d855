/* sgr.h — schema-guided generation: a strict JSON parser and serializer, an
 * ECMA-262 subset regex engine and a JSON Schema (draft 2020-12 plus the
 * common keywords of drafts 4–7) validator. The compiled schema is a tree the
 * constrained-decoding compiler walks. All functions follow the engine's
 * convention: return 0 on success, -1 on failure with a message in the qerr. */
#ifndef QUIRE_SGR_H
#define QUIRE_SGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* ======================================================================== */
/* JSON (RFC 8259)                                                          */
/* ======================================================================== */

typedef enum json_type {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json json;

typedef struct json_member {
    char *key;      /* UTF-8, NUL-terminated (may contain NUL: use klen) */
    size_t klen;
    json *val;
} json_member;

/* A DOM node. Read the fields directly or use the accessors; only the parser
 * and json_clone build nodes, json_free releases a whole tree. */
struct json {
    json_type type;
    union {
        struct {
            char *text;    /* the exact source text, NUL-terminated */
            size_t len;
            double d;      /* nearest double (±HUGE_VAL on overflow) */
            int64_t i;     /* valid when is_int */
            bool is_int;   /* written as an integer that fits int64 exactly */
        } num;
        struct {
            char *s;       /* UTF-8, NUL-terminated; may contain U+0000 */
            size_t len;
        } str;
        struct {
            json **items;
            size_t n;
        } arr;
        struct {
            json_member *m;  /* members in source order, keys unique */
            size_t n;
            uint32_t *sorted; /* member indices sorted by key (for lookup) */
        } obj;
    } u;
};

/* Duplicate object keys: RFC 8259 allows them but leaves the meaning open.
 * The default rejects them (a schema or an extraction result with two values
 * for one key is ambiguous); JSON_DUP_LAST keeps the last value, as
 * JavaScript's JSON.parse does. */
enum json_dup_policy { JSON_DUP_REJECT = 0, JSON_DUP_LAST = 1 };

typedef struct json_parse_opts {
    int max_depth;    /* nesting limit of arrays/objects; 0 = default 512 */
    int dup_keys;     /* enum json_dup_policy */
} json_parse_opts;

/* Parses exactly one JSON text (surrounding whitespace allowed) of n bytes.
 * Errors name the byte offset, line and column. o may be NULL (defaults). */
int json_parse(const char *s, size_t n, const json_parse_opts *o, json **out, qerr *e);
void json_free(json *v);
/* Deep copy; NULL on allocation failure. */
json *json_clone(const json *v);

/* Accessors (safe on NULL and on the wrong type: they return NULL/0/false). */
static inline json_type json_typeof(const json *v) { return v ? v->type : JSON_NULL; }
static inline bool json_is_bool(const json *v) { return v && (v->type == JSON_TRUE || v->type == JSON_FALSE); }
static inline bool json_is_string(const json *v) { return v && v->type == JSON_STRING; }
static inline bool json_is_number(const json *v) { return v && v->type == JSON_NUMBER; }
static inline bool json_is_array(const json *v) { return v && v->type == JSON_ARRAY; }
static inline bool json_is_object(const json *v) { return v && v->type == JSON_OBJECT; }
static inline const char *json_string(const json *v) { return json_is_string(v) ? v->u.str.s : NULL; }
static inline size_t json_string_len(const json *v) { return json_is_string(v) ? v->u.str.len : 0; }
static inline double json_number(const json *v) { return json_is_number(v) ? v->u.num.d : 0.0; }
/* Number of array items or object members. */
size_t json_size(const json *v);
const json *json_at(const json *arr, size_t i);
/* Object lookup by key (binary search over the sorted index). */
const json *json_get(const json *obj, const char *key);
const json *json_getn(const json *obj, const char *key, size_t klen);
/* True when the number is mathematically an integer (1, 1.0, 1e3). */
bool json_number_is_integer(const json *v);
/* JSON equality: numbers by value (1 == 1.0), objects unordered. */
bool json_equal(const json *a, const json *b);
/* A hash consistent with json_equal (equal values hash alike). */
uint64_t json_hash(const json *v);
/* Compares two numbers exactly (decimal text); returns <0, 0, >0. */
int json_number_cmp(const json *a, const json *b);
/* Exact decimal test: is number a a multiple of number b (b > 0)? 1 yes,
 * 0 no, -1 when b has more than 19 significant digits (caller falls back). */
int json_number_multiple_of(const json *a, const json *b);

/* Serializer: compact by default; indent > 0 puts one member/item per line.
 * Strings escape only what they must (", \, control characters) and keep
 * UTF-8 as is; numbers are written as their source text; object members keep
 * their order (sort_keys sorts them by key bytes for a canonical form). */
typedef struct json_write_opts {
    int indent;
    bool sort_keys;
} json_write_opts;
/* *out is malloc'd and NUL-terminated; *len excludes the NUL. o may be NULL. */
int json_serialize(const json *v, const json_write_opts *o, char **out, size_t *len, qerr *e);

/* JSON Pointer (RFC 6901): "" is the whole document, "/a/0/~1x" steps into
 * members and items. Returns NULL when a step does not exist or the pointer
 * is malformed (no leading '/', a bad ~ escape, a leading-zero index). */
const json *json_pointer_get(const json *root, const char *ptr, size_t n);

/* ======================================================================== */
/* Regex: an ECMA-262 subset compiled to a Thompson NFA and run as a Pike VM
 * over code points — linear in the input, no catastrophic backtracking.
 * Supported: literals, ., [classes] with ranges and negation, \d \D \w \W \s
 * \S \b \B, \t \n \v \f \r \0 \cX \xHH \uHHHH \u{H..}, identity escapes of
 * syntax characters, \p{..} / \P{..} for General_Category values (L, Lu,
 * Letter, Nd, digit, gc=Zs, ...) and Any/ASCII/Assigned, ^ $, (groups),
 * (?:groups), (?<name>groups), |, * + ? {m} {m,} {m,n} and their lazy forms.
 * Backreferences, lookaround, scripts and binary properties are rejected
 * with an error, never ignored. */
/* ======================================================================== */

typedef struct regex regex;
int regex_compile(const char *pat, size_t n, regex **out, qerr *e);
/* True when the pattern matches somewhere in s (ECMA RegExp.test semantics). */
bool regex_match(const regex *re, const char *s, size_t n);
void regex_free(regex *re);
/* NFA instructions (memory and per-character cost are proportional). */
size_t regex_program_size(const regex *re);

/* ======================================================================== */
/* JSON Schema                                                              */
/* ======================================================================== */

/* Keyword flags of a schema node (bit set in schema_node.kw). */
enum schema_kw {
    SK_TYPE, SK_ENUM, SK_CONST, SK_PROPERTIES, SK_REQUIRED, SK_ADDITIONAL_PROPERTIES,
    SK_PATTERN_PROPERTIES, SK_PROPERTY_NAMES, SK_MIN_PROPERTIES, SK_MAX_PROPERTIES,
    SK_ITEMS, SK_PREFIX_ITEMS, SK_CONTAINS, SK_MIN_CONTAINS, SK_MAX_CONTAINS,
    SK_MIN_ITEMS, SK_MAX_ITEMS, SK_UNIQUE_ITEMS, SK_MIN_LENGTH, SK_MAX_LENGTH,
    SK_PATTERN, SK_FORMAT, SK_MINIMUM, SK_MAXIMUM, SK_EXCLUSIVE_MINIMUM,
    SK_EXCLUSIVE_MAXIMUM, SK_MULTIPLE_OF, SK_ALL_OF, SK_ANY_OF, SK_ONE_OF, SK_NOT,
    SK_IF, SK_DEPENDENT_REQUIRED, SK_DEPENDENT_SCHEMAS, SK_REF, SK_DYNAMIC_REF,
    SK_UNEVALUATED_PROPERTIES, SK_UNEVALUATED_ITEMS, SK_COUNT
};
/* The keyword's spelling ("additionalProperties"). */
const char *schema_kw_name(int kw);

/* Instance types as a bit set (schema_node.types). */
enum {
    ST_NULL = 1, ST_BOOLEAN = 2, ST_OBJECT = 4, ST_ARRAY = 8, ST_NUMBER = 16,
    ST_STRING = 32, ST_INTEGER = 64
};

typedef struct schema_node schema_node;

typedef struct schema_prop {
    const char *name;     /* points into the schema's document */
    size_t len;
    schema_node *s;
} schema_prop;

typedef struct schema_pattern_prop {
    regex *re;
    const char *source;
    schema_node *s;
} schema_pattern_prop;

typedef struct schema_dep_req {
    const char *name;
    size_t len;
    const json *required; /* array of strings */
} schema_dep_req;

typedef struct schema_resource schema_resource;

/* One compiled (sub)schema. A boolean schema has is_bool set. Pointers to
 * const json point into the schema's own copy of the document. */
struct schema_node {
    bool is_bool, bool_val;
    uint64_t kw;                 /* bit (1 << SK_x) per present keyword */
    const json *src;             /* this schema's JSON */
    char *location;              /* JSON pointer of src in its document */
    schema_resource *res;        /* the resource ($id scope) it belongs to */
    int draft;                   /* dialect: 4, 6, 7, 2019 or 2020 (from $schema) */

    unsigned types;              /* ST_* */
    const json *enum_values;     /* array */
    const json *const_value;
    schema_prop *props; size_t n_props;
    const json *required;        /* array of strings */
    schema_node *additional_props;
    schema_pattern_prop *pattern_props; size_t n_pattern_props;
    schema_node *property_names;
    int64_t min_props, max_props;
    schema_node **prefix_items; size_t n_prefix_items;  /* prefixItems, or draft-7 items array */
    schema_node *items;          /* items after the prefix (incl. draft-7 additionalItems) */
    schema_node *contains;
    int64_t min_contains, max_contains;
    int64_t min_items, max_items;
    bool unique_items;
    int64_t min_length, max_length; /* code points */
    regex *pattern; const char *pattern_src;
    const char *format;
    const json *minimum, *maximum, *exclusive_minimum, *exclusive_maximum, *multiple_of;
    schema_node **all_of; size_t n_all_of;
    schema_node **any_of; size_t n_any_of;
    schema_node **one_of; size_t n_one_of;
    schema_node *not_;
    schema_node *if_, *then_, *else_;
    schema_dep_req *dep_required; size_t n_dep_required, cap_dep_required;
    schema_prop *dep_schemas; size_t n_dep_schemas, cap_dep_schemas;
    char *ref_uri;               /* $ref resolved to an absolute URI */
    schema_node *ref;
    schema_node *ref_siblings;   /* draft <= 7: assertions beside $ref, which validation ignores
                                    (the grammar may conjoin them; see sgr/schema.c) */
    char *dynamic_ref_uri;       /* $dynamicRef */
    schema_node *dynamic_ref;    /* its static resolution */
    const char *dynamic_ref_anchor; /* fragment name when it is a plain-name fragment */
    schema_node *unevaluated_props;
    schema_node *unevaluated_items;
    const char *dynamic_anchor;  /* this node's $dynamicAnchor, if any */
};

/* Loads a remote document for $ref (e.g. a URI → file mapping). Return 0 with
 * *out set (ownership passes to the schema), or -1 with a message. */
typedef int (*schema_loader)(void *ud, const char *uri, json **out, qerr *e);

typedef struct schema_opts {
    bool assert_format;          /* treat format as an assertion (default: annotation) */
    schema_loader load;          /* NULL: remote refs are an error */
    void *load_ud;
    size_t max_nodes;            /* 0 = default 200000 compiled nodes */
    uint64_t max_steps;          /* validation budget in subschema visits; 0 = 100 million */
    const char *base_uri;        /* NULL = "urn:quire:root" */
} schema_opts;

/* A keyword the validator does not understand, found while compiling; also
 * a "format" whose value it cannot check (keyword is then `format "int32"`). */
typedef struct schema_unknown {
    char *keyword;
    char *pointer;               /* JSON pointer of the keyword in the schema ("/properties/a/frobnicate") */
} schema_unknown;

typedef struct schema {
    schema_node *root;
    schema_opts opts;
    /* everything below is internal bookkeeping */
    schema_unknown *unknown; size_t n_unknown;
    struct schema_internal *in;
} schema;

/* Compiles doc (copied: doc may be freed afterwards). Fails on a malformed
 * keyword value, an unsupported pattern, or an unresolvable $ref. */
int schema_compile(const json *doc, const schema_opts *o, schema **out, qerr *e);
void schema_free(schema *s);

typedef struct schema_error {
    char instance_ptr[512];      /* JSON pointer of the failing instance location */
    char keyword[64];            /* keyword that failed ("required", "type", ...) */
    char schema_ptr[512];        /* JSON pointer of the schema object holding it */
    char msg[256];
} schema_error;

/* Returns 1 valid, 0 invalid (err filled if not NULL), -1 when validation
 * could not finish (err->msg): a $ref cycle that never consumes instance, or
 * the step budget ran out (schemas whose $refs fan out exponentially). */
int schema_validate(const schema *s, const json *instance, schema_error *err);

/* Format checkers (also usable on their own). */
bool schema_format_check(const char *format, const char *s, size_t n, bool *known);


/* ======================================================================== */
/* Grammars: a byte-level context-free grammar (rules of literals, byte
 * classes, sequences, alternatives, bounded repetition and rule references)
 * that constrained decoding runs as a pushdown automaton. Front ends build
 * one with the builder below: the JSON Schema compiler, regex, choice, and a
 * GBNF-like text format. Code points are UTF-8 byte sequences; a builder
 * helper turns a code point range into byte-level alternatives.
 *
 * The builder records its first error (allocation, limits, a bad argument)
 * and every later call returns SGR_EXPR_ERR, so front ends chain calls and
 * check once, at sgr_grammar_build. */
/* ======================================================================== */

typedef struct sgr_gb sgr_gb;          /* grammar builder */
typedef int32_t sgr_expr;              /* an expression inside one builder */
#define SGR_EXPR_ERR ((sgr_expr)-1)
#define SGR_INF UINT32_MAX             /* unbounded repetition */

typedef struct sgr_gb_limits {
    size_t max_nodes;    /* expressions; 0 = default 1,000,000 */
    size_t max_rules;    /* 0 = default 100,000 */
} sgr_gb_limits;

sgr_gb *sgr_gb_new(const sgr_gb_limits *lim);   /* lim may be NULL */
void sgr_gb_free(sgr_gb *b);
/* First error, or NULL. */
const char *sgr_gb_error(const sgr_gb *b);
/* Records an error (first one wins) from a front end, e.g. an unsupported
 * keyword; returns SGR_EXPR_ERR for convenience. */
sgr_expr sgr_gb_fail(sgr_gb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rules: declared by name (forward references allowed), defined once. The
 * name is for printing and errors only; ids are dense from 0. */
int32_t sgr_gb_rule(sgr_gb *b, const char *name);
int sgr_gb_define(sgr_gb *b, int32_t rule, sgr_expr body);
size_t sgr_gb_n_rules(const sgr_gb *b);

sgr_expr sgr_gb_empty(sgr_gb *b);                               /* matches "" */
sgr_expr sgr_gb_lit(sgr_gb *b, const char *bytes, size_t n);   /* n == 0: empty */
sgr_expr sgr_gb_str(sgr_gb *b, const char *s);                 /* NUL-terminated literal */
sgr_expr sgr_gb_class(sgr_gb *b, const uint8_t set[32]);       /* one byte in set (bit i of set[i/8]) */
sgr_expr sgr_gb_range(sgr_gb *b, uint8_t lo, uint8_t hi);      /* one byte in [lo, hi] */
/* One UTF-8 encoded code point in [lo, hi] (surrogates D800-DFFF excluded). */
sgr_expr sgr_gb_cp_range(sgr_gb *b, uint32_t lo, uint32_t hi);
sgr_expr sgr_gb_seq(sgr_gb *b, const sgr_expr *kids, size_t n); /* n == 0: empty */
sgr_expr sgr_gb_alt(sgr_gb *b, const sgr_expr *kids, size_t n); /* n == 0: matches nothing */
sgr_expr sgr_gb_seq2(sgr_gb *b, sgr_expr a, sgr_expr c);
sgr_expr sgr_gb_alt2(sgr_gb *b, sgr_expr a, sgr_expr c);
/* kid repeated min..max times (max SGR_INF: unbounded; max >= min). */
sgr_expr sgr_gb_repeat(sgr_gb *b, sgr_expr kid, uint32_t min, uint32_t max);
sgr_expr sgr_gb_ref(sgr_gb *b, int32_t rule);

/* Text form for debugging and tests, GBNF-like: one `name ::= expr` per rule,
 * literals in double quotes with \xHH escapes, [classes], ( | ), {m,n}.
 * *out is malloc'd, NUL-terminated. */
int sgr_gb_print(const sgr_gb *b, char **out, size_t *len, qerr *e);

/* ======================================================================== */
/* Grammar engine: the IR compiled to a pushdown automaton (one byte-level
 * automaton per rule; references push a return state, a reference in tail
 * position does not), run as a set of (state, stack) heads with hash-consed
 * stacks, so any grammar is matched exactly. Token masks walk a trie of the
 * vocabulary's token bytes; what a token does inside the current rule frame
 * is cached per automaton state and shared by every matcher of the same
 * grammar and vocabulary (thread-safe). */
/* ======================================================================== */

struct tokenizer;
struct sampler;

typedef struct sgr_grammar sgr_grammar;   /* compiled, immutable, shareable across threads */
/* Compiles the builder's rules (start_rule is the start). Errors: undefined
 * rules, left recursion (names the rule), a grammar that matches no string,
 * "grammar too large ..." past the automaton limits. b is not consumed. */
int  sgr_grammar_build(sgr_gb *b, int32_t start_rule, sgr_grammar **out, qerr *e);
void sgr_grammar_free(sgr_grammar *g);
/* GBNF-like text (the format sgr_gb_print writes, plus comments and `|`, `*`,
 * `+`, `?`, `{m}`, `{m,}`, `{m,n}`, `[^...]`, "..." with \n \t \" \\ \xHH
 * \uXXXX escapes; the rule named root is the start). Errors name line and
 * column. In classes \xHH is a byte; other characters and \uXXXX are code
 * points (a class with a code point above 7F, or negated without \x80-\xFF
 * bytes, matches whole UTF-8 code points). */
int  sgr_grammar_parse(const char *text, size_t n, sgr_grammar **out, qerr *e);
/* Text grammar into an existing builder (rule ids are the builder's);
 * *root gets the id of the rule named root. */
int  sgr_gb_parse_text(sgr_gb *b, const char *text, size_t n, int32_t *root, qerr *e);
/* Whole-text regex constraint (the output must match the pattern entirely,
 * ECMA syntax; anchors ^ $ only at the ends, no backreferences/lookaround). */
int  sgr_grammar_from_regex(const char *pat, size_t n, sgr_grammar **out, qerr *e);
/* The regex as an expression inside an existing builder. */
sgr_expr sgr_gb_regex(sgr_gb *b, const char *pat, size_t n, qerr *e);
/* Exactly one of the given strings. */
int  sgr_grammar_from_choice(const char *const *s, const size_t *len, size_t n, sgr_grammar **out, qerr *e);
/* Sizes of the compiled automaton (for tools and tests). */
size_t sgr_grammar_n_states(const sgr_grammar *g);
/* Tests and bench A/B only: the per-state mask cache's cold walks without
 * (false) or with (true, the default) the S-tail shortcut. The cached
 * entries are the same either way; set it before any matcher uses g. */
void sgr_grammar_set_tail_walk(sgr_grammar *g, bool on);
/* Tests: cache entries of g (any vocabulary) computed so far, and how many
 * of them with the S-tail shortcut. */
size_t sgr_grammar_cache_entries(const sgr_grammar *g, size_t *tail);

typedef struct sgr_vocab sgr_vocab;       /* token bytes + trie for one tokenizer; immutable */
/* t must outlive the vocabulary (it is kept to tokenize budget plans). */
int  sgr_vocab_new(const struct tokenizer *t, sgr_vocab **out, qerr *e);
/* For tests and the bench: a vocabulary from raw token byte strings; eog ids end generation. */
int  sgr_vocab_from_pieces(const char *const *piece, const size_t *len, size_t n_vocab,
                           const int32_t *eog, size_t n_eog, sgr_vocab **out, qerr *e);
void sgr_vocab_free(sgr_vocab *v);
size_t sgr_vocab_size(const sgr_vocab *v);
/* Whether the vocabulary can spell every byte as one token (SPM byte fallback, byte-level BPE). */
bool sgr_vocab_has_all_bytes(const sgr_vocab *v);
/* Greedy longest-match tokenization of bytes over the vocabulary's trie;
 * -1 if some byte cannot be spelled. *ids malloc'd. */
int  sgr_vocab_greedy(const sgr_vocab *v, const char *s, size_t n, int32_t **ids, size_t *n_ids);

typedef struct sgr_matcher sgr_matcher;   /* one generation's state */
/* The grammar (and vocabulary) must outlive the matcher. */
int  sgr_matcher_new(const sgr_grammar *g, const sgr_vocab *v /* NULL: bytes only */, sgr_matcher **out, qerr *e);
void sgr_matcher_free(sgr_matcher *m);
void sgr_matcher_reset(sgr_matcher *m);
/* 0 ok; -1 rejected, state unchanged. Counts as one step for rollback. */
int  sgr_matcher_accept_bytes(sgr_matcher *m, const char *s, size_t n);
/* The token's bytes; EOG ok only when can_end (then done). 0 ok, -1 rejected. */
int  sgr_matcher_accept_token(sgr_matcher *m, int32_t tok);
/* Undoes the last n accepted tokens (or accept_bytes calls); -1 if fewer. */
int  sgr_matcher_rollback(sgr_matcher *m, size_t n_tokens);
size_t sgr_matcher_n_accepted(const sgr_matcher *m);
bool sgr_matcher_can_end(const sgr_matcher *m);   /* the text so far is a complete sentence */
bool sgr_matcher_done(const sgr_matcher *m);      /* EOG accepted, or no byte can follow */
/* Bit i of bits (n_vocab bits, 32 per word) set iff token i may come next:
 * its bytes keep a sentence possible; EOG tokens iff can_end; tokens with no
 * bytes never. Needs a vocabulary. */
int  sgr_matcher_fill_mask(sgr_matcher *m, uint32_t *bits);
/* The same computed without the shared per-state cache (tests, bench). */
int  sgr_matcher_fill_mask_uncached(sgr_matcher *m, uint32_t *bits);
/* Whether the last fill_mask found every state it needed in the cache. */
bool sgr_matcher_last_cache_hit(const sgr_matcher *m);
size_t sgr_matcher_min_bytes(const sgr_matcher *m);            /* shortest completion, bytes */
int  sgr_matcher_shortest(const sgr_matcher *m, char **out, size_t *n, qerr *e); /* one such completion */
int  sgr_matcher_forced(const sgr_matcher *m, char **out, size_t *n, qerr *e);   /* bytes every continuation starts with */

/* The sampling stage: masks logits (-INFINITY) by the grammar and by the
 * budget, then draws with sampler_sample. budget = tokens the caller may
 * still generate INCLUDING this one. If a completion fits the budget before
 * the call, one still fits after accepting the returned token. Returns the
 * token (already accepted into m) or -1 with e set. */
typedef struct sgr_sample_stats { double t_mask, t_budget; int n_resample; bool cache_hit; } sgr_sample_stats;
int32_t sgr_sample(sgr_matcher *m, struct sampler *s, float *logits, const int32_t *hist, int n_hist,
                   int budget, sgr_sample_stats *st, qerr *e);


/* ---- JSON Schema → grammar (sgr/schema_grammar.c) ---------------------- */

typedef struct sgr_schema_opts {
    bool best_effort;     /* skip keywords that cannot be enforced (record them) instead of failing */
    int  ws;              /* 0 compact (default): no whitespace; N>0: up to N spaces/newlines between tokens */
    int  max_int_digits;  /* digits allowed in an unbounded integer; 0 = default 15 */
    int  max_frac_digits; /* 0 = default 6 */
    size_t max_rules;     /* bound on compile size; 0 = default (100,000 rules; a pattern gets a quarter) */
} sgr_schema_opts;

typedef struct sgr_unenforced { char keyword[64]; char pointer[512]; } sgr_unenforced;

/* Builds the grammar of the schema's instances into b and returns the start
 * rule, or -1 with e naming the first keyword it cannot enforce and the JSON
 * pointer of the schema object that holds it ("unsupported: oneOf with
 * overlapping branches at /properties/x"). Every string the grammar accepts
 * is an instance schema_validate accepts; the grammar may accept a subset
 * (compact or bounded whitespace, properties in schema order, no extra
 * properties unless needed, bounded digits). With best_effort, keywords it
 * cannot enforce are skipped and listed in *skipped (malloc'd array, caller
 * frees); unknown formats (annotations) are always listed there. o may be
 * NULL; skipped/n_skipped may be NULL. */
int32_t sgr_schema_to_grammar(const schema *s, const sgr_schema_opts *o, sgr_gb *b,
                              sgr_unenforced **skipped, size_t *n_skipped, qerr *e);

/* Whether the grammar keeps values within format f although the validator
 * treats it as an annotation (OpenAPI's int32/int64, byte, url: validators
 * such as Ajv's formats assert them, so generation stays inside them):
 * SGR_FMT_NUMBERS or SGR_FMT_STRINGS for the values it bounds, else 0. */
enum { SGR_FMT_NONE = 0, SGR_FMT_NUMBERS = 1, SGR_FMT_STRINGS = 2 };
int sgr_format_generated(const char *f);

/* Any JSON object (OpenAI's response_format json_object): members with keys
 * of strictly increasing length (so keys never repeat), nesting depth at
 * most max_depth (0 = default 6). Returns the start rule or -1. */
int32_t sgr_schema_any_json_object(sgr_gb *b, const sgr_schema_opts *o, int max_depth, qerr *e);

/* Regex → IR. json_string: the pattern constrains the DECODED content of a
 * JSON string and the expression produces JSON-escaped text (", \ and
 * controls escaped); otherwise raw bytes. search: JSON Schema `pattern`
 * semantics (unanchored: match anywhere) vs whole-text match. Word
 * boundaries are refused ("unsupported"). */
sgr_expr regex_to_grammar(const regex *re, sgr_gb *b, bool json_string, bool search, qerr *e);

/* ======================================================================== */
/* Extraction (sgr/extract.c): a document + a schema → one conforming JSON
 * instance by constrained generation. Needs the grammar engine above and
 * the schema compiler (sgr_schema_to_grammar). */
/* ======================================================================== */
struct tokenizer;
struct model_ctx;
extern const char *const sgr_extract_default_system;

/* The extraction prompt through a chat template (tmpl NULL: the model's own,
 * ChatML if it has none): the system message holds the instructions (system
 * NULL: sgr_extract_default_system) followed by the schema text; the user
 * message is the document. */
/* The schema as compact JSON without annotation keywords (title,
 * description, examples, default, $comment, ...) of its schema objects —
 * for prompts that must fit a short context; the decoder enforces the schema
 * either way. *out is malloc'd. */
int sgr_schema_prompt_text(const json *schema, char **out, size_t *len, qerr *e);
int sgr_extract_prompt(const struct tokenizer *t, const char *tmpl, const char *system, const char *schema_text,
                       size_t schema_len, const char *doc, size_t doc_len, char **out, size_t *out_len, qerr *e);

typedef struct sgr_extract_opts {
    int n_predict;            /* token budget of the JSON */
    sampler_params sp;
    int seq;                  /* KV sequence to use (must be empty) */
    bool no_fast_forward;     /* sample forced text too (default: append it unsampled) */
} sgr_extract_opts;

typedef struct sgr_extract_result {
    char *json; size_t len;   /* the generated document, exactly as generated */
    bool valid;               /* parsed strictly and validated against the schema */
    char verr[1400];          /* why not, when !valid */
    int n_prompt, n_gen, n_resample, n_forced; /* n_forced of n_gen were fast-forwarded */
    const char *stop_reason;
    double t_tokenize, t_prefill, t_decode, t_sample, t_mask, t_budget, t_forced, t_detokenize;
} sgr_extract_result;

/* Generates under grammar g (its vocabulary v built from t) on sequence
 * o->seq of c, then re-validates against s (may be NULL: parse only). */
int sgr_extract_run(struct model_ctx *c, const struct tokenizer *t, const sgr_grammar *g, const sgr_vocab *v,
                    const schema *s, const char *prompt, size_t prompt_len, const sgr_extract_opts *o,
                    sgr_extract_result *r, qerr *e);
void sgr_extract_result_free(sgr_extract_result *r);
/* The shortest document the grammar allows and how many tokens it takes
 * when spelled as extraction spells forced text (the tokenizer's spelling,
 * else greedy over the vocabulary): the smallest useful budget. */
int sgr_extract_shortest(const sgr_grammar *g, const sgr_vocab *v, const struct tokenizer *t, char **text, size_t *len,
                         int *n_tokens, qerr *e);

#endif
