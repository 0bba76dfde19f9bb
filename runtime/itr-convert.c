// itr-convert: an original repository's PyTorch checkpoint -> the weights of
// an itrc model (docs/user-guide.md "Bringing original checkpoints").
//
//   itr-convert MODEL CHECKPOINT -o W.safetensors [--map FILE] [-D NAME=VALUE]...
//
// MODEL is a plan (itrc compile's output), a model file (models/NAME.ir,
// elaborated here with the -D options; hence the link to the compiler
// library, as itr-run has) or a zoo model's name. The checkpoint's pickle is
// read by tools/itr_convert_read.py (PyTorch's weights_only loader where
// torch imports, else a restricted stdlib unpickler); nothing here parses or
// runs a pickle. A CHECKPOINT ending in .safetensors is taken as already
// extracted (the reader's output) and read directly. The name map and the
// checks are runtime/ckpt_convert.h.
//
// Exit codes: 0 ok, 1 user error, 2 internal error.
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/pipeline.h"
#include "ir/diag.h"
#include "ir/plan.h"
#include "runtime/ckpt_convert.h"
#include "runtime/safetensors.h"

extern char **environ;

#define PROG "itr-convert"
#ifndef ITR_TOOLS_DIR
#define ITR_TOOLS_DIR "tools"
#endif

static const char *usage_text =
    "usage: itr-convert MODEL CHECKPOINT -o W.safetensors [options]\n"
    "\n"
    "Converts an original repository's PyTorch checkpoint (.pth, .pth.tar) to the\n"
    "weights of an itrc model, by the model's checkpoint map (models/NAME.ckpt-map).\n"
    "\n"
    "  MODEL                  a plan (FILE.plan), a model file (FILE.ir) or a zoo model's\n"
    "                         name (vsepp, scan_t2i, scan_i2t, sgr, saf, vse_inf, tern, bfan)\n"
    "  CHECKPOINT             torch.save output (zip or legacy format), or the reader's\n"
    "                         .safetensors extraction of one\n"
    "  -o, --output FILE      the weights to write (safetensors, written atomically)\n"
    "  --map FILE             the checkpoint map (default: next to the model file, else\n"
    "                         the zoo's models/NAME.ckpt-map)\n"
    "  -D NAME=VALUE          a config parameter or dim default of a .ir MODEL (as itrc)\n"
    "  -I DIR                 an import directory of a .ir MODEL (as itrc)\n"
    "  --reader auto|torch|pickle\n"
    "                         torch: torch.load(weights_only=True); pickle: a restricted\n"
    "                         stdlib unpickler (no torch needed); auto (default): torch\n"
    "                         where it imports\n"
    "  -v, --verbose          print every parameter's source\n"
    "\n"
    "Every parameter must come from a checkpoint tensor of its exact shape; weight_norm\n"
    "pairs (NAME_g, NAME_v) are folded. Checkpoint tensors no parameter uses are listed.\n"
    "Environment: ITR_PYTHON (default python3) runs the reader.\n"
    "\n"
    "exit status: 0 ok, 1 user error (bad input or usage), 2 internal error\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see '" PROG " --help')\n");
    return ITR_EXIT_USER;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Runs the reader on ckpt, writing its tensors to a temporary safetensors
