// The synthetic data set (docs/data.md, "Synthetic data"). Every draw comes
// from Philox streams keyed by (seed, salt of a purpose name, index), so the
// files depend on the options only, never on the machine, the order in which
// splits are written, or how many values another split consumed.
#include "runtime/synth.h"

// A fused multiply-add rounds differently from a multiply and an add, and
// compilers fuse by default on some targets (GCC's gnu11 mode on aarch64):
// forbid it so the files really are the same on every machine.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/fileio.h"
#include "ir/rng.h"
#include "runtime/data.h"
#include "runtime/npy.h"

// ---------------------------------------------------------------- word tables

// Single-word surface forms only, none shared between two concepts, so a
// caption's concepts can be read back from its tokens unambiguously.
#define MAX_SYN 3
static const char *const OBJECTS[][MAX_SYN] = {
    { "dog", "puppy" },      { "cat", "kitten" },        { "car", "automobile" }, { "man", "guy" },
    { "woman", "lady" },     { "child", "kid" },         { "horse", "pony" },     { "bicycle", "bike" },
    { "bird", "sparrow" },   { "boat", "ship" },         { "ball" },              { "table", "desk" },
    { "chair", "seat" },     { "cup", "mug" },           { "hat", "cap" },        { "bag", "purse" },
    { "tree" },              { "flower", "blossom" },    { "house", "home" },     { "bus", "coach" },
    { "truck", "lorry" },    { "train", "locomotive" },  { "plane", "airplane" }, { "umbrella", "parasol" },
    { "bottle", "flask" },   { "book", "novel" },        { "phone", "telephone" }, { "laptop", "computer" },
    { "sofa", "couch" },     { "lamp", "lantern" },      { "clock" },             { "shirt", "blouse" },
    { "shoe", "sneaker" },   { "kite" },                 { "cake", "pastry" },    { "sheep", "lamb" },
    { "cow", "cattle" },     { "elephant" },             { "bench", "pew" },      { "fence", "railing" },
};
static const char *const ATTRIBUTES[][MAX_SYN] = {
    { "red", "scarlet" },  { "blue", "azure" },   { "green", "emerald" }, { "yellow", "golden" },
    { "white", "pale" },   { "black", "dark" },   { "small", "little" },  { "big", "large" },
    { "old", "ancient" },  { "wooden" },          { "striped" },          { "shiny", "glossy" },
    { "furry", "fluffy" }, { "tall" },
};
static const char *const RELATIONS[][MAX_SYN] = {
    { "next to", "beside" }, { "on" }, { "behind" }, { "holding" }, { "near" }, { "in front of" }, { "under" },
};
#define N_OBJECTS_TABLE ((int)(sizeof OBJECTS / sizeof OBJECTS[0]))
#define N_ATTRIBUTES_TABLE ((int)(sizeof ATTRIBUTES / sizeof ATTRIBUTES[0]))
#define N_RELATIONS ((int)(sizeof RELATIONS / sizeof RELATIONS[0]))

// Ungrounded scene words, so captions carry words no region explains.
static const char *const PLACES[] = { "in the picture", "in a room", "outside", "on the street", "in a park" };
#define N_PLACES ((int)(sizeof PLACES / sizeof PLACES[0]))

int itr_synth_table_size(enum itr_synth_kind kind) {
    switch (kind) {
    case ITR_SYNTH_OBJECT: return N_OBJECTS_TABLE;
    case ITR_SYNTH_ATTRIBUTE: return N_ATTRIBUTES_TABLE;
    case ITR_SYNTH_RELATION: return N_RELATIONS;
    }
    return 0;
}

const char *itr_synth_word(enum itr_synth_kind kind, int id, int synonym) {
    if (id < 0 || id >= itr_synth_table_size(kind) || synonym < 0 || synonym >= MAX_SYN) return NULL;
    switch (kind) {
    case ITR_SYNTH_OBJECT: return OBJECTS[id][synonym];
    case ITR_SYNTH_ATTRIBUTE: return ATTRIBUTES[id][synonym];
    case ITR_SYNTH_RELATION: return RELATIONS[id][synonym];
    }
    return NULL;
}

static int n_synonyms(enum itr_synth_kind kind, int id) {
    int n = 0;
    while (n < MAX_SYN && itr_synth_word(kind, id, n)) n++;
    return n;
}

// ---------------------------------------------------------------- options

// Generative constants (docs/data.md): latent size cap, attribute weight,
// background weight, output scale, images per hard-negative group.
#define LATENT_MAX 64
#define ATTR_WEIGHT 0.8
#define BG_WEIGHT 0.6
#define OUT_SCALE 0.5
#define GROUP 4
// Token features (docs/data.md): amplitude of the sinusoidal position term
// added to each word's N(0, 1) code, and the largest feature size accepted.
#define TOKEN_POS_SCALE 0.1
#define TOKEN_DIM_MAX 4096

