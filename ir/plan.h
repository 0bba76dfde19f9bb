// Plans: the compiled artefact itrc writes and itr-run loads (design.md
// "Contracts"). A plan is a protobuf message (ir/plan.proto) holding the
// program (symbols, params with initialisers, graphs), a fingerprint of the
// IR, the compiler version, and room for compiled kernels per target.
#ifndef ITR_PLAN_H
#define ITR_PLAN_H

#include "ir.h"

#define ITR_PLAN_FORMAT_VERSION 1

struct itr_plan_info {
    uint32_t format_version;
    char compiler_version[32];
    char fingerprint[17];      // 16 hex digits of the program hash
    char target[16];           // "ref", later "llvm", "cuda"
};

// The program's fused kernels (p->kernels, ir/kir.h) travel with it: written
// when present, and read back into the loaded program's p->kernels with every
// index checked against the program and every kernel through kir_verify.
// Writes atomically (temporary file + rename). False + diagnostic on I/O error.
bool itr_plan_write(const struct itr_program *p, const char *target, const char *path, struct itr_diags *d);
// Loads a plan; NULL + a clear diagnostic for a missing, truncated or corrupt
// file, a non-plan file, or a plan of another format version.
struct itr_program *itr_plan_read(const char *path, struct itr_plan_info *info, struct itr_diags *d);
// In-memory forms, for tests.
bool itr_plan_pack(const struct itr_program *p, const char *target, uint8_t **buf, size_t *len, struct itr_diags *d);
struct itr_program *itr_plan_unpack(const uint8_t *buf, size_t len, const char *what, struct itr_plan_info *info,
                                    struct itr_diags *d);
// Hash of the program's structure (what the fingerprint records).
uint64_t itr_program_hash(const struct itr_program *p);

#endif
