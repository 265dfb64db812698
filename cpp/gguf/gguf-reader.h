// GGUF reader: memory-mapped, every field validated before use (ARCHITECTURE.md section 6).
// Any malformed or hostile input raises GGUFError naming the field or tensor and the byte
// offset; nothing is allocated in proportion to an unvalidated count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qwen3moe {

enum class GGUFType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// "UINT8" ... "FLOAT64"; "type#<id>" for ids outside the enum.
const char* gguf_type_name(GGUFType t);

// One metadata value. Scalars are kept widened; arrays keep their element type.
struct GGUFValue {
    GGUFType type = GGUFType::UINT8;
    uint64_t u = 0;          // unsigned integers and bool
    int64_t i = 0;           // signed integers
    double f = 0.0;          // FLOAT32 / FLOAT64
    std::string s;           // STRING
    GGUFType elem_type = GGUFType::UINT8;  // ARRAY: element type
    std::vector<GGUFValue> arr;            // ARRAY: elements (nested arrays allowed)
};

struct GGUFTensorInfo {
    std::string name;
    uint32_t type = 0;       // GGMLType id
    uint32_t n_dims = 0;     // 1..4
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] contiguous
    uint64_t offset = 0;     // relative to the data section
    uint64_t nbytes = 0;     // exact byte size for type and shape
    const uint8_t* data = nullptr;  // into the mapping
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GGUFFile {
public:
    // Memory-map and parse a file. Throws GGUFError (message names field and offset).
    static std::unique_ptr<GGUFFile> open(const std::string& path);
    // Parse a buffer without copying; the caller keeps it alive (tests, fuzzing).
    static std::unique_ptr<GGUFFile> from_memory(const uint8_t* data, size_t size);
    ~GGUFFile();
    GGUFFile(const GGUFFile&) = delete;
    GGUFFile& operator=(const GGUFFile&) = delete;

    uint32_t version() const;
    uint64_t alignment() const;
    uint64_t data_offset() const;  // absolute byte offset of the data section
    uint64_t file_size() const;
    const std::string& path() const;

    const std::vector<std::string>& keys() const;  // file order
    const GGUFValue* find(const std::string& key) const;  // nullptr if absent
    bool has(const std::string& key) const { return find(key) != nullptr; }
    // Typed getters: throw GGUFError when the key is absent or its type does not fit.
    uint32_t get_u32(const std::string& key) const;  // any integer type whose value fits
    int32_t get_i32(const std::string& key) const;
    uint64_t get_u64(const std::string& key) const;
    float get_f32(const std::string& key) const;     // FLOAT32 or FLOAT64
    bool get_bool(const std::string& key) const;
    const std::string& get_str(const std::string& key) const;
    const GGUFValue& get_arr(const std::string& key, GGUFType elem) const;  // elem checked
    uint32_t get_u32_or(const std::string& key, uint32_t def) const;
    float get_f32_or(const std::string& key, float def) const;

    const std::vector<GGUFTensorInfo>& tensors() const;
    const GGUFTensorInfo* find_tensor(const std::string& name) const;  // nullptr if absent

private:
    GGUFFile();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace qwen3moe
