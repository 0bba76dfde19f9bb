// The .ir front end on malformed input (each error with its message and
// line:col, nothing crashing, several errors per run) and on well-formed
// input (what elaboration builds: parameter names, constants, if, overrides,
// dimof, scan captures, scopes and locations).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/text.h"
#include "testutil.h"

static const char *const include_dirs[] = { ITR_SOURCE_DIR "/tests/ir", ITR_SOURCE_DIR "/models" };

static struct itr_parse_options opts(const char *const *overrides, int n) {
    struct itr_parse_options o;
    memset(&o, 0, sizeof o);
    o.include_dirs = include_dirs;
    o.n_include_dirs = 2;
    o.overrides = overrides;
    o.n_overrides = n;
    o.no_default_models_dir = true;
    return o;
}

static struct itr_program *parse(const char *src, size_t len, const struct itr_parse_options *o, struct itr_diags *d) {
    itr_diags_init(d);
    return itr_parse_string("t.ir", src, len ? len : strlen(src), o, d);
}

// ------------------------------------------------------------ malformed input

struct bad_case {
    const char *name;
    const char *src;
    size_t len;                // 0: strlen(src)
    const char *msg;           // substring of the first error
    int line, col;             // of the first error; 0: do not check
    const char *override;      // one NAME=VALUE, or NULL
};

#define M(body) "model m {\n  dim B\n" body "}\n"
// M with one entry f(x: f32[B]) -> (y), or e (beside a function f), whose body is the given lines.
#define F(body) M("  entry f(x: f32[B]) -> (y) {\n" body "  }\n")
#define E(body) M("  entry e(x: f32[B]) -> (y) {\n" body "  }\n")

