// GGUF reader tests: a valid-file round trip (buffer and mmap paths, typed getters) and the
// handcrafted hostile files of ARCHITECTURE.md section 6, built byte by byte here so CI can run
// them under ASan/UBSan. Each buffer is an exactly-sized heap allocation, so any read past the
// end is an ASan error; each hostile case must throw GGUFError naming the field.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

#include "gguf/gguf-reader.h"
#include "quant/ggml-types.h"
#include "runtime/errors.h"

using namespace qwen3moe;

namespace {

using Bytes = std::vector<uint8_t>;
constexpr uint64_t M64 = ~0ull;

// resize + memcpy (GCC 12 -O3 reports a false stringop-overflow for vector::insert here)
void put(Bytes& b, const void* p, size_t n) {
    if (n == 0) return;
    const size_t old = b.size();
    b.resize(old + n);
    std::memcpy(b.data() + old, p, n);
}
template <class T>
Bytes enc(T v) {
    Bytes b;
    put(b, &v, sizeof v);
    return b;
}
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) put(out, p.data(), p.size());
    return out;
}
Bytes u32(uint32_t v) { return enc(v); }
Bytes u64(uint64_t v) { return enc(v); }
Bytes str_len(const std::string& s, uint64_t len) {
    Bytes b = u64(len);
    put(b, s.data(), s.size());
    return b;
}
Bytes str(const std::string& s) { return str_len(s, s.size()); }
// ARRAY payload: element type, count, encoded elements
Bytes arr(GGUFType et, const std::vector<Bytes>& items, uint64_t count = M64) {
    Bytes b = cat({u32(uint32_t(et)), u64(count == M64 ? items.size() : count)});
    for (const Bytes& i : items) put(b, i.data(), i.size());
    return b;
}

struct KV {
    std::string key;
    uint32_t type;
    Bytes payload;  // encoded value (without the type)
};
struct TI {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type = GGML_TYPE_F32;
    uint64_t offset = M64;    // M64: next aligned position
    std::optional<uint32_t> n_dims;  // default: ne.size()
    uint64_t name_len = M64;  // M64: name.size()
};

uint64_t nbytes_of(const TI& t) {
    const GGMLTypeTraits* tr = ggml_type_traits(t.type);
    if (!tr || t.ne.empty()) return 0;
    unsigned __int128 n = t.ne[0] / uint64_t(tr->block_size) * uint64_t(tr->type_size);
    for (size_t d = 1; d < t.ne.size(); ++d) n *= t.ne[d];
    return n > (1u << 22) ? 0 : uint64_t(n);
}

struct Builder {
    uint32_t version = 3;
    std::string magic = "GGUF";
    std::vector<KV> kvs;
    std::vector<TI> tensors;
    std::optional<uint64_t> n_kv, n_tensors;  // header counts (default: the real ones)
    uint64_t alignment = 32;
    uint64_t data_size = M64;  // M64: exactly what the tensors need

    Builder& kv(const std::string& k, GGUFType t, Bytes payload) {
        kvs.push_back({k, uint32_t(t), std::move(payload)});
        return *this;
    }
    Builder& kv_raw_type(const std::string& k, uint32_t t, Bytes payload) {
        kvs.push_back({k, t, std::move(payload)});
        return *this;
    }
    Builder& tensor(TI t) {
        tensors.push_back(std::move(t));
        return *this;
    }
    Bytes build() const {
        Bytes b;
        put(b, magic.data(), magic.size());
        b = cat({b, u32(version), u64(n_tensors.value_or(tensors.size())),
                 u64(n_kv.value_or(kvs.size()))});
        for (const KV& k : kvs) b = cat({b, str(k.key), u32(k.type), k.payload});
        uint64_t end = 0;
        for (const TI& t : tensors) {
            b = cat({b, str_len(t.name, t.name_len == M64 ? t.name.size() : t.name_len),
                     u32(t.n_dims.value_or(uint32_t(t.ne.size())))});
            for (uint64_t ne : t.ne) b = cat({b, u64(ne)});
            const uint64_t off = t.offset == M64 ? (end + alignment - 1) / alignment * alignment : t.offset;
            b = cat({b, u32(t.type), u64(off)});
            const uint64_t nb = nbytes_of(t);
            if (nb && off <= (1u << 22)) end = std::max(end, off + nb);
        }
        if (!tensors.empty()) {
            b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
            const uint64_t size = data_size == M64 ? end : data_size;
            for (uint64_t i = 0; i < size; ++i) b.push_back(uint8_t(i * 37 + 11));
        }
        return b;
    }
};

