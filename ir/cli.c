// The command-table machinery of the command-line programs (ir/cli.h).
#include "ir/cli.h"

#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

bool itr_cli_is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

int itr_cli_usage_error(const struct itr_cli *cli, const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "%s%s%s: ", cli->prog, cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see '%s%s%s --help')\n", cli->prog, cmd ? " " : "", cmd ? cmd : "");
    return ITR_EXIT_USER;
}

int itr_cli_opt_value(const struct itr_cli *cli, const char *cmd, int argc, char **argv, int *i, const char *shrt,
                      const char *lng, const char **val) {
    const char *a = argv[*i];
    size_t ls = shrt ? strlen(shrt) : 0, ll = lng ? strlen(lng) : 0;
    bool exact = (shrt && strcmp(a, shrt) == 0) || (lng && strcmp(a, lng) == 0);
    if (exact) {
        if (*i + 1 >= argc) { itr_cli_usage_error(cli, cmd, "option '%s' needs a value", a); return -1; }
        *val = argv[++*i];
        return 1;
    }
    if (lng && strncmp(a, lng, ll) == 0 && a[ll] == '=') { *val = a + ll + 1; return 1; }
    if (cli->attached_short && shrt && ls == 2 && strncmp(a, shrt, ls) == 0 && a[ls]) { *val = a + ls; return 1; }
    return 0;
}

void itr_cli_list_push(const struct itr_cli *cli, struct itr_cli_list *l, const char *s) {
    const char **nv = realloc(l->v, (size_t)(l->n + 1) * sizeof *nv);
    if (!nv) { fprintf(stderr, "%s: out of memory\n", cli->prog); exit(ITR_EXIT_INTERNAL); }
    nv[l->n++] = s;
    l->v = nv;
}

int itr_cli_opt_list(const struct itr_cli *cli, const char *cmd, int argc, char **argv, int *i, const char *shrt,
                     const char *lng, struct itr_cli_list *l, const char *pair_error) {
    const char *v;
    int r = itr_cli_opt_value(cli, cmd, argc, argv, i, shrt, lng, &v);
    if (r <= 0) return r;
    if (pair_error) {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) { itr_cli_usage_error(cli, cmd, pair_error, v); return -1; }
    }
    itr_cli_list_push(cli, l, v);
    return 1;
}

static const struct itr_cli_command *find_command(const struct itr_cli *cli, const char *name) {
    for (int i = 0; i < cli->n_commands; i++)
        if (strcmp(cli->commands[i].name, name) == 0) return &cli->commands[i];
    return NULL;
}

static void list_commands(const struct itr_cli *cli, FILE *f) {
    for (int i = 0; i < cli->n_commands; i++) fprintf(f, "%s%s", i ? ", " : "", cli->commands[i].name);
}

// "PROG: WHAT; commands: a, b, c (see 'PROG --help')"
static int no_command(const struct itr_cli *cli, const char *what, const char *word) {
    fprintf(stderr, "%s: ", cli->prog);
    fprintf(stderr, what, word);
    fprintf(stderr, "; commands: ");
    list_commands(cli, stderr);
    fprintf(stderr, " (see '%s --help')\n", cli->prog);
    return ITR_EXIT_USER;
}

static void print_usage(const struct itr_cli *cli, FILE *f) {
    fprintf(f, "usage: %s%s COMMAND [ARGS]\n\n%s\n\ncommands:\n", cli->prog, cli->operand ? cli->operand : "",
            cli->description);
    for (int i = 0; i < cli->n_commands; i++)
        fprintf(f, "  %-*s %s\n", cli->name_width, cli->commands[i].name, cli->commands[i].summary);
    fputs(cli->footer, f);
    // The exit codes are this layer's (ITR_EXIT_*), the same for every program.
    fputs("\nexit status: 0 ok, 1 user error (bad input or usage), 2 internal error\n", f);
}

static void print_command_help(const struct itr_cli *cli, const struct itr_cli_command *c) {
    printf("usage: %s%s %s%s%s\n\n%s.\n\n%s", cli->prog, cli->operand ? cli->operand : "", c->name,
           c->args[0] ? " " : "", c->args, c->summary, c->help);
}

int itr_cli_main(const struct itr_cli *cli, int argc, char **argv) {
    if (argc < 2) {
        print_usage(cli, stderr);
        return ITR_EXIT_USER;
    }
    if (itr_cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc > 2) {
            const struct itr_cli_command *c = find_command(cli, argv[2]);
            if (!c && !cli->help_lists_commands)
                return itr_cli_usage_error(cli, NULL, "unknown command '%s'", argv[2]);
            if (!c) {
                fprintf(stderr, "%s: unknown command '%s'; commands: ", cli->prog, argv[2]);
                list_commands(cli, stderr);
                fputc('\n', stderr);
                return ITR_EXIT_USER;
            }
            print_command_help(cli, c);
        } else {
            print_usage(cli, stdout);
        }
        return ITR_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        if (cli->plan_format > 0) printf("%s %s (plan format %d)\n", cli->prog, ITR_VERSION_STRING, cli->plan_format);
        else printf("%s %s\n", cli->prog, ITR_VERSION_STRING);
        return ITR_EXIT_OK;
    }
    const char *operand = NULL;
    int first = 1;   // the command word
    if (cli->operand) {
        if (argv[1][0] == '-' && argv[1][1]) return itr_cli_usage_error(cli, NULL, "unknown option '%s'", argv[1]);
        operand = argv[1];
        first = 2;
        if (argc < 3) return no_command(cli, "missing command after '%s'", operand);
        if (itr_cli_is_help(argv[2])) {
            print_usage(cli, stdout);
            return ITR_EXIT_OK;
        }
    }
    const char *word = argv[first];
    const struct itr_cli_command *c = find_command(cli, word);
    if (!c) {
        if (cli->dash_is_option && word[0] == '-' && word[1])
            return itr_cli_usage_error(cli, NULL, "unknown option '%s'", word);
        return no_command(cli, "unknown command '%s'", word);
    }
    for (int i = first + 1; i < argc; i++)
        if (itr_cli_is_help(argv[i])) { print_command_help(cli, c); return ITR_EXIT_OK; }
    return c->run(operand, argc - first, argv + first);
}
