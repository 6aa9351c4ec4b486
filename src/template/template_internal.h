/* Internal types of the template interpreter: arena, values, tokens, AST
 * nodes and the render context. One concept per file:
 *   arena.c   bump allocator with a byte budget, growable byte buffers
 *   lexer.c   source -> tokens (whitespace control, trim/lstrip blocks)
 *   parser.c  tokens -> AST
 *   value.c   truthiness, equality, ordering, str()/repr(), JSON in and out
 *   eval.c    statements and expressions
 *   builtins.c filters, tests, methods and global functions
 *   template.c the public API */
#ifndef QIAO_TEMPLATE_INTERNAL_H
#define QIAO_TEMPLATE_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/template.h"

/* ---- Arena --------------------------------------------------------------- */

typedef struct tpl_block tpl_block;
typedef struct tpl_arena {
  tpl_block *head;
  uint64_t used;  /* bytes handed out so far */
  uint64_t limit; /* 0 = unlimited */
  jmp_buf *oom;   /* longjmp target when the budget or malloc fails */
  int *oom_code;  /* set to 1 (budget) or 2 (malloc) before the jump */
} tpl_arena;

void *tpl_alloc(tpl_arena *a, size_t size); /* zeroed; never NULL (jumps instead) */
char *tpl_strdup(tpl_arena *a, const char *s, size_t len);
void tpl_arena_free(tpl_arena *a);

/* A growable byte buffer in the render arena. */
typedef struct tpl_buf {
  char *data;
  size_t len, cap;
} tpl_buf;

/* ---- Values -------------------------------------------------------------- */

typedef enum {
  V_UNDEF,
  V_NONE,
  V_BOOL,
  V_INT,
  V_FLOAT,
  V_STR,
  V_LIST,
  V_DICT,
  V_NS,     /* namespace(): a mutable attribute bag */
  V_MACRO,  /* a {% macro %} */
  V_FUNC,   /* a global function (range, namespace, raise_exception, ...) */
  V_METHOD, /* a bound method of a str, list or dict: obj.name */
  V_LOOP    /* the `loop` variable of a for loop */
} tpl_kind;

typedef struct tpl_list tpl_list;
typedef struct tpl_dict tpl_dict;
typedef struct tpl_loop tpl_loop;
typedef struct tpl_node tpl_node;

typedef struct tpl_value {
  tpl_kind kind;
  union {
    bool b;
    int64_t i;
    double f;
    struct {
      const char *p; /* not NUL-terminated; immutable */
      size_t len;
    } s;
    tpl_list *list;
    tpl_dict *dict; /* V_DICT and V_NS */
    const tpl_node *macro;
    int func;
    struct {
      struct tpl_value *self;
      const char *name;
    } m;
    tpl_loop *loop;
  } u;
  const char *undef_name; /* V_UNDEF: the missing name, for messages (may be NULL) */
} tpl_value;

struct tpl_list {
  size_t n, cap;
  tpl_value *items;
  bool tuple; /* prints as (a, b) */
  /* non-NULL for the lazy iterators jinja2 filters return ("generator" for
   * map/select/..., "list_reverseiterator" for reverse): always true, no
   * len(), not subscriptable, not JSON serializable */
  const char *iterator;
  /* a generator whose first step fails (jinja2 reports it only when the
   * generator is consumed): the message, else NULL */
  const char *deferred_error;
};
struct tpl_dict {
  size_t n, cap;
  tpl_value *keys;
  tpl_value *vals;
};
struct tpl_loop {
  tpl_list *items;
  size_t index0;
  int depth;
};

/* ---- Tokens -------------------------------------------------------------- */

typedef enum {
  T_EOF,
  T_DATA,        /* literal text */
  T_VAR_BEGIN,   /* {{ */
  T_VAR_END,     /* }} */
  T_BLOCK_BEGIN, /* {% */
  T_BLOCK_END,   /* %} */
  T_NAME,
  T_STRING, /* value already unescaped */
  T_INT,
  T_FLOAT,
  T_OP /* operator text in `text` */
} tpl_tok_kind;

typedef struct tpl_token {
  tpl_tok_kind kind;
  int line;
  const char *text;
  size_t len;
  int64_t i;
  double f;
} tpl_token;

typedef struct tpl_tokens {
  tpl_token *items;
  size_t n, cap;
} tpl_tokens;