Builder base() {
    Builder g;
    g.kv("general.architecture", GGUFType::STRING, str("qwen3moe"));
    return g;
}
TI t_f32(const std::string& name, std::vector<uint64_t> ne) {
    TI t;
    t.name = name;
    t.ne = std::move(ne);
    return t;
}
TI t_typed(const std::string& name, std::vector<uint64_t> ne, uint32_t type) {
    TI t = t_f32(name, std::move(ne));
    t.type = type;
    return t;
}
Builder with_tensor(Builder g) {
    g.tensor(t_f32("w", {4, 2}));
    return g;
}
Bytes truncate(Bytes b, size_t n) {
    b.resize(std::min(n, b.size()));
    return b;
}

// Parse an exactly-sized heap copy; returns the GGUFError message ("" when it loaded).
std::string parse_error(const Bytes& data) {
    std::unique_ptr<uint8_t[]> buf(new uint8_t[data.size() ? data.size() : 1]);
    if (!data.empty()) std::memcpy(buf.get(), data.data(), data.size());
    try {
        auto f = GGUFFile::from_memory(data.empty() ? nullptr : buf.get(), data.size());
        return "";
    } catch (const GGUFError& e) {
        return e.what();
    }
}

struct Case {
    std::string name;
    Bytes data;
    std::vector<std::string> needles;
};

Bytes nested(int depth) {
    Bytes v = arr(GGUFType::INT32, {u32(1)});
    for (int d = 1; d < depth; ++d) v = arr(GGUFType::ARRAY, {v});
    return v;
}