static const struct bad_case bad_cases[] = {
    // ---- lexical
    { "empty file", "", 0, "no model in t.ir", 1, 1, NULL },
    { "only comments", "# nothing here\n# at all\n", 0, "no model", 1, 1, NULL },
    { "unterminated string", "import \"abc\nmodel m {}\n", 0, "unterminated string", 1, 8, NULL },
    { "bad number suffix", "model m {\n  dim B = 12abc\n}\n", 0, "invalid number '12abc'", 2, 11, NULL },
    { "bad exponent", "model m {\n  dim B = 1e\n}\n", 0, "invalid number '1e'", 2, 11, NULL },
    { "point without digit", "model m {\n  dim B = 1.\n}\n", 0, "invalid number '1.'", 2, 11, NULL },
    { "leading point", "model m {\n  dim B = .5\n}\n", 0, "unexpected '.'", 2, 11, NULL },
    { "integer overflow", "model m {\n  dim B = 99999999999999999999\n}\n", 0, "integer literal out of range", 2, 11, NULL },
    { "2^63 not negated", "model m {\n  dim B = 9223372036854775808\n}\n", 0,
      "integer literal out of range (more than 64 bits): 9223372036854775808", 2, 11, NULL },
    { "float overflow", "model m {\n  dim B = 1e999\n}\n", 0, "number out of range", 2, 11, NULL },
    { "bad UTF-8 in comment", "model m {\n  # caf\xe9\n}\n", 0, "invalid UTF-8 byte 0xe9 in comment", 2, 8, NULL },
    { "bad UTF-8 in code", "model m { \xff }\n", 0, "invalid UTF-8 byte 0xff", 1, 11, NULL },
    { "overlong UTF-8", "model m {\n  x = \"\xc0\xaf\"\n}\n", 0, "invalid UTF-8 byte 0xc0 in string", 2, 8, NULL },
    { "non-ASCII letter in code", "model m {\n  dim \xc3\xa9\n}\n", 0, "unexpected character U+00E9", 2, 7, NULL },
    { "NUL byte", "model m {\0}\n", 12, "unexpected NUL byte", 1, 10, NULL },
    { "stray character", "model m {\n  dim B $\n}\n", 0, "unexpected character '$'", 2, 9, NULL },
    { "single ampersand", F("    return x & x\n"), 0, "did you mean '&&'", 4, 14, NULL },
    { "unknown escape", F("    s = \"a\\qb\"\n    return x\n"), 0, "unknown escape '\\q'", 4, 11, NULL },
    // ---- syntax
    { "missing closing brace", "model m {\n  dim B\n", 0, "expected '}', got end of file", 3, 1, NULL },
    { "missing model name", "model {\n}\n", 0, "expected a model name", 1, 7, NULL },
    { "param without type", M("  param w f32[2]\n"), 0, "expected ':' and the parameter's type", 3, 11, NULL },
    { "missing expression", F("    y = \n"), 0, "expected an expression, got '}'", 5, 3, NULL },
    { "two statements on a line", F("    y = x z = x\n    return y\n"), 0,
      "expected a new line or '}' after the statement", 4, 11, NULL },
    { "unknown dtype", M("  param w: f33[2]\n"), 0, "unknown dtype 'f33'", 3, 12, NULL },
    { "unknown param type", M("  entry f(x: foo) -> (y) {\n    return x\n  }\n"), 0, "unknown type 'foo'", 3, 14, NULL },
    { "dim outside a model", "module q {\n  dim B\n}\n", 0, "'dim' is not allowed in a module", 2, 3, NULL },
    { "param in a function body", F("    param w: f32[2]\n    return x\n"), 0,
      "'param' is not allowed inside a function body", 4, 5, NULL },
    { "entry at file level", "entry f(x: f32[2]) {\n  return x\n}\n", 0, "'entry' is not allowed at file level", 1, 1, NULL },
    { "unassigned call", F("    relu(x)\n    return x\n"), 0,
      "a call's result must be assigned or returned", 4, 5, NULL },
    { "tensor literal without elements", F("    return x + f32[2]\n"), 0,
      "expected '{' and the elements of the tensor literal", 5, 3, NULL },
    { "default on a tensor parameter", "def f(x = 1) {\n  return x\n}\nmodel m {}\n", 0,
      "only config parameters (int, float, bool, str) can have defaults", 1, 7, NULL },
    { "untyped module parameter", "module q(n) {\n}\nmodel m {}\n", 0, "needs a config kind", 1, 10, NULL },
    { "dotted local name", F("    a.b = x\n    return x\n"), 0, "cannot assign to the dotted name 'a.b'", 4, 5, NULL },
    // ---- elaboration
    { "unknown op", F("    return frobnicate(x)\n"), 0, "unknown function or op 'frobnicate'", 4, 12, NULL },
    { "wrong arity", F("    return relu(x, x)\n"), 0, "op 'relu' takes 1 operand, got 2", 4, 12, NULL },
    { "shape mismatch", "model m {\n  dim N\n  param w: f32[1024, 1024] = zeros\n"
      "  entry f(x: f32[N, 2048]) -> (y) {\n    return x @ w\n  }\n}\n", 0,
      "op 'matmul': inner dimensions differ: 2048 vs 1024", 5, 14, NULL },
    { "shape mismatch inside a module", "import \"modules/nn.ir\"\nmodel m {\n  dim N\n  let fc = linear(1024, 8)\n"
      "  entry f(x: f32[N, 2048]) -> (y) {\n    return fc(x)\n  }\n}\n", 0,
      "op 'matmul': inner dimensions differ: 2048 vs 1024", 0, 0, NULL },
    { "undefined name", F("    return x + q\n"), 0, "undefined name 'q'", 4, 16, NULL },
    { "duplicate param", M("  param w: f32[2] = zeros\n  param w: f32[3] = zeros\n"), 0,
      "duplicate definition of 'w' in model 'm'", 4, 9, NULL },
    { "duplicate dotted param", "module q {\n  param b: f32[2]\n}\nmodel m {\n  let a = q()\n  param a.b: f32[2]\n}\n", 0,
      "duplicate parameter 'a.b'", 6, 9, NULL },
    { "duplicate function", "def f(x) {\n  return x\n}\ndef f(x) {\n  return x\n}\nmodel m {}\n", 0,
      "duplicate definition of function 'f'", 4, 5, NULL },
    { "function named like an op", "def relu(x) {\n  return x\n}\nmodel m {}\n", 0,
      "function 'relu' has the name of a primitive op", 1, 5, NULL },
    { "duplicate dim", "model m {\n  dim B, B\n}\n", 0, "dim 'B' is declared twice", 2, 10, NULL },
    { "cyclic modules", "module a {\n  let x = b()\n}\nmodule b {\n  let y = a()\n}\nmodel m {\n  let z = a()\n}\n", 0,
      "module instantiation cycle: a -> b -> a", 5, 11, NULL },
    { "recursive function", "def f(x) {\n  return g(x)\n}\ndef g(x) {\n  return f(x)\n}\n"
      E("    return f(x)\n"), 0, "recursive call: f -> g -> f", 5, 10, NULL },
    { "cyclic import", "import \"bad/cycle_a.ir\"\nmodel m {}\n", 0, "import cycle:", 2, 1, NULL },
    { "missing import", "import \"no/such/file.ir\"\nmodel m {}\n", 0, "cannot find imported file \"no/such/file.ir\"", 1, 1, NULL },
    { "wrong attribute type", M("  entry f(x: f32[B, 2]) -> (y) {\n    return mean(x, axes=\"x\")\n  }\n"), 0,
      "attribute 'axes' of op 'mean' must be ints, got the string \"x\"", 4, 20, NULL },
    { "wrong attribute element", M("  entry f(x: f32[B, 2]) -> (y) {\n    return mean(x, axes=[0.5])\n  }\n"), 0,
      "attribute 'axes' of op 'mean' must be ints; element 0 is the float 0.5", 4, 20, NULL },
    { "unknown attribute", M("  entry f(x: f32[B, 2]) -> (y) {\n    return mean(x, axis=1)\n  }\n"), 0,
      "op 'mean' has no attribute 'axis' (its attributes: axes, keepdims)", 4, 20, NULL },
    { "missing required attribute", F("    return cast(x)\n"), 0, "missing required attribute 'dtype'", 4, 12, NULL },
    { "undeclared dim", M("  entry f(x: f32[B, Q]) -> (y) {\n    return x\n  }\n"), 0, "undeclared dim 'Q'", 3, 21, NULL },
    { "unbound config parameter", "model m(D: int) {\n  param w: f32[D]\n}\n", 0,
      "config parameter 'D' of model 'm' is unbound", 1, 9, NULL },
    { "untyped entry parameter", M("  entry f(x) -> (y) {\n    return x\n  }\n"), 0, "entry parameter 'x' needs a type", 3, 11, NULL },
    { "missing return", "def f(x) {\n  y = x\n}\n" E("    return f(x)\n"), 0,
      "function 'f' has no return statement", 1, 5, NULL },
    { "statement after return", F("    return x\n    y = x\n"), 0, "statement after return", 5, 5, NULL },
    { "unpack count mismatch", F("    a, b = relu(x)\n    return a\n"), 0,
      "cannot unpack 1 value into 2 names", 4, 5, NULL },
    { "multi-result used as one", F("    v = topk(x, k=1)\n    return v\n"), 0,
      "the right-hand side gives 2 values, but 1 name is assigned", 4, 5, NULL },
    { "output count mismatch", M("  entry f(x: f32[B]) -> (y, z) {\n    return x\n  }\n"), 0,
      "entry 'f' names 2 outputs (-> (...)) but returns 1 value", 4, 5, NULL },
    { "bad initialiser", M("  param w: f32[2] = glorot(1)\n"), 0, "unknown initialiser 'glorot'", 3, 21, NULL },
    { "initialiser arity", M("  param w: f32[2] = uniform(1)\n"), 0,
      "initialiser 'uniform' takes 2 arguments (low, high), got 1", 3, 21, NULL },
    { "initialiser range", M("  param w: f32[2] = uniform(1, -1)\n"), 0, "uniform(low, high) needs low <= high", 3, 21, NULL },
    { "more than one model", "model a {}\nmodel b {}\n", 0, "more than one model in t.ir", 2, 1, NULL },
    { "argument type check", "def f(x: f32[B, 4]) {\n  return x\n}\n"
      M("  entry e(x: f32[B, 5]) -> (y) {\n    return f(x)\n  }\n"), 0,
      "argument 'x' of 'f' has type f32[B, 5], but the parameter is declared f32[B, 4]", 7, 14, NULL },
    { "too many arguments", "def f(x, eps: float = 1.0) {\n  return x\n}\n"
      E("    return f(x, 2.0)\n"), 0,
      "'f' takes 1 tensor argument, got 2 (pass config parameters by name", 7, 17, NULL },
    { "unknown keyword argument", "def f(x) {\n  return x\n}\n" E("    return f(x, k=1)\n"), 0,
      "'f' has no parameter 'k'", 7, 17, NULL },
    { "config kind mismatch", "def f(x, n: int = 1) {\n  return x\n}\n"
      E("    return f(x, n=\"two\")\n"), 0, "config parameter 'n' of 'f' is int, got the string \"two\"", 7, 17, NULL },
    { "non-bool if condition", "model m(D: int = 2) {\n  if D {\n  }\n}\n", 0, "an if condition must be a compile-time bool", 2, 6, NULL },
    { "tensor if condition", F("    if x > 0 {\n      x = x\n    }\n    return x\n"), 0,
      "an if condition must be a compile-time bool (config values and literals), got a tensor", 4, 8, NULL },
    { "unknown module", M("  let q = nope(1)\n"), 0, "unknown module 'nope'", 3, 11, NULL },
    { "let of a function", "def f(x) {\n  return x\n}\n" M("  let q = f(1)\n"), 0, "'f' is a function; 'let' instantiates modules", 6, 11, NULL },
    { "missing module argument", "import \"modules/nn.ir\"\n" M("  let q = linear(4)\n"), 0,
      "missing config argument 'out' for module 'linear'", 4, 11, NULL },
    { "unknown module argument", "import \"modules/nn.ir\"\n" M("  let q = linear(4, 5, bias=false)\n"), 0,
      "module 'linear' has no config parameter 'bias'", 4, 24, NULL },
    { "unknown method", "import \"modules/nn.ir\"\n" M("  let q = linear(4, 5)\n  entry f(x: f32[B, 4]) -> (y) {\n    return q.backward(x)\n  }\n"), 0,
      "instance 'q' (module linear) has no method 'backward'", 6, 12, NULL },
    { "literal for an integer tensor", M("  entry f(x: i32[B]) -> (y) {\n    return x + 0.5\n  }\n"), 0,
      "the literal 0.5 is not an integer; it cannot be an i32 constant", 4, 14, NULL },
    { "symbolic dim as a tensor", F("    return x * B\n"), 0,
      "the symbolic dim B cannot be used as a tensor value", 4, 14, NULL },
    { "dimof axis out of range", F("    return reshape(x, shape=[dimof(x, 3)])\n"), 0,
      "dimof: axis 3 is out of range for f32[B]", 4, 39, NULL },
    { "tensor literal size", F("    return x + f32[3]{1, 2}\n"), 0,
      "tensor literal of shape with 3 elements lists 2 values", 4, 16, NULL },
    { "scan body is an op", M("  entry f(x: f32[B, 3]) -> (y) {\n    return scan(relu, x, n_carry=0, n_scan=1)\n  }\n"), 0,
      "scan's body must be a function, not the op 'relu'", 4, 17, NULL },
    { "scan body arity", "def step(h, x) {\n  return h + x, h\n}\n"
      M("  entry f(x: f32[B, 3]) -> (y) {\n    h, ys = scan(step, x, n_carry=0, n_scan=1)\n    return ys\n  }\n"), 0,
      "scan body 'step' takes 2 tensor parameters, but scan passes 1", 7, 18, NULL },
    { "duplicate output name", M("  entry f(x: f32[B]) -> (y, y) {\n    return x, x\n  }\n"), 0, "duplicate output name 'y'", 3, 29, NULL },
    { "config division by zero", "model m(D: int = 0) {\n  param w: f32[4 / D]\n}\n", 0, "division by zero", 2, 18, NULL },
    { "unknown override", M(""), 0, "override 'Q=1': model 'm' has no config parameter or dim named 'Q'", 0, 0, "Q=1" },
    { "override of the wrong kind", "model m(D: int = 2) {\n}\n", 0,
      "override 'D=abc': 'D' is a config parameter of kind int", 0, 0, "D=abc" },
    { "malformed override", M(""), 0, "override '=3' is not of the form NAME=VALUE", 0, 0, "=3" },
};

