// ONNX conformance: the backend node tests of Debian's libonnx-testdata
// (node/*/model.onnx with test_data_set_0/{input,output}_N.pb). For every
// test whose ops the importer supports (at the test's opset): import ->
// print the .ir and parse it back (it must be the same program) -> compile
// (-O1) -> run on the reference interpreter -> compare every output with
// the recorded one, |a - b| <= atol + rtol |b| with NaN and inf matching.
//
// A test is skipped when one of its ops has no row in the frontend op table,
// when its tensors use a dtype itrc lacks (uint8, float16, strings, ...), or
// when it is in the exclusion list below (each with its reason; docs/onnx.md
// has the same list). Everything else must pass. Prints a per-op summary
// and "N passed, N failed, N skipped"; exits 77 (skipped) where the data is
// not installed.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler/pipeline.h"
#include "frontends/onnx/onnx_import.h"
#include "ir/fileio.h"
#include "ir/text.h"
#include "onnx.pb-c.h"
#include "runtime/exec.h"

#define DATA_DIR "/usr/share/libonnx-testdata/data/node"

static const double RTOL = 1e-3, ATOL = 1e-5;

// Tests of supported ops that are excluded, with the reason.
static const struct { const char *test, *why; } excluded[] = {
    { "test_batchnorm_epsilon_training_mode", "BatchNormalization training mode (inference only)" },
    { "test_batchnorm_example_training_mode", "BatchNormalization training mode (inference only)" },
    { "test_training_dropout", "Dropout training mode (random; inference only)" },
    { "test_training_dropout_default", "Dropout training mode (random; inference only)" },
    { "test_training_dropout_default_mask", "Dropout training mode (random; inference only)" },
    { "test_training_dropout_mask", "Dropout training mode (random; inference only)" },
    { "test_training_dropout_zero_ratio", "Dropout training mode with a known mask input (inference only)" },
    { "test_training_dropout_zero_ratio_mask", "Dropout training mode with a known mask input (inference only)" },
    { "test_edge_pad", "Pad mode 'edge' (only 'constant' is supported)" },
    { "test_reflect_pad", "Pad mode 'reflect' (only 'constant' is supported)" },
    { "test_blackmanwindow_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_blackmanwindow_symmetric_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_hammingwindow_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_hammingwindow_symmetric_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_hannwindow_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_hannwindow_symmetric_expanded", "the output length is the value of an input (a data-dependent shape)" },
    { "test_if_opt", "If whose branches return optionals of sequences (itrc has tensors only)" },
    { "test_if_seq", "If whose branches return sequences (itrc has tensors only)" },
    { "test_loop13_seq", "Loop carrying a sequence (itrc has tensors only)" },
    { "test_loop16_seq_none", "Loop carrying an optional sequence (itrc has tensors only)" },
};

static const char *exclusion(const char *test) {
    for (size_t i = 0; i < sizeof excluded / sizeof *excluded; i++)
        if (strcmp(excluded[i].test, test) == 0) return excluded[i].why;
    return NULL;
}

// Per-op tallies: single-node tests under their op, multi-node ones (the
// function-expanded variants) under "(expanded)".
struct tally { char op[48]; int pass, fail, skip; };
static struct tally tallies[256];
static int n_tallies;

