// A GGUF file opened for reading with ggml's gguf API (metadata and tensor table only, no data),
// with getters that check a key's TYPE before reading it: ggml's gguf_get_val_* GGML_ASSERT on a
// type mismatch, which would abort the process on a hostile file. Every failure is an mm::error
// (MM_FILE_NOT_FOUND, MM_GGUF_INVALID) naming the file and the key or tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ggml.h"

struct gguf_context;

namespace mm {

class gguf_file {
  public:
    // Opens and parses the header; checks that every tensor's data lies inside the file.
    static std::unique_ptr<gguf_file> open(const std::string & path);
    ~gguf_file();

    gguf_file(const gguf_file &)             = delete;
    gguf_file & operator=(const gguf_file &) = delete;

    const std::string & path() const { return path_; }
    uint64_t            file_size() const { return file_size_; }

    [[noreturn]] void invalid(const std::string & what) const;

    bool has_key(const char * key) const;
    // Each find_* returns false when the key is absent and throws MM_GGUF_INVALID when it is present
    // with another type; each require_* also throws when it is absent.
    bool     find_u32(const char * key, uint32_t & out) const;
    bool     find_i32(const char * key, int32_t & out) const;
    bool     find_f32(const char * key, float & out) const;
    bool     find_bool(const char * key, bool & out) const;
    bool     find_string(const char * key, std::string & out) const;
    bool     find_f32_array(const char * key, std::vector<float> & out) const;
    bool     find_i32_array(const char * key, std::vector<int32_t> & out) const;
    uint32_t require_u32(const char * key) const;
    float    require_f32(const char * key) const;
    // A human-readable type name of a present key ("uint32", "array<int32>"), for messages.
    std::string key_type_name(const char * key) const;

    // The tensor's metadata (shape and type, no data), or nullptr when absent.
    const ggml_tensor * tensor(const std::string & name) const;
    // Absolute file offset of a tensor's data.
    uint64_t    tensor_file_offset(const std::string & name) const;
    int64_t     n_tensors() const;
    std::string tensor_name(int64_t i) const;

  private:
    gguf_file() = default;
    int64_t find_typed(const char * key, int type, const char * expected) const;

    std::string    path_;
    uint64_t       file_size_ = 0;
    gguf_context * gguf_      = nullptr;
    ggml_context * meta_      = nullptr;
};

// The GGUF spec's bounds that ggml's own parser (gguf.cpp) does not enforce, checked on a parsed
// context before anything reads it: every key non-empty and at most 65535 bytes, and keys unique
// as C strings (ggml looks keys up with their NUL-terminated text, so "a\0x" would shadow "a").
// Tensor names (< GGML_MAX_NAME), dimension counts (<= 4), string and array lengths (within the
// file, <= 2^30) are already refused by gguf.cpp. Returns an empty string when the file is within
// bounds, else what is wrong.
std::string gguf_bounds_violation(const gguf_context * g);

// What a tensor is used for decides which ggml types are accepted (ggml's CPU kernels abort on
// the others): matrices go through ggml_mul_mat, vectors through ggml_add/ggml_mul, etc.
enum class tensor_use {
    matrix,        // src0 of ggml_mul_mat: f32, f16, bf16, quantized
    patch_kernel,  // the patch-embedding conv kernel (src1 of the im2col mul_mat): f32, f16
    dw_kernel,     // depthwise conv kernel (ggml_conv_2d_dw): f16
    vector,        // norm weights, biases, class embedding: f32
    rows,          // ggml_get_rows source (position embeddings): f32, f16
};

// Checks type and shape of a tensor: `ne` lists the expected dims (-1 = any; missing trailing dims
// must be 1). Returns the tensor, or nullptr when it is absent and not required.
const ggml_tensor * check_tensor(const gguf_file & f, const std::string & name, tensor_use use, std::vector<int64_t> ne,
                                 bool required = true);

// A 3x3 depthwise conv kernel over n_channels, in either layout converters write and libmtmd runs:
// rank 4 [3, 3, 1, C] or rank 3 [3, 3, C] (ggml_conv_2d_dw views both as [3, 3, 1, C]).
const ggml_tensor * check_dw_kernel(const gguf_file & f, const std::string & name, int64_t n_channels);

std::string shape_string(const ggml_tensor * t);

}  // namespace mm