static bool has_error(const struct itr_diags *d, const char *msg, int line, int col, char *first, size_t n) {
    first[0] = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->items[i].sev != ITR_SEV_ERROR) continue;
        if (!first[0]) snprintf(first, n, "%d:%d: %s", d->items[i].loc.line, d->items[i].loc.col, d->items[i].msg);
        if (strstr(d->items[i].msg, msg) && (!line || (d->items[i].loc.line == line && d->items[i].loc.col == col)))
            return true;
    }
    return false;
}

// Prints d with source excerpts to /dev/null: the printer must cope with every location.
static void print_to_null(const struct itr_diags *d) {
    FILE *null = fopen("/dev/null", "w");
    if (null) { itr_diags_print(d, null); fclose(null); }
}

TEST(malformed_inputs) {
    int n = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    CHECK(n >= 40);
    for (int i = 0; i < n; i++) {
        const struct bad_case *c = &bad_cases[i];
        const char *ov[1] = { c->override };
        struct itr_parse_options o = opts(ov, c->override ? 1 : 0);
        struct itr_diags d;
        struct itr_program *p = parse(c->src, c->len, &o, &d);
        char first[512];
        CHECK_MSG(!p, "[%s] parsed without error", c->name);
        CHECK_MSG(has_error(&d, c->msg, c->line, c->col, first, sizeof first),
                  "[%s] expected %d:%d: %s; first error: %s", c->name, c->line, c->col, c->msg, first);
        print_to_null(&d);
        itr_program_free(p);
        itr_diags_free(&d);
    }
}