/* Tokenizes src (already normalized) into toks (arena-allocated). */
qiao_status *tpl_lex(tpl_arena *a, const char *src, size_t len, tpl_tokens *toks);

/* ---- AST ----------------------------------------------------------------- */

typedef enum {
  /* statements */
  N_BODY,      /* list: statements */
  N_TEXT,      /* s */
  N_OUTPUT,    /* a: expression */
  N_IF,        /* a: cond, b: then body, c: else body (or NULL) */
  N_FOR,       /* names: targets, a: iter, b: body, c: else body, d: filter */
  N_SET,       /* names: targets, a: value */
  N_SET_ATTR,  /* s: namespace name, s2: attribute, a: value */
  N_SET_BLOCK, /* names[0]: target, b: body, list: filters (N_FILTER on NULL) */
  N_MACRO,     /* s: name, names: params, list: defaults (NULL = none), b: body */
  N_BREAK,
  N_CONTINUE,
  N_FILTER_BLOCK, /* b: body, list: filters */
  N_WITH,         /* names + list: assignments, b: body */
  /* expressions */
  N_CONST,   /* v */
  N_NAME,    /* s */
  N_GETATTR, /* a, s */
  N_GETITEM, /* a, b */
  N_SLICE,   /* a, b: start, c: stop, d: step (any may be NULL) */
  N_CALL,    /* a: callee, list: positional args, names+list2: keyword args */
  N_FILTER,  /* a: operand, s: name, list, names+list2 */
  N_TEST,    /* a: operand, s: name, list: args */
  N_NEG,
  N_POS,
  N_NOT,
  N_AND,
  N_OR,
  N_BINOP,   /* op, a, b */
  N_COMPARE, /* a: first, list: operands, ops: operators */
  N_CONCAT,  /* list */
  N_COND,    /* a: cond, b: then, c: else (NULL -> undefined) */
  N_LIST,    /* list */
  N_DICT     /* list: keys, list2: values */
} tpl_node_kind;

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW };
enum { CMP_EQ = 1, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

typedef struct tpl_nodes {
  tpl_node **items;
  size_t n, cap;
} tpl_nodes;

typedef struct tpl_names {
  const char **items;
  size_t n, cap;
} tpl_names;

struct tpl_node {
  tpl_node_kind kind;
  int line;
  int op;
  tpl_node *a, *b, *c, *d;
  tpl_nodes list, list2;
  tpl_names names;
  int *ops;
  const char *s, *s2;
  size_t slen;
  tpl_value v;
};

/* Parses tokens into the root N_BODY node. */
qiao_status *tpl_parse(tpl_arena *a, const tpl_tokens *toks, tpl_node **root);

/* ---- Render context -------------------------------------------------------- */

typedef struct tpl_frame {
  struct tpl_frame *parent;
  tpl_dict vars;
} tpl_frame;

typedef struct tpl_ctx {
  tpl_arena arena; /* every value of this render */
  jmp_buf fail;    /* longjmp target of errors */
  int oom_code;
  qiao_status *error;
  tpl_buf *out; /* current output (macros and block sets capture into their own) */
  uint64_t steps, max_steps, max_output;
  uint32_t depth, max_depth;
  tpl_frame *globals; /* the input variables */
  tpl_frame *top;     /* the template's own top-level variables (parent: globals) */
  int line;           /* line being evaluated, for messages */
} tpl_ctx;

/* Fails the render: records an error and longjmps to ctx->fail. */
_Noreturn void tpl_fail(tpl_ctx *ctx, qiao_code code, const char *fmt, ...) QIAO__PRINTF(3, 4);
void tpl_charge(tpl_ctx *ctx, uint64_t steps);

void tpl_buf_append(tpl_ctx *ctx, tpl_buf *b, const char *s, size_t n);
void tpl_buf_putc(tpl_ctx *ctx, tpl_buf *b, char c);

/* value constructors */
tpl_value tpl_undef(const char *name);
tpl_value tpl_none(void);
tpl_value tpl_bool(bool b);
tpl_value tpl_int(int64_t i);
tpl_value tpl_float(double f);
tpl_value tpl_str(const char *p, size_t len);
tpl_value tpl_cstr(const char *p);
tpl_value tpl_str_copy(tpl_ctx *ctx, const char *p, size_t len);
tpl_value tpl_new_list(tpl_ctx *ctx, size_t cap);
tpl_value tpl_new_dict(tpl_ctx *ctx, size_t cap);
void tpl_list_push(tpl_ctx *ctx, tpl_list *l, tpl_value v);
void tpl_dict_set(tpl_ctx *ctx, tpl_dict *d, tpl_value key, tpl_value val);
tpl_value *tpl_dict_get(tpl_dict *d, tpl_value key);
tpl_value *tpl_dict_get_str(tpl_dict *d, const char *key, size_t len);

bool tpl_truthy(const tpl_value *v);
bool tpl_equal(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b);
int tpl_compare(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b); /* fails if unordered */
const char *tpl_type_name(const tpl_value *v);
/* str(v) appended to b; repr(v) when repr is true */
void tpl_write_str(tpl_ctx *ctx, tpl_buf *b, const tpl_value *v, bool repr);
tpl_value tpl_to_str(tpl_ctx *ctx, const tpl_value *v);
/* json.dumps(v, ensure_ascii, indent, separators, sort_keys) */
typedef struct tpl_json_opts {
  bool ensure_ascii;
  const char *indent; /* NULL: compact */
  size_t indent_len;
  const char *item_sep, *key_sep;
  size_t item_sep_len, key_sep_len;
  bool sort_keys;
} tpl_json_opts;
void tpl_write_json(tpl_ctx *ctx, tpl_buf *b, const tpl_value *v, const tpl_json_opts *o,
                    int level);
void tpl_format_float(double f, char *buf, size_t size); /* Python repr(float) */
/* Converts a json-c object into a value. */
struct json_object;
tpl_value tpl_from_json(tpl_ctx *ctx, struct json_object *j);

/* UTF-8 helpers */
size_t tpl_utf8_count(const char *p, size_t len);
size_t tpl_utf8_offset(const char *p, size_t len, size_t nchars); /* byte offset of char n */
uint32_t tpl_utf8_decode(const char *p, size_t len, size_t *adv);
void tpl_utf8_encode(tpl_ctx *ctx, tpl_buf *b, uint32_t cp);
bool tpl_is_space(uint32_t cp);

/* ---- Builtins -------------------------------------------------------------- */

typedef struct tpl_args {
  tpl_value *pos;
  size_t n_pos;
  const char **kw_names;
  tpl_value *kw;
  size_t n_kw;
} tpl_args;

enum { F_RANGE = 1, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME, F_JOINER, F_CYCLER, F_LIPSUM };

/* 1 when `name` is a filter or test jinja2 knows (so compile can reject typos). */
bool tpl_known_filter(const char *name);
bool tpl_known_test(const char *name);
int tpl_global_func(const char *name); /* F_* or 0 */

tpl_value tpl_apply_filter(tpl_ctx *ctx, const char *name, tpl_value *operand, tpl_args *args);
bool tpl_apply_test(tpl_ctx *ctx, const char *name, tpl_value *operand, tpl_args *args);
tpl_value tpl_call_method(tpl_ctx *ctx, tpl_value *self, const char *name, tpl_args *args);
tpl_value tpl_call_func(tpl_ctx *ctx, int func, tpl_args *args);
bool tpl_has_method(const tpl_value *obj, const char *name);
/* obj.name and obj[key] as jinja2 (undefined when missing) */
tpl_value tpl_getattr(tpl_ctx *ctx, tpl_value *obj, const char *name);
tpl_value tpl_getitem(tpl_ctx *ctx, tpl_value *obj, tpl_value *key);
/* iterating a value: a list of its items (dict -> keys, str -> chars) */
tpl_list *tpl_iterate(tpl_ctx *ctx, tpl_value *v);
/* the binary operators */
tpl_value tpl_binop(tpl_ctx *ctx, int op, tpl_value *a, tpl_value *b);
/* Python's `fmt % args` (args: one value, a tuple, or a dict for %(name)s);
 * with kw (the format filter's keyword arguments) as the mapping. */
tpl_value tpl_printf(tpl_ctx *ctx, tpl_value *fmt, tpl_value *args, tpl_args *kw);
bool tpl_contains(tpl_ctx *ctx, tpl_value *container, tpl_value *item);
/* calls a macro (from eval.c) */
tpl_value tpl_call_macro(tpl_ctx *ctx, const tpl_node *macro, tpl_args *args);
_Noreturn void tpl_undefined_error(tpl_ctx *ctx, const tpl_value *v);

#endif