std::vector<Case> hostile_cases() {
    std::vector<Case> c;
    auto add = [&](const std::string& n, Bytes d, std::vector<std::string> needles) {
        c.push_back({n, std::move(d), std::move(needles)});
    };
    const Bytes valid = with_tensor(base()).build();
    Builder g;
    // header
    add("empty file", {}, {"magic"});
    add("3 bytes", Bytes{'G', 'G', 'U'}, {"magic"});
    {
        Bytes b = valid;
        b[3] = 'X';
        add("bad magic", b, {"bad magic"});
    }
    g = base(); g.version = 1; add("version 1", g.build(), {"version 1"});
    g = base(); g.version = 4; add("version 4", g.build(), {"version 4"});
    g = base(); g.version = 0x03000000; add("version big-endian", g.build(), {"big-endian"});
    add("truncated in version", truncate(valid, 6), {"version", "truncated"});
    add("truncated in n_tensors", truncate(valid, 12), {"n_tensors", "truncated"});
    add("truncated in n_kv", truncate(valid, 20), {"n_kv", "truncated"});
    g = base(); g.n_kv = M64; add("n_kv 2^64-1", g.build(), {"n_kv 18446744073709551615"});
    g = base(); g.n_kv = 1ull << 60; add("n_kv 2^60", g.build(), {"n_kv"});
    g = base(); g.n_kv = 3; add("n_kv beyond records", g.build(), {"key #1", "truncated"});
    g = base(); g.n_tensors = M64; add("n_tensors 2^64-1", g.build(), {"n_tensors"});
    // keys and values
    {
        Bytes b = base().build();
        std::memcpy(b.data() + 24, &M64, 8);
        add("key length 2^64-1", b, {"key length", "at byte 24"});
    }
    add("key length > 65535", base().kv(std::string(70000, 'k'), GGUFType::UINT8, {1}).build(), {"key length", "limit"});
    add("empty key", base().kv("", GGUFType::UINT8, {1}).build(), {"key is empty"});
    add("key not UTF-8", base().kv("bad\xff\xfe", GGUFType::UINT8, {1}).build(), {"UTF-8"});
    add("key with NUL", base().kv(std::string("a\0b", 3), GGUFType::UINT8, {1}).build(), {"NUL"});
    add("unknown value type 13", base().kv_raw_type("x.t", 13, Bytes(8, 0)).build(), {"x.t", "value type id 13"});
    add("value type 0xFFFFFFFF", base().kv_raw_type("x.t", 0xFFFFFFFFu, {}).build(), {"x.t", "value type"});
    add("string length 2^63", base().kv("x.s", GGUFType::STRING, str_len("abc", 1ull << 63)).build(),
        {"x.s", "string length"});
    add("string past EOF", base().kv("x.s", GGUFType::STRING, str_len("abc", 100)).build(), {"x.s", "string length 100"});
    add("array count 2^64-1", base().kv("x.a", GGUFType::ARRAY, arr(GGUFType::UINT8, {}, M64 - 1)).build(),
        {"x.a", "array count"});
    add("array INT32 count > bytes/4",
        base().kv("x.a", GGUFType::ARRAY, arr(GGUFType::INT32, {u32(0), u32(0), u32(0)}, 5)).build(),
        {"x.a", "array count 5"});
    add("array of strings count > bytes/8",
        base().kv("x.a", GGUFType::ARRAY, arr(GGUFType::STRING, {str("ab"), str("c")}, 4)).build(),
        {"x.a", "array count 4"});
    add("array element type 13", base().kv("x.a", GGUFType::ARRAY, cat({u32(13), u64(1), Bytes(8, 0)})).build(),
        {"x.a", "array element type"});
    add("nested arrays depth 9", base().kv("x.deep", GGUFType::ARRAY, nested(9)).build(), {"x.deep", "nested deeper"});
    add("nested array bomb", base().kv("x.bomb", GGUFType::ARRAY,
                                       cat({u32(uint32_t(GGUFType::ARRAY)), u64(1ull << 40), u32(0), u64(0)})).build(),
        {"x.bomb", "array count"});
    add("array element truncated",
        base().kv("x.a", GGUFType::ARRAY, cat({u32(uint32_t(GGUFType::STRING)), u64(2), str("abc"), u64(50)})).build(),
        {"x.a", "element [1]", "string length 50"});
    add("bool value 2", base().kv("x.b", GGUFType::BOOL, {2}).build(), {"x.b", "BOOL value 2"});
    add("duplicate key", base().kv("x.d", GGUFType::UINT8, {1}).kv("x.d", GGUFType::UINT8, {2}).build(),
        {"x.d", "duplicate key"});
    {
        Bytes d = base().kv("general.name", GGUFType::STRING, str("hello world")).build();
        add("truncated inside value", truncate(d, d.size() - 5), {"general.name", "string length 11"});
    }
    // alignment
    add("alignment 0", with_tensor(base().kv("general.alignment", GGUFType::UINT32, u32(0))).build(),
        {"general.alignment", "alignment is 0"});
    add("alignment 3", with_tensor(base().kv("general.alignment", GGUFType::UINT32, u32(3))).build(),
        {"general.alignment", "power of two"});
    add("alignment 2^31", with_tensor(base().kv("general.alignment", GGUFType::UINT32, u32(1u << 31))).build(),
        {"general.alignment", "limit"});
    add("alignment UINT64", with_tensor(base().kv("general.alignment", GGUFType::UINT64, u64(32))).build(),
        {"general.alignment", "UINT32"});
    add("alignment STRING", with_tensor(base().kv("general.alignment", GGUFType::STRING, str("32"))).build(),
        {"general.alignment", "UINT32"});
    // known keys with the wrong value type
    {
        Builder a;
        add("wrong type general.architecture", a.kv("general.architecture", GGUFType::UINT32, u32(7)).build(),
            {"general.architecture", "STRING"});
    }
    add("wrong type general.file_type", base().kv("general.file_type", GGUFType::UINT8, {15}).build(),
        {"general.file_type", "UINT32"});
    add("wrong type block_count", base().kv("qwen3moe.block_count", GGUFType::INT32, u32(48)).build(),
        {"qwen3moe.block_count", "unsigned"});
    add("wrong type head_count_kv array", base().kv("qwen3moe.attention.head_count_kv", GGUFType::ARRAY,
                                                    arr(GGUFType::INT8, {{4}, {4}})).build(),
        {"qwen3moe.attention.head_count_kv", "unsigned"});
    add("wrong type rope.freq_base", base().kv("qwen3moe.rope.freq_base", GGUFType::FLOAT64, enc(1e7)).build(),
        {"qwen3moe.rope.freq_base", "FLOAT32"});
    add("wrong type rms eps", base().kv("qwen3moe.attention.layer_norm_rms_epsilon", GGUFType::UINT32, u32(1)).build(),
        {"layer_norm_rms_epsilon", "FLOAT32"});
    add("wrong type tokens", base().kv("tokenizer.ggml.tokens", GGUFType::ARRAY, arr(GGUFType::UINT8, {{1}})).build(),
        {"tokenizer.ggml.tokens", "ARRAY of STRING"});
    add("wrong type token_type (INT8 for INT32)",
        base().kv("tokenizer.ggml.token_type", GGUFType::ARRAY, arr(GGUFType::INT8, {{1}, {1}, {1}})).build(),
        {"tokenizer.ggml.token_type", "ARRAY of INT32", "found ARRAY of INT8"});
    add("wrong type scores", base().kv("tokenizer.ggml.scores", GGUFType::ARRAY, arr(GGUFType::FLOAT64, {enc(0.5)})).build(),
        {"tokenizer.ggml.scores", "ARRAY of FLOAT32"});
    add("wrong type bos id", base().kv("tokenizer.ggml.bos_token_id", GGUFType::INT32, u32(1)).build(),
        {"tokenizer.ggml.bos_token_id", "UINT32"});
    add("wrong type chat_template", base().kv("tokenizer.chat_template", GGUFType::ARRAY,
                                              arr(GGUFType::STRING, {str("x")})).build(),
        {"tokenizer.chat_template", "STRING"});
    {
        std::vector<Bytes> toks = {str("a"), str("b"), str("c")};
        add("scores length != tokens length",
            base().kv("tokenizer.ggml.tokens", GGUFType::ARRAY, arr(GGUFType::STRING, toks))
                .kv("tokenizer.ggml.scores", GGUFType::ARRAY, arr(GGUFType::FLOAT32, {enc(0.f), enc(0.f)}))
                .build(),
            {"tokenizer.ggml.scores", "differs"});
    }
    add("token_type without tokens",
        base().kv("tokenizer.ggml.token_type", GGUFType::ARRAY, arr(GGUFType::INT32, {u32(1)})).build(),
        {"tokenizer.ggml.token_type", "without"});
    // tensor infos
    {
        TI t = t_f32("w", {4, 2});
        Builder b = base();
        b.tensors.push_back(t);
        b.tensors[0].name_len = M64 - 1;
        add("tensor name length 2^64-2", b.build(), {"tensor #0", "tensor name length"});
    }
    add("tensor name > 64 bytes", base().tensor(t_f32(std::string(65, 'n'), {4})).build(), {"limit of 64"});
    add("empty tensor name", base().tensor(t_f32("", {4})).build(), {"tensor name is empty"});
    add("tensor name not UTF-8", base().tensor(t_f32("\xc0\xaf", {4})).build(), {"tensor #0", "UTF-8"});
    add("duplicate tensor name", base().tensor(t_f32("w", {4})).tensor(t_f32("w", {4})).build(),
        {"tensor 'w'", "duplicate tensor name"});
    {
        TI t = t_f32("w", {4});
        t.n_dims = 0;
        add("n_dims 0", base().tensor(t).build(), {"tensor 'w'", "n_dims 0"});
        t.n_dims = 0xFFFFFFFFu;
        add("n_dims 0xFFFFFFFF", base().tensor(t).build(), {"tensor 'w'", "n_dims 4294967295"});
    }
    add("n_dims 5", base().tensor(t_f32("w", {1, 1, 1, 1, 4})).build(), {"tensor 'w'", "n_dims 5"});
    add("ne 0", base().tensor(t_f32("w", {4, 0})).build(), {"tensor 'w'", "ne[1] is 0"});
    add("ne >= 2^63", base().tensor(t_f32("w", {1ull << 63, 1})).build(), {"tensor 'w'", "INT64_MAX"});
    add("ne product wraps", base().tensor(t_f32("w", {1ull << 32, 1ull << 32, 2})).build(), {"tensor 'w'", "overflows"});
    add("byte size overflows", base().tensor(t_typed("w", {1ull << 61}, GGML_TYPE_F64)).build(), {"tensor 'w'", "byte size"});
    add("truncated inside ne", truncate(base().tensor(t_f32("w", {4, 2})).build(), 72 + 9 + 4 + 8 + 3),
        {"tensor 'w'", "ne[1]", "truncated"});
    add("type id 40", base().tensor(t_typed("w", {4}, 40)).build(), {"tensor 'w'", "type id 40"});
    add("type id 31 (removed)", base().tensor(t_typed("w", {32}, 31)).build(), {"tensor 'w'", "type id 31"});
    add("type id 0xFFFFFFFF", base().tensor(t_typed("w", {4}, 0xFFFFFFFFu)).build(), {"tensor 'w'", "type id 4294967295"});
    add("ne[0] not a multiple of the block", base().tensor(t_typed("w", {100, 2}, GGML_TYPE_Q4_K)).build(),
        {"tensor 'w'", "block size 256"});
    // placement
    {
        TI t = t_f32("w", {4, 2});
        t.offset = 1ull << 30;
        add("offset past EOF", base().tensor(t).build(), {"tensor 'w'", "past end of file"});
        t.offset = M64 - 31;
        add("offset 2^64-32 (wraps)", base().tensor(t).build(), {"tensor 'w'", "past end of file"});
        t.offset = 20;
        add("misaligned offset", base().tensor(t_f32("a", {4})).tensor(t).build(),
            {"tensor 'w'", "not a multiple of the alignment 32"});
        t.offset = 0;
        add("overlapping tensors (same offset)", base().tensor(t_f32("a", {8})).tensor(t).build(),
            {"tensor 'w'", "overlaps tensor 'a'"});
        t.offset = 32;
        add("overlapping tensors (partial)", base().tensor(t_f32("a", {16})).tensor(t).build(),
            {"tensor 'w'", "overlaps"});
    }
    {
        Builder b = with_tensor(base());
        b.data_size = 31;
        add("tensor bytes fewer than type x shape need", b.build(), {"tensor 'w'", "size 32 past end of file"});
        b.data_size = 0;
        Bytes d = b.build();
        add("no data section", truncate(d, d.size() - 1), {"tensor 'w'", "past end of file"});
    }
    add("Q8_0 tensor truncated",
        [] {
            Bytes d = base().tensor(t_typed("q", {64, 2}, GGML_TYPE_Q8_0)).build();
            d.pop_back();
            return d;
        }(),
        {"tensor 'q'", "past end of file"});
    return c;
}

