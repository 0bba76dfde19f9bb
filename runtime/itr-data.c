// itr-data: data-set tools (docs/cli.md, docs/data.md). Thin by design:
// argument parsing here, the work in runtime/data.c and runtime/synth.c.
//
//   itr-data vocab build CAPTIONS.txt... -o vocab.json [--min-count N]
//   itr-data verify DIR [--vocab FILE]
//   itr-data synth OUT_DIR [--images N] ... [--token-feats F]
//
// Exit codes: 0 ok, 1 user error, 2 internal error.
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ir/cli.h"
#include "runtime/data.h"
#include "runtime/synth.h"

#define PROG "itr-data"

static const struct itr_cli cli;

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    return itr_cli_usage_error(&cli, cmd, fmt, arg);
}

static int opt_value(const char *cmd, int argc, char **argv, int *i, const char *shrt, const char *lng,
                     const char **val) {
    return itr_cli_opt_value(&cli, cmd, argc, argv, i, shrt, lng, val);
}

// A whole non-negative integer in [lo, hi]; false after a usage message.
static bool parse_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s %s: option '%s' needs an integer from %" PRId64 " to %" PRId64 ", not '%s' (see '%s %s "
                "--help')\n", PROG, cmd, opt, lo, hi, s, PROG, cmd);
        return false;
    }
    *out = x;
    return true;
}

static int finish(struct itr_diags *d, int rc) {
    itr_diags_print(d, stderr);
    itr_diags_free(d);
    return rc;
}

// ------------------------------------------------------------ vocab build

