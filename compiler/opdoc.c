// itrc ops: the op reference, generated from the one op table (ir/ops.def),
// so the documentation cannot drift from what the parser accepts.
// docs/ops.md embeds the Markdown form; tests/cli/ops_doc.sh keeps it current.
#include <inttypes.h>
#include <string.h>

#include "compiler/dump.h"

static void format_operands(const struct itr_op_info *info, char *buf, size_t n) {
    if (info->max_inputs < 0) snprintf(buf, n, "%d or more", info->min_inputs);
    else if (info->min_inputs == info->max_inputs) snprintf(buf, n, "%d", info->min_inputs);
    else snprintf(buf, n, "%d to %d", info->min_inputs, info->max_inputs);
}

static void format_results(const struct itr_op_info *info, char *buf, size_t n) {
    if (info->n_outputs < 0) snprintf(buf, n, "varies");
    else snprintf(buf, n, "%d", info->n_outputs);
}

// Operands are numbered from 0, as in diagnostics.
static void format_nondiff(const struct itr_op_info *info, char *buf, size_t n) {
    buf[0] = 0;
    if (info->nondiff == ITR_NONDIFF_ALL) { snprintf(buf, n, "all"); return; }
    if (!info->nondiff) return;
    int count = 0;
    for (int i = 0; i < 31; i++) count += (info->nondiff >> i) & 1;
    size_t w = (size_t)snprintf(buf, n, "operand%s ", count > 1 ? "s" : "");
    bool first = true;
    for (int i = 0; i < 31 && w < n; i++)
        if ((info->nondiff >> i) & 1) {
            int k = snprintf(buf + w, n - w, "%s%d", first ? "" : ", ", i);
            if (k > 0) w += (size_t)k;
            first = false;
        }
}

static void format_attr_spec(const struct itr_attr_spec *s, char *buf, size_t n) {
    const char *kind = itr_attr_kind_name(s->kind);
    if (s->has_default) {
        char def[64];
        switch (s->def.kind) {
        case ITR_ATTR_INT: snprintf(def, sizeof def, "%" PRId64, s->def.u.i); break;
        case ITR_ATTR_BOOL: snprintf(def, sizeof def, "%s", s->def.u.i ? "true" : "false"); break;
        case ITR_ATTR_FLOAT: itr_format_double(s->def.u.f, def, sizeof def); break;
        case ITR_ATTR_DTYPE: snprintf(def, sizeof def, "%s", itr_dtype_name(s->def.u.dtype)); break;
        default: snprintf(def, sizeof def, "[]"); break;
        }
        snprintf(buf, n, "%s: %s = %s", s->name, kind, def);
    } else if (s->required) {
        snprintf(buf, n, "%s: %s", s->name, kind);
    } else {
        snprintf(buf, n, "%s: %s (optional)", s->name, kind);
    }
}

static void md_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

static void print_markdown(FILE *f) {
    fprintf(f, "%d primitive ops. Operands are numbered from 0, as in diagnostics. \"No gradient\" lists the\n"
               "operands that carry no gradient (indices, masks, seeds); \"all\" marks ops whose results carry\n"
               "none. An attribute without a default is required unless marked optional.\n",
            ITR_OP_COUNT);
    for (int c = 0; c < ITR_CLASS_COUNT; c++) {
        int count = 0;
        for (int i = 0; i < ITR_OP_COUNT; i++) count += itr_op_info((enum itr_op)i)->cls == (enum itr_op_class)c;
        if (!count) continue;
        const char *cname = itr_op_class_name((enum itr_op_class)c);
        fprintf(f, "\n### %c%s\n\n", cname[0] - 'a' + 'A', cname + 1);
        fputs("| op | operands | results | attributes | no gradient | description |\n", f);
        fputs("| --- | --- | --- | --- | --- | --- |\n", f);
        for (int i = 0; i < ITR_OP_COUNT; i++) {
            const struct itr_op_info *info = itr_op_info((enum itr_op)i);
            if (info->cls != (enum itr_op_class)c) continue;
            char ops[32], res[32], nd[96];
            format_operands(info, ops, sizeof ops);
            format_results(info, res, sizeof res);
            format_nondiff(info, nd, sizeof nd);
            fprintf(f, "| `%s` | %s | %s | ", info->name, ops, res);
            for (int k = 0; k < info->n_attrs; k++) {
                char a[128];
                format_attr_spec(&info->attrs[k], a, sizeof a);
                // "(optional)" stays outside the code span.
                char *opt = strstr(a, " (optional)");
                if (opt) *opt = 0;
                fprintf(f, "%s`%s`%s", k ? "<br>" : "", a, opt ? " (optional)" : "");
            }
            fprintf(f, " | %s | ", nd);
            md_escaped(f, info->doc);
            fputs(" |\n", f);
        }
    }
}

static void print_text(FILE *f) {
    fprintf(f, "%d primitive ops (operands numbered from 0; 'no gradient' lists operands that carry none)\n",
            ITR_OP_COUNT);
    for (int c = 0; c < ITR_CLASS_COUNT; c++) {
        bool header = false;
        for (int i = 0; i < ITR_OP_COUNT; i++) {
            const struct itr_op_info *info = itr_op_info((enum itr_op)i);
            if (info->cls != (enum itr_op_class)c) continue;
            if (!header) { fprintf(f, "\n%s\n", itr_op_class_name((enum itr_op_class)c)); header = true; }
            char ops[32], res[32], nd[96];
            format_operands(info, ops, sizeof ops);
            format_results(info, res, sizeof res);
            format_nondiff(info, nd, sizeof nd);
            fprintf(f, "  %-22s %s\n", info->name, info->doc);
            fprintf(f, "  %-22s operands: %s; results: %s", "", ops, res);
            if (nd[0]) fprintf(f, "; no gradient: %s", nd);
            fputc('\n', f);
            for (int k = 0; k < info->n_attrs; k++) {
                char a[128];
                format_attr_spec(&info->attrs[k], a, sizeof a);
                fprintf(f, "  %-22s %s%s\n", "", k ? "            " : "attributes: ", a);
            }
        }
    }
}

void itr_print_op_reference(FILE *f, bool markdown) {
    if (markdown) print_markdown(f);
    else print_text(f);
}