// One file, several independent mistakes: each is reported once.
TEST(recovery_reports_every_error) {
    const char *src =
        "model m {\n"
        "  dim B\n"
        "  param w f32[2]\n"                               // 3: missing ':'
        "  entry f(x: f32[B]) -> (y) {\n"
        "    a = relu(x,, x)\n"                           // 5: empty argument
        "    b = x $ x\n"                                 // 6: stray character
        "    return x\n"
        "  }\n"
        "  entry g(x: f32[B]) -> (y) {\n"
        "    return x + * x\n"                            // 10: missing operand
        "  }\n"
        "  param v: q32[2]\n"                              // 12: unknown dtype
        "}\n";
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *p = parse(src, 0, &o, &d);
    CHECK(!p);
    char *sum = itr_diags_summary(&d);
    CHECK_STR_CONTAINS(sum, "3:11: expected ':'");
    CHECK_STR_CONTAINS(sum, "5:16: expected an expression, got ','");
    CHECK_STR_CONTAINS(sum, "6:11: unexpected character '$'");
    CHECK_STR_CONTAINS(sum, "10:16: expected an expression, got '*'");
    CHECK_STR_CONTAINS(sum, "12:12: unknown dtype 'q32'");
    CHECK_MSG(d.n_errors >= 5 && d.n_errors <= 7, "%d errors:\n%s", d.n_errors, sum);
    free(sum);
    itr_diags_free(&d);

    // Elaboration errors in independent statements and entries are all reported.
    const char *src2 = M("  entry f(x: f32[B]) -> (y) {\n    a = nope(x)\n    b = x + q\n    return x\n  }\n"
                         "  entry g(x: f32[B]) -> (y) {\n    return relu(x, x)\n  }\n");
    p = parse(src2, 0, &o, &d);
    CHECK(!p);
    CHECK_DIAGS_CONTAIN(&d, "4:9: unknown function or op 'nope'");
    CHECK_DIAGS_CONTAIN(&d, "5:13: undefined name 'q'");
    CHECK_DIAGS_CONTAIN(&d, "9:12: op 'relu' takes 1 operand, got 2");
    itr_diags_free(&d);
}

TEST(error_limit_and_garbage) {
    // Thousands of errors: recording stops at the limit, the run ends.
    size_t n = 200000;
    char *src = malloc(n + 1);
    for (size_t i = 0; i < n; i++) src[i] = i % 7 == 6 ? '\n' : '$';
    src[n] = 0;
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *p = parse(src, n, &o, &d);
    CHECK(!p);
    CHECK(d.n <= 100);
    CHECK(d.n_errors >= 100);
    itr_program_free(p);
    itr_diags_free(&d);

    // Random bytes and random token soup never crash (run under ASan/UBSan).
    static const char *const toks[] = { "model", "m", "{", "}", "(", ")", "[", "]", "entry", "def", "module", "let",
                                        "param", "dim", "import", "if", "else", "return", "=", ",", ":", "->", "+",
                                        "-", "*", "/", "@", "==", "&&", "!", "x", "f32", "[B]", "1", "2.5", "\"s\"",
                                        "\n", "scan", "relu", "f32[2]{1, 2}", "true", "#c\n", ".", "dimof", "B" };
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 400; iter++) {
        char buf[600];
        size_t w = 0;
        for (int k = 0; k < 60; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t r = (uint32_t)(seed >> 33);
            if (iter % 2) {
                const char *t = toks[r % (sizeof toks / sizeof toks[0])];
                size_t tl = strlen(t);
                if (w + tl + 1 >= sizeof buf) break;
                memcpy(buf + w, t, tl);
                w += tl;
                buf[w++] = ' ';
            } else {
                buf[w++] = (char)(r & 0xff);
            }
        }
        p = parse(buf, w ? w : 1, &o, &d);
        itr_program_free(p);
        itr_diags_free(&d);
    }
    free(src);
}

