// A synthetic data set in the precomputed-feature layout (docs/data.md),
// deterministic from its seed, built so that retrieval is learnable and
// rewards fine-grained word-region alignment: images are compositions of
// objects with attributes (region features = projected concept and attribute
// prototypes + noise, plus background regions), captions are varied
// templated sentences naming some of those objects, attributes and relations
// with synonyms, and hard negatives share objects but not attributes.
#ifndef ITR_SYNTH_H
#define ITR_SYNTH_H

#include "ir/ir.h"

struct itr_synth_options {
    int64_t n_train, n_dev, n_test;   // images per split (captions: 5 per image)
    int regions;                      // R (default 36)
    int dim;                          // D (default 2048)
    uint64_t seed;
    int n_objects, n_attributes;      // concept vocabulary sizes
    double noise;                     // feature noise std relative to prototypes
};

void itr_synth_defaults(struct itr_synth_options *o);   // the small default set `make demo` uses
// Writes OUT_DIR/{train,dev,test}_{ims.npy,caps.txt}, OUT_DIR/vocab.json and
// OUT_DIR/README.txt (the options, for reproducibility). Atomic per file.
bool itr_synth_generate(const char *out_dir, const struct itr_synth_options *o, struct itr_diags *d);

#endif
