#include "graph/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <unordered_set>

#include "common/error.h"
#include "common/log.h"
#include "gguf.h"

namespace mm {

std::unique_ptr<gguf_file> gguf_file::open(const std::string & path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in.good()) {
        fail(error_code::file_not_found, "cannot open '" + path + "'");
    }
    std::unique_ptr<gguf_file> f(new gguf_file());
    f->path_      = path;
    f->file_size_ = static_cast<uint64_t>(in.tellg());
    in.close();

    clear_thread_log_errors();
    gguf_init_params params{/*no_alloc =*/true, /*ctx =*/&f->meta_};
    f->gguf_ = gguf_init_from_file(path.c_str(), params);
    if (f->gguf_ == nullptr) {
        std::string why = thread_log_errors();
        f->invalid("not a valid GGUF file" + (why.empty() ? std::string() : " (" + why + ")"));
    }

    const std::string bounds = gguf_bounds_violation(f->gguf_);
    if (!bounds.empty()) {
        f->invalid(bounds);
    }

    // Every tensor's data must lie inside the file (a truncated file is caught here, before any read).
    const uint64_t data_offset = gguf_get_data_offset(f->gguf_);
    for (int64_t i = 0; i < gguf_get_n_tensors(f->gguf_); ++i) {
        const uint64_t off  = gguf_get_tensor_offset(f->gguf_, i);
        const uint64_t size = gguf_get_tensor_size(f->gguf_, i);
        if (off > f->file_size_ || size > f->file_size_ || data_offset > f->file_size_ - off ||
            size > f->file_size_ - off - data_offset) {
            f->invalid(std::string("tensor '") + gguf_get_tensor_name(f->gguf_, i) +
                       "' lies beyond the end of the file (truncated?)");
        }
    }
    return f;
}

std::string gguf_bounds_violation(const gguf_context * g) {
    constexpr size_t                k_max_key = 65535;  // GGUF spec: keys are at most 2^16 - 1 bytes
    const int64_t                   n_kv      = gguf_get_n_kv(g);
    std::unordered_set<std::string> seen;
    seen.reserve(static_cast<size_t>(n_kv));
    for (int64_t i = 0; i < n_kv; ++i) {
        const char * key = gguf_get_key(g, i);
        const size_t len = std::strlen(key);
        if (len == 0) {
            return "key " + std::to_string(i) + " is empty (or starts with a NUL byte)";
        }
        if (len > k_max_key) {
            return "key " + std::to_string(i) + " is " + std::to_string(len) + " bytes long, more than the " +
                   std::to_string(k_max_key) + " the GGUF spec allows";
        }
        if (!seen.emplace(key, len).second) {
            return "key " + std::to_string(i) + " '" + std::string(key, std::min<size_t>(len, 80)) +
                   "' appears twice (a NUL byte inside a key?)";
        }
    }
    return std::string();
}

gguf_file::~gguf_file() {
    if (gguf_ != nullptr) {
        gguf_free(gguf_);
    }
    if (meta_ != nullptr) {
        ggml_free(meta_);
    }
}

void gguf_file::invalid(const std::string & what) const {
    fail(error_code::gguf_invalid, "'" + path_ + "': " + what);
}

bool gguf_file::has_key(const char * key) const {
    return gguf_find_key(gguf_, key) >= 0;
}

std::string gguf_file::key_type_name(const char * key) const {
    int64_t id = gguf_find_key(gguf_, key);
    if (id < 0) {
        return "absent";
    }
    auto t = gguf_get_kv_type(gguf_, id);
    if (t == GGUF_TYPE_ARRAY) {
        return std::string("array<") + gguf_type_name(gguf_get_arr_type(gguf_, id)) + ">";
    }
    return gguf_type_name(t);
}

