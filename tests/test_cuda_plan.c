// Plans that carry CUDA code (`itrc compile --target cuda`, docs/backends.md
// "CUDA", issue 11): every schedule of a small model carries a cubin for
// sm_80 and for sm_90 that defines each of its kernels and the PTX of its
// unit; the images survive the plan's write and read byte for byte; a plan
// whose images are malformed is refused with an error naming the plan, the
// schedule and the image; and the image a device loads is chosen correctly
// (itr_cuda_pick_image, which needs no GPU).
//
// The choice of image runs everywhere; the rest needs NVRTC, and without it
// the test says so and exits 77 (skipped).
#include <stdlib.h>

#include "backends/cuda/cuda_nvrtc.h"
#include "backends/cuda/cuda_plan.h"
#include "compiler/pipeline.h"
#include "ir/devcode.h"
#include "ir/kir.h"
#include "ir/plan.h"
#include "test.h"
#include "testutil.h"

static int pick(int major, int minor, const char *const *archs, int n) {
    return itr_cuda_pick_image(major, minor, archs, n);
}

TEST(pick_image) {
    const char *const plan[] = { "sm_80", "sm_90", "compute_80" };   // what itrc writes
    CHECK(pick(8, 0, plan, 3) == 0);    // A100: its own cubin
    CHECK(pick(8, 6, plan, 3) == 0);    // RTX 30xx: sm_80's cubin runs on later minors of 8
    CHECK(pick(8, 9, plan, 3) == 0);    // L4 / RTX 40xx
    CHECK(pick(9, 0, plan, 3) == 1);    // H100
    CHECK(pick(10, 0, plan, 3) == 2);   // B200: no cubin of major 10, the PTX
    CHECK(pick(12, 0, plan, 3) == 2);
    CHECK(pick(7, 5, plan, 3) == -1);   // older than every image: compile with NVRTC
    CHECK(pick(9, 0, plan, 0) == -1);   // no images
    // Among cubins of the device's major, the highest minor not above it.
    const char *const minors[] = { "sm_80", "sm_86", "sm_89" };
    CHECK(pick(8, 0, minors, 3) == 0);
    CHECK(pick(8, 7, minors, 3) == 1);
    CHECK(pick(8, 9, minors, 3) == 2);
    // Among PTX, the newest not above the device; a cubin beats any PTX.
    const char *const ptx[] = { "compute_90", "compute_80", "sm_90" };
    CHECK(pick(8, 9, ptx, 3) == 1);
    CHECK(pick(9, 0, ptx, 3) == 2);
    CHECK(pick(10, 0, ptx, 3) == 0);
    CHECK(pick(12, 1, ptx, 2) == 0);
    // A cubin of another major never runs, whatever its number.
    const char *const other[] = { "sm_90" };
    CHECK(pick(10, 0, other, 1) == -1);
    CHECK(pick(8, 9, other, 1) == -1);
    // Names that are no architecture are never picked.
    const char *const junk[] = { "sm_90a", "sm_9", "sm_0900", "compute_", "gfx90a", "", NULL, "sm_090" };
    CHECK(pick(9, 0, junk, 8) == -1);
    const char *const three[] = { "sm_100", "compute_100" };
    CHECK(pick(10, 0, three, 2) == 0);
    CHECK(pick(10, 3, three, 2) == 0);
    CHECK(pick(12, 0, three, 2) == 1);
    CHECK(pick(9, 0, three, 2) == -1);
}

TEST(image_checks) {
    uint8_t elf[64] = { 0x7f, 'E', 'L', 'F' };
    char why[160];
    CHECK(itr_devcode_image_error("sm_80", elf, sizeof elf, why, sizeof why) == NULL);
    const char *e = itr_devcode_image_error("sm_80", elf, 20, why, sizeof why);
    CHECK(e && strstr(e, "the sm_80 image (20 bytes) is not an ELF cubin"));
    elf[1] = 'X';
    CHECK(itr_devcode_image_error("sm_90", elf, sizeof elf, why, sizeof why) != NULL);
    const uint8_t ptx[] = ".version 8.0\n.target sm_80\n";   // with its NUL
    CHECK(itr_devcode_image_error("compute_80", ptx, sizeof ptx, why, sizeof why) == NULL);
    e = itr_devcode_image_error("compute_80", ptx, sizeof ptx - 1, why, sizeof why);
    CHECK(e && strstr(e, "not PTX text ending in one NUL"));
    const uint8_t nul_inside[] = "ab\0cd";
    CHECK(itr_devcode_image_error("compute_80", nul_inside, sizeof nul_inside, why, sizeof why) != NULL);
    e = itr_devcode_image_error("compute_80", ptx, 0, why, sizeof why);
    CHECK(e && strstr(e, "has 0 bytes"));
    e = itr_devcode_image_error("sm_8x", elf, sizeof elf, why, sizeof why);
    CHECK(e && strstr(e, "'sm_8x' is not a GPU architecture"));
    CHECK(itr_devcode_image_error("gfx90a", ptx, sizeof ptx, why, sizeof why) != NULL);
}

