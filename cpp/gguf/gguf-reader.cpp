// GGUF reader (v2/v3, little-endian). The file is memory-mapped read-only (or a caller buffer
// is borrowed) and parsed by a bounds-checked cursor: every count, length, type id, shape,
// offset and size is validated against the bytes that remain before it is used, so a hostile
// file (ARCHITECTURE.md section 6) ends in a GGUFError naming the field and byte offset.
//
// Layout: magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv | n_kv x (string key, u32 type,
// value) | n_tensors x (string name, u32 n_dims, n_dims x u64 ne, u32 type, u64 offset) |
// padding to general.alignment (default 32) | data section (tensor offsets relative to it).
//
// Allocation bound: nothing is reserved from a count before the count is checked against the
// remaining bytes (each element needs >= 1 byte, a string >= 8, a nested array >= 12), and the
// total number of metadata array elements is capped (kMaxArrayElements), so memory use is at
// most a small constant (sizeof(GGUFValue)) times the file size.
#include "gguf/gguf-reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <system_error>

#include "gguf/gguf-internal.h"
#include "quant/ggml-types.h"
#include "runtime/errors.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader assumes a little-endian host");

namespace qwen3moe {

// ---------------------------------------------------------------------------------------------
// shared helpers (gguf-internal.h)
namespace gguf_detail {

void fail(const std::string& what, uint64_t at) {
    throw GGUFError("GGUF: " + what + " [at byte " + std::to_string(at) + "]");
}

std::string quote(const std::string& s) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    const size_t n = std::min<size_t>(s.size(), 96);
    for (size_t i = 0; i < n; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            out += char(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > n) out += "...";
    return out;
}

bool valid_utf8(const std::string& s) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len > n - i) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

std::string describe_type(const GGUFValue& v) {
    if (v.type != GGUFType::ARRAY) return gguf_type_name(v.type);
    return std::string("ARRAY of ") + gguf_type_name(v.elem_type);
}

}  // namespace gguf_detail

using gguf_detail::fail;
using gguf_detail::quote;

