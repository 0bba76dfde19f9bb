// Diagnostics: every user-caused error is collected here with a location and
// printed as "file:line:col: error: message", the source line and a caret.
// Library code reports and returns; only the CLIs print and choose exit codes.
#ifndef ITR_DIAG_H
#define ITR_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct itr_loc {
    const char *file;   // NULL: no location (e.g. a value built by a pass)
    int line, col;      // 1-based; col counts bytes
};

#define ITR_NOLOC ((struct itr_loc){ NULL, 0, 0 })

// Exit codes of every itrc command (docs/user-guide.md).
enum itr_exit { ITR_EXIT_OK = 0, ITR_EXIT_USER = 1, ITR_EXIT_INTERNAL = 2 };

enum itr_severity { ITR_SEV_ERROR, ITR_SEV_WARNING, ITR_SEV_NOTE };

struct itr_diag {
    enum itr_severity sev;
    struct itr_loc loc;        // loc.file is the diagnostic's own copy
    char *msg;
};

struct itr_source {
    char *path;
    char *text;
    size_t len;
};

struct itr_diags {
    struct itr_diag *items; int n, cap;
    int n_errors, n_warnings;
    struct itr_source *sources; int n_sources, cap_sources;  // for caret display
    int max_errors;        // stop recording after this many (0 = 100)
};

void itr_diags_init(struct itr_diags *d);
void itr_diags_free(struct itr_diags *d);
void itr_diag_error(struct itr_diags *d, struct itr_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void itr_diag_warning(struct itr_diags *d, struct itr_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void itr_diag_note(struct itr_diags *d, struct itr_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void itr_diag_vreport(struct itr_diags *d, enum itr_severity sev, struct itr_loc loc, const char *fmt, va_list ap);
// Registers a source text so messages can quote the offending line. The
// diags keep a copy; the returned path pointer is stable for locations.
const char *itr_diags_add_source(struct itr_diags *d, const char *path, const char *text, size_t len);
void itr_diags_print(const struct itr_diags *d, FILE *f);
bool itr_diags_has_errors(const struct itr_diags *d);
// Joined messages, for tests: "line:col: msg\n" per diagnostic (caller frees).
char *itr_diags_summary(const struct itr_diags *d);

#endif
