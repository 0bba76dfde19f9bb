// Fuzzes the checkpoint converter's input checks (runtime/ckpt_convert.c,
// itr-convert): the name map and the checkpoint's tensors, against a small
// SCAN (i2t) model, whose checkpoint has a weight_norm pair and a
// bidirectional GRU. The input is the map's text, a NUL byte, then the
// checkpoint as the reader script hands it over (safetensors); without a
// NUL it is all map and the checkpoint is empty. (The pickle reader itself,
// tools/itr_convert_read.py, is Python and not fuzzed here.)
//
// On success every weight parameter is in the result with the parameter's
// dtype and rank, and nothing else is.
#include "fuzz.h"
#include "ir/text.h"
#include "runtime/ckpt_convert.h"
#include "runtime/safetensors.h"

static struct itr_program *model(void) {
    static struct itr_program *p;
    if (p) return p;
    static const char *const defs[] = { "D=8", "W=6", "img_dim=10" };
    struct itr_parse_options o = { .overrides = defs, .n_overrides = 3 };
    struct itr_diags d;
    itr_diags_init(&d);
    p = itr_parse_file(ITR_SOURCE_DIR "/models/scan_i2t.ir", &o, &d);
    if (!p) {
        itr_diags_print(&d, stderr);
        abort();
    }
    itr_diags_free(&d);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const struct itr_program *p = model();
    const uint8_t *nul = memchr(data, 0, size);
    size_t map_len = nul ? (size_t)(nul - data) : size;
    struct itr_diags d;
    itr_diags_init(&d);
    struct itr_ckpt_map m;
    itr_ckpt_map_init(&m);
    bool ok = itr_ckpt_map_parse("fuzz.ckpt-map", (const char *)data, map_len, &m, &d);
    fuzz_check_outcome(ok, &d);
    if (!ok) FUZZ_CHECK(m.n == 0);
    struct itr_tensor_set ck;
    itr_tensor_set_init(&ck);
    if (ok && nul) {
        ok = itr_safetensors_parse(nul + 1, size - map_len - 1, "fuzz checkpoint", &ck, &d);
        fuzz_check_outcome(ok, &d);
    }
    if (ok) {
        struct itr_tensor_set out;
        itr_tensor_set_init(&out);
        struct itr_ckpt_report rep;
        ok = itr_ckpt_convert(p, &m, &ck, &out, &rep, &d);
        fuzz_check_outcome(ok, &d);
        if (ok) {
            int n_weights = 0;
            for (int j = 0; j < p->n_params; j++) {
                if (!itr_ckpt_is_weight(p, j)) continue;
                n_weights++;
                const struct itr_tensor *t = itr_tensor_set_get(&out, p->params[j].name);
                FUZZ_CHECK(t && t->dtype == p->params[j].type.dtype && t->rank == p->params[j].type.rank);
            }
            FUZZ_CHECK(out.n == n_weights);
        } else {
            FUZZ_CHECK(out.n == 0);
        }
        itr_ckpt_report_free(&rep);
        itr_tensor_set_free(&out);
    }
    itr_tensor_set_free(&ck);
    itr_ckpt_map_free(&m);
    itr_diags_free(&d);
    return 0;
}
