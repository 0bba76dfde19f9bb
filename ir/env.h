// The ITRC_* environment switches (ITRC_NO_CACHE, ITRC_NO_PACKED_SCANS,
// ITRC_PROFILE, ...): one reading of "is it on", so that every switch
// means the same by the same value.
#ifndef ITR_IR_ENV_H
#define ITR_IR_ENV_H

#include <stdbool.h>

// Set, not empty and not "0".
bool itr_env_flag(const char *name);

#endif