TEST(huge_line) {
    // A 10 MB line: no quadratic work, and the column is exact.
    size_t pad = 10u << 20;
    const char *head = "model m {";
    size_t hl = strlen(head), n = hl + pad + 3;
    char *src = malloc(n + 1);
    memcpy(src, head, hl);
    memset(src + hl, ' ', pad);
    memcpy(src + hl + pad, "@}\n", 3);
    src[n] = 0;
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *p = parse(src, n, &o, &d);
    char first[512];
    CHECK(!p);
    CHECK_MSG(has_error(&d, "expected 'dim', 'param', 'let', 'def', 'entry' or 'if' in the model body, got '@'", 1,
                        (int)(hl + pad + 1), first, sizeof first), "first error: %s", first);
    print_to_null(&d);
    itr_diags_free(&d);

    // A 10 MB string literal and a 10 MB comment on one line are fine.
    const char *h2 = "model m {\n  dim B = \"";
    size_t l2 = strlen(h2);
    char *s2 = malloc(l2 + pad + 64);
    memcpy(s2, h2, l2);
    memset(s2 + l2, 'a', pad);
    strcpy(s2 + l2 + pad, "\" # xxx\n}\n");
    p = parse(s2, 0, &o, &d);
    CHECK(!p);
    CHECK(has_error(&d, "the default of dim 'B' must be a non-negative integer, got a string", 2, 11, first, sizeof first));
    itr_diags_free(&d);
    free(s2);
    free(src);
}

// Writes depth '(', then x, then depth ')' and the ends of the entry and the model, at p.
static void write_nested(char *p, size_t depth) {
    memset(p, '(', depth);
    strcpy(p + depth, "x");
    memset(p + depth + 1, ')', depth);
    strcpy(p + 2 * depth + 1, "\n  }\n}\n");
}

// Writes "t + t + ... + t" with n terms at p; returns its length.
static size_t write_chain(char *p, char t, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) { memcpy(p + w, " + ", 3); w += 3; }
        p[w++] = t;
    }
    return w;
}

TEST(deep_nesting) {
    size_t depth = 100000;
    const char *head = "model m {\n  dim B\n  entry f(x: f32[B]) -> (y) {\n    return ";
    size_t hl = strlen(head);
    char *src = malloc(hl + 2 * depth + 32);
    memcpy(src, head, hl);
    write_nested(src + hl, depth);
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *p = parse(src, 0, &o, &d);
    char first[512];
    CHECK(!p);
    CHECK_MSG(has_error(&d, "nesting too deep", 4, 0, first, sizeof first) || strstr(first, "nesting too deep"),
              "first error: %s", first);
    itr_diags_free(&d);
    // The same with unary minus and with nested lists.
    for (const char *c = "-["; *c; c++) {
        memset(src + hl, *c, depth);
        p = parse(src, 0, &o, &d);
        CHECK(!p && d.n_errors > 0);
        itr_diags_free(&d);
    }
    // 150 levels of parentheses are within the limit.
    write_nested(src + hl, 150);
    p = parse(src, 0, &o, &d);
    CHECK(p != NULL);
    itr_program_free(p);
    itr_diags_free(&d);
    // A very long left-associative chain is flat, not deep: 200000 terms in
    // a config expression, 2000 in a tensor expression.
    size_t terms = 200000;
    char *chain = malloc(terms * 4 + 64);
    size_t w = (size_t)sprintf(chain, "model m {\n  dim B = ");
    w += write_chain(chain + w, '1', terms);
    strcpy(chain + w, "\n}\n");
    p = parse(chain, 0, &o, &d);
    CHECK(p != NULL);
    if (p) CHECK(p->symbols[0].default_value == (int64_t)terms);
    itr_program_free(p);
    itr_diags_free(&d);
    terms = 2000;
    memcpy(chain, head, hl);
    w = hl + write_chain(chain + hl, 'x', terms);
    strcpy(chain + w, "\n  }\n}\n");
    p = parse(chain, 0, &o, &d);
    CHECK(p != NULL);
    if (p) CHECK(p->graphs[0]->n_nodes == (int)terms - 1);
    itr_program_free(p);
    itr_diags_free(&d);
    free(chain);
    free(src);
}

// ------------------------------------------------------------ well-formed input

static struct itr_program *parse_ok(const char *src, const char *const *ov, int n_ov) {
    struct itr_parse_options o = opts(ov, n_ov);
    struct itr_diags d;
    struct itr_program *p = parse(src, 0, &o, &d);
    if (!p) diags_report("unexpected errors:\n", &d);
    itr_diags_free(&d);
    return p;
}

static const struct itr_node *find_node(const struct itr_graph *g, enum itr_op op, int nth) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op && nth-- == 0) return &g->nodes[i];
    return NULL;
}

static const char *const small_model =
    "import \"lib_small.ir\"\n"
    "model small(D: int = 4, H: int = 6, flag: bool = false) {\n"
    "  dim B, T = 5\n"
    "  let txt = encoder(D, H)\n"
    "  let head = affine(H, 2, has_bias=flag)\n"
    "  if flag {\n"
    "    param extra: f32[H] = ones\n"
    "  } else {\n"
    "    frozen param other: f64[H, 2] = normal(0.5, 2.0)\n"
    "  }\n"
    "  entry run(x: f32[B, T, D], n: i32[B], y: f64[B]) -> (out, s) {\n"
    "    h = txt(x)\n"
    "    k = n * 3\n"
    "    z = 2.0 * y\n"
    "    c = 1 - h\n"
    "    r = reshape(h, shape=[dimof(h, 0) * T, H])\n"
    "    return head(r), k\n"
    "  }\n"
    "  entry typed(x: f32[B, 4]) -> (y) {\n"
    "    return scale_rows(x, s=0.25)\n"
    "  }\n"
    "}\n";

