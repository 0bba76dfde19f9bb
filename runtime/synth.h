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
    int regions;                      // R (default 12; real BUTD features: 36)
    int dim;                          // D (default 256; real BUTD features: 2048)
    uint64_t seed;
    int n_objects, n_attributes;      // concept vocabulary sizes
    double noise;                     // feature noise std relative to prototypes
    int token_dim;                    // F of the per-token text features (0 = none, the default)
};

void itr_synth_defaults(struct itr_synth_options *o);   // the small default set `make demo` uses
// Writes OUT_DIR/{train,dev,test}_{ims.npy,caps.txt}, OUT_DIR/vocab.json and
// OUT_DIR/README.txt (the options, for reproducibility). Atomic per file.
// With token_dim F > 0 also {split}_caps_feats.npy f32 [n_captions, L, F] and
// {split}_caps_lens.npy i32 [n_captions]: stand-ins for a frozen text
// encoder's per-token outputs over the loader's encoding of each caption
// (<start> words <end>; L = the split's longest), docs/data.md.
bool itr_synth_generate(const char *out_dir, const struct itr_synth_options *o, struct itr_diags *d);

// ---- introspection, for oracles and tests (additive to the generator).

#define ITR_SYNTH_MAX_PER_IMAGE 4   // objects in one image (2..4)

enum itr_synth_kind { ITR_SYNTH_OBJECT, ITR_SYNTH_ATTRIBUTE, ITR_SYNTH_RELATION };

// Size of the fixed word table of a kind (the largest n_objects / n_attributes accepted).
int itr_synth_table_size(enum itr_synth_kind kind);
// Surface form `synonym` (0 = the canonical word) of concept `id`; NULL past the last one.
const char *itr_synth_word(enum itr_synth_kind kind, int id, int synonym);
// The ground truth of image `image` of split ("train", "dev", "test"): fills
// objects[k] and attributes[k] (object i carries attribute i) and returns k,
// or -1 for a bad split name, image index or option set.
int itr_synth_image_concepts(const struct itr_synth_options *o, const char *split, int64_t image, int *objects,
                             int *attributes);

// The generator's prototypes and projection for one option set (pure
// functions of the seed).
struct itr_synth_model;
struct itr_synth_model *itr_synth_model_new(const struct itr_synth_options *o, struct itr_diags *d);
void itr_synth_model_free(struct itr_synth_model *m);
// The noise-free region feature (D floats) of `object` carrying `attribute`;
// object -1 with attribute -1 is the background prototype, either alone -1
// gives the concept without the other.
void itr_synth_model_feature(const struct itr_synth_model *m, int object, int attribute, float *out);

#endif