int64_t gguf_file::find_typed(const char * key, int type, const char * expected) const {
    int64_t id = gguf_find_key(gguf_, key);
    if (id < 0) {
        return -1;
    }
    if (gguf_get_kv_type(gguf_, id) != static_cast<gguf_type>(type)) {
        invalid(std::string(key) + " has type " + key_type_name(key) + ", expected " + expected);
    }
    return id;
}

bool gguf_file::find_u32(const char * key, uint32_t & out) const {
    int64_t id = find_typed(key, GGUF_TYPE_UINT32, "uint32");
    if (id < 0) {
        return false;
    }
    out = gguf_get_val_u32(gguf_, id);
    return true;
}

bool gguf_file::find_i32(const char * key, int32_t & out) const {
    int64_t id = find_typed(key, GGUF_TYPE_INT32, "int32");
    if (id < 0) {
        return false;
    }
    out = gguf_get_val_i32(gguf_, id);
    return true;
}

bool gguf_file::find_f32(const char * key, float & out) const {
    int64_t id = find_typed(key, GGUF_TYPE_FLOAT32, "float32");
    if (id < 0) {
        return false;
    }
    out = gguf_get_val_f32(gguf_, id);
    return true;
}

bool gguf_file::find_bool(const char * key, bool & out) const {
    int64_t id = find_typed(key, GGUF_TYPE_BOOL, "bool");
    if (id < 0) {
        return false;
    }
    out = gguf_get_val_bool(gguf_, id);
    return true;
}

bool gguf_file::find_string(const char * key, std::string & out) const {
    int64_t id = find_typed(key, GGUF_TYPE_STRING, "string");
    if (id < 0) {
        return false;
    }
    out = gguf_get_val_str(gguf_, id);
    return true;
}

namespace {

template <typename T>
bool find_array(const gguf_file & f, gguf_context * g, const char * key, gguf_type item, const char * expected,
                std::vector<T> & out) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0) {
        return false;
    }
    if (gguf_get_kv_type(g, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(g, id) != item) {
        f.invalid(std::string(key) + " has type " + f.key_type_name(key) + ", expected " + expected);
    }
    size_t n = gguf_get_arr_n(g, id);
    if (n > (1u << 20)) {
        f.invalid(std::string(key) + " has " + std::to_string(n) + " elements");
    }
    out.resize(n);
    if (n > 0) {
        std::memcpy(out.data(), gguf_get_arr_data(g, id), n * sizeof(T));
    }
    return true;
}

}  // namespace

bool gguf_file::find_f32_array(const char * key, std::vector<float> & out) const {
    return find_array(*this, gguf_, key, GGUF_TYPE_FLOAT32, "array<float32>", out);
}

bool gguf_file::find_i32_array(const char * key, std::vector<int32_t> & out) const {
    return find_array(*this, gguf_, key, GGUF_TYPE_INT32, "array<int32>", out);
}

uint32_t gguf_file::require_u32(const char * key) const {
    uint32_t v = 0;
    if (!find_u32(key, v)) {
        invalid(std::string("missing key ") + key);
    }
    return v;
}

float gguf_file::require_f32(const char * key) const {
    float v = 0;
    if (!find_f32(key, v)) {
        invalid(std::string("missing key ") + key);
    }
    return v;
}

const ggml_tensor * gguf_file::tensor(const std::string & name) const {
    return ggml_get_tensor(meta_, name.c_str());
}

uint64_t gguf_file::tensor_file_offset(const std::string & name) const {
    int64_t id = gguf_find_tensor(gguf_, name.c_str());
    if (id < 0) {
        invalid("tensor '" + name + "' is missing");
    }
    return gguf_get_data_offset(gguf_) + gguf_get_tensor_offset(gguf_, id);
}

int64_t gguf_file::n_tensors() const {
    return gguf_get_n_tensors(gguf_);
}

std::string gguf_file::tensor_name(int64_t i) const {
    return gguf_get_tensor_name(gguf_, i);
}

