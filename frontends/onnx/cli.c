// `itrc import MODEL.onnx -o MODEL.ir [--weights W.safetensors]`: the
// command's body, kept with the importer so that compiler/itrc.c only
// registers it (itrc links this library; the compiler layer does not).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_import.h"
#include "ir/cli.h"
#include "ir/fileio.h"
#include "ir/text.h"

int itr_onnx_cmd_import(const struct itr_cli *cli, int argc, char **argv) {
    const char *file = NULL, *out = NULL, *weights = NULL, *name = NULL, *entry = NULL;
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = itr_cli_opt_value(cli, "import", argc, argv, &i, "-o", "--output", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else out = v;
        } else if ((r = itr_cli_opt_value(cli, "import", argc, argv, &i, NULL, "--weights", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else weights = v;
        } else if ((r = itr_cli_opt_value(cli, "import", argc, argv, &i, NULL, "--name", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else name = v;
        } else if ((r = itr_cli_opt_value(cli, "import", argc, argv, &i, NULL, "--entry", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else entry = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = itr_cli_usage_error(cli, "import", "unknown option '%s'", argv[i]);
        } else if (file) {
            rc = itr_cli_usage_error(cli, "import", "unexpected extra argument '%s'", argv[i]);
        } else {
            file = argv[i];
        }
    }
    if (rc == ITR_EXIT_OK && !file) rc = itr_cli_usage_error(cli, "import", "%s", "missing MODEL.onnx");
    if (rc == ITR_EXIT_OK && !out) rc = itr_cli_usage_error(cli, "import", "%s", "missing -o FILE.ir");
    if (rc != ITR_EXIT_OK) return rc;

    struct itr_onnx_options o;
    itr_onnx_options_init(&o);
    o.params = weights != NULL;
    o.model_name = name;
    o.entry_name = entry;
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_program *p = itr_onnx_import_file(file, &o, &w, NULL, &d);
    char *text = p ? itr_print_program(p) : NULL;
    if (!p) {
        rc = ITR_EXIT_USER;
    } else if (!text) {
        fprintf(stderr, "%s import: internal error: printing the program failed\n", cli->prog);
        rc = ITR_EXIT_INTERNAL;
    } else {
        // The weights first: a .ir whose weights failed to write would name
        // parameters nothing holds.
        const char *hdr = "# Imported from an ONNX model by 'itrc import' (docs/onnx.md).\n";
        const void *parts[2] = { hdr, text };
        size_t lens[2] = { strlen(hdr), strlen(text) };
        if ((weights && !itr_onnx_write_safetensors(weights, &w, &d)) || !itr_file_write_atomic(out, parts, lens, 2, &d))
            rc = ITR_EXIT_USER;
        else
            printf("wrote %s: %d params%s%s\n", out, p->n_params, weights ? ", weights in " : "", weights ? weights : "");
    }
    itr_diags_print(&d, stderr);
    free(text);
    itr_program_free(p);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    return rc;
}