std::string write_temp(const Bytes& data) {
    char path[] = "/tmp/qwen3moe-test-gguf-XXXXXX";
    const int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, data.data(), data.size()) == ssize_t(data.size()));
    close(fd);
    return path;
}

Builder valid_small() {
    Builder g;
    g.alignment = 64;
    g.kv("general.architecture", GGUFType::STRING, str("qwen3moe"));
    g.kv("general.alignment", GGUFType::UINT32, u32(64));
    g.kv("qwen3moe.block_count", GGUFType::UINT32, u32(2));
    g.kv("qwen3moe.rope.freq_base", GGUFType::FLOAT32, enc(1e7f));
    g.kv("x.u8", GGUFType::UINT8, {200});
    g.kv("x.i8", GGUFType::INT8, {0x9c});  // -100
    g.kv("x.u16", GGUFType::UINT16, enc(uint16_t(60000)));
    g.kv("x.i16", GGUFType::INT16, enc(int16_t(-30000)));
    g.kv("x.i32", GGUFType::INT32, enc(int32_t(-2000000000)));
    g.kv("x.u64", GGUFType::UINT64, u64((1ull << 63) + 5));
    g.kv("x.i64", GGUFType::INT64, enc(int64_t(-(1ll << 62))));
    g.kv("x.f64", GGUFType::FLOAT64, enc(3.141592653589793));
    g.kv("x.f64big", GGUFType::FLOAT64, enc(-1e300));
    g.kv("x.bool", GGUFType::BOOL, {1});
    g.kv("x.empty", GGUFType::ARRAY, arr(GGUFType::INT32, {}));
    g.kv("x.nested", GGUFType::ARRAY,
         arr(GGUFType::ARRAY, {arr(GGUFType::INT16, {enc(int16_t(1)), enc(int16_t(-2))}),
                               arr(GGUFType::STRING, {str("a"), str("bc")})}));
    g.kv("tokenizer.ggml.tokens", GGUFType::ARRAY, arr(GGUFType::STRING, {str("<s>"), str("a"), str("b")}));
    g.kv("tokenizer.ggml.scores", GGUFType::ARRAY, arr(GGUFType::FLOAT32, {enc(0.f), enc(-1.f), enc(-2.f)}));
    g.kv("tokenizer.ggml.token_type", GGUFType::ARRAY, arr(GGUFType::INT32, {u32(3), u32(1), u32(1)}));
    g.tensor(t_typed("token_embd.weight", {256, 2}, GGML_TYPE_Q4_K));
    g.tensor(t_f32("blk.0.attn_norm.weight", {8}));
    g.tensor(t_typed("blk.0.attn_q.weight", {32, 2, 1}, GGML_TYPE_Q8_0));
    g.tensor(t_typed("output.weight", {4, 3}, GGML_TYPE_F16));
    return g;
}

