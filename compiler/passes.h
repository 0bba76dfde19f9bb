// Graph-level passes of the compiler (design.md, compiler/ layer).
//
// Every pass rewrites the graphs of a program in place (graph pointers stay
// valid, so scan nodes keep referring to their bodies) and keeps two
// promises, which tests/test_passes.c checks on every pass:
//   - the program still verifies (itr_program_verify), and
//   - every entry returns bit-for-bit the same outputs from the reference
//     interpreter, on any inputs, in f32 mode and in f64 mode (a plan may be
//     run either way: itr-run --f64, the f64 gradient checks).
// A pass returns false only on an internal error (a project bug), with a
// diagnostic; user input cannot make a pass fail.
//
// The simplification passes (compiler/simplify.c):
//   fold_constants  a node whose operands are all constants (constant nodes,
//                   or full/iota with constant shapes) is evaluated with the
//                   reference interpreter and replaced by a constant. Random
//                   ops and scans are never folded; results larger than
//                   ITR_FOLD_MAX_ELEMENTS are left alone so plans stay small;
//                   a result whose elements are all equal becomes a `full`.
//                   The node is evaluated in both precisions, since f64 mode
//                   computes every f32 value in f64 and must keep doing so
//                   through a folded node. One stored value then has to give
//                   each run its own result: a `full` holds a double v, which
//                   f32 mode reads as (float)v and f64 mode as v, so it holds
//                   the f64 result when that rounds to the f32 one (an
//                   elementwise op on operands both precisions agree on
//                   always does, as the f32 kernels round the double result
//                   once: sqrt(8) folds to the double root); a `constant`
//                   holds f32 elements, which f64 mode widens exactly, so it
//                   serves only when the f64 result is exactly the f32 one.
//                   A node
//                   that neither form represents (double rounding across a
//                   chain, say (float)(0.3f*3) != (float)(0.3*3)) stays in
//                   the graph and each run computes it; no new attribute or
//                   f64 tensor is needed, so plans stay as small as before.
//                   On the zoo no fold is lost (stats.unfolded_precision;
//                   tests/test_fold_precision.c compares -O1 with -O0 on
//                   every model, both precisions).
//   cse             nodes with the same op, operands and attributes become one.
//                   Random ops take part too: they are pure functions of their
//                   seed operand and salt, so two of them with the same seed
//                   value and salt draw the same numbers anyway.
//   dce             drops nodes and parameter uses that no output depends on,
//                   and scan bodies no live scan refers to. Graph inputs and
//                   outputs are never touched (they are signatures).
//   identities      rewrites that are exact in IEEE arithmetic: x+0, 0+x, x-0,
//                   x*1, 1*x, x/1, identity(x), neg(neg(x)), cast to x's own
//                   dtype, reshape/expand/squeeze/unsqueeze/pad that change
//                   nothing, concat of one operand, transpose by the identity
//                   permutation, and transpose of a transpose (composed into
//                   one, or none). Each applies only when the result type
//                   equals x's type, so broadcasting is never lost. (x+0 turns
//                   x = -0.0 into +0.0, which compares equal.)
#ifndef ITR_COMPILER_PASSES_H
#define ITR_COMPILER_PASSES_H

#include "ir/ir.h"

#define ITR_FOLD_MAX_ELEMENTS 65536

struct itr_simplify_stats {
    int folded;           // nodes replaced by constants
    int merged;           // duplicate nodes removed by CSE
    int rewritten;        // algebraic identities applied
    int removed;          // dead nodes removed
    int removed_graphs;   // dead scan bodies removed
    int iterations;       // rounds until nothing changed
    int unfolded_precision;   // constant nodes left unfolded because no one value gives both
                              // the f32 and the f64 result (in the last round)
};

bool itr_pass_fold_constants(struct itr_program *p, struct itr_diags *d);
bool itr_pass_cse(struct itr_program *p, struct itr_diags *d);
bool itr_pass_dce(struct itr_program *p, struct itr_diags *d);
bool itr_pass_identities(struct itr_program *p, struct itr_diags *d);

// All four passes, repeated until a round changes nothing (at most a fixed
// number of rounds). stats may be NULL.
bool itr_simplify(struct itr_program *p, struct itr_simplify_stats *stats, struct itr_diags *d);

// The training step (compiler/train.c, docs/training.md): turns the train
// entry into forward + loss + backward (itr_vjp) + gradient clipping +
// optimizer update, one graph, with every node marked with its phase; adds
// the optimizer state as frozen zero-initialised parameters, the inputs lr,
// step (and moves seed last), and an output and a state update for every
// parameter and state it changes; sets p->train_compiled. Runs after
// elaboration, before simplification; a program without a train entry, or
// one already compiled, is left alone. Unlike the passes above it reports
// user errors (a loss that is not a float scalar, an op without a gradient
// rule on the way to the loss) and warnings (a trainable parameter that does
// not influence the loss); on error the program is unusable.
bool itr_compile_training_step(struct itr_program *p, struct itr_diags *d);

// Algebraic rewrites of contractions (compiler/rewrite.c, docs/rewrites.md),
// run at -O2 (the default) before the training step, so the step's forward
// and backward both use them. They reorder sums, so unlike the passes above
// they are not bit-exact: tests/test_rewrite.c checks every rewritten model
// against the unrewritten one on the reference interpreter in f64.
//   gram     sum(X * (P @ C), last axis) -> sum(P * (X @ Cᵀ)) and
//            sum((P @ C)², last axis) -> sum(P * (P @ (C @ Cᵀ))): the norm
//            and dot products of an attended context from the logits and the
//            Gram matrix, never forming the context (cross attention).
//   reassoc  a matmul chain (A @ B) @ C or A @ (B @ C) in the cheaper order
//            for the model's dims.
//   rows     a value whose readers take only rows [lo, hi) of one axis
//            (slice(x, ...)) is computed on those rows where its rows come
//            from its operands' rows (elementwise ops, reductions over other
//            axes, a matmul's rows, transposes): SGR's last graph step, whose
//            only reader is node 0. Exact on the reference interpreter.
enum {
    ITR_REWRITE_GRAM = 1u << 0,
    ITR_REWRITE_REASSOC = 1u << 1,
    ITR_REWRITE_ROWS = 1u << 2,
    ITR_REWRITE_ALL = 7u
};

struct itr_rewrite_stats {
    int gram;            // sums rewritten to the Gram form
    int reassociated;    // matmul chains reordered
    int rows;            // nodes computed on the rows their readers take
};

// Applies the rewrites in `which` (ITR_REWRITE_* bits) to every graph.
bool itr_rewrite_contractions(struct itr_program *p, unsigned which, struct itr_rewrite_stats *stats,
                              struct itr_diags *d);
// "gram", "reassoc", "rows", "all" -> bits; 0 for an unknown name.
unsigned itr_rewrite_from_name(const char *name);

#endif