static struct tally *tally_for(const char *op) {
    for (int i = 0; i < n_tallies; i++)
        if (strcmp(tallies[i].op, op) == 0) return &tallies[i];
    if (n_tallies == 256) return &tallies[255];
    snprintf(tallies[n_tallies].op, sizeof tallies[n_tallies].op, "%s", op);
    return &tallies[n_tallies++];
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// input_N.pb / output_N.pb of the first data set, in N order.
static int read_tensors(const char *dir, const char *prefix, struct itr_tensor **out, int max, char *why, size_t wn) {
    int n = 0;
    for (; n < max; n++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/test_data_set_0/%s_%d.pb", dir, prefix, n);
        struct stat st;
        if (stat(path, &st) != 0) break;
        struct itr_diags d;
        itr_diags_init(&d);
        out[n] = itr_onnx_tensor_read_file(path, NULL, &d);
        if (!out[n]) {
            char *s = itr_diags_summary(&d);
            snprintf(why, wn, "%s", s ? s : "unreadable tensor");
            free(s);
            itr_diags_free(&d);
            for (int k = 0; k < n; k++) itr_tensor_free(out[k]);
            return -1;
        }
        itr_diags_free(&d);
    }
    return n;
}

static bool close_enough(double a, double b) {
    if (isnan(b)) return isnan(a);
    if (isinf(b)) return a == b;
    return fabs(a - b) <= ATOL + RTOL * fabs(b);
}

static bool compare(const struct itr_tensor *got, const struct itr_tensor *want, char *why, size_t wn) {
    if (got->dtype != want->dtype) {
        snprintf(why, wn, "dtype %s, expected %s", itr_dtype_name(got->dtype), itr_dtype_name(want->dtype));
        return false;
    }
    bool shape_ok = got->rank == want->rank;
    for (int i = 0; shape_ok && i < got->rank; i++) shape_ok = got->shape[i] == want->shape[i];
    if (!shape_ok) {
        char a[96], b[96];
        itr_shape_format(got->rank, got->shape, a, sizeof a);
        itr_shape_format(want->rank, want->shape, b, sizeof b);
        snprintf(why, wn, "shape %s, expected %s", a, b);
        return false;
    }
    for (int64_t i = 0; i < itr_tensor_numel(want); i++) {
        double a = itr_tensor_get(got, i), b = itr_tensor_get(want, i);
        if (!close_enough(a, b)) {
            snprintf(why, wn, "element %lld is %.9g, expected %.9g", (long long)i, a, b);
            return false;
        }
    }
    return true;
}

enum outcome { PASS, FAIL, SKIP };

// Runs one test directory; why explains a failure or a skip.
static enum outcome run_one(const char *dir, const char *test, char *why, size_t wn, char *op_key, size_t kn) {
    char path[1100];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    uint8_t *buf;
    size_t len;
    struct itr_diags d;
    itr_diags_init(&d);
    snprintf(op_key, kn, "?");
    if (!itr_file_read_all(path, &buf, &len, &d)) {
        itr_diags_free(&d);
        snprintf(why, wn, "model.onnx unreadable");
        return FAIL;
    }
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m || !m->graph) {
        free(buf);
        itr_diags_free(&d);
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        snprintf(why, wn, "model.onnx does not parse");
        return FAIL;
    }
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (!m->opset_import[i]->domain || !m->opset_import[i]->domain[0]) opset = m->opset_import[i]->version;
    const Onnx__GraphProto *gp = m->graph;
    if (gp->n_node == 1) snprintf(op_key, kn, "%s", gp->node[0]->op_type);
    else snprintf(op_key, kn, "(expanded)");
    enum outcome res = PASS;
    for (size_t i = 0; i < gp->n_node && res == PASS; i++) {
        const char *dom = gp->node[i]->domain;
        if ((dom && dom[0]) || !itr_onnx_op_supported(gp->node[i]->op_type, opset)) {
            snprintf(why, wn, "op %s (opset %lld) is not supported", gp->node[i]->op_type, (long long)opset);
            res = SKIP;
        }
    }
    const char *ex = exclusion(test);
    if (res == PASS && ex) {
        snprintf(why, wn, "excluded: %s", ex);
        res = SKIP;
    }
    struct itr_tensor *ins[32] = { 0 }, *outs[32] = { 0 };
    int n_in = 0, n_out = 0;
    if (res == PASS) {
        n_in = read_tensors(dir, "input", ins, 32, why, wn);
        if (n_in >= 0) n_out = read_tensors(dir, "output", outs, 32, why, wn);
        if (n_in < 0 || n_out < 0) {
            res = SKIP;   // a dtype itrc does not have
            if (n_in > 0) for (int k = 0; k < n_in; k++) itr_tensor_free(ins[k]);
            n_in = n_out = 0;
        }
    }
    // Inputs by name: input_N is the N-th graph input that is no initializer.
    struct itr_tensor_set given;
    itr_tensor_set_init(&given);
    if (res == PASS) {
        int k = 0;
        for (size_t i = 0; i < gp->n_input && k < n_in; i++) {
            bool init = false;
            for (size_t j = 0; j < gp->n_initializer; j++) init |= strcmp(gp->initializer[j]->name, gp->input[i]->name) == 0;
            if (!init) itr_tensor_set_put(&given, gp->input[i]->name, ins[k++]);
        }
        for (; k < n_in; k++) itr_tensor_free(ins[k]);
        if ((int)gp->n_output != n_out) {
            snprintf(why, wn, "%zu graph outputs but %d recorded", gp->n_output, n_out);
            res = FAIL;
        }
    }
    onnx__model_proto__free_unpacked(m, NULL);