void check_valid_small(const GGUFFile& f, const uint8_t* base) {
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 64);
    CHECK(f.data_offset() % 64 == 0);
    REQUIRE(f.keys().size() == 19);
    CHECK(f.keys()[0] == "general.architecture");
    CHECK(f.get_str("general.architecture") == "qwen3moe");
    CHECK(f.get_u32("qwen3moe.block_count") == 2);
    CHECK(f.get_f32("qwen3moe.rope.freq_base") == 1e7f);
    CHECK(f.get_u32("x.u8") == 200);
    CHECK(f.get_i32("x.i8") == -100);
    CHECK(f.get_u32("x.u16") == 60000);
    CHECK(f.get_i32("x.i16") == -30000);
    CHECK(f.get_i32("x.i32") == -2000000000);
    CHECK(f.get_u64("x.u64") == (1ull << 63) + 5);
    CHECK(f.find("x.i64")->i == -(1ll << 62));
    CHECK(f.find("x.f64")->f == 3.141592653589793);
    CHECK(f.get_f32("x.f64") == 3.14159274f);
    // regression (found while fuzzing): a FLOAT64 outside float range is an error, not UB
    CHECK_THROWS_WITH(f.get_f32("x.f64big"), Catch::Contains("x.f64big") && Catch::Contains("does not fit in float"));
    CHECK(f.get_bool("x.bool"));
    CHECK(f.get_arr("x.empty", GGUFType::INT32).arr.empty());
    const GGUFValue& nested = f.get_arr("x.nested", GGUFType::ARRAY);
    REQUIRE(nested.arr.size() == 2);
    CHECK(nested.arr[0].elem_type == GGUFType::INT16);
    CHECK(nested.arr[0].arr[1].i == -2);
    CHECK(nested.arr[1].arr[1].s == "bc");
    CHECK(f.get_arr("tokenizer.ggml.tokens", GGUFType::STRING).arr[0].s == "<s>");
    CHECK(f.get_arr("tokenizer.ggml.scores", GGUFType::FLOAT32).arr[2].f == -2.0);
    CHECK(f.get_u32_or("absent", 7) == 7);
    CHECK(f.get_f32_or("absent", 0.5f) == 0.5f);
    // getter type errors name the key
    CHECK_THROWS_WITH(f.get_u32("x.i32"), Catch::Contains("x.i32") && Catch::Contains("negative"));
    CHECK_THROWS_WITH(f.get_u32("x.u64"), Catch::Contains("does not fit in uint32"));
    CHECK_THROWS_WITH(f.get_f32("general.architecture"), Catch::Contains("expected FLOAT32"));
    CHECK_THROWS_WITH(f.get_str("x.u8"), Catch::Contains("x.u8"));
    CHECK_THROWS_WITH(f.get_arr("tokenizer.ggml.scores", GGUFType::FLOAT64), Catch::Contains("ARRAY of FLOAT32"));
    CHECK_THROWS_WITH(f.get_u32("missing.key"), Catch::Contains("missing.key") && Catch::Contains("missing"));
    CHECK_THROWS_AS(f.get_bool("x.u8"), GGUFError);
    // tensors
    REQUIRE(f.tensors().size() == 4);
    const GGUFTensorInfo* q = f.find_tensor("blk.0.attn_q.weight");
    REQUIRE(q);
    CHECK(q->type == GGML_TYPE_Q8_0);
    CHECK(q->n_dims == 3);
    CHECK(q->ne[0] == 32);
    CHECK(q->ne[1] == 2);
    CHECK(q->ne[3] == 1);
    CHECK(q->n_elements() == 64);
    CHECK(q->nbytes == 68);
    CHECK(f.find_tensor("nope") == nullptr);
    uint64_t prev_end = 0;
    for (const GGUFTensorInfo& t : f.tensors()) {
        CHECK(t.offset % 64 == 0);
        CHECK(t.offset >= prev_end);
        prev_end = t.offset + t.nbytes;
        CHECK(t.data == base + f.data_offset() + t.offset);
        CHECK(f.data_offset() + t.offset + t.nbytes <= f.file_size());
    }
    CHECK(f.tensors()[0].nbytes == 288);
    CHECK(f.tensors()[3].nbytes == 24);
}

}  // namespace

