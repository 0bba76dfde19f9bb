// The command-table machinery the three programs (itrc, itr-run, itr-data)
// share: usage and per-command help, command lookup and dispatch, and the
// option helpers. Each program keeps its own text (usage line, description,
// exit-status lines, command rows) as data in a struct itr_cli.
//
// Why ir/: itrc lives in compiler/ and itr-run, itr-data in runtime/, and
// neither of those layers may include the other (design.md). ir/ is the lowest
// layer both stand on, and it already holds the other pieces every program
// shares (diagnostics and the exit codes in ir/diag.h, ir/fileio.h). A
// separate cli/ library was the alternative; for ~140 lines that depend only
// on libc and ir/diag.h it would add a layer without separating anything.
// Nothing in ir/ itself calls these functions: they are for the programs.
#ifndef ITR_CLI_H
#define ITR_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/diag.h"

struct itr_cli_command {
    const char *name;
    const char *args;      // after "PROG [OPERAND] NAME"; may be ""
    const char *summary;
    const char *help;      // options and details
    // operand: the word before the command (itr-run's FILE.plan), else NULL.
    // argv[0] is the command name.
    int (*run)(const char *operand, int argc, char **argv);
};

struct itr_cli {
    const char *prog;
    const char *operand;           // " FILE.plan": a word every command is given before it; NULL: none
    const char *description;       // printed after the usage line, before "commands:"
    const char *footer;            // printed after the command list (then the exit statuses)
    int name_width;                // width of the command-name column in the usage
    int plan_format;               // > 0: '--version' also prints "(plan format N)"
    bool attached_short;           // "-IDIR" is accepted for a short option "-I"
    bool help_lists_commands;      // 'help X' with an unknown X lists the commands (else a usage error)
    bool dash_is_option;           // an unknown first word that starts with '-' is an unknown option
    const struct itr_cli_command *commands;
    int n_commands;
};

bool itr_cli_is_help(const char *arg);

// "PROG[ CMD]: <fmt with arg> (see 'PROG[ CMD] --help')"; returns ITR_EXIT_USER.
int itr_cli_usage_error(const struct itr_cli *cli, const char *cmd, const char *fmt, const char *arg);

// Matches an option that takes a value: "--name VALUE", "--name=VALUE",
// "-x VALUE" (when shrt is given) and "-xVALUE" (when cli->attached_short).
// 1: matched, *val set; 0: not this option; -1: the value is missing (reported).
int itr_cli_opt_value(const struct itr_cli *cli, const char *cmd, int argc, char **argv, int *i, const char *shrt,
                      const char *lng, const char **val);

// A growing list of option values (repeatable options).
struct itr_cli_list { const char **v; int n; };

void itr_cli_list_push(const struct itr_cli *cli, struct itr_cli_list *l, const char *s);

// A repeatable option whose values are collected in l. With pair_error, each
// value must read NAME=VALUE, else pair_error (a format taking the value) is
// reported. Returns as itr_cli_opt_value.
int itr_cli_opt_list(const struct itr_cli *cli, const char *cmd, int argc, char **argv, int *i, const char *shrt,
                     const char *lng, struct itr_cli_list *l, const char *pair_error);

// The whole program: usage, help, version, dispatch. Returns the exit code.
int itr_cli_main(const struct itr_cli *cli, int argc, char **argv);

#endif