void itr_synth_defaults(struct itr_synth_options *o) {
    // Scaled down from the real 36 x 2048 layout so that `make demo` trains
    // in minutes on two CPU cores: train_ims.npy is 2000 x 12 x 256 f32 (24.6 MB).
    o->n_train = 2000;
    o->n_dev = 200;
    o->n_test = 200;
    o->regions = 12;
    o->dim = 256;
    o->seed = 1;
    o->n_objects = N_OBJECTS_TABLE;
    o->n_attributes = 12;
    o->noise = 0.5;
    o->token_dim = 0;
}

static bool check_options(const struct itr_synth_options *o, struct itr_diags *d) {
    bool ok = true;
#define BAD(...) do { if (d) itr_diag_error(d, ITR_NOLOC, __VA_ARGS__); ok = false; } while (0)
    if (o->n_train < 1 || o->n_dev < 1 || o->n_test < 1)
        BAD("synthetic data: every split needs at least one image (train %" PRId64 ", dev %" PRId64 ", test %" PRId64 ")",
            o->n_train, o->n_dev, o->n_test);
    if (o->n_train > (INT64_C(1) << 31) || o->n_dev > (INT64_C(1) << 31) || o->n_test > (INT64_C(1) << 31))
        BAD("synthetic data: at most 2^31 images per split");
    if (o->regions < 4 || o->regions > 4096) BAD("synthetic data: regions must be in [4, 4096], not %d", o->regions);
    if (o->dim < 2 || o->dim > 65536) BAD("synthetic data: dim must be in [2, 65536], not %d", o->dim);
    if (o->n_objects < 2 || o->n_objects > N_OBJECTS_TABLE)
        BAD("synthetic data: n_objects must be in [2, %d], not %d", N_OBJECTS_TABLE, o->n_objects);
    if (o->n_attributes < 2 || o->n_attributes > N_ATTRIBUTES_TABLE)
        BAD("synthetic data: n_attributes must be in [2, %d], not %d", N_ATTRIBUTES_TABLE, o->n_attributes);
    if (!(o->noise >= 0 && o->noise <= 100)) BAD("synthetic data: noise must be in [0, 100], not %g", o->noise);
    if (o->token_dim < 0 || o->token_dim > TOKEN_DIM_MAX)
        BAD("synthetic data: token_dim must be in [0, %d] (0 = no token features), not %d", TOKEN_DIM_MAX, o->token_dim);
#undef BAD
    return ok;
}

// ---------------------------------------------------------------- random streams

struct stream { uint64_t seed, salt, next; };

// Each image owns 2^24 consecutive indices of a purpose's stream, far more
// than it draws, so images never share a value.
static struct stream stream_at(uint64_t seed, const char *split, const char *purpose, uint64_t item) {
    char name[96];
    snprintf(name, sizeof name, "itr.synth.%s.%s", split, purpose);
    return (struct stream){ seed, itr_rng_salt_of_name(name), item << 24 };
}

static double s_uniform(struct stream *s) { return itr_rng_uniform_f64(s->seed, s->salt, s->next++); }
static double s_normal(struct stream *s) { return itr_rng_normal_f64(s->seed, s->salt, s->next++); }
static int s_int(struct stream *s, int n) {   // uniform in [0, n)
    int k = (int)(s_uniform(s) * n);
    return k < n ? k : n - 1;
}

// ---------------------------------------------------------------- composition

static int max_per_image(const struct itr_synth_options *o) {
    int k = ITR_SYNTH_MAX_PER_IMAGE;
    if (k > o->regions / 2) k = o->regions / 2;
    if (k > o->n_objects) k = o->n_objects;
    if (k > o->n_attributes) k = o->n_attributes;
    return k;
}

// Distinct draws from [0, n): partial Fisher-Yates.
static void draw_distinct(struct stream *s, int n, int k, int *out) {
    int pool[64];
    for (int i = 0; i < n; i++) pool[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + s_int(s, n - i);
        int t = pool[i]; pool[i] = pool[j]; pool[j] = t;
        out[i] = pool[i];
    }
}

static bool same_binding(const int *a, const int *b, int k) {
    for (int i = 0; i < k; i++)
        if (a[i] != b[i]) return false;
    return true;
}