static char *unpack_error(const struct itr_program *p, const char *what) {
    uint8_t *buf;
    size_t len;
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_plan_pack(p, "cuda", &buf, &len, &d));
    struct itr_program *q = itr_plan_unpack(buf, len, what, NULL, &d);
    CHECK(q == NULL);
    itr_program_free(q);
    char *msg = itr_diags_summary(&d);
    itr_diags_free(&d);
    free(buf);
    return msg;
}

// Every schedule's images: two ELF cubins that define every kernel, and PTX
// for sm_80 with an entry per kernel.
static void check_images(const struct itr_program *p) {
    int with_kernels = 0;
    for (int i = 0; i < p->kernels->n; i++) {
        const struct kir_plan_schedule *ks = &p->kernels->items[i];
        const char *name = p->graphs[ks->graph]->name;
        const struct itr_devcode_unit *u = itr_devcode_find(p->devcode, ks->graph, ks->f64);
        if (!ks->s->n_kernels) {
            CHECK_MSG(u == NULL, "%s: images for a schedule without kernels", name);
            continue;
        }
        with_kernels++;
        CHECK_MSG(u && u->n_images == 3, "%s (%s): %d images", name, ks->f64 ? "f64" : "f32", u ? u->n_images : -1);
        if (!u || u->n_images != 3) continue;
        CHECK(strcmp(u->images[0].arch, "sm_80") == 0);
        CHECK(strcmp(u->images[1].arch, "sm_90") == 0);
        CHECK(strcmp(u->images[2].arch, "compute_80") == 0);
        for (int a = 0; a < 2; a++) {
            CHECK_MSG(itr_cubin_is_elf(u->images[a].data, u->images[a].size), "%s: the %s image is no ELF", name,
                      u->images[a].arch);
            for (int k = 0; k < ks->s->n_kernels; k++)
                CHECK_MSG(tu_has_cstring(u->images[a].data, u->images[a].size, ks->s->kernels[k]->name),
                          "%s: the %s cubin lacks %s", name, u->images[a].arch, ks->s->kernels[k]->name);
        }
        const char *ptx = (const char *)u->images[2].data;
        CHECK(u->images[2].size == strlen(ptx) + 1);
        CHECK(strstr(ptx, ".version ") != NULL);
        CHECK(strstr(ptx, ".target sm_80") != NULL);
        for (int k = 0; k < ks->s->n_kernels; k++) {
            char entry[160];
            snprintf(entry, sizeof entry, ".entry %s(", ks->s->kernels[k]->name);
            CHECK_MSG(strstr(ptx, entry) != NULL, "%s: the PTX lacks %s", name, entry);
        }
    }
    CHECK(with_kernels >= 4);   // vsepp: its entries in f32 and f64
}

static bool same_images(const struct itr_devcode *a, const struct itr_devcode *b) {
    if (!a || !b || a->n != b->n) return false;
    for (int i = 0; i < a->n; i++) {
        const struct itr_devcode_unit *u = &a->items[i], *v = itr_devcode_find(b, u->graph, u->f64);
        if (!v || v->n_images != u->n_images) return false;
        for (int k = 0; k < u->n_images; k++)
            if (strcmp(u->images[k].arch, v->images[k].arch) != 0 || u->images[k].size != v->images[k].size ||
                memcmp(u->images[k].data, v->images[k].data, u->images[k].size) != 0)
                return false;
    }
    return true;
}