const char* gguf_type_name(GGUFType t) {
    static const char* names[] = {"UINT8", "INT8",  "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                  "BOOL",  "STRING", "ARRAY", "UINT64", "INT64",  "FLOAT64"};
    const uint32_t id = static_cast<uint32_t>(t);
    if (id < sizeof(names) / sizeof(names[0])) return names[id];
    return "type#?";
}

namespace {

constexpr uint32_t kMagic = 0x46554747u;          // "GGUF" read as little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = 1u << 20;      // 1 MiB
constexpr int kMaxArrayDepth = 8;                 // array nesting levels
constexpr uint64_t kMaxKeyLength = 65535;         // GGUF spec
constexpr uint64_t kMaxTensorNameLength = 64;     // GGUF spec
constexpr uint64_t kMaxArrayElements = 1u << 24;  // all metadata arrays of one file together
constexpr uint64_t kMinKVBytes = 8 + 1 + 4 + 1;   // key length, >=1 key byte, type, >=1 value byte
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name len+byte, n_dims, ne, type, offset
constexpr uint32_t kNumValueTypes = 13;

// Smallest encoding of one value of type t (arrays: element type + count).
uint64_t min_value_bytes(GGUFType t) {
    switch (t) {
        case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
        case GGUFType::UINT16: case GGUFType::INT16: return 2;
        case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
        case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
        case GGUFType::STRING: return 8;
        case GGUFType::ARRAY: return 12;
    }
    return 1;
}

std::string num(uint64_t v) { return std::to_string(v); }

}  // namespace

// ---------------------------------------------------------------------------------------------
namespace gguf_detail {
struct FileState {
    // mapping (open) or borrowed buffer (from_memory)
    void* map = nullptr;              // mmap base, nullptr when borrowed or empty
    size_t map_size = 0;              // bytes mapped
    const uint8_t* base = nullptr;    // first byte of the file
    uint64_t size = 0;                // file size in bytes
    std::string path = "<memory>";

    uint32_t version = 0;
    uint64_t alignment = kDefaultAlignment;  // bytes, power of two
    uint64_t data_offset = 0;                // absolute offset of the data section

    std::vector<std::string> keys;           // file order
    std::vector<GGUFValue> values;           // parallel to keys
    std::vector<uint64_t> key_offsets;       // byte offset of each key record
    std::map<std::string, size_t> key_index; // key -> index (ordered map: no hash flooding)

    std::vector<GGUFTensorInfo> tensors;           // file order
    std::vector<uint64_t> tensor_offsets;          // byte offset of each tensor-info record
    std::map<std::string, size_t> tensor_index;    // name -> index

    ~FileState() {
        if (map) munmap(map, map_size);
    }

    uint64_t key_at(const std::string& key) const {
        auto it = key_index.find(key);
        return it == key_index.end() ? 0 : key_offsets[it->second];
    }
};
}  // namespace gguf_detail

struct GGUFFile::Impl : gguf_detail::FileState {};

// ---------------------------------------------------------------------------------------------
// The parser: a cursor over [base, base+size) plus the context used in error messages.
namespace {

class Parser {
public:
    Parser(gguf_detail::FileState& f) : f_(f), p_(f.base), size_(f.size) {}

    void parse() {
        parse_header();
        parse_kvs();
        apply_alignment();
        check_known_keys();
        parse_tensor_infos();
        place_tensors();
    }

private:
    gguf_detail::FileState& f_;
    const uint8_t* p_;
    uint64_t size_;
    uint64_t pos_ = 0;
    std::string ctx_ = "header";          // "header", "key 'x'", "tensor 'y'"
    uint64_t idx_[kMaxArrayDepth] = {};   // array element indices while inside arrays
    int depth_ = 0;                       // current array nesting
    uint64_t array_elems_ = 0;            // metadata array elements so far
    uint64_t n_tensors_ = 0, n_kv_ = 0;

    uint64_t left() const { return size_ - pos_; }

    [[noreturn]] void error(const std::string& what, uint64_t at) const {
        std::string where = ctx_;
        if (depth_ > 0) {
            where += " element ";
            for (int d = 0; d < depth_; ++d) where += "[" + num(idx_[d]) + "]";
        }
        fail(where + ": " + what, at);
    }

    void need(uint64_t n, const char* field) const {
        if (n > left())
            error(std::string(field) + ": needs " + num(n) + " bytes but only " + num(left()) +
                      " remain (truncated file)",
                  pos_);
    }
    template <class T>
    T read(const char* field) {
        need(sizeof(T), field);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    uint32_t u32(const char* field) { return read<uint32_t>(field); }
    uint64_t u64(const char* field) { return read<uint64_t>(field); }

    std::string str(const char* field, uint64_t max_len) {
        const uint64_t at = pos_;
        const uint64_t n = u64(field);
        if (n > left())
            error(std::string(field) + " length " + num(n) + " exceeds the " + num(left()) + " bytes that remain",
                  at);
        if (n > max_len)
            error(std::string(field) + " length " + num(n) + " exceeds the limit of " + num(max_len) + " bytes", at);
        std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
        pos_ += n;
        return s;
    }

    // Key or tensor name: non-empty, UTF-8, no NUL.
    std::string name(const char* field, uint64_t max_len) {
        const uint64_t at = pos_;
        std::string s = str(field, max_len);
        if (s.empty()) error(std::string(field) + " is empty", at);
        if (!gguf_detail::valid_utf8(s)) error(std::string(field) + " '" + quote(s) + "' is not valid UTF-8", at);
        if (s.find('\0') != std::string::npos) error(std::string(field) + " '" + quote(s) + "' contains a NUL byte", at);
        return s;
    }

    // ---- header ----
    void parse_header() {
        const uint32_t magic = u32("magic");
        if (magic != kMagic) {
            std::string got(reinterpret_cast<const char*>(p_), 4);
            error("bad magic '" + quote(got) + "' (expected 'GGUF')", 0);
        }
        const uint64_t vat = pos_;
        f_.version = u32("version");
        if (f_.version != 2 && f_.version != 3) {
            std::string why = f_.version == 1 ? " (GGUF v1 is not supported)"
                              : (f_.version & 0xffff) == 0 ? " (big-endian file? only little-endian is supported)"
                                                           : "";
            error("unsupported version " + num(f_.version) + why + "; expected 2 or 3", vat);
        }
        const uint64_t tat = pos_;
        n_tensors_ = u64("n_tensors");
        const uint64_t kat = pos_;
        n_kv_ = u64("n_kv");
        if (n_kv_ > left() / kMinKVBytes)
            error("n_kv " + num(n_kv_) + " cannot fit in the " + num(left()) + " bytes that remain (each key/value needs at least " +
                      num(kMinKVBytes) + ")",
                  kat);
        if (n_tensors_ > left() / kMinTensorInfoBytes ||
            n_tensors_ * kMinTensorInfoBytes > left() - n_kv_ * kMinKVBytes)
            error("n_tensors " + num(n_tensors_) + " cannot fit in the " + num(left()) +
                      " bytes that remain (each tensor info needs at least " + num(kMinTensorInfoBytes) + ")",
                  tat);
    }

    // ---- metadata ----
    void value(GGUFType t, GGUFValue& v) {
        v.type = t;
        switch (t) {
            case GGUFType::UINT8: v.u = read<uint8_t>("UINT8 value"); break;
            case GGUFType::INT8: v.i = read<int8_t>("INT8 value"); break;
            case GGUFType::UINT16: v.u = read<uint16_t>("UINT16 value"); break;
            case GGUFType::INT16: v.i = read<int16_t>("INT16 value"); break;
            case GGUFType::UINT32: v.u = read<uint32_t>("UINT32 value"); break;
            case GGUFType::INT32: v.i = read<int32_t>("INT32 value"); break;
            case GGUFType::UINT64: v.u = read<uint64_t>("UINT64 value"); break;
            case GGUFType::INT64: v.i = read<int64_t>("INT64 value"); break;
            case GGUFType::FLOAT32: v.f = read<float>("FLOAT32 value"); break;
            case GGUFType::FLOAT64: v.f = read<double>("FLOAT64 value"); break;
            case GGUFType::BOOL: {
                const uint64_t at = pos_;
                const uint8_t b = read<uint8_t>("BOOL value");
                if (b > 1) error("BOOL value " + num(b) + " is neither 0 nor 1", at);
                v.u = b;
                break;
            }
            case GGUFType::STRING: v.s = str("string", std::numeric_limits<uint64_t>::max()); break;
            case GGUFType::ARRAY: array(v); break;
        }
    }

    void array(GGUFValue& v) {
        const uint64_t at = pos_;
        if (depth_ >= kMaxArrayDepth)
            error("arrays nested deeper than " + num(kMaxArrayDepth) + " levels", at);
        const uint32_t et = u32("array element type");
        if (et >= kNumValueTypes) error("unknown array element type id " + num(et), at);
        const uint64_t cat = pos_;
        const uint64_t n = u64("array count");
        const GGUFType elem = static_cast<GGUFType>(et);
        const uint64_t min = min_value_bytes(elem);
        if (n > left() / min)
            error("array count " + num(n) + " of " + gguf_type_name(elem) + " cannot fit in the " + num(left()) +
                      " bytes that remain (each element needs at least " + num(min) + ")",
                  cat);
        if (n > kMaxArrayElements - array_elems_)
            error("array count " + num(n) + " exceeds the limit of " + num(kMaxArrayElements) +
                      " metadata array elements per file",
                  cat);
        array_elems_ += n;
        v.elem_type = elem;
        v.arr.resize(static_cast<size_t>(n));
        ++depth_;
        for (uint64_t i = 0; i < n; ++i) {
            idx_[depth_ - 1] = i;
            value(elem, v.arr[static_cast<size_t>(i)]);
        }
        --depth_;
    }

    void parse_kvs() {
        for (uint64_t k = 0; k < n_kv_; ++k) {
            const uint64_t at = pos_;
            ctx_ = "key #" + num(k);
            std::string key = name("key", kMaxKeyLength);
            ctx_ = "key '" + quote(key) + "'";
            auto dup = f_.key_index.find(key);
            if (dup != f_.key_index.end())
                error("duplicate key (first defined at byte " + num(f_.key_offsets[dup->second]) + ")", at);
            const uint64_t tat = pos_;
            const uint32_t t = u32("value type");
            if (t >= kNumValueTypes) error("unknown value type id " + num(t), tat);
            GGUFValue v;
            value(static_cast<GGUFType>(t), v);
            f_.key_index.emplace(key, f_.keys.size());
            f_.keys.push_back(std::move(key));
            f_.values.push_back(std::move(v));
            f_.key_offsets.push_back(at);
        }
        ctx_ = "header";
    }

    void apply_alignment() {
        auto it = f_.key_index.find("general.alignment");
        if (it == f_.key_index.end()) return;
        const GGUFValue& v = f_.values[it->second];
        const uint64_t at = f_.key_offsets[it->second];
        ctx_ = "key 'general.alignment'";
        if (v.type != GGUFType::UINT32) error("expected UINT32, found " + gguf_detail::describe_type(v), at);
        if (v.u == 0) error("alignment is 0", at);
        if ((v.u & (v.u - 1)) != 0) error("alignment " + num(v.u) + " is not a power of two", at);
        if (v.u > kMaxAlignment) error("alignment " + num(v.u) + " exceeds the limit of " + num(kMaxAlignment), at);
        f_.alignment = v.u;
        ctx_ = "header";
    }

    const GGUFValue* lookup(const char* key) const {
        auto it = f_.key_index.find(key);
        return it == f_.key_index.end() ? nullptr : &f_.values[it->second];
    }

    void check_known_keys() {
        std::string arch;
        if (const GGUFValue* a = lookup("general.architecture"); a && a->type == GGUFType::STRING) arch = a->s;
        for (size_t k = 0; k < f_.keys.size(); ++k)
            gguf_detail::check_known_key(f_.keys[k], f_.values[k], arch, f_.key_offsets[k]);
        // token arrays describe one vocabulary: equal lengths
        const GGUFValue* tokens = lookup("tokenizer.ggml.tokens");
        for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
            const GGUFValue* v = lookup(key);
            if (!v) continue;
            const uint64_t at = f_.key_at(key);
            if (!tokens) fail(std::string("key '") + key + "': present without tokenizer.ggml.tokens", at);
            if (v->arr.size() != tokens->arr.size())
                fail(std::string("key '") + key + "': length " + num(v->arr.size()) +
                         " differs from tokenizer.ggml.tokens length " + num(tokens->arr.size()),
                     at);
        }
    }

    // ---- tensor infos ----
    void parse_tensor_infos() {
        for (uint64_t t = 0; t < n_tensors_; ++t) {
            const uint64_t at = pos_;
            ctx_ = "tensor #" + num(t);
            GGUFTensorInfo ti;
            ti.name = name("tensor name", kMaxTensorNameLength);
            ctx_ = "tensor '" + quote(ti.name) + "'";
            auto dup = f_.tensor_index.find(ti.name);
            if (dup != f_.tensor_index.end())
                error("duplicate tensor name (first defined at byte " + num(f_.tensor_offsets[dup->second]) + ")", at);

            const uint64_t dat = pos_;
            ti.n_dims = u32("n_dims");
            if (ti.n_dims < 1 || ti.n_dims > 4) error("n_dims " + num(ti.n_dims) + " is not in 1..4", dat);
            const uint64_t neat = pos_;
            for (uint32_t d = 0; d < ti.n_dims; ++d) {
                const uint64_t eat = pos_;
                const std::string field = "ne[" + num(d) + "]";
                const uint64_t ne = u64(field.c_str());
                if (ne == 0) error(field + " is 0", eat);
                if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                    error(field + " = " + num(ne) + " exceeds INT64_MAX", eat);
                ti.ne[d] = static_cast<int64_t>(ne);
            }
            const uint64_t tat = pos_;
            ti.type = u32("type");
            const GGMLTypeTraits* tr = ggml_type_traits(ti.type);
            if (!tr) error("unknown tensor type id " + num(ti.type), tat);
            ti.offset = u64("offset");

            if (ti.ne[0] % tr->block_size != 0)
                error("ne[0] = " + num(ti.ne[0]) + " is not a multiple of the " + tr->name + " block size " +
                          num(tr->block_size),
                      neat);
            int64_t n_el = 1;
            for (int d = 0; d < 4; ++d)
                if (__builtin_mul_overflow(n_el, ti.ne[d], &n_el))
                    error("element count (product of ne) overflows int64", neat);
            uint64_t nbytes = static_cast<uint64_t>(ti.ne[0] / tr->block_size);
            bool ovf = __builtin_mul_overflow(nbytes, static_cast<uint64_t>(tr->type_size), &nbytes);
            for (int d = 1; d < 4; ++d)
                ovf = ovf || __builtin_mul_overflow(nbytes, static_cast<uint64_t>(ti.ne[d]), &nbytes);
            if (ovf) error(std::string("byte size of ") + tr->name + " tensor overflows uint64", neat);
            ti.nbytes = nbytes;

            f_.tensor_index.emplace(ti.name, f_.tensors.size());
            f_.tensors.push_back(std::move(ti));
            f_.tensor_offsets.push_back(at);
        }
        ctx_ = "header";
    }

    // Offsets are read last (the alignment key may follow any key); each record's offset field
    // sits 12 bytes before its end, which we recompute from the record start for messages.
    uint64_t offset_field_at(size_t t) const {
        const GGUFTensorInfo& ti = f_.tensors[t];
        return f_.tensor_offsets[t] + 8 + ti.name.size() + 4 + 8ull * ti.n_dims + 4;
    }

    void place_tensors() {
        const uint64_t a = f_.alignment;
        if (pos_ > std::numeric_limits<uint64_t>::max() - (a - 1)) fail("header end overflows alignment", pos_);
        f_.data_offset = (pos_ + a - 1) / a * a;
        const uint64_t fsize = size_;
        for (size_t t = 0; t < f_.tensors.size(); ++t) {
            GGUFTensorInfo& ti = f_.tensors[t];
            ctx_ = "tensor '" + quote(ti.name) + "'";
            const uint64_t oat = offset_field_at(t);
            if (ti.offset % a != 0)
                error("offset " + num(ti.offset) + " is not a multiple of the alignment " + num(a), oat);
            if (f_.data_offset > fsize)
                error("data section starts at byte " + num(f_.data_offset) + ", past end of file (size " + num(fsize) + ")",
                      oat);
            const uint64_t room = fsize - f_.data_offset;
            if (ti.offset > room || ti.nbytes > room - ti.offset)
                error("offset " + num(ti.offset) + " + size " + num(ti.nbytes) + " past end of file (data section at " +
                          num(f_.data_offset) + ", file size " + num(fsize) + ")",
                      oat);
            ti.data = p_ + f_.data_offset + ti.offset;
        }
        // no two tensors share bytes
        std::vector<size_t> order(f_.tensors.size());
        for (size_t t = 0; t < order.size(); ++t) order[t] = t;
        std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
            const auto& a1 = f_.tensors[x];
            const auto& b1 = f_.tensors[y];
            return a1.offset != b1.offset ? a1.offset < b1.offset : x < y;
        });
        for (size_t k = 1; k < order.size(); ++k) {
            const GGUFTensorInfo& prev = f_.tensors[order[k - 1]];
            const GGUFTensorInfo& cur = f_.tensors[order[k]];
            if (prev.offset + prev.nbytes > cur.offset) {
                const size_t later = std::max(order[k - 1], order[k]);
                const GGUFTensorInfo& other = later == order[k] ? prev : cur;
                const GGUFTensorInfo& self = f_.tensors[later];
                ctx_ = "tensor '" + quote(self.name) + "'";
                error("data [" + num(self.offset) + ", " + num(self.offset + self.nbytes) + ") overlaps tensor '" +
                          quote(other.name) + "' [" + num(other.offset) + ", " + num(other.offset + other.nbytes) + ")",
                      offset_field_at(later));
            }
        }
        ctx_ = "header";
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
GGUFFile::GGUFFile() : impl_(std::make_unique<Impl>()) {}
GGUFFile::~GGUFFile() = default;

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->impl_->path = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw GGUFError("GGUF: cannot open '" + quote(path) + "': " + std::system_category().message(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw GGUFError("GGUF: cannot stat '" + quote(path) + "': " + std::system_category().message(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw GGUFError("GGUF: '" + quote(path) + "' is not a regular file");
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > 0) {
        void* m = mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            throw GGUFError("GGUF: cannot map '" + quote(path) + "': " + std::system_category().message(e));
        }
        f->impl_->map = m;
        f->impl_->map_size = static_cast<size_t>(size);
        f->impl_->base = static_cast<const uint8_t*>(m);
    }
    ::close(fd);
    f->impl_->size = size;
    Parser(*f->impl_).parse();
    return f;
}

std::unique_ptr<GGUFFile> GGUFFile::from_memory(const uint8_t* data, size_t size) {
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->impl_->base = data;
    f->impl_->size = data ? size : 0;
    Parser(*f->impl_).parse();
    return f;
}

uint32_t GGUFFile::version() const { return impl_->version; }
uint64_t GGUFFile::alignment() const { return impl_->alignment; }
uint64_t GGUFFile::data_offset() const { return impl_->data_offset; }
uint64_t GGUFFile::file_size() const { return impl_->size; }
const std::string& GGUFFile::path() const { return impl_->path; }
const std::vector<std::string>& GGUFFile::keys() const { return impl_->keys; }
const std::vector<GGUFTensorInfo>& GGUFFile::tensors() const { return impl_->tensors; }

const GGUFValue* GGUFFile::find(const std::string& key) const {
    auto it = impl_->key_index.find(key);
    return it == impl_->key_index.end() ? nullptr : &impl_->values[it->second];
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
    auto it = impl_->tensor_index.find(name);
    return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

// ---- typed getters ----
namespace {

[[noreturn]] void missing(const std::string& key) {
    throw GGUFError("GGUF: key '" + quote(key) + "' is missing [not in file]");
}

bool is_int(GGUFType t) {
    switch (t) {
        case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::UINT16: case GGUFType::INT16:
        case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::UINT64: case GGUFType::INT64:
            return true;
        default:
            return false;
    }
}
bool is_signed(GGUFType t) {
    return t == GGUFType::INT8 || t == GGUFType::INT16 || t == GGUFType::INT32 || t == GGUFType::INT64;
}

}  // namespace

#define Q3_GGUF_GET(key)                           \
    const GGUFValue* v = find(key);                \
    if (!v) missing(key);                          \
    const uint64_t at = impl_->key_at(key)

uint64_t GGUFFile::get_u64(const std::string& key) const {
    Q3_GGUF_GET(key);
    if (!is_int(v->type)) fail("key '" + quote(key) + "': expected an integer, found " + gguf_detail::describe_type(*v), at);
    if (is_signed(v->type)) {
        if (v->i < 0) fail("key '" + quote(key) + "': value " + std::to_string(v->i) + " is negative", at);
        return static_cast<uint64_t>(v->i);
    }
    return v->u;
}

uint32_t GGUFFile::get_u32(const std::string& key) const {
    const uint64_t u = get_u64(key);
    if (u > std::numeric_limits<uint32_t>::max())
        fail("key '" + quote(key) + "': value " + num(u) + " does not fit in uint32", impl_->key_at(key));
    return static_cast<uint32_t>(u);
}

int32_t GGUFFile::get_i32(const std::string& key) const {
    Q3_GGUF_GET(key);
    if (!is_int(v->type)) fail("key '" + quote(key) + "': expected an integer, found " + gguf_detail::describe_type(*v), at);
    if (is_signed(v->type)) {
        if (v->i < std::numeric_limits<int32_t>::min() || v->i > std::numeric_limits<int32_t>::max())
            fail("key '" + quote(key) + "': value " + std::to_string(v->i) + " does not fit in int32", at);
        return static_cast<int32_t>(v->i);
    }
    if (v->u > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        fail("key '" + quote(key) + "': value " + num(v->u) + " does not fit in int32", at);
    return static_cast<int32_t>(v->u);
}

float GGUFFile::get_f32(const std::string& key) const {
    Q3_GGUF_GET(key);
    if (v->type != GGUFType::FLOAT32 && v->type != GGUFType::FLOAT64)
        fail("key '" + quote(key) + "': expected FLOAT32 or FLOAT64, found " + gguf_detail::describe_type(*v), at);
    if (std::isfinite(v->f) && std::fabs(v->f) > double(std::numeric_limits<float>::max()))
        fail("key '" + quote(key) + "': value " + std::to_string(v->f) + " does not fit in float", at);
    return static_cast<float>(v->f);
}

bool GGUFFile::get_bool(const std::string& key) const {
    Q3_GGUF_GET(key);
    if (v->type != GGUFType::BOOL) fail("key '" + quote(key) + "': expected BOOL, found " + gguf_detail::describe_type(*v), at);
    return v->u != 0;
}

const std::string& GGUFFile::get_str(const std::string& key) const {
    Q3_GGUF_GET(key);
    if (v->type != GGUFType::STRING)
        fail("key '" + quote(key) + "': expected STRING, found " + gguf_detail::describe_type(*v), at);
    return v->s;
}

const GGUFValue& GGUFFile::get_arr(const std::string& key, GGUFType elem) const {
    Q3_GGUF_GET(key);
    if (v->type != GGUFType::ARRAY || v->elem_type != elem)
        fail("key '" + quote(key) + "': expected ARRAY of " + gguf_type_name(elem) + ", found " +
                 gguf_detail::describe_type(*v),
             at);
    return *v;
}

uint32_t GGUFFile::get_u32_or(const std::string& key, uint32_t def) const { return has(key) ? get_u32(key) : def; }
float GGUFFile::get_f32_or(const std::string& key, float def) const { return has(key) ? get_f32(key) : def; }

#undef Q3_GGUF_GET

}  // namespace qwen3moe