TEST(hierarchical_names_scopes_locations) {
    struct itr_program *p = parse_ok(small_model, NULL, 0);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(strcmp(p->name, "small") == 0);
    CHECK(itr_program_find_param(p, "txt.proj.weight") >= 0);
    CHECK(itr_program_find_param(p, "txt.proj.bias") >= 0);
    CHECK(itr_program_find_param(p, "txt.rnn.w") >= 0);
    CHECK(itr_program_find_param(p, "head.weight") >= 0);
    CHECK(itr_program_find_param(p, "head.bias") < 0);   // has_bias=false
    CHECK(itr_program_find_param(p, "extra") < 0);       // the if took the else branch
    int32_t other = itr_program_find_param(p, "other");
    CHECK(other >= 0);
    if (other >= 0) {
        CHECK(p->params[other].frozen);
        CHECK(p->params[other].init.kind == ITR_INIT_NORMAL);
        CHECK(p->params[other].init.a == 0.5 && p->params[other].init.b == 2.0);
        CHECK(p->params[other].type.dtype == ITR_F64);
    }
    int32_t w = itr_program_find_param(p, "txt.proj.weight");
    if (w >= 0) {
        int64_t a = 0, b = 0;
        CHECK(itr_dim_is_const(p, p->params[w].type.dims[0], &a) && a == 6);
        CHECK(itr_dim_is_const(p, p->params[w].type.dims[1], &b) && b == 4);
        CHECK(p->params[w].init.kind == ITR_INIT_XAVIER_UNIFORM && p->params[w].init.a == 1.0);
        CHECK_STR_CONTAINS(p->params[w].loc.file, "lib_small.ir");
    }
    int32_t T = itr_program_find_symbol(p, "T");
    CHECK(T >= 0 && p->symbols[T].has_default && p->symbols[T].default_value == 5);
    const struct itr_graph *g = itr_program_find_graph(p, "run");
    CHECK(g != NULL && g->kind == ITR_GRAPH_ENTRY);
    if (!g) { itr_program_free(p); return; }
    CHECK(g->n_inputs == 3 && g->n_outputs == 2);
    CHECK(strcmp(g->output_names[0], "out") == 0 && strcmp(g->output_names[1], "s") == 0);
    // The first matmul is inside affine.forward of instance txt.proj: its
    // scope is the instance path and its location is in lib_small.ir.
    const struct itr_node *mm = find_node(g, ITR_OP_MATMUL, 0);
    CHECK(mm != NULL);
    if (mm) {
        CHECK(mm->scope && strcmp(mm->scope, "txt.proj") == 0);
        CHECK_STR_CONTAINS(mm->loc.file, "lib_small.ir");
        CHECK(mm->loc.line == 13);
    }
    // Nodes of the entry itself have no scope and point into the model text.
    const struct itr_node *rs = find_node(g, ITR_OP_RESHAPE, 0);
    CHECK(rs && rs->scope == NULL && strcmp(rs->loc.file, "t.ir") == 0 && rs->loc.line == 16);
    itr_program_free(p);
}

// A scalar literal is a `constant` (integers, bools) or a `full` (floats,
// which keep their double value for f64 runs): its dtype and value.
struct literal { bool is; enum itr_dtype dtype; double value; int rank; };

static struct literal literal_of(const struct itr_node *n) {
    struct literal l = { false, ITR_F32, 0, 0 };
    if (n && n->op == ITR_OP_CONSTANT) {
        const struct itr_tensor *t = n->attrs[0].u.tensor;
        l = (struct literal){ true, t->dtype, t->rank == 0 ? itr_tensor_get(t, 0) : 0, t->rank };
    } else if (n && n->op == ITR_OP_FULL) {
        const struct itr_attr *shape = itr_node_attr(n, "shape");
        l = (struct literal){ true, itr_node_attr(n, "dtype")->u.dtype, itr_node_attr_float(n, "value"),
                              shape->kind == ITR_ATTR_DIMS ? shape->u.dims.n : 0 };
    }
    return l;
}

// The k-th scalar literal node of g (0-based), or NULL.
static const struct itr_node *find_literal(const struct itr_graph *g, int k) {
    for (int i = 0; i < g->n_nodes; i++) {
        struct literal l = literal_of(&g->nodes[i]);
        if (l.is && l.rank == 0 && k-- == 0) return &g->nodes[i];
    }
    return NULL;
}

TEST(literal_constants_take_the_operand_dtype) {
    struct itr_program *p = parse_ok(small_model, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "run");
    // k = n * 3 (i32), z = 2.0 * y (f64), c = 1 - h (f32): constants in that order
    // after the scan's h0 (a full) and the captured weights.
    int found = 0;
    enum itr_dtype want[3] = { ITR_I32, ITR_F64, ITR_F32 };
    double val[3] = { 3, 2, 1 };
    for (int i = 0; i < g->n_nodes && found < 3; i++) {
        struct literal l = literal_of(&g->nodes[i]);
        if (!l.is || l.rank != 0) continue;
        CHECK_MSG(l.dtype == want[found], "literal %d has dtype %s", found, itr_dtype_name(l.dtype));
        CHECK_NEAR(l.value, val[found], 0);
        found++;
    }
    CHECK(found == 3);
    itr_program_free(p);

    // where(c, x, 0.0): the bool condition does not decide the literal's dtype.
    p = parse_ok(M("  entry f(c: bool[B], x: f64[B]) -> (y) {\n    return where(c, x, 0.0)\n  }\n"), NULL, 0);
    if (p) {
        struct literal l = literal_of(find_literal(p->graphs[0], 0));
        CHECK(l.is && l.dtype == ITR_F64);
        itr_program_free(p);
    }
    // With no tensor operand, f32; a negative literal is one constant, not neg().
    p = parse_ok(M("  entry f(x: i64[B]) -> (y) {\n    return maximum(x, -7)\n  }\n"), NULL, 0);
    if (p) {
        const struct itr_graph *q = p->graphs[0];
        CHECK(find_node(q, ITR_OP_NEG, 0) == NULL);
        struct literal l = literal_of(find_literal(q, 0));
        CHECK(l.is && l.dtype == ITR_I64 && l.value == -7);
        itr_program_free(p);
    }
}