// file, and reads that back into *out.
static bool read_checkpoint(const char *ckpt, const char *reader, struct itr_tensor_set *out, struct itr_diags *d) {
    if (ends_with(ckpt, ".safetensors")) return itr_safetensors_read(ckpt, out, d);
    itr_tensor_set_init(out);
    if (!file_exists(ckpt)) {
        itr_diag_error(d, ITR_NOLOC, "%s: no such file", ckpt);
        return false;
    }
    const char *python = getenv("ITR_PYTHON");
    if (!python || !*python) python = "python3";
    const char *script = getenv("ITR_CONVERT_READER");
    if (!script || !*script) script = ITR_TOOLS_DIR "/itr_convert_read.py";
    const char *tmpdir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/itr-convert.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        itr_diag_error(d, ITR_NOLOC, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        return false;
    }
    close(fd);
    char *argv[] = { (char *)python, (char *)script, (char *)"--reader", (char *)reader, (char *)ckpt, tmp, NULL };
    pid_t pid;
    int rc = posix_spawnp(&pid, python, NULL, NULL, argv, environ), status = 0;
    bool ok = false;
    if (rc != 0) {
        itr_diag_error(d, ITR_NOLOC, "cannot run '%s' to read the checkpoint %s: %s (set ITR_PYTHON to a Python 3, "
                       "or pass the reader's .safetensors extraction)", python, ckpt, strerror(rc));
    } else if (waitpid(pid, &status, 0) < 0) {
        itr_diag_error(d, ITR_NOLOC, "waiting for the checkpoint reader: %s", strerror(errno));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        itr_diag_error(d, ITR_NOLOC, "cannot run '%s %s' to read the checkpoint %s (set ITR_PYTHON to a Python 3)",
                       python, script, ckpt);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        // the reader printed what is wrong
        itr_diag_error(d, ITR_NOLOC, "%s: the checkpoint could not be read (reader %s, exit status %d)", ckpt,
                       script, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    } else {
        ok = itr_safetensors_read(tmp, out, d);
    }
    unlink(tmp);
    return ok;
}

// Past a few names, groups the ignored tensors by their first three name
// components, so that a BERT tower of a hundred tensors is one line.
static void print_ignored(const struct itr_ckpt_report *r) {
    if (r->n_ignored == 0) return;
    printf("  ignored %d checkpoint tensor%s no parameter uses:\n", r->n_ignored, r->n_ignored == 1 ? "" : "s");
    for (int i = 0; i < r->n_ignored;) {
        const char *s = r->ignored[i];
        size_t k = 0;
        for (int dots = 0; s[k] && s[k] != ' '; k++)
            if (s[k] == '.' && ++dots == 3) break;
        int j = i + 1;
        while (s[k] == '.' && j < r->n_ignored && !strncmp(r->ignored[j], s, k + 1)) j++;
        if (r->n_ignored > 8 && j - i > 3) printf("    %.*s* (%d tensors)\n", (int)k + 1, s, j - i);
        else
            for (int q = i; q < j; q++) printf("    %s\n", r->ignored[q]);
        i = j;
    }
}

int main(int argc, char **argv) {
    const char *pos[2] = { NULL, NULL }, *out = NULL, *map_path = NULL, *reader = "auto";
    const char **defines = calloc((size_t)argc + 1, sizeof *defines), **incs = calloc((size_t)argc + 1, sizeof *incs);
    int n_pos = 0, n_def = 0, n_inc = 0;
    bool verbose = false;
    if (!defines || !incs) abort();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf(PROG " 0.1.0\n");
            return 0;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) { verbose = true; continue; }
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) slot = &out;
        else if (!strcmp(a, "--map")) slot = &map_path;
        else if (!strcmp(a, "--reader")) slot = &reader;
        else if (!strcmp(a, "-D")) slot = &defines[n_def++];
        else if (!strcmp(a, "-I")) slot = &incs[n_inc++];
        else if (!strncmp(a, "-D", 2)) { defines[n_def++] = a + 2; continue; }
        else if (!strncmp(a, "-I", 2)) { incs[n_inc++] = a + 2; continue; }
        else if (!strncmp(a, "--output=", 9)) { out = a + 9; continue; }
        else if (!strncmp(a, "--map=", 6)) { map_path = a + 6; continue; }
        else if (!strncmp(a, "--reader=", 9)) { reader = a + 9; continue; }
        else if (a[0] == '-' && a[1]) return usage_error("unknown option '%s'", a);
        else {
            if (n_pos == 2) return usage_error("unexpected argument '%s'", a);
            pos[n_pos++] = a;
            continue;
        }
        if (i + 1 >= argc) return usage_error("option '%s' needs a value", a);
        *slot = argv[++i];
    }
    if (n_pos < 2) return usage_error("%s", n_pos == 0 ? "expected MODEL and CHECKPOINT" : "expected CHECKPOINT");
    if (!out) return usage_error("%s", "expected -o W.safetensors");
    if (strcmp(reader, "auto") && strcmp(reader, "torch") && strcmp(reader, "pickle"))
        return usage_error("--reader takes auto, torch or pickle, not '%s'", reader);

    struct itr_diags d;
    itr_diags_init(&d);
    int rc = ITR_EXIT_USER;
    struct itr_program *p = NULL;
    char model_file[4096] = "";
    const char *model = pos[0];
    if (ends_with(model, ".plan")) {
        struct itr_plan_info info;
        p = itr_plan_read(model, &info, &d);
        if (p && n_def) itr_diag_warning(&d, ITR_NOLOC, "-D options are ignored for a plan (it is compiled already)");
    } else {
        if (ends_with(model, ".ir") || strchr(model, '/'))
            snprintf(model_file, sizeof model_file, "%s", model);
        else
            snprintf(model_file, sizeof model_file, "%s/%s.ir", ITR_MODELS_DIR, model);
        struct itr_compile_options opt;
        itr_compile_options_init(&opt);
        opt.defines = defines, opt.n_defines = n_def;
        opt.include_dirs = incs, opt.n_include_dirs = n_inc;
        p = itr_elaborate_file(model_file, &opt, &d);
    }
    struct itr_ckpt_map map;
    struct itr_tensor_set ck, weights;
    struct itr_ckpt_report rep;
    itr_ckpt_map_init(&map);
    itr_tensor_set_init(&ck);
    itr_tensor_set_init(&weights);
    memset(&rep, 0, sizeof rep);
    if (!p) goto done;

    // The map: --map, else beside the model file, else the zoo's.
    char guess1[4096] = "", guess2[4096] = "";
    if (!map_path) {
        if (model_file[0] && ends_with(model_file, ".ir")) {
            snprintf(guess1, sizeof guess1, "%.*s.ckpt-map", (int)(strlen(model_file) - 3), model_file);
            if (file_exists(guess1)) map_path = guess1;
        }
        if (!map_path && p->name) {
            snprintf(guess2, sizeof guess2, "%s/%s.ckpt-map", ITR_MODELS_DIR, p->name);
            if (file_exists(guess2)) map_path = guess2;
        }
        if (!map_path) {
            itr_diag_error(&d, ITR_NOLOC, "model '%s' has no checkpoint map (looked for %s%s%s); write one "
                           "(docs/models.md, \"Checkpoint maps\") and pass it with --map",
                           p->name ? p->name : model, guess1, guess1[0] ? " and " : "", guess2);
            goto done;
        }
    }
    if (!itr_ckpt_map_read(map_path, &map, &d)) goto done;
    if (!read_checkpoint(pos[1], reader, &ck, &d)) goto done;
    if (!itr_ckpt_convert(p, &map, &ck, &weights, &rep, &d)) {
        itr_diag_note(&d, ITR_NOLOC, "nothing was written to %s", out);
        goto done;
    }
    itr_tensor_set_meta(&weights, "itr_convert.checkpoint", pos[1]);
    itr_tensor_set_meta(&weights, "itr_convert.map", map_path);
    if (!itr_safetensors_write(out, &weights, &d)) goto done;

    const char *root = itr_tensor_set_get_meta(&ck, "itr_convert.root");
    const char *not_read = itr_tensor_set_get_meta(&ck, "itr_convert.not_read");
    const char *rdr = itr_tensor_set_get_meta(&ck, "itr_convert.reader");
    const char *strip = itr_tensor_set_get_meta(&ck, "itr_convert.module_prefix_removed");
    printf(PROG ": %s: %d tensors", pos[1], ck.n);
    if (root) printf(" in %s", root);
    if (rdr) printf(" (reader: %s)", rdr);
    printf("\n");
    if (not_read) printf("  not weights, not read: %s\n", not_read);
    if (strip) printf("  removed DataParallel's 'module.' from %s names\n", strip);
    printf("  map: %s\n", map_path);
    for (int i = 0; i < rep.n_lines; i++)
        if (verbose || strstr(rep.lines[i], "(weight_norm") || strstr(rep.lines[i], "(transposed)") ||
            strstr(rep.lines[i], "rounded to"))
            printf("  %s\n", rep.lines[i]);
    print_ignored(&rep);
    printf("wrote %s: %d parameters\n", out, weights.n);
    rc = ITR_EXIT_OK;

done:
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    itr_ckpt_report_free(&rep);
    itr_tensor_set_free(&ck);
    itr_tensor_set_free(&weights);
    itr_ckpt_map_free(&map);
    if (p) itr_program_free(p);
    free(defines);
    free(incs);
    return rc;
}
