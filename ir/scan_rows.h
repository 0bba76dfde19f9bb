// Packed scans: which rows of a scan's step may be skipped, and what the
// results hold on the skipped rows (docs/kernels.md, "Packed scans").
//
// A recurrence over a padded batch masks its update: with m [B, 1] the step's
// validity, h' = m * f(h, x) + (1 - m) * h keeps a finished row's state and
// m * h' zeroes its output. Where m is 0 the step's work on that row is
// thrown away, so an executor may run the body on the rows where m is not 0
// alone (the batch symbol bound to their count) and fill the others by rule,
// as packed sequences do. This module proves, from the body graph, that the
// results are the same: every value of the body is either a row value (axis 0
// is the batch; row b of it depends on row b of the body's row inputs only)
// or a whole value (no batch axis; it depends on row values only through
// sums over the batch of rows that are zero where m is 0), and it follows
// what each row value holds on a row where m is 0.
//
// The proof takes every input to be finite, and products and sums of
// finite values to stay finite: the reference multiplies the skipped rows'
// values by 0, which is 0 only for a finite value. Ops that make a
// non-finite value from a finite one (exp, log, division, square roots,
// powers) count as unknown, and a row whose fill rests on such a value is
// not skipped.
#ifndef ITR_IR_SCAN_ROWS_H
#define ITR_IR_SCAN_ROWS_H

#include <stdbool.h>
#include <stdint.h>

struct itr_graph;
struct itr_node;

// What a body output holds on a skipped row.
enum itr_skip_fill {
    ITR_SKIP_WHOLE,   // not a row value: the step computes it whole from the kept rows
    ITR_SKIP_COPY,    // the row of body input `src` (a carry: its own row, kept)
    ITR_SKIP_CONST,   // every element `value` (0: a masked output)
    ITR_SKIP_ANY,     // some finite value nothing fixes: only packed scans over the same mask may read it
};

struct itr_scan_rows {
    int mask;               // the body input (a scanned one) whose 0 rows are skipped
    int32_t batch_symbol;   // the symbol of the batch axis: bound to the kept row count in a packed step
    int n_inputs, n_outputs;
    bool *row_input;        // per body input: a row value (gathered by rows) or whole
    enum itr_skip_fill *fill;   // per body output
    int *src;               // per body output: the input of ITR_SKIP_COPY
    double *value;          // per body output: the constant of ITR_SKIP_CONST
};

// Whether the scan node `scan` (its body is its "body" attribute) can skip
// the rows of some scanned mask; fills *out (to free with
// itr_scan_rows_free) when it can. The first scanned operand that proves
// everything is the mask.
bool itr_scan_rows_analyse(const struct itr_node *scan, struct itr_scan_rows *out);
void itr_scan_rows_free(struct itr_scan_rows *r);

#endif