// Groups of GROUP images share an object set. Member 1 is member 0 with its
// attributes rotated over the objects (the same bag of concepts, a different
// binding); member 2 draws fresh attributes, member 3 rotates member 2's.
static int compose(const struct itr_synth_options *o, const char *split, int64_t image, int *objects, int *attributes) {
    int64_t group = image / GROUP;
    int member = (int)(image % GROUP);
    struct stream s = stream_at(o->seed, split, "compose", (uint64_t)group);
    int kmax = max_per_image(o);
    int k = 2 + s_int(&s, kmax - 1);
    draw_distinct(&s, o->n_objects, k, objects);
    int a0[ITR_SYNTH_MAX_PER_IMAGE], a1[ITR_SYNTH_MAX_PER_IMAGE], a2[ITR_SYNTH_MAX_PER_IMAGE];
    draw_distinct(&s, o->n_attributes, k, a0);
    for (int i = 0; i < k; i++) a1[i] = a0[(i + 1) % k];
    // Bounded retries keep this a pure function of the stream; with two
    // attributes and two objects a fresh draw can only repeat a0 or a1.
    for (int tries = 0; tries < 64; tries++) {
        draw_distinct(&s, o->n_attributes, k, a2);
        if (!same_binding(a2, a0, k) && !same_binding(a2, a1, k)) break;
    }
    const int *src = member < 2 ? a0 : a2;
    int shift = member % 2;
    for (int i = 0; i < k; i++) attributes[i] = src[(i + shift) % k];
    return k;
}

static bool split_index(const struct itr_synth_options *o, const char *split, int64_t *n) {
    if (!strcmp(split, "train")) *n = o->n_train;
    else if (!strcmp(split, "dev")) *n = o->n_dev;
    else if (!strcmp(split, "test")) *n = o->n_test;
    else return false;
    return true;
}

int itr_synth_image_concepts(const struct itr_synth_options *o, const char *split, int64_t image, int *objects,
                             int *attributes) {
    int64_t n;
    if (!split || !check_options(o, NULL) || !split_index(o, split, &n) || image < 0 || image >= n) return -1;
    return compose(o, split, image, objects, attributes);
}

// ---------------------------------------------------------------- features

struct itr_synth_model {
    int dim, latent;
    double *objects, *attributes, *background;   // [n, latent] prototypes
    double *proj;                                 // [dim, latent]
};

struct itr_synth_model *itr_synth_model_new(const struct itr_synth_options *o, struct itr_diags *d) {
    if (!check_options(o, d)) return NULL;
    struct itr_synth_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->dim = o->dim;
    m->latent = o->dim < LATENT_MAX ? o->dim : LATENT_MAX;
    int K = m->latent;
    m->objects = malloc(sizeof(double) * (size_t)N_OBJECTS_TABLE * (size_t)K);
    m->attributes = malloc(sizeof(double) * (size_t)N_ATTRIBUTES_TABLE * (size_t)K);
    m->background = malloc(sizeof(double) * (size_t)K);
    m->proj = malloc(sizeof(double) * (size_t)o->dim * (size_t)K);
    if (!m->objects || !m->attributes || !m->background || !m->proj) {
        itr_synth_model_free(m);
        if (d) itr_diag_error(d, ITR_NOLOC, "synthetic data: out of memory");
        return NULL;
    }
    // Prototypes have norm ~1 (entries N(0, 1/K)); whole tables are drawn so
    // n_objects changes which concepts are used, not their vectors.
    double sc = 1.0 / sqrt((double)K);
    uint64_t so = itr_rng_salt_of_name("itr.synth.objects"), sa = itr_rng_salt_of_name("itr.synth.attributes");
    uint64_t sb = itr_rng_salt_of_name("itr.synth.background"), sp = itr_rng_salt_of_name("itr.synth.projection");
    for (int64_t i = 0; i < (int64_t)N_OBJECTS_TABLE * K; i++) m->objects[i] = sc * itr_rng_normal_f64(o->seed, so, (uint64_t)i);
    for (int64_t i = 0; i < (int64_t)N_ATTRIBUTES_TABLE * K; i++)
        m->attributes[i] = sc * itr_rng_normal_f64(o->seed, sa, (uint64_t)i);
    for (int i = 0; i < K; i++) m->background[i] = sc * itr_rng_normal_f64(o->seed, sb, (uint64_t)i);
    for (int64_t i = 0; i < (int64_t)o->dim * K; i++) m->proj[i] = itr_rng_normal_f64(o->seed, sp, (uint64_t)i);
    return m;
}

void itr_synth_model_free(struct itr_synth_model *m) {
    if (!m) return;
    free(m->objects);
    free(m->attributes);
    free(m->background);
    free(m->proj);
    free(m);
}

