// `itrc export FILE.plan|FILE.ir --entry NAME -o FILE.onnx [--weights W]`:
// the command's body, kept with the exporter so that compiler/itrc.c only
// registers it and supplies the loader (reading a plan, or compiling a .ir,
// is the compiler's business; this library stands on ir/ only).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontends/onnx/onnx_export.h"
#include "ir/cli.h"
#include "ir/safetensors.h"

int itr_onnx_cmd_export(const struct itr_cli *cli, int argc, char **argv, itr_onnx_export_loader load) {
    const char *file = NULL, *out = NULL, *weights = NULL, *entry = NULL;
    struct itr_cli_list defines = { 0 }, includes = { 0 };
    int rc = ITR_EXIT_OK;
    for (int i = 1; i < argc && rc == ITR_EXIT_OK; i++) {
        const char *v;
        int r;
        if ((r = itr_cli_opt_value(cli, "export", argc, argv, &i, "-o", "--output", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else out = v;
        } else if ((r = itr_cli_opt_value(cli, "export", argc, argv, &i, "-w", "--weights", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else weights = v;
        } else if ((r = itr_cli_opt_value(cli, "export", argc, argv, &i, "-e", "--entry", &v)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER; else entry = v;
        } else if ((r = itr_cli_opt_list(cli, "export", argc, argv, &i, "-I", "--include", &includes, NULL)) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if ((r = itr_cli_opt_list(cli, "export", argc, argv, &i, "-D", "--define", &defines,
                                         "-D expects NAME=VALUE, got '%s'")) != 0) {
            if (r < 0) rc = ITR_EXIT_USER;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            rc = itr_cli_usage_error(cli, "export", "unknown option '%s'", argv[i]);
        } else if (file) {
            rc = itr_cli_usage_error(cli, "export", "unexpected extra argument '%s'", argv[i]);
        } else {
            file = argv[i];
        }
    }
    if (rc == ITR_EXIT_OK && !file) rc = itr_cli_usage_error(cli, "export", "%s", "missing FILE.plan");
    if (rc == ITR_EXIT_OK && !entry)
        rc = itr_cli_usage_error(cli, "export", "%s", "missing --entry NAME (encode_image, encode_text, score, ...)");
    if (rc == ITR_EXIT_OK && !out) rc = itr_cli_usage_error(cli, "export", "%s", "missing -o FILE.onnx");
    if (rc != ITR_EXIT_OK) {
        free(defines.v);
        free(includes.v);
        return rc;
    }

    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_tensor_set w;
    itr_tensor_set_init(&w);
    struct itr_program *p = load(file, defines.v, defines.n, includes.v, includes.n, &d);
    bool ok = p != NULL;
    if (ok && weights) ok = itr_safetensors_read(weights, &w, &d);
    if (ok) {
        struct itr_onnx_export_options o = { .entry = entry, .weights = weights ? &w : NULL };
        ok = itr_onnx_export_file(p, &o, out, &d);
    }
    if (ok) printf("wrote %s: entry %s of %s (ONNX opset %d)\n", out, entry, p->name ? p->name : "the model",
                   ITR_ONNX_EXPORT_OPSET);
    itr_diags_print(&d, stderr);
    itr_program_free(p);
    itr_tensor_set_free(&w);
    itr_diags_free(&d);
    free(defines.v);
    free(includes.v);
    return ok ? ITR_EXIT_OK : ITR_EXIT_USER;
}