    struct itr_program *p = NULL, *back = NULL;
    struct itr_tensor_set weights, inputs, results;
    itr_tensor_set_init(&weights);
    itr_tensor_set_init(&inputs);
    itr_tensor_set_init(&results);
    struct itr_onnx_import_info info = { 0 };
    char *text = NULL;
    if (res == PASS) {
        struct itr_onnx_options o;
        itr_onnx_options_init(&o);
        o.params = true;
        o.input_values = &given;
        p = itr_onnx_import_bytes(path, buf, len, &o, &weights, &info, &d);
        if (!p) res = FAIL;
    }
    if (res == PASS) {
        // The printed .ir is the same program.
        text = itr_print_program(p);
        back = text ? itr_parse_string("imported.ir", text, strlen(text), NULL, &d) : NULL;
        char diff[256] = "";
        if (!back || !itr_program_equal(p, back, diff, sizeof diff)) {
            snprintf(why, wn, "the printed .ir does not parse back to the same program: %s", back ? diff : "parse error");
            res = FAIL;
        }
    }
    if (res == PASS) {
        struct itr_compile_options co;
        itr_compile_options_init(&co);
        if (!itr_compile_program(p, &co, NULL, &d)) res = FAIL;
    }
    if (res == PASS) {
        for (int i = 0; i < info.n_inputs; i++) {
            struct itr_tensor *t = itr_tensor_set_get(&given, info.input_onnx[i]);
            if (!t) { snprintf(why, wn, "no recorded value for input '%s'", info.input_onnx[i]); res = FAIL; break; }
            itr_tensor_set_put(&inputs, info.input_ir[i], itr_tensor_clone(t));
        }
    }
    if (res == PASS) {
        const struct itr_graph *g = itr_exec_find_entry(p, "forward", &d);
        struct itr_dim_bindings b;
        itr_bindings_init(&b, p);
        struct itr_exec_options eo = { 0 };
        if (!g || !itr_exec_run(p, g, &inputs, &weights, &b, &eo, &results, &d)) res = FAIL;
        itr_bindings_free(&b);
    }
    for (int i = 0; res == PASS && i < n_out; i++) {
        struct itr_tensor *got = itr_tensor_set_get(&results, info.output_ir[i]);
        char w2[512];
        if (!got) { snprintf(why, wn, "output '%s' missing", info.output_ir[i]); res = FAIL; }
        else if (!compare(got, outs[i], w2, sizeof w2)) {
            snprintf(why, wn, "output '%s': %s", info.output_onnx[i], w2);
            res = FAIL;
        }
    }
    if (res == FAIL && itr_diags_has_errors(&d)) {
        char *s = itr_diags_summary(&d);
        if (s) {
            // The first diagnostic says what went wrong.
            char *nl = strchr(s, '\n');
            if (nl) *nl = 0;
            snprintf(why, wn, "%s", s);
        }
        free(s);
    }
    for (int i = 0; i < n_out; i++) itr_tensor_free(outs[i]);
    itr_tensor_set_free(&given);
    itr_tensor_set_free(&weights);
    itr_tensor_set_free(&inputs);
    itr_tensor_set_free(&results);
    itr_onnx_import_info_free(&info);
    itr_program_free(p);
    itr_program_free(back);
    free(text);
    free(buf);
    itr_diags_free(&d);
    return res;
}

int main(int argc, char **argv) {
    // argv[1], if given, selects the tests whose name contains it.
    const char *only = argc > 1 ? argv[1] : NULL;
    bool verbose = getenv("ITR_ONNX_VERBOSE") != NULL;
    DIR *dd = opendir(DATA_DIR);
    if (!dd) {
        printf("%s not found: install Debian's libonnx-testdata (tools/install-deps.sh)\n0 passed, 0 failed, 0 skipped\n",
               DATA_DIR);
        return 77;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(dd));) {
        if (strncmp(e->d_name, "test_", 5) != 0 || (only && !strstr(e->d_name, only))) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            names = realloc(names, (size_t)cap * sizeof *names);
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(dd);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        char dir[1024], why[1024] = "", key[48];
        snprintf(dir, sizeof dir, "%s/%s", DATA_DIR, names[i]);
        enum outcome r = run_one(dir, names[i], why, sizeof why, key, sizeof key);
        struct tally *t = tally_for(key);
        if (r == PASS) { passed++; t->pass++; }
        else if (r == FAIL) { failed++; t->fail++; printf("FAIL %s: %s\n", names[i], why); }
        else { skipped++; t->skip++; if (verbose) printf("skip %s: %s\n", names[i], why); }
        free(names[i]);
    }
    free(names);
    // Per-op pass rates of the ops that ran (docs/onnx.md quotes them).
    printf("per op (passed/run, skipped):\n");
    for (int i = 0; i < n_tallies; i++)
        if (tallies[i].pass + tallies[i].fail)
            printf("  %-28s %d/%d, %d skipped\n", tallies[i].op, tallies[i].pass, tallies[i].pass + tallies[i].fail,
                   tallies[i].skip);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
