// Build identity of the C++ core.
#pragma once

namespace qwen3moe {
const char* version();
}  // namespace qwen3moe
