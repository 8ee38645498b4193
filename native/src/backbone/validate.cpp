#include "backbone/validate.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>

#include "common/error.h"
#include "common/log.h"
#include "gguf.h"
#include "graph/gguf_file.h"

namespace mm {

namespace {

constexpr uint32_t k_max_layers  = 512;  // LLAMA_MAX_LAYERS
constexpr uint32_t k_max_heads   = 16384;
constexpr uint32_t k_max_embd    = 1u << 20;
constexpr uint64_t k_max_vocab   = 1u << 24;
constexpr int64_t  k_max_experts = 1024;  // LLAMA_MAX_EXPERTS

struct gguf_deleter {
    void operator()(gguf_context * c) const { gguf_free(c); }
};

[[noreturn]] void invalid(const std::string & path, const std::string & what) {
    fail(error_code::gguf_invalid, "'" + path + "': " + what);
}

// An unsigned count stored as any integer type; -1 when absent. Wrong types are errors.
int64_t get_count(const gguf_context * g, const std::string & path, const std::string & key) {
    int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) {
        return -1;
    }
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT8:
            return gguf_get_val_u8(g, id);
        case GGUF_TYPE_UINT16:
            return gguf_get_val_u16(g, id);
        case GGUF_TYPE_UINT32:
            return gguf_get_val_u32(g, id);
        case GGUF_TYPE_INT32: {
            int32_t v = gguf_get_val_i32(g, id);
            if (v < 0) {
                invalid(path, key + " is negative (" + std::to_string(v) + ")");
            }
            return v;
        }
        case GGUF_TYPE_UINT64: {
            uint64_t v = gguf_get_val_u64(g, id);
            if (v > (1ull << 40)) {
                invalid(path, key + " is absurdly large (" + std::to_string(v) + ")");
            }
            return static_cast<int64_t>(v);
        }
        case GGUF_TYPE_ARRAY:
            return -2;  // per-layer array: checked by the caller
        default:
            invalid(path, key + " has type " + gguf_type_name(gguf_get_kv_type(g, id)) + ", expected an integer");
    }
}

void check_range(const std::string & path, const std::string & key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        invalid(path, key + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
    }
}

// A scalar or a per-layer array of integers, each within [lo, hi].
void check_per_layer(const gguf_context * g, const std::string & path, const std::string & key, int64_t n_layer,
                     int64_t lo, int64_t hi, bool required) {
    int64_t v = get_count(g, path, key);
    if (v == -1) {
        if (required) {
            invalid(path, "missing key " + key);
        }
        return;
    }
    if (v >= 0) {
        check_range(path, key, v, lo, hi);
        return;
    }
    int64_t id = gguf_find_key(g, key.c_str());
    auto    at = gguf_get_arr_type(g, id);
    if (at != GGUF_TYPE_UINT32 && at != GGUF_TYPE_INT32) {
        invalid(path, key + " is an array of " + gguf_type_name(at) + ", expected integers");
    }
    size_t n = gguf_get_arr_n(g, id);
    if (static_cast<int64_t>(n) != n_layer) {
        invalid(path, key + " has " + std::to_string(n) + " entries for " + std::to_string(n_layer) + " layers");
    }
    const auto * data = static_cast<const int32_t *>(gguf_get_arr_data(g, id));
    for (size_t i = 0; i < n; ++i) {
        check_range(path, key + "[" + std::to_string(i) + "]", data[i], lo, hi);
    }
}

// The most of a per-layer count (scalar or array, already range-checked); 0 when absent.
int64_t max_per_layer(const gguf_context * g, const std::string & path, const std::string & key) {
    int64_t v = get_count(g, path, key);
    if (v != -2) {
        return std::max<int64_t>(v, 0);
    }
    int64_t      id   = gguf_find_key(g, key.c_str());
    size_t       n    = gguf_get_arr_n(g, id);
    const auto * data = static_cast<const int32_t *>(gguf_get_arr_data(g, id));
    int64_t      best = 0;
    for (size_t i = 0; i < n; ++i) {
        best = std::max<int64_t>(best, data[i]);
    }
    return best;
}

// Mixture-of-experts counts that llama.cpp only GGML_ASSERTs in load_hparams (n_expert <=
// LLAMA_MAX_EXPERTS, 0 < n_expert_used <= n_expert when there are experts, none used and no groups
// when there are none, groups dividing the experts): refused here as MM_GGUF_INVALID naming the
// key, before llama.cpp's abort (which mm's abort guard turns into an opaque failed load).
text_model_header check_experts(const gguf_context * g, const std::string & path, const std::string & p,
                                int64_t n_layer) {
    int64_t n_expert = get_count(g, path, p + "expert_count");
    if (n_expert == -2) {
        invalid(path, p + "expert_count must be a scalar");
    }
    n_expert = std::max<int64_t>(n_expert, 0);
    check_range(path, p + "expert_count", n_expert, 0, k_max_experts);
    check_per_layer(g, path, p + "expert_used_count", n_layer, 0, n_expert, false);
    int64_t n_used = max_per_layer(g, path, p + "expert_used_count");
    if (n_expert > 0 && n_used == 0) {
        invalid(path, p + "expert_count is " + std::to_string(n_expert) + " but " + p +
                          "expert_used_count is missing or 0: no expert would run");
    }
    int64_t n_groups     = get_count(g, path, p + "expert_group_count");
    int64_t n_group_used = get_count(g, path, p + "expert_group_used_count");
    if (n_groups == -2 || n_group_used == -2) {
        invalid(path, p + "expert_group_count and expert_group_used_count must be scalars");
    }
    n_groups     = std::max<int64_t>(n_groups, 0);
    n_group_used = std::max<int64_t>(n_group_used, 0);
    if (n_expert == 0) {
        if (n_groups != 0) {
            invalid(path, p + "expert_group_count is " + std::to_string(n_groups) + " without experts");
        }
        return {};
    }
    check_range(path, p + "expert_group_count", n_groups, 0, n_expert - 1);
    if (n_groups > 1) {
        if (n_expert % n_groups != 0) {
            invalid(path, p + "expert_group_count " + std::to_string(n_groups) + " does not divide " + p +
                              "expert_count " + std::to_string(n_expert));
        }
        check_range(path, p + "expert_group_used_count", n_group_used, 1, n_groups - 1);
    }
    return {static_cast<int32_t>(n_expert), static_cast<int32_t>(n_used)};
}

}  // namespace