TEST(compile_time_if_and_overrides) {
    const char *const ov[] = { "D=8", "flag=true", "T=7", "B=2" };
    struct itr_program *p = parse_ok(small_model, ov, 4);
    if (!p) { CHECK(p != NULL); return; }
    int32_t w = itr_program_find_param(p, "txt.proj.weight");
    int64_t in = 0;
    CHECK(w >= 0 && itr_dim_is_const(p, p->params[w].type.dims[1], &in) && in == 8);
    CHECK(itr_program_find_param(p, "extra") >= 0);
    CHECK(itr_program_find_param(p, "other") < 0);
    CHECK(itr_program_find_param(p, "head.bias") >= 0);
    int32_t T = itr_program_find_symbol(p, "T"), B = itr_program_find_symbol(p, "B");
    CHECK(T >= 0 && p->symbols[T].default_value == 7);
    CHECK(B >= 0 && p->symbols[B].has_default && p->symbols[B].default_value == 2);
    itr_program_free(p);
    // A config string decides between function bodies at compile time.
    const char *src = "def act(x, kind: str = \"relu\") {\n"
                      "  if kind == \"relu\" {\n    y = relu(x)\n  } else if kind == \"tanh\" {\n    y = tanh(x)\n"
                      "  } else {\n    y = sigmoid(x)\n  }\n  return y\n}\n"
                      "model m(k: str = \"relu\") {\n  dim B\n"
                      "  entry f(x: f32[B]) -> (y) {\n    return act(x, kind=k)\n  }\n}\n";
    const char *const ov2[] = { "k=tanh" };
    p = parse_ok(src, ov2, 1);
    if (p) {
        CHECK(p->graphs[0]->n_nodes == 1 && p->graphs[0]->nodes[0].op == ITR_OP_TANH);
        itr_program_free(p);
    }
    p = parse_ok(src, NULL, 0);
    if (p) {
        CHECK(p->graphs[0]->n_nodes == 1 && p->graphs[0]->nodes[0].op == ITR_OP_RELU);
        itr_program_free(p);
    }
}

TEST(dimof_builds_symbolic_dims) {
    struct itr_program *p = parse_ok(small_model, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "run");
    const struct itr_node *rs = find_node(g, ITR_OP_RESHAPE, 0);
    CHECK(rs != NULL);
    if (rs) {
        const struct itr_attr *a = itr_node_attr(rs, "shape");
        CHECK(a && a->kind == ITR_ATTR_DIMS && a->u.dims.n == 2);
        char buf[64];
        itr_dim_format(p, a->u.dims.v[0], buf, sizeof buf);
        CHECK_MSG(strcmp(buf, "B*T") == 0 || strcmp(buf, "T*B") == 0, "dim is %s", buf);
        const struct itr_type *t = &g->values[rs->outputs[0]].type;
        CHECK(t->rank == 2 && t->dims[0] == a->u.dims.v[0]);
    }
    itr_program_free(p);
}

TEST(scan_body_captures_parameters) {
    struct itr_program *p = parse_ok(small_model, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "run");
    const struct itr_node *sc = find_node(g, ITR_OP_SCAN, 0);
    CHECK(sc != NULL);
    if (!sc) { itr_program_free(p); return; }
    const struct itr_graph *body = itr_node_attr(sc, "body")->u.graph;
    CHECK(body && body->kind == ITR_GRAPH_BODY);
    CHECK(strcmp(body->name, "_scan0") == 0);
    CHECK(sc->scope && strcmp(sc->scope, "txt.rnn") == 0);
    // Inputs: carry h, slice x, then the captured parameter txt.rnn.w.
    CHECK(body->n_inputs == 3);
    CHECK(strcmp(body->values[body->inputs[2]].name, "txt.rnn.w") == 0);
    CHECK(body->values[body->inputs[2]].kind == ITR_VALUE_INPUT);
    for (int i = 0; i < body->n_values; i++) CHECK(body->values[i].kind != ITR_VALUE_PARAM);
    // The scan passes the parameter as an extra constant operand.
    CHECK(sc->n_inputs == 3);
    const struct itr_value *last = &g->values[sc->inputs[2]];
    CHECK(last->kind == ITR_VALUE_PARAM && strcmp(p->params[last->param].name, "txt.rnn.w") == 0);
    CHECK(itr_node_attr_int(sc, "n_carry") == 1 && itr_node_attr_int(sc, "n_scan") == 1);
    // Slice type: [B, T, H] scanned over axis 1 gives [B, H].
    const struct itr_type *slice = &body->values[body->inputs[1]].type;
    CHECK(slice->rank == 2);
    CHECK(body->n_outputs == 2);
    itr_program_free(p);
}

