// Fuzzes the .ir text format (ir/text/: lexer, parser, elaboration of
// modules, imports and config, shape inference, the verifier): the input is
// the text of one .ir file. It is parsed as if it were a file in models/, so
// `import "modules/nn.ir"` finds the module library. On success the program
// prints, and the printed text parses back to an equal program (ir/text.h
// promises both).
#include "fuzz.h"
#include "ir/ir.h"
#include "ir/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_parse_string(ITR_SOURCE_DIR "/models/fuzz.ir", (const char *)data, size, NULL, &d);
    fuzz_check_outcome(p != NULL, &d);
    itr_diags_free(&d);
    if (!p) return 0;
    char *text = itr_print_program(p);
    FUZZ_CHECK(text != NULL);
    itr_diags_init(&d);
    struct itr_program *q = itr_parse_string(ITR_SOURCE_DIR "/models/printed.ir", text, strlen(text), NULL, &d);
    if (!q) {
        fprintf(stderr, "the printed program does not parse back:\n%s\n", text);
        itr_diags_print(&d, stderr);
    }
    FUZZ_CHECK(q != NULL);
    char why[256];
    if (!itr_program_equal(p, q, why, sizeof why)) {
        fprintf(stderr, "the printed program parses back different (%s):\n%s\n", why, text);
        FUZZ_CHECK(false);
    }
    itr_program_free(q);
    itr_diags_free(&d);
    free(text);
    itr_program_free(p);
    return 0;
}