static int cmd_vocab(const char *operand, int argc, char **argv) {
    (void)operand;
    const char *cmd = "vocab build";
    if (argc < 2 || strcmp(argv[1], "build") != 0)
        return usage_error("vocab", "expected 'build' after 'vocab'%s", argc < 2 ? "" : ", not another word");
    const char *out = NULL, *val;
    int64_t min_count = 4;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return ITR_EXIT_INTERNAL;
    int n_files = 0, r;
    for (int i = 2; i < argc; i++) {
        if ((r = opt_value(cmd, argc, argv, &i, "-o", "--output", &val))) {
            if (r < 0) { free(files); return ITR_EXIT_USER; }
            out = val;
        } else if ((r = opt_value(cmd, argc, argv, &i, NULL, "--min-count", &val))) {
            if (r < 0 || !parse_int(cmd, "--min-count", val, 1, INT32_MAX, &min_count)) {
                free(files);
                return ITR_EXIT_USER;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(files);
            return usage_error(cmd, "unknown option '%s'; options: -o, --min-count", argv[i]);
        } else {
            files[n_files++] = argv[i];
        }
    }
    if (!n_files) { free(files); return usage_error(cmd, "no caption files given%s", ""); }
    if (!out) { free(files); return usage_error(cmd, "missing '-o FILE' (where to write the vocabulary)%s", ""); }
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_vocab v;
    bool ok = itr_vocab_build(files, n_files, (int)min_count, &v, &d);
    free(files);
    if (!ok) return finish(&d, ITR_EXIT_USER);
    if (!itr_vocab_write(out, &v, &d)) {
        itr_vocab_free(&v);
        return finish(&d, ITR_EXIT_USER);
    }
    printf("wrote %s: %d words (4 specials + %d occurring at least %" PRId64 " times), hash %016" PRIx64 "\n", out,
           v.n, v.n - 4, min_count, itr_vocab_hash(&v));
    itr_vocab_free(&v);
    return finish(&d, ITR_EXIT_OK);
}

// ------------------------------------------------------------ verify

static int cmd_verify(const char *operand, int argc, char **argv) {
    (void)operand;
    const char *dir = NULL, *vocab = NULL, *val;
    int r;
    for (int i = 1; i < argc; i++) {
        if ((r = opt_value("verify", argc, argv, &i, NULL, "--vocab", &val))) {
            if (r < 0) return ITR_EXIT_USER;
            vocab = val;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("verify", "unknown option '%s'; options: --vocab", argv[i]);
        } else if (dir) {
            return usage_error("verify", "one directory only; '%s' is a second", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (!dir) return usage_error("verify", "missing the data directory%s", "");
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_split_summary s[ITR_DATA_N_SPLITS];
    bool ok = itr_data_verify_summary(dir, vocab, s, &d);
    for (int k = 0; k < ITR_DATA_N_SPLITS; k++) {
        if (!s[k].present) continue;
        printf("%-8s %7" PRId64 " images %8" PRId64 " captions  regions %" PRId64 "x%" PRId64 "  im_div %d  "
               "max caption %d tokens  unknown words %" PRId64, s[k].name, s[k].n_images, s[k].n_captions,
               s[k].n_regions, s[k].feat_dim, s[k].im_div, s[k].max_len, s[k].n_unknown);
        if (s[k].token_dim) printf("  token features %" PRId64, s[k].token_dim);
        printf("\n");
    }
    if (!ok) {
        fprintf(stderr, "%s: %d problem%s:\n", dir, d.n_errors, d.n_errors == 1 ? "" : "s");
        return finish(&d, ITR_EXIT_USER);
    }
    printf("%s: ok\n", dir);
    return finish(&d, ITR_EXIT_OK);
}

// ------------------------------------------------------------ synth

static int cmd_synth(const char *operand, int argc, char **argv) {
    (void)operand;
    struct itr_synth_options o;
    itr_synth_defaults(&o);
    const char *dir = NULL, *val;
    int r;
    static const struct { const char *name; int64_t lo, hi; } int_opts[] = {
        { "--images", 1, 100000000 }, { "--dev", 1, 100000000 }, { "--test", 1, 100000000 },
        { "--regions", 1, 1000000 },  { "--dim", 1, 1000000 },    { "--seed", 0, INT64_MAX },
        { "--objects", 1, 1000000 },  { "--attributes", 1, 1000000 }, { "--token-feats", 0, 4096 },
    };
    for (int i = 1; i < argc; i++) {
        bool matched = false;
        for (size_t k = 0; k < sizeof int_opts / sizeof *int_opts && !matched; k++) {
            if (!(r = opt_value("synth", argc, argv, &i, NULL, int_opts[k].name, &val))) continue;
            matched = true;
            int64_t x;
            if (r < 0 || !parse_int("synth", int_opts[k].name, val, int_opts[k].lo, int_opts[k].hi, &x))
                return ITR_EXIT_USER;
            switch (k) {
            case 0: o.n_train = x; break;
            case 1: o.n_dev = x; break;
            case 2: o.n_test = x; break;
            case 3: o.regions = (int)x; break;
            case 4: o.dim = (int)x; break;
            case 5: o.seed = (uint64_t)x; break;
            case 6: o.n_objects = (int)x; break;
            case 7: o.n_attributes = (int)x; break;
            default: o.token_dim = (int)x; break;
            }
        }
        if (matched) continue;
        if ((r = opt_value("synth", argc, argv, &i, NULL, "--noise", &val))) {
            if (r < 0) return ITR_EXIT_USER;
            char *end;
            double x = strtod(val, &end);
            if (end == val || *end || !(x >= 0 && x <= 100))
                return usage_error("synth", "option '--noise' needs a number from 0 to 100, not '%s'", val);
            o.noise = x;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("synth", "unknown option '%s'; options: --images, --dev, --test, --regions, --dim, "
                               "--seed, --objects, --attributes, --noise, --token-feats", argv[i]);
        } else if (dir) {
            return usage_error("synth", "one output directory only; '%s' is a second", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (!dir) return usage_error("synth", "missing the output directory%s", "");
    struct itr_diags d;
    itr_diags_init(&d);
    if (!itr_synth_generate(dir, &o, &d)) return finish(&d, ITR_EXIT_USER);
    printf("wrote %s: %" PRId64 "/%" PRId64 "/%" PRId64 " train/dev/test images, %dx%d regions", dir, o.n_train,
           o.n_dev, o.n_test, o.regions, o.dim);
    if (o.token_dim) printf(", token features %d", o.token_dim);
    printf(" (seed %" PRIu64 ")\n", o.seed);
    return finish(&d, ITR_EXIT_OK);
}

// ------------------------------------------------------------ table

static const struct itr_cli_command commands[] = {
    { "vocab", "build CAPTIONS.txt... -o FILE [--min-count N]", "build a vocabulary JSON from caption files",
      "Tokenises every line of the caption files (docs/data.md) and writes the vocabulary in the\n"
      "SCAN layout (word2idx, idx2word, idx): <pad> <start> <end> <unk>, then every word seen at\n"
      "least N times, most frequent first. Build it from train (and dev) captions only.\n\n"
      "options:\n"
      "  -o, --output FILE   where to write the vocabulary (atomically)\n"
      "  --min-count N       keep words seen at least N times (default 4, as SCAN)\n",
      cmd_vocab },
    { "verify", "DIR [--vocab FILE]", "check a data directory and summarise its splits",
      "Checks that DIR has train, dev and test (testall optional) in the precomputed layout\n"
      "({split}_ims.npy f32 [N, R, D], {split}_caps.txt with 5 captions per image), that the\n"
      "counts and feature sizes agree, and that the vocabulary reads. Prints one line per split;\n"
      "on problems prints every one of them and exits with 1.\n\n"
      "options:\n"
      "  --vocab FILE        the vocabulary JSON (default DIR/vocab.json)\n",
      cmd_verify },
    { "synth", "OUT_DIR [OPTIONS]", "write a synthetic data set in the same layout",
      "Writes a deterministic synthetic data set (train, dev, test, vocab.json, README.txt) whose\n"
      "retrieval is learnable; the defaults are the small set 'make demo' uses.\n\n"
      "options:\n"
      "  --images N          train images (5 captions each)\n"
      "  --dev N, --test N   dev and test images\n"
      "  --regions R         regions per image\n"
      "  --dim D             region feature size\n"
      "  --seed S            seed (same seed, same bytes)\n"
      "  --objects N, --attributes N   concept vocabulary sizes\n"
      "  --noise X           feature noise relative to the prototypes\n"
      "  --token-feats F     also write per-token text features of size F (0 = none, the default):\n"
      "                      {split}_caps_feats.npy f32 [captions, L, F] + {split}_caps_lens.npy,\n"
      "                      a frozen text encoder's stand-in for TERN and VSE-inf (docs/data.md)\n",
      cmd_synth },
};

static const struct itr_cli cli = {
    .prog = PROG,
    .description = "Data-set tools for the precomputed-feature layout (docs/data.md).",
    .footer = "\n  " PROG " COMMAND --help   options of a command (also: " PROG " help COMMAND)\n"
              "  " PROG " --version        version\n",
    .name_width = 6,
    .help_lists_commands = true,
    .dash_is_option = true,
    .commands = commands,
    .n_commands = (int)(sizeof commands / sizeof *commands),
};

int main(int argc, char **argv) { return itr_cli_main(&cli, argc, argv); }