// out = max(0, OUT_SCALE * P z): non-negative like BUTD features, entries
// mostly in [0, 1] for |z| ~ 1.
static void project(const struct itr_synth_model *m, const double *z, float *out) {
    int K = m->latent;
    for (int r = 0; r < m->dim; r++) {
        const double *p = m->proj + (size_t)r * (size_t)K;
        double acc = 0;
        for (int j = 0; j < K; j++) acc += p[j] * z[j];
        acc *= OUT_SCALE;
        out[r] = acc > 0 ? (float)acc : 0.0f;
    }
}

void itr_synth_model_feature(const struct itr_synth_model *m, int object, int attribute, float *out) {
    double z[LATENT_MAX] = { 0 };
    int K = m->latent;
    if (object < 0 && attribute < 0)
        for (int j = 0; j < K; j++) z[j] = BG_WEIGHT * m->background[j];
    if (object >= 0 && object < N_OBJECTS_TABLE)
        for (int j = 0; j < K; j++) z[j] += m->objects[(size_t)object * (size_t)K + (size_t)j];
    if (attribute >= 0 && attribute < N_ATTRIBUTES_TABLE)
        for (int j = 0; j < K; j++) z[j] += ATTR_WEIGHT * m->attributes[(size_t)attribute * (size_t)K + (size_t)j];
    project(m, z, out);
}

// The R x D features of one image: object regions first, shuffled with the
// background ones afterwards so position says nothing.
static void image_features(const struct itr_synth_model *m, const struct itr_synth_options *o, const char *split,
                           int64_t image, const int *objects, const int *attributes, int k, float *out) {
    struct stream s = stream_at(o->seed, split, "regions", (uint64_t)image);
    int R = o->regions, K = m->latent;
    int n_obj_regions = R / 2 > k ? R / 2 : k;
    int order[4096];
    for (int r = 0; r < R; r++) order[r] = r;
    for (int r = R - 1; r > 0; r--) {
        int j = s_int(&s, r + 1);
        int t = order[r]; order[r] = order[j]; order[j] = t;
    }
    double noise_sc = o->noise / sqrt((double)K);
    for (int r = 0; r < R; r++) {
        double z[LATENT_MAX];
        if (r < n_obj_regions) {
            // Round-robin over the objects; each region is its own noisy view
            // with a jittered attribute strength.
            int i = r % k;
            double w = ATTR_WEIGHT * (0.75 + 0.5 * s_uniform(&s));
            const double *po = m->objects + (size_t)objects[i] * (size_t)K;
            const double *pa = m->attributes + (size_t)attributes[i] * (size_t)K;
            for (int j = 0; j < K; j++) z[j] = po[j] + w * pa[j] + noise_sc * s_normal(&s);
        } else {
            // Clutter of norm ~1 in a random direction around the background.
            double sc = 1.0 / sqrt((double)K);
            for (int j = 0; j < K; j++) z[j] = BG_WEIGHT * m->background[j] + sc * s_normal(&s);
        }
        project(m, z, out + (size_t)order[r] * (size_t)m->dim);
    }
}

// ---------------------------------------------------------------- captions

struct buf { char *p; size_t n, cap; bool oom; };

static void put(struct buf *b, const char *s) {
    size_t l = strlen(s);
    if (b->oom) return;
    if (b->n + l + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + l + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, l + 1);
    b->n += l;
}

static const char *obj_word(struct stream *s, int id) {
    return OBJECTS[id][s_int(s, n_synonyms(ITR_SYNTH_OBJECT, id))];
}
static const char *attr_word(struct stream *s, int id) {
    return ATTRIBUTES[id][s_int(s, n_synonyms(ITR_SYNTH_ATTRIBUTE, id))];
}

// "a red dog", "an old cat", "the puppy": the attribute, when present,
// directly precedes its object (the binding a caption parser can rely on).
static void noun_phrase(struct buf *b, struct stream *s, int obj, int attr, bool definite) {
    const char *a = attr >= 0 ? attr_word(s, attr) : NULL;
    const char *w = obj_word(s, obj);
    const char *first = a ? a : w;
    if (definite || s_uniform(s) < 0.15) put(b, "the ");
    else put(b, strchr("aeiou", first[0]) ? "an " : "a ");
    if (a) { put(b, a); put(b, " "); }
    put(b, w);
}

static void np_list(struct buf *b, struct stream *s, const int *obj, const int *attr, int m) {
    for (int i = 0; i < m; i++) {
        if (i > 0) put(b, i == m - 1 ? " and " : ", ");
        noun_phrase(b, s, obj[i], attr[i], false);
    }
}

static const char *relation(struct stream *s) {
    int r = s_int(s, N_RELATIONS);
    return RELATIONS[r][s_int(s, n_synonyms(ITR_SYNTH_RELATION, r))];
}

static const char *const COUNT_WORDS[] = { "", "one", "two", "three", "four" };