std::string shape_string(const ggml_tensor * t) {
    int         n = ggml_n_dims(t);
    std::string s = "[";
    for (int i = 0; i < n; ++i) {
        s += (i ? ", " : "") + std::to_string(t->ne[i]);
    }
    return s + "]";
}

namespace {

bool type_allowed(ggml_type t, tensor_use use) {
    switch (use) {
        case tensor_use::matrix:
            switch (t) {
                case GGML_TYPE_F32:
                case GGML_TYPE_F16:
                case GGML_TYPE_BF16:
                case GGML_TYPE_Q4_0:
                case GGML_TYPE_Q4_1:
                case GGML_TYPE_Q5_0:
                case GGML_TYPE_Q5_1:
                case GGML_TYPE_Q8_0:
                case GGML_TYPE_Q2_K:
                case GGML_TYPE_Q3_K:
                case GGML_TYPE_Q4_K:
                case GGML_TYPE_Q5_K:
                case GGML_TYPE_Q6_K:
                    return true;
                default:
                    return false;
            }
        case tensor_use::patch_kernel:
            return t == GGML_TYPE_F32 || t == GGML_TYPE_F16;
        case tensor_use::dw_kernel:
            return t == GGML_TYPE_F16;
        case tensor_use::vector:
            return t == GGML_TYPE_F32;
        case tensor_use::rows:
            return t == GGML_TYPE_F32 || t == GGML_TYPE_F16;
    }
    return false;
}

const char * allowed_types(tensor_use use) {
    switch (use) {
        case tensor_use::matrix:
            return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K..q6_K";
        case tensor_use::patch_kernel:
            return "f32 or f16";
        case tensor_use::dw_kernel:
            return "f16 (ggml's depthwise convolution needs f16 kernels)";
        case tensor_use::vector:
            return "f32";
        case tensor_use::rows:
            return "f32 or f16";
    }
    return "?";
}

}  // namespace

const ggml_tensor * check_tensor(const gguf_file & f, const std::string & name, tensor_use use, std::vector<int64_t> ne,
                                 bool required) {
    const ggml_tensor * t = f.tensor(name);
    if (t == nullptr) {
        if (required) {
            f.invalid("tensor '" + name + "' is missing");
        }
        return nullptr;
    }
    if (!type_allowed(t->type, use)) {
        f.invalid("tensor '" + name + "' has type " + ggml_type_name(t->type) + ", expected " + allowed_types(use));
    }
    ne.resize(GGML_MAX_DIMS, 1);
    bool ok = true;
    for (int i = 0; i < GGML_MAX_DIMS; ++i) {
        if (ne[i] >= 0 && t->ne[i] != ne[i]) {
            ok = false;
        }
        if (t->ne[i] <= 0) {
            ok = false;
        }
    }
    if (!ok) {
        std::string want = "[";
        int         last = GGML_MAX_DIMS - 1;
        while (last > 0 && ne[last] == 1) {
            --last;
        }
        for (int i = 0; i <= last; ++i) {
            want += (i ? ", " : "") + (ne[i] < 0 ? std::string("*") : std::to_string(ne[i]));
        }
        f.invalid("tensor '" + name + "' has shape " + shape_string(t) + ", expected " + want + "]");
    }
    if (ggml_blck_size(t->type) > 1 && t->ne[0] % ggml_blck_size(t->type) != 0) {
        f.invalid("tensor '" + name + "' row length " + std::to_string(t->ne[0]) + " is not a multiple of the " +
                  ggml_type_name(t->type) + " block size");
    }
    return t;
}

const ggml_tensor * check_dw_kernel(const gguf_file & f, const std::string & name, int64_t n_channels) {
    const ggml_tensor * t = f.tensor(name);
    if (t != nullptr && t->ne[2] != 1 && t->ne[3] == 1) {
        return check_tensor(f, name, tensor_use::dw_kernel, {3, 3, n_channels});
    }
    return check_tensor(f, name, tensor_use::dw_kernel, {3, 3, 1, n_channels});
}

}  // namespace mm
