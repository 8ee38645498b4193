#include "projectors/train/train_llama.h"

#include <cmath>

#include "common/error.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

constexpr int k_max_layers = 512;
constexpr int k_max_width  = 1 << 16;

int require_range(const gguf_file & f, const std::string & key, int lo, int hi) {
    const uint32_t v = f.require_u32(key.c_str());
    if (v < static_cast<uint32_t>(lo) || v > static_cast<uint32_t>(hi)) {
        f.invalid(key + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
    return static_cast<int>(v);
}

std::string blk(int il, const char * name) {
    return "blk." + std::to_string(il) + "." + name + ".weight";
}

std::string blk_bias(int il, const char * name) {
    return "blk." + std::to_string(il) + "." + name + ".bias";
}

}  // namespace

train_llama::~train_llama() = default;

std::unique_ptr<train_llama> train_llama::load(const std::string & path, ggml_backend_buffer_type_t buft,
                                               const std::atomic<bool> * cancel) {
    std::unique_ptr<train_llama> m(new train_llama());
    m->file_            = gguf_file::open(path);
    const gguf_file & f = *m->file_;
    std::string       arch;
    if (!f.find_string("general.architecture", arch)) {
        f.invalid("missing key general.architecture");
    }
    if (arch != "llama") {
        fail(error_code::unsupported_family, "'" + path + "' is a '" + arch +
                                                 "' model: projector training runs the frozen LLM in its own "
                                                 "graph, written for the 'llama' architecture only");
    }
    std::string scaling;
    if (f.find_string("llama.rope.scaling.type", scaling) && scaling != "none") {
        fail(error_code::unsupported_family,
             "'" + path + "' uses rope scaling '" + scaling + "', which the training graph does not implement");
    }
    train_llama_hparams & hp = m->hp_;
    hp.n_embd                = require_range(f, "llama.embedding_length", 1, k_max_width);
    hp.n_layer               = require_range(f, "llama.block_count", 1, k_max_layers);
    hp.n_head                = require_range(f, "llama.attention.head_count", 1, hp.n_embd);
    uint32_t n_head_kv       = static_cast<uint32_t>(hp.n_head);
    f.find_u32("llama.attention.head_count_kv", n_head_kv);
    hp.n_head_kv = static_cast<int>(n_head_kv);
    if (hp.n_head_kv < 1 || hp.n_head % hp.n_head_kv != 0) {
        f.invalid("llama.attention.head_count_kv must divide llama.attention.head_count");
    }
    if (hp.n_embd % hp.n_head != 0) {
        f.invalid("llama.embedding_length must be a multiple of llama.attention.head_count");
    }
    const int head_dim = hp.n_embd / hp.n_head;
    hp.n_ff            = require_range(f, "llama.feed_forward_length", 1, 1 << 20);
    hp.n_ctx_train     = require_range(f, "llama.context_length", 1, 1 << 24);
    uint32_t n_rot     = static_cast<uint32_t>(head_dim);
    f.find_u32("llama.rope.dimension_count", n_rot);
    if (n_rot < 2 || n_rot > static_cast<uint32_t>(head_dim) || n_rot % 2 != 0) {
        f.invalid("llama.rope.dimension_count must be even and at most the head size");
    }
    hp.n_rot = static_cast<int>(n_rot);
    f.find_f32("llama.attention.layer_norm_rms_epsilon", hp.eps);
    f.find_f32("llama.rope.freq_base", hp.freq_base);
    float scale = 1.0f;
    if (f.find_f32("llama.rope.scaling.factor", scale) && scale != 0.0f) {
        hp.freq_scale = 1.0f / scale;
    }
    if (!(hp.eps > 0.0f) || !(hp.freq_base > 0.0f) || !std::isfinite(hp.freq_scale) || hp.freq_scale <= 0.0f) {
        f.invalid("llama rms epsilon, rope freq_base and rope scale must be positive");
    }

    const int64_t       E = hp.n_embd, kv = static_cast<int64_t>(head_dim) * hp.n_head_kv;
    const ggml_tensor * tok = check_tensor(f, "token_embd.weight", tensor_use::rows, {E, -1});
    hp.n_vocab              = static_cast<int>(tok->ne[1]);
    std::vector<std::string> names{"token_embd.weight", "output_norm.weight"};
    check_tensor(f, "output_norm.weight", tensor_use::vector, {E});
    if (check_tensor(f, "output.weight", tensor_use::matrix, {E, hp.n_vocab}, false) != nullptr) {
        names.push_back("output.weight");
    }
    if (check_tensor(f, "rope_freqs.weight", tensor_use::vector, {hp.n_rot / 2}, false) != nullptr) {
        names.push_back("rope_freqs.weight");
    }
    for (int il = 0; il < hp.n_layer; ++il) {
        check_tensor(f, blk(il, "attn_norm"), tensor_use::vector, {E});
        check_tensor(f, blk(il, "attn_q"), tensor_use::matrix, {E, E});
        check_tensor(f, blk(il, "attn_k"), tensor_use::matrix, {E, kv});
        check_tensor(f, blk(il, "attn_v"), tensor_use::matrix, {E, kv});
        check_tensor(f, blk(il, "attn_output"), tensor_use::matrix, {E, E});
        check_tensor(f, blk(il, "ffn_norm"), tensor_use::vector, {E});
        check_tensor(f, blk(il, "ffn_gate"), tensor_use::matrix, {E, hp.n_ff});
        check_tensor(f, blk(il, "ffn_up"), tensor_use::matrix, {E, hp.n_ff});
        check_tensor(f, blk(il, "ffn_down"), tensor_use::matrix, {hp.n_ff, E});
        for (const char * n :
             {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"}) {
            names.push_back(blk(il, n));
        }
        const std::pair<const char *, int64_t> biases[] = {
            {"attn_q", E}, {"attn_k", kv}, {"attn_v", kv}, {"attn_output", E}};
        for (const auto & [n, len] : biases) {
            if (check_tensor(f, blk_bias(il, n), tensor_use::vector, {len}, false) != nullptr) {
                names.push_back(blk_bias(il, n));
            }
        }
        if (f.tensor(blk(il, "ffn_gate_inp")) != nullptr) {
            fail(error_code::unsupported_family,
                 "'" + path + "' is a mixture-of-experts llama, which the training graph does not implement");
        }
    }
    m->weights_          = std::make_unique<weight_set>(f, names, buft, cancel);
    const weight_set & w = *m->weights_;
    m->tok_embd_         = w.get("token_embd.weight");
    m->out_norm_         = w.get("output_norm.weight");
    m->output_           = w.find("output.weight") != nullptr ? w.get("output.weight") : m->tok_embd_;
    m->rope_freqs_       = w.find("rope_freqs.weight");
    for (int il = 0; il < hp.n_layer; ++il) {
        layer l{};
        l.attn_norm = w.get(blk(il, "attn_norm"));
        l.wq        = w.get(blk(il, "attn_q"));
        l.wk        = w.get(blk(il, "attn_k"));
        l.wv        = w.get(blk(il, "attn_v"));
        l.wo        = w.get(blk(il, "attn_output"));
        l.bq        = w.find(blk_bias(il, "attn_q"));
        l.bk        = w.find(blk_bias(il, "attn_k"));
        l.bv        = w.find(blk_bias(il, "attn_v"));
        l.bo        = w.find(blk_bias(il, "attn_output"));
        l.ffn_norm  = w.get(blk(il, "ffn_norm"));
        l.gate      = w.get(blk(il, "ffn_gate"));
        l.up        = w.get(blk(il, "ffn_up"));
        l.down      = w.get(blk(il, "ffn_down"));
        m->layers_.push_back(l);
    }
    return m;
}

ggml_tensor * train_llama::blocks(ggml_context * ctx, ggml_tensor * x, ggml_tensor * pos, ggml_tensor * mask, int T,
                                  int B) const {
    const int   hd    = hp_.n_embd / hp_.n_head;
    const int   H     = hp_.n_head;
    const int   Hkv   = hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    auto        add   = [&](ggml_tensor * a, ggml_tensor * b) { return b != nullptr ? ggml_add(ctx, a, b) : a; };
    auto        rope  = [&](ggml_tensor * t) {
        // rope mode 0 (LLAMA_ROPE_TYPE_NORM); yarn off (ext_factor 0) as llama.cpp runs plain llama
        return ggml_rope_ext(ctx, t, pos, rope_freqs_, hp_.n_rot, 0, hp_.n_ctx_train, hp_.freq_base, hp_.freq_scale,
                                     0.0f, 1.0f, 32.0f, 1.0f);
    };
    // [hd, heads, T, B] -> [hd, T, heads * B]: one attention matrix per head and sequence
    auto by_head = [&](ggml_tensor * t, int heads) {
        return ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, t, 0, 2, 1, 3)), hd, T,
                               static_cast<int64_t>(heads) * B);
    };
    ggml_tensor * inp = x;
    for (const layer & l : layers_) {
        ggml_tensor * cur = ggml_mul(ctx, ggml_rms_norm(ctx, inp, hp_.eps), l.attn_norm);
        ggml_tensor * q   = ggml_reshape_4d(ctx, add(ggml_mul_mat(ctx, l.wq, cur), l.bq), hd, H, T, B);
        ggml_tensor * k   = ggml_reshape_4d(ctx, add(ggml_mul_mat(ctx, l.wk, cur), l.bk), hd, Hkv, T, B);
        ggml_tensor * v   = ggml_reshape_4d(ctx, add(ggml_mul_mat(ctx, l.wv, cur), l.bv), hd, Hkv, T, B);
        q                 = by_head(rope(q), H);
        k                 = by_head(rope(k), Hkv);
        // [T, hd, Hkv * B]: V transposed per head, the src0 of kqv
        ggml_tensor * vt  = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3)), T, hd,
                                            static_cast<int64_t>(Hkv) * B);
        ggml_tensor * kq  = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, k, q), mask, scale, 0.0f);  // [T, T, H * B]
        ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);                                           // [hd, T, H * B]
        ggml_tensor * o =
            ggml_reshape_2d(ctx, ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_4d(ctx, kqv, hd, T, H, B), 0, 2, 1, 3)),
                            hp_.n_embd, static_cast<int64_t>(T) * B);
        ggml_tensor * ffn_inp = ggml_add(ctx, add(ggml_mul_mat(ctx, l.wo, o), l.bo), inp);
        cur                   = ggml_mul(ctx, ggml_rms_norm(ctx, ffn_inp, hp_.eps), l.ffn_norm);
        cur                   = ggml_swiglu_split(ctx, ggml_mul_mat(ctx, l.gate, cur), ggml_mul_mat(ctx, l.up, cur));
        inp                   = ggml_add(ctx, ggml_mul_mat(ctx, l.down, cur), ffn_inp);
    }
    return inp;
}

ggml_tensor * train_llama::head(ggml_context * ctx, ggml_tensor * h) const {
    return ggml_mul_mat(ctx, output_, ggml_mul(ctx, ggml_rms_norm(ctx, h, hp_.eps), out_norm_));
}

}  // namespace mm