// One caption of an image with k objects, appended to b without a newline.
static void caption(struct buf *b, struct stream *s, const int *objects, const int *attributes, int k) {
    int perm[ITR_SYNTH_MAX_PER_IMAGE];
    draw_distinct(s, k, k, perm);
    int m = s_uniform(s) < 0.5 ? k : 1 + s_int(s, k);
    int obj[ITR_SYNTH_MAX_PER_IMAGE], attr[ITR_SYNTH_MAX_PER_IMAGE];
    for (int i = 0; i < m; i++) {
        obj[i] = objects[perm[i]];
        // The first mention always carries its attribute, so every caption
        // separates an image from its rotated-attribute twin.
        attr[i] = (i == 0 || s_uniform(s) < 0.85) ? attributes[perm[i]] : -1;
    }
    struct buf c = { 0 };
    int t = s_int(s, 8);
    if (t == 3 && m < 2) t = 1;
    if ((t == 0 || t == 7) && m < 2) t = 6;
    switch (t) {
    case 0:   // "a red dog next to a small car, and a tree"
        noun_phrase(&c, s, obj[0], attr[0], false);
        put(&c, " "); put(&c, relation(s)); put(&c, " ");
        noun_phrase(&c, s, obj[1], attr[1], false);
        if (m > 2) { put(&c, ", and "); np_list(&c, s, obj + 2, attr + 2, m - 2); }
        break;
    case 1:   // "there is a red dog near a car"
        put(&c, "there is ");
        if (m == 2 && s_uniform(s) < 0.5) {
            noun_phrase(&c, s, obj[0], attr[0], false);
            put(&c, " "); put(&c, relation(s)); put(&c, " ");
            noun_phrase(&c, s, obj[1], attr[1], false);
        } else {
            np_list(&c, s, obj, attr, m);
        }
        break;
    case 2:   // "there is a dog that is red and a small car"
        put(&c, "there is ");
        {
            const char *w = obj_word(s, obj[0]);
            put(&c, strchr("aeiou", w[0]) ? "an " : "a ");
            put(&c, w);
            put(&c, " that is ");
            put(&c, attr_word(s, attr[0]));
        }
        if (m > 1) { put(&c, m > 2 ? ", " : " and "); np_list(&c, s, obj + 1, attr + 1, m - 1); }
        break;
    case 3:   // "two things: a red dog and a car"
        put(&c, COUNT_WORDS[m]); put(&c, " things: ");
        np_list(&c, s, obj, attr, m);
        break;
    case 4: {   // "a photo of a red dog and a car"
        static const char *const lead[] = { "a photo of ", "an image of ", "a picture showing ", "a close up of " };
        put(&c, lead[s_int(s, 4)]);
        np_list(&c, s, obj, attr, m);
        break;
    }
    case 5:   // "the dog is red and the car is blue"
        for (int i = 0; i < m; i++) {
            if (i > 0) put(&c, i == m - 1 ? " and " : ", ");
            if (attr[i] >= 0) {
                put(&c, "the "); put(&c, obj_word(s, obj[i]));
                put(&c, " is "); put(&c, attr_word(s, attr[i]));
            } else {
                put(&c, "there is ");
                noun_phrase(&c, s, obj[i], -1, false);
            }
        }
        break;
    case 6:   // "a red dog and a car are visible in a park"
        np_list(&c, s, obj, attr, m);
        put(&c, m > 1 ? " are visible" : " is visible");
        if (s_uniform(s) < 0.5) { put(&c, " "); put(&c, PLACES[s_int(s, N_PLACES)]); }
        break;
    default:   // "a red dog with a small car and a tree outside"
        noun_phrase(&c, s, obj[0], attr[0], false);
        put(&c, " with ");
        np_list(&c, s, obj + 1, attr + 1, m - 1);
        if (s_uniform(s) < 0.3) { put(&c, " "); put(&c, PLACES[s_int(s, N_PLACES)]); }
        break;
    }
    if (s_uniform(s) < 0.85) put(&c, ".");
    if (!c.oom && c.p && s_uniform(s) < 0.5 && c.p[0] >= 'a' && c.p[0] <= 'z') c.p[0] = (char)(c.p[0] - 'a' + 'A');
    if (c.oom) b->oom = true;
    else put(b, c.p);
    free(c.p);
}

// ---------------------------------------------------------------- vocabulary

struct wc { char *word; int64_t count, first; };
struct wtable { struct wc *items; int n, cap; };

