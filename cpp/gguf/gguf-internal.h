// Internal helpers shared by the GGUF reader's translation units (not part of the public API):
// error construction with a byte offset, quoting of untrusted bytes for messages, UTF-8
// validation, value-type names, and the known-key type checks (gguf-known-keys.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "gguf/gguf-reader.h"

namespace qwen3moe::gguf_detail {

// Throws GGUFError("GGUF: <what> [at byte <at>]").
[[noreturn]] void fail(const std::string& what, uint64_t at);

// Untrusted bytes for a message: printable ASCII kept, others as \xNN, at most 96 bytes shown.
std::string quote(const std::string& s);

// Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(const std::string& s);

// "UINT32", "ARRAY of INT8", "ARRAY of ARRAY".
std::string describe_type(const GGUFValue& v);

// Checks the value type of a key the engine interprets (general.*, tokenizer.*, <arch>.*).
// `arch` is general.architecture ("" when absent); `at` is the key's byte offset.
void check_known_key(const std::string& key, const GGUFValue& v, const std::string& arch, uint64_t at);

}  // namespace qwen3moe::gguf_detail
