// The ITRC_* environment switches (env.h).
#include "ir/env.h"

#include <stdlib.h>
#include <string.h>

bool itr_env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}