static bool wt_add(struct wtable *t, const char *w, size_t len, int64_t pos) {
    for (int i = 0; i < t->n; i++)
        if (strlen(t->items[i].word) == len && !memcmp(t->items[i].word, w, len)) { t->items[i].count++; return true; }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        struct wc *p = realloc(t->items, sizeof *p * (size_t)cap);
        if (!p) return false;
        t->items = p;
        t->cap = cap;
    }
    char *c = strndup(w, len);
    if (!c) return false;
    for (size_t i = 0; i < len; i++)
        if (c[i] >= 'A' && c[i] <= 'Z') c[i] = (char)(c[i] - 'A' + 'a');
    // Lower-casing may merge with an existing entry ("A" and "a").
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->items[i].word, c)) { t->items[i].count++; free(c); return true; }
    t->items[t->n++] = (struct wc){ c, 1, pos };
    return true;
}

// Tokens of the generated captions: words separated by spaces, with
// ".", "," and ":" split off as nltk's word_tokenize does.
static bool count_words(struct wtable *t, const char *text) {
    int64_t pos = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\n') p++;
        if (!*p) break;
        const char *e = p;
        if (strchr(".,:", *e)) e++;
        else while (*e && !strchr(" \n.,:", *e)) e++;
        if (!wt_add(t, p, (size_t)(e - p), pos++)) return false;
        p = e;
    }
    return true;
}

static int wc_cmp(const void *a, const void *b) {
    const struct wc *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

// Specials, then every train word by descending count, ties in first-seen
// order (the order itr_vocab_build uses, so either gives the same file).
static bool write_vocab(const char *path, const char *train_caps, struct itr_diags *d) {
    struct wtable t = { 0 };
    bool ok = count_words(&t, train_caps);
    char *text = NULL;
    if (ok) {
        qsort(t.items, (size_t)t.n, sizeof *t.items, wc_cmp);
        json_t *w2i = json_object(), *i2w = json_object(), *root = json_object();
        static const char *const specials[] = { "<pad>", "<start>", "<end>", "<unk>" };
        int n = 0;
        char key[32];
        for (int i = 0; i < 4 + t.n; i++) {
            const char *w = i < 4 ? specials[i] : t.items[i - 4].word;
            snprintf(key, sizeof key, "%d", n);
            json_object_set_new(w2i, w, json_integer(n));
            json_object_set_new(i2w, key, json_string(w));
            n++;
        }
        json_object_set_new(root, "word2idx", w2i);
        json_object_set_new(root, "idx2word", i2w);
        json_object_set_new(root, "idx", json_integer(n));
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(root);
        ok = text != NULL;
    }
    if (!ok) itr_diag_error(d, ITR_NOLOC, "%s: out of memory", path);
    else {
        size_t len = strlen(text);
        const void *parts[] = { text, "\n" };
        size_t lens[] = { len, 1 };
        ok = itr_file_write_atomic(path, parts, lens, 2, d);
    }
    free(text);
    for (int i = 0; i < t.n; i++) free(t.items[i].word);
    free(t.items);
    return ok;
}

// ---------------------------------------------------------------- writing

static bool make_dirs(const char *dir, struct itr_diags *d) {
    char tmp[4096];
    if (strlen(dir) >= sizeof tmp) {
        itr_diag_error(d, ITR_NOLOC, "%s: path too long", dir);
        return false;
    }
    strcpy(tmp, dir);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                itr_diag_error(d, ITR_NOLOC, "%s: cannot create directory: %s", tmp, strerror(errno));
                return false;
            }
            *p = c;
            if (!c) break;
        }
    }
    return true;
}

static bool write_split(const char *out_dir, const char *split, int64_t n, const struct itr_synth_options *o,
                        const struct itr_synth_model *m, char **caps_out, struct itr_diags *d) {
    char path[4200];
    struct itr_tensor *ims = itr_tensor_new(ITR_F32, 3, (int64_t[]){ n, o->regions, o->dim });
    if (!ims) {
        itr_diag_error(d, ITR_NOLOC, "%s/%s_ims.npy: out of memory for %" PRId64 " x %d x %d floats", out_dir, split, n,
                       o->regions, o->dim);
        return false;
    }
    struct buf caps = { 0 };
    float *f = ims->data;
    for (int64_t i = 0; i < n; i++) {
        int objects[ITR_SYNTH_MAX_PER_IMAGE], attributes[ITR_SYNTH_MAX_PER_IMAGE];
        int k = compose(o, split, i, objects, attributes);
        image_features(m, o, split, i, objects, attributes, k, f + (size_t)i * (size_t)o->regions * (size_t)o->dim);
        struct stream s = stream_at(o->seed, split, "captions", (uint64_t)i);
        for (int c = 0; c < 5; c++) {
            caption(&caps, &s, objects, attributes, k);
            put(&caps, "\n");
        }
    }
    bool ok = !caps.oom;
    if (!ok) itr_diag_error(d, ITR_NOLOC, "%s/%s_caps.txt: out of memory", out_dir, split);
    if (ok) {
        snprintf(path, sizeof path, "%s/%s_ims.npy", out_dir, split);
        ok = itr_npy_write(path, ims, d);
    }
    if (ok) {
        snprintf(path, sizeof path, "%s/%s_caps.txt", out_dir, split);
        const void *parts[] = { caps.p };
        size_t lens[] = { caps.n };
        ok = itr_file_write_atomic(path, parts, lens, 1, d);
    }
    itr_tensor_free(ims);
    if (ok && caps_out) *caps_out = caps.p;
    else free(caps.p);
    return ok;
}