TEST(typed_function_parameters_and_keyword_config) {
    struct itr_program *p = parse_ok(small_model, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    const struct itr_graph *g = itr_program_find_graph(p, "typed");
    CHECK(g && g->n_nodes == 2);
    if (g) {
        struct literal l = literal_of(find_literal(g, 0));
        CHECK(l.is && l.value == 0.25);
    }
    itr_program_free(p);
}

TEST(verify_and_equal_catch_differences) {
    struct itr_program *p = parse_ok(small_model, NULL, 0), *q = parse_ok(small_model, NULL, 0);
    if (!p || !q) { CHECK(p && q); itr_program_free(p); itr_program_free(q); return; }
    char why[256];
    CHECK(itr_program_equal(p, q, why, sizeof why));
    q->params[0].init.a = 3.0;
    CHECK(!itr_program_equal(p, q, why, sizeof why));
    CHECK_STR_CONTAINS(why, "initialisers");
    q->params[0].init = p->params[0].init;
    struct itr_graph *g = itr_program_find_graph(q, "run");
    struct itr_node *n = (struct itr_node *)find_node(g, ITR_OP_RESHAPE, 0);
    int32_t saved = n->inputs[0];
    n->inputs[0] = g->inputs[0];
    CHECK(!itr_program_equal(p, q, why, sizeof why));
    CHECK_STR_CONTAINS(why, "operand 0");
    // A use before definition, and a result type that disagrees with the rule.
    n->inputs[0] = g->nodes[g->n_nodes - 1].outputs[0];
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(!itr_program_verify(q, &d));
    CHECK_DIAGS_CONTAIN(&d, "before it is defined");
    itr_diags_free(&d);
    n->inputs[0] = saved;
    itr_diags_init(&d);
    CHECK(itr_program_verify(q, &d));
    itr_diags_free(&d);
    g->values[n->outputs[0]].type.dtype = ITR_F64;
    itr_diags_init(&d);
    CHECK(!itr_program_verify(q, &d));
    CHECK_DIAGS_CONTAIN(&d, "its shape rule gives");
    itr_diags_free(&d);
    itr_program_free(p);
    itr_program_free(q);
}

TEST(exact_float_round_trip) {
    const char *src = M("  entry f(x: f32[B]) -> (y, z) {\n"
                        "    a = constant(value=f32[6]{0.1, 1e-45, 3.4028235e38, -0.0, 16777217, 0.333333343})\n"
                        "    b = constant(value=f64[4]{0.1, 5e-324, 1.7976931348623157e308, 0.30000000000000004})\n"
                        "    c = full(value=0.1, shape=[4], dtype=f64)\n"
                        "    return a * 0.7, b + c\n  }\n");
    struct itr_program *p = parse_ok(src, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    char *t = itr_print_program(p);
    CHECK_STR_CONTAINS(t, "f32[6]{0.1, 1e-45, 3.4028235e+38, -0.0, 16777216, 0.33333334}");
    CHECK_STR_CONTAINS(t, "f64[4]{0.1, 5e-324, 1.7976931348623157e+308, 0.30000000000000004}");
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *q = parse(t, 0, &o, &d);
    CHECK(q != NULL);
    if (q) {
        char why[256];
        CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "%s", why);
        const struct itr_node *cn = find_node(q->graphs[0], ITR_OP_CONSTANT, 0);
        const struct itr_tensor *a = cn ? cn->attrs[0].u.tensor : NULL;
        CHECK(a && ((const float *)a->data)[1] == 1e-45f && signbit(((const float *)a->data)[3]));
        itr_program_free(q);
    }
    itr_diags_free(&d);
    free(t);
    itr_program_free(p);
}

// The printer writes INT64_MIN (an ONNX-style open slice bound) as
// -9223372036854775808, and the parser takes it back: 2^63 is a valid
// literal only after a minus sign.
TEST(int64_min_round_trip) {
    const char *src = M("  entry f(x: f32[B]) -> (y) {\n"
                        "    return slice(x, starts=[-9223372036854775808], ends=[9223372036854775807], axes=[0])\n"
                        "  }\n");
    struct itr_program *p = parse_ok(src, NULL, 0);
    if (!p) { CHECK(p != NULL); return; }
    const struct itr_node *n = find_node(p->graphs[0], ITR_OP_SLICE, 0);
    int ks = itr_op_attr_index(ITR_OP_SLICE, "starts");
    CHECK(n && n->attrs[ks].u.ints.n == 1 && n->attrs[ks].u.ints.v[0] == INT64_MIN);
    // An open start on a symbolic axis keeps the whole axis: f32[B].
    CHECK(n && itr_type_equal(&p->graphs[0]->values[n->outputs[0]].type, &p->graphs[0]->values[n->inputs[0]].type));
    char *t = itr_print_program(p);
    CHECK_STR_CONTAINS(t, "starts=[-9223372036854775808]");
    struct itr_parse_options o = opts(NULL, 0);
    struct itr_diags d;
    struct itr_program *q = parse(t, 0, &o, &d);
    CHECK(q != NULL);
    if (q) {
        char why[256];
        CHECK_MSG(itr_program_equal(p, q, why, sizeof why), "%s", why);
        itr_program_free(q);
    }
    itr_diags_free(&d);
    free(t);
    itr_program_free(p);
}

int main(void) {
    RUN(malformed_inputs);
    RUN(recovery_reports_every_error);
    RUN(error_limit_and_garbage);
    RUN(huge_line);
    RUN(deep_nesting);
    RUN(hierarchical_names_scopes_locations);
    RUN(literal_constants_take_the_operand_dtype);
    RUN(compile_time_if_and_overrides);
    RUN(dimof_builds_symbolic_dims);
    RUN(scan_body_captures_parameters);
    RUN(typed_function_parameters_and_keyword_config);
    RUN(verify_and_equal_catch_differences);
    RUN(exact_float_round_trip);
    RUN(int64_min_round_trip);
    return test_summary();
}