TEST(vsepp_plan_carries_cuda_code) {
    struct itr_program *p = tu_compile_small(ITR_SOURCE_DIR "/models/vsepp.ir", "cuda");
    CHECK(p != NULL);
    if (!p) return;
    p->kernels = calloc(1, sizeof *p->kernels);
    p->devcode = calloc(1, sizeof *p->devcode);
    struct itr_diags d;
    itr_diags_init(&d);
    CHECK(itr_compile_kernels(p, p->kernels, &d));
    struct itr_cuda_compile_stats st;
    CHECK(itr_cuda_compile_plan(p, p->kernels, 0, p->devcode, &st, &d));
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    printf("  vsepp (small): %d schedules, %d units, %d kernels, %.0f KiB of cubins, %.0f KiB of PTX, %d threads\n",
           st.schedules, st.units, st.kernels, (double)st.cubin_bytes / 1024, (double)st.ptx_bytes / 1024, st.threads);
    CHECK(st.schedules == p->devcode->n);
    CHECK(st.units >= 1 && st.units <= st.schedules);
    CHECK(st.cubin_bytes > 0 && st.ptx_bytes > 0);
    check_images(p);

    // Write and read back: the same images, byte for byte, and still valid.
    CHECK(tmpdir_create("cuda_plan"));
    const char *path = tmp_path("vsepp.plan");
    itr_diags_init(&d);
    CHECK(itr_plan_write(p, "cuda", path, &d));
    struct itr_plan_info info;
    struct itr_program *q = itr_plan_read(path, &info, &d);
    itr_diags_print(&d, stderr);
    itr_diags_free(&d);
    CHECK(q != NULL);
    if (q) {
        CHECK(strcmp(info.target, "cuda") == 0);
        CHECK(same_images(p->devcode, q->devcode));
        check_images(q);
    }
    itr_program_free(q);

    // A truncated file: refused, never a crash.
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    size_t len = 0;
    uint8_t *bytes = NULL;
    if (f) {
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        bytes = malloc(len);
        CHECK(fread(bytes, 1, len, f) == len);
        fclose(f);
    }
    for (int k = 1; bytes && k < 8; k++) {
        itr_diags_init(&d);
        q = itr_plan_unpack(bytes, len * (size_t)k / 8, "cut.plan", NULL, &d);
        CHECK(q == NULL);
        char *msg = itr_diags_summary(&d);
        CHECK_STR_CONTAINS(msg, "cut.plan: truncated plan");
        free(msg);
        itr_diags_free(&d);
        itr_program_free(q);
    }
    free(bytes);

    // Malformed images, each refused with the plan, the schedule and the image named.
    struct itr_devcode_unit *u = &p->devcode->items[0];
    const char *entry = p->graphs[u->graph]->name;
    char want[200];
    size_t keep = u->images[0].size;
    u->images[0].size = 40;   // a cubin cut short
    char *msg = unpack_error(p, "bad.plan");
    snprintf(want, sizeof want, "bad.plan: schedule 0 (entry '%s', %s): device image 0: the sm_80 image (40 bytes) is "
             "not an ELF cubin", entry, u->f64 ? "f64" : "f32");
    CHECK_STR_CONTAINS(msg, want);
    free(msg);
    u->images[0].size = keep;
    u->images[0].data[1] ^= 1;   // a cubin that is no ELF
    msg = unpack_error(p, "bad.plan");
    CHECK_STR_CONTAINS(msg, "is not an ELF cubin");
    free(msg);
    u->images[0].data[1] ^= 1;
    keep = u->images[2].size;
    u->images[2].size--;          // PTX without its NUL
    msg = unpack_error(p, "bad.plan");
    CHECK_STR_CONTAINS(msg, "device image 2: the compute_80 image");
    CHECK_STR_CONTAINS(msg, "is not PTX text ending in one NUL");
    free(msg);
    u->images[2].size = keep;
    char arch[16];
    memcpy(arch, u->images[1].arch, sizeof arch);
    snprintf(u->images[1].arch, sizeof u->images[1].arch, "sm_80");   // a second sm_80
    msg = unpack_error(p, "bad.plan");
    CHECK_STR_CONTAINS(msg, "device image 1: a second sm_80 image");
    free(msg);
    snprintf(u->images[1].arch, sizeof u->images[1].arch, "sm9");
    msg = unpack_error(p, "bad.plan");
    CHECK_STR_CONTAINS(msg, "'sm9' is not a GPU architecture");
    free(msg);
    memcpy(u->images[1].arch, arch, sizeof arch);
    // Repaired, it reads again.
    uint8_t *buf;
    itr_diags_init(&d);
    CHECK(itr_plan_pack(p, "cuda", &buf, &len, &d));
    q = itr_plan_unpack(buf, len, "good.plan", NULL, &d);
    CHECK(q != NULL && same_images(p->devcode, q->devcode));
    itr_program_free(q);
    free(buf);
    itr_diags_free(&d);
    tmpdir_remove();
    itr_program_free(p);
}

int main(void) {
    RUN(pick_image);
    RUN(image_checks);
    if (!itr_nvrtc_available()) {
        printf("skipped: this build has no NVRTC (the CUDA toolkit was not found when it was configured); the image "
               "choice and checks ran\n");
        test_summary();
        return 77;
    }
    RUN(vsepp_plan_carries_cuda_code);
    return test_summary();
}