// ---------------------------------------------------------------- token features

// Stand-ins for a frozen text encoder's per-token outputs (docs/data.md,
// "Token features of the synthetic set"). Each caption is encoded exactly as
// the loader encodes it (itr_encode_caption with the vocabulary just
// written: <start>, the words, <end>, out-of-vocabulary words as <unk>), and
// token t of word id w gets
//     code_w[e] + TOKEN_POS_SCALE * pe(t, e),   e < F,
// code_w[e] ~ N(0, 1) from the stream (seed, "itr.synth.token_codes") at
// index w * 2^24 + e (so a word's code is the same in every split and F only
// truncates it), pe the transformer's sinusoid: sin(t ω_k) at e = 2k,
// cos(t ω_k) at e = 2k + 1, ω_k = 10000^(-2k/F). Padding rows stay zero.
static bool write_token_split(const char *out_dir, const char *split, int64_t n_images, const char *caps,
                              const struct itr_vocab *v, const double *codes, int F, struct itr_diags *d) {
    char path[4200];
    int64_t n = 5 * n_images;
    int32_t *lens = malloc(sizeof *lens * (size_t)n);
    int32_t *ids = NULL;
    size_t n_ids = 0, cap_ids = 0;
    char *line = NULL;
    size_t line_cap = 0;
    bool ok = lens != NULL;
    int64_t L = 1;
    const char *p = caps;
    for (int64_t c = 0; ok && c < n; c++) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len + 3 > line_cap) {
            line_cap = 2 * (len + 3);
            char *q = realloc(line, line_cap);
            if (!q) { ok = false; break; }
            line = q;
        }
        memcpy(line, p, len);
        line[len] = 0;
        // Every token holds at least one byte of the caption: len + 2 slots
        // with <start> and <end>.
        if (n_ids + len + 2 > cap_ids) {
            cap_ids = 2 * (n_ids + len + 2) + 1024;
            int32_t *q = realloc(ids, sizeof *ids * cap_ids);
            if (!q) { ok = false; break; }
            ids = q;
        }
        int k = itr_encode_caption(v, line, ids + n_ids, (int)(len + 2), NULL);
        if (k < 1) {
            itr_diag_error(d, ITR_NOLOC, "%s/%s_caps.txt: caption %" PRId64 " does not encode (internal error)", out_dir,
                           split, c);
            free(lens);
            free(ids);
            free(line);
            return false;
        }
        lens[c] = k;
        n_ids += (size_t)k;
        if (k > L) L = k;
        p = e ? e + 1 : p + len;
    }
    free(line);
    struct itr_tensor *f = ok ? itr_tensor_new(ITR_F32, 3, (int64_t[]){ n, L, F }) : NULL;
    struct itr_tensor *l = f ? itr_tensor_wrap(ITR_I32, 1, (int64_t[]){ n }, lens) : NULL;
    double *pe = l ? malloc(sizeof(double) * (size_t)L * (size_t)F) : NULL;
    if (!pe) {
        itr_diag_error(d, ITR_NOLOC, "%s/%s_caps_feats.npy: out of memory for %" PRId64 " x %" PRId64 " x %d floats",
                       out_dir, split, n, L, F);
        itr_tensor_free(f);
        itr_tensor_free(l);
        free(lens);
        free(ids);
        return false;
    }
    for (int64_t t = 0; t < L; t++)
        for (int e = 0; e < F; e++) {
            double omega = pow(10000.0, -(double)(e - e % 2) / (double)F);
            pe[(size_t)t * (size_t)F + (size_t)e] = e % 2 ? cos((double)t * omega) : sin((double)t * omega);
        }
    float *out = f->data;
    size_t at = 0;
    for (int64_t c = 0; c < n; c++)
        for (int64_t t = 0; t < lens[c]; t++, at++) {
            const double *code = codes + (size_t)ids[at] * (size_t)F, *pos = pe + (size_t)t * (size_t)F;
            float *row = out + ((size_t)c * (size_t)L + (size_t)t) * (size_t)F;
            for (int e = 0; e < F; e++) row[e] = (float)(code[e] + TOKEN_POS_SCALE * pos[e]);
        }
    snprintf(path, sizeof path, "%s/%s_caps_feats.npy", out_dir, split);
    ok = itr_npy_write(path, f, d);
    if (ok) {
        snprintf(path, sizeof path, "%s/%s_caps_lens.npy", out_dir, split);
        ok = itr_npy_write(path, l, d);
    }
    itr_tensor_free(f);
    itr_tensor_free(l);
    free(pe);
    free(lens);
    free(ids);
    return ok;
}

