#include "runtime/version.h"

namespace qwen3moe {
const char* version() { return "0.1.0"; }
}  // namespace qwen3moe
