// safetensors files: the reader and writer are in ir/safetensors.h (itrc
// export reads weights too, and may not depend on runtime/); this header
// keeps the runtime's includes as they were.
#ifndef ITR_SAFETENSORS_H
#define ITR_SAFETENSORS_H

#include "ir/safetensors.h"

#endif