static bool write_token_features(const char *out_dir, const struct itr_synth_options *o, char *const caps[3],
                                 struct itr_diags *d) {
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.json", out_dir);
    struct itr_vocab v;
    if (!itr_vocab_read(path, &v, d)) return false;
    int F = o->token_dim;
    double *codes = malloc(sizeof(double) * (size_t)v.n * (size_t)F);
    bool ok = codes != NULL;
    if (!ok) itr_diag_error(d, ITR_NOLOC, "%s: out of memory for the token codes", out_dir);
    if (ok) {
        uint64_t salt = itr_rng_salt_of_name("itr.synth.token_codes");
        for (int w = 0; w < v.n; w++)
            for (int e = 0; e < F; e++)
                codes[(size_t)w * (size_t)F + (size_t)e] = itr_rng_normal_f64(o->seed, salt, ((uint64_t)w << 24) + (uint64_t)e);
        static const char *const splits[] = { "train", "dev", "test" };
        const int64_t ns[] = { o->n_train, o->n_dev, o->n_test };
        for (int k = 0; ok && k < 3; k++)
            ok = write_token_split(out_dir, splits[k], ns[k], caps[k], &v, codes, F, d);
    }
    free(codes);
    itr_vocab_free(&v);
    return ok;
}

static bool write_readme(const char *out_dir, const struct itr_synth_options *o, struct itr_diags *d) {
    char path[4200], text[2048];
    snprintf(path, sizeof path, "%s/README.txt", out_dir);
    int len = snprintf(text, sizeof text,
        "itrc synthetic image-text retrieval data (docs/data.md, \"Synthetic data\").\n"
        "Layout: {train,dev,test}_ims.npy f32 [images, regions, dim], one row per image (im_div 5);\n"
        "{split}_caps.txt, 5 captions per image in image order; vocab.json built from the train captions.\n"
        "Real BUTD features are 36 x 2048; this set is scaled down for small CPUs unless told otherwise.\n"
        "%s"
        "Same options give byte-identical files on every machine.\n\n"
        "n_train %" PRId64 "\nn_dev %" PRId64 "\nn_test %" PRId64 "\nregions %d\ndim %d\nseed %" PRIu64
        "\nn_objects %d\nn_attributes %d\nnoise %.17g\n",
        o->token_dim > 0 ? "{split}_caps_feats.npy f32 [captions, L, token_dim] + {split}_caps_lens.npy i32 [captions]:\n"
                           "stand-in token features (a word code per token + a position term), L = longest caption.\n"
                         : "",
        o->n_train, o->n_dev, o->n_test, o->regions, o->dim, o->seed, o->n_objects, o->n_attributes, o->noise);
    if (o->token_dim > 0 && len > 0 && (size_t)len < sizeof text)
        len += snprintf(text + len, sizeof text - (size_t)len, "token_dim %d\n", o->token_dim);
    const void *parts[] = { text };
    size_t lens[] = { (size_t)len };
    return itr_file_write_atomic(path, parts, lens, 1, d);
}

bool itr_synth_generate(const char *out_dir, const struct itr_synth_options *o, struct itr_diags *d) {
    if (!check_options(o, d) || !make_dirs(out_dir, d)) return false;
    struct itr_synth_model *m = itr_synth_model_new(o, d);
    if (!m) return false;
    // The train captions make the vocabulary; token features need every
    // split's captions, encoded with that vocabulary once it is written.
    char *caps[3] = { NULL, NULL, NULL };
    bool feats = o->token_dim > 0;
    bool ok = write_split(out_dir, "train", o->n_train, o, m, &caps[0], d) &&
              write_split(out_dir, "dev", o->n_dev, o, m, feats ? &caps[1] : NULL, d) &&
              write_split(out_dir, "test", o->n_test, o, m, feats ? &caps[2] : NULL, d);
    if (ok) {
        char path[4200];
        snprintf(path, sizeof path, "%s/vocab.json", out_dir);
        ok = write_vocab(path, caps[0], d) && (!feats || write_token_features(out_dir, o, caps, d)) &&
             write_readme(out_dir, o, d);
    }
    for (int k = 0; k < 3; k++) free(caps[k]);
    itr_synth_model_free(m);
    return ok;
}
