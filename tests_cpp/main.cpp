// Catch2 (v2, Debian's catch2 package) entry point for qwen3moe_tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