text_model_header validate_text_model_file(const std::string & path) {
    if (!std::ifstream(path, std::ios::binary).good()) {
        fail(error_code::file_not_found, "cannot open '" + path + "'");
    }
    clear_thread_log_errors();
    gguf_init_params                            params{/*no_alloc =*/true, /*ctx =*/nullptr};
    std::unique_ptr<gguf_context, gguf_deleter> g(gguf_init_from_file(path.c_str(), params));
    if (!g) {
        std::string why = thread_log_errors();
        invalid(path, "not a valid GGUF file" + (why.empty() ? std::string() : " (" + why + ")"));
    }
    const std::string bounds = gguf_bounds_violation(g.get());
    if (!bounds.empty()) {
        invalid(path, bounds);
    }
    int64_t arch_id = gguf_find_key(g.get(), "general.architecture");
    if (arch_id < 0 || gguf_get_kv_type(g.get(), arch_id) != GGUF_TYPE_STRING) {
        invalid(path, "general.architecture is missing or not a string");
    }
    const std::string arch = gguf_get_val_str(g.get(), arch_id);
    if (arch == "clip") {
        fail(error_code::model_load,
             "'" + path + "' is an mmproj (architecture 'clip'), not a text model: pass it as the mmproj instead");
    }
    const std::string p = arch + ".";

    int64_t n_layer = get_count(g.get(), path, p + "block_count");
    if (n_layer == -1) {
        invalid(path, "missing key " + p + "block_count");
    }
    if (n_layer < 0) {
        invalid(path, p + "block_count must be a scalar");
    }
    check_range(path, p + "block_count", n_layer, 1, k_max_layers);

    int64_t n_embd = get_count(g.get(), path, p + "embedding_length");
    if (n_embd < 0) {
        invalid(path, "missing or malformed " + p + "embedding_length");
    }
    check_range(path, p + "embedding_length", n_embd, 1, k_max_embd);

    check_per_layer(g.get(), path, p + "attention.head_count", n_layer, 0, k_max_heads, false);
    check_per_layer(g.get(), path, p + "attention.head_count_kv", n_layer, 0, k_max_heads, false);
    check_per_layer(g.get(), path, p + "feed_forward_length", n_layer, 0, 1ll << 24, false);
    const text_model_header header = check_experts(g.get(), path, p, n_layer);
    int64_t                 n_ctx  = get_count(g.get(), path, p + "context_length");
    if (n_ctx >= 0) {
        check_range(path, p + "context_length", n_ctx, 1, 1ll << 24);
    }

    int64_t tok_id = gguf_find_key(g.get(), "tokenizer.ggml.tokens");
    if (tok_id >= 0) {
        if (gguf_get_kv_type(g.get(), tok_id) != GGUF_TYPE_ARRAY ||
            gguf_get_arr_type(g.get(), tok_id) != GGUF_TYPE_STRING) {
            invalid(path, "tokenizer.ggml.tokens must be an array of strings");
        }
        size_t n_vocab = gguf_get_arr_n(g.get(), tok_id);
        if (n_vocab == 0 || n_vocab > k_max_vocab) {
            invalid(path, "tokenizer.ggml.tokens has " + std::to_string(n_vocab) + " entries");
        }
        for (const char * key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
            int64_t id = gguf_find_key(g.get(), key);
            if (id >= 0 &&
                (gguf_get_kv_type(g.get(), id) != GGUF_TYPE_ARRAY || gguf_get_arr_n(g.get(), id) != n_vocab)) {
                invalid(path, std::string(key) + " must be an array with one entry per token");
            }
        }
        for (const char * key :
             {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
              "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id"}) {
            int64_t v = get_count(g.get(), path, key);
            if (v >= 0 && static_cast<uint64_t>(v) >= n_vocab && v != 0xFFFFFFFFll) {
                invalid(path, std::string(key) + " = " + std::to_string(v) + " is not a token id (vocab " +
                                  std::to_string(n_vocab) + ")");
            }
        }
    }
    if (gguf_find_tensor(g.get(), "token_embd.weight") < 0) {
        invalid(path, "tensor token_embd.weight is missing");
    }
    return header;
}

}  // namespace mm