TEST_CASE("gguf: valid file round trip (buffer)", "[gguf]") {
    const Bytes data = valid_small().build();
    auto f = GGUFFile::from_memory(data.data(), data.size());
    CHECK(f->file_size() == data.size());
    CHECK(f->path() == "<memory>");
    check_valid_small(*f, data.data());
}

TEST_CASE("gguf: valid file round trip (mmap) and v2", "[gguf]") {
    Builder g = valid_small();
    for (uint32_t version : {3u, 2u}) {
        g.version = version;
        const Bytes data = g.build();
        const std::string path = write_temp(data);
        auto f = GGUFFile::open(path);
        std::remove(path.c_str());
        CHECK(f->path() == path);
        CHECK(f->file_size() == data.size());
        // the mapping holds the same bytes
        for (const GGUFTensorInfo& t : f->tensors())
            CHECK(std::memcmp(t.data, data.data() + f->data_offset() + t.offset, t.nbytes) == 0);
        if (version == 3) {
            check_valid_small(*f, f->tensors()[0].data - f->data_offset() - f->tensors()[0].offset);
        } else {
            CHECK(f->version() == 2);
        }
    }
}

TEST_CASE("gguf: open errors", "[gguf]") {
    CHECK_THROWS_WITH(GGUFFile::open("/nonexistent/x.gguf"), Catch::Contains("cannot open"));
    CHECK_THROWS_WITH(GGUFFile::open("/tmp"), Catch::Contains("not a regular file"));
    const std::string empty = write_temp({});
    CHECK_THROWS_WITH(GGUFFile::open(empty), Catch::Contains("magic"));
    std::remove(empty.c_str());
}

TEST_CASE("gguf: hostile files raise GGUFError naming the field", "[gguf][hostile]") {
    const std::vector<Case> cases = hostile_cases();
    CHECK(cases.size() >= 30);
    for (const Case& c : cases) {
        INFO("case: " << c.name);
        const std::string msg = parse_error(c.data);
        REQUIRE_FALSE(msg.empty());
        CHECK(msg.rfind("GGUF: ", 0) == 0);
        CHECK_THAT(msg, Catch::Contains("[at byte "));
        for (const std::string& needle : c.needles) CHECK_THAT(msg, Catch::Contains(needle));
    }
}

TEST_CASE("gguf: every truncation of a valid file is rejected cleanly", "[gguf][hostile]") {
    const Bytes data = valid_small().build();
    REQUIRE(parse_error(data).empty());
    for (size_t n = 0; n < data.size(); ++n) {
        INFO("truncated to " << n);
        CHECK_FALSE(parse_error(truncate(data, n)).empty());
    }
}
