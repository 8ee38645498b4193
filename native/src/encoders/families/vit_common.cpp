#include "encoders/families/vit_common.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "graph/clip_names.h"
#include "graph/runtime.h"

namespace mm::vit {

void check_range(const gguf_file & f, const char * key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(key) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

shape_keys require_shape_keys(const gguf_file & f) {
    shape_keys k;
    k.image_size = f.require_u32(clip::k_image_size);
    k.patch_size = f.require_u32(clip::k_patch_size);
    k.n_embd     = f.require_u32(clip::k_n_embd);
    k.n_head     = f.require_u32(clip::k_n_head);
    k.n_ff       = f.require_u32(clip::k_n_ff);
    k.n_layer    = f.require_u32(clip::k_n_block);
    k.proj_dim   = f.require_u32(clip::k_proj_dim);
    k.eps        = f.require_f32(clip::k_layer_norm_eps);
    return k;
}

void check_widths(const gguf_file & f, const shape_keys & k) {
    check_range(f, clip::k_n_embd, k.n_embd, 1, k_max_embd);
    check_range(f, clip::k_n_head, k.n_head, 1, k.n_embd);
    check_range(f, clip::k_n_block, k.n_layer, 1, k_max_layers);
    check_range(f, clip::k_n_ff, k.n_ff, 0, 1u << 20);
    check_range(f, clip::k_proj_dim, k.proj_dim, 0, k_max_embd);
}

void check_eps(const gguf_file & f, float eps) {
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid(std::string(clip::k_layer_norm_eps) + " = " + std::to_string(eps) + " is not a finite value >= 0");
    }
}

uint32_t find_head_dim(const gguf_file & f) {
    uint32_t head_dim = 0;
    if (f.find_u32(clip::k_n_embd_head, head_dim)) {
        check_range(f, clip::k_n_embd_head, head_dim, 0, k_max_embd);
    }
    return head_dim;
}

void set_shape(vision_hparams & hp, const shape_keys & k, uint32_t head_dim) {
    hp.image_size     = static_cast<int32_t>(k.image_size);
    hp.patch_size     = static_cast<int32_t>(k.patch_size);
    hp.grid           = hp.image_size / hp.patch_size;
    hp.n_patches      = hp.grid * hp.grid;
    hp.n_embd         = static_cast<int32_t>(k.n_embd);
    hp.n_head         = static_cast<int32_t>(k.n_head);
    hp.d_head         = head_dim > 0 ? static_cast<int32_t>(head_dim) : hp.n_embd / hp.n_head;
    hp.n_layer        = static_cast<int32_t>(k.n_layer);
    hp.n_ff           = static_cast<int32_t>(k.n_ff);
    hp.projection_dim = static_cast<int32_t>(k.proj_dim);
    hp.eps            = k.eps;
}

blocks::ffn_op read_ffn_op(const gguf_file & f) {
    bool use_gelu = false, use_silu = false;
    f.find_bool(clip::k_use_gelu, use_gelu);
    f.find_bool(clip::k_use_silu, use_silu);
    if (use_gelu && use_silu) {
        f.invalid("both clip.use_gelu and clip.use_silu are true");
    }
    return use_gelu ? blocks::ffn_op::gelu : use_silu ? blocks::ffn_op::silu : blocks::ffn_op::gelu_quick;
}

void set_pixel_norm(const gguf_file & f, const std::vector<float> & mean, const std::vector<float> & stdv,
                    preprocess_params & pp) {
    for (int c = 0; c < 3; ++c) {
        if (!std::isfinite(mean[c]) || !std::isfinite(stdv[c]) || stdv[c] == 0.0f) {
            f.invalid("clip.vision.image_mean / image_std must be finite, with std != 0");
        }
        pp.mean[c] = mean[c];
        pp.std[c]  = stdv[c];
    }
}

void read_pixel_norm(const gguf_file & f, preprocess_params & pp) {
    std::vector<float> mean, stdv;
    if (!f.find_f32_array(clip::k_image_mean, mean) || !f.find_f32_array(clip::k_image_std, stdv) || mean.size() < 3 ||
        stdv.size() < 3) {
        f.invalid("clip.vision.image_mean and clip.vision.image_std need 3 values");
    }
    set_pixel_norm(f, mean, stdv, pp);
}

const ggml_tensor * check_and_keep(const gguf_file & f, std::vector<std::string> & load, const std::string & name,
                                   tensor_use use, std::vector<int64_t> ne, bool required) {
    const ggml_tensor * t = check_tensor(f, name, use, std::move(ne), required);
    if (t != nullptr) {
        load.push_back(name);
    }
    return t;
}

void check_outer_norms(const gguf_file & f, int64_t n_embd, std::vector<std::string> & load) {
    for (const char * name : {clip::t_pre_ln_w, clip::t_pre_ln_b, clip::t_post_ln_w, clip::t_post_ln_b}) {
        check_and_keep(f, load, name, tensor_use::vector, {n_embd}, false);
    }
}

namespace {

struct ffn_names {
    std::string up_w, up_b, down_w, down_b;
};

// Which stored tensors play up and down (legacy files name fc1 `ffn_down`).
ffn_names ffn_roles(const gguf_file & f, int il, int64_t n_embd, const char * tower) {
    ffn_names           n{clip::blk(tower, il, "ffn_up", "weight"), clip::blk(tower, il, "ffn_up", "bias"),
                clip::blk(tower, il, "ffn_down", "weight"), clip::blk(tower, il, "ffn_down", "bias")};
    const ggml_tensor * up   = f.tensor(n.up_w);
    const ggml_tensor * down = f.tensor(n.down_w);
    if (up != nullptr && down != nullptr && down->ne[0] == n_embd) {
        std::swap(n.up_w, n.down_w);
        std::swap(n.up_b, n.down_b);
    }
    return n;
}

}  // namespace

void check_block(const gguf_file & f, int il, int64_t n_embd, int64_t attn_width, bool qkv_bias,
                 std::vector<std::string> & load, const char * tower) {
    const int64_t E = n_embd;
    const int64_t A = attn_width;
    auto          t = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne, bool required) {
        check_and_keep(f, load, name, use, std::move(ne), required);
    };
    for (const char * part : {"attn_q", "attn_k", "attn_v"}) {
        t(clip::blk(tower, il, part, "weight"), tensor_use::matrix, {E, A}, true);
        t(clip::blk(tower, il, part, "bias"), tensor_use::vector, {A}, qkv_bias);
    }
    t(clip::blk(tower, il, "attn_out", "weight"), tensor_use::matrix, {A, E}, true);
    t(clip::blk(tower, il, "attn_out", "bias"), tensor_use::vector, {E}, false);
    for (const char * part : {"ln1", "ln2"}) {
        t(clip::blk(tower, il, part, "weight"), tensor_use::vector, {E}, false);
        t(clip::blk(tower, il, part, "bias"), tensor_use::vector, {E}, false);
    }
    const ffn_names     r  = ffn_roles(f, il, E, tower);
    const ggml_tensor * up = check_tensor(f, r.up_w, tensor_use::matrix, {E, -1});
    const int64_t       F  = up->ne[1];
    load.push_back(r.up_w);
    t(r.up_b, tensor_use::vector, {F}, false);
    t(r.down_w, tensor_use::matrix, {F, E}, true);
    t(r.down_b, tensor_use::vector, {E}, false);
    t(clip::blk(tower, il, "ffn_gate", "weight"), tensor_use::matrix, {E, F}, false);
    t(clip::blk(tower, il, "ffn_gate", "bias"), tensor_use::vector, {F}, false);
}

ggml_tensor * add_pixel_input(ggml_context * ctx, vision_graph & out, int32_t width, int32_t height) {
    ggml_tensor * inp_raw = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, width, height, 3, 1);
    ggml_set_name(inp_raw, "inp_raw");
    ggml_set_input(inp_raw);
    out.pixels = inp_raw;
    return inp_raw;
}

ggml_tensor * build_patch_embd(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                               ggml_tensor * pixels, int64_t n_pos) {
    ggml_context * ctx = g.ctx;
    ggml_tensor *  inp = ggml_conv_2d(ctx, w.get(clip::t_patch_embd), pixels, hp.patch_size, hp.patch_size, 0, 0, 1, 1);
    inp                = ggml_reshape_3d(ctx, inp, n_pos, hp.n_embd, 1);
    inp                = ggml_cont(ctx, ggml_transpose(ctx, inp));
    return blocks::add_opt(g, inp, w.find(clip::t_patch_bias));
}

ggml_tensor * build_outer_norm(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                               ggml_tensor * x, const char * weight, const char * bias) {
    if (w.find(weight) == nullptr) {
        return x;
    }
    return blocks::norm(g, x, w.find(weight), w.find(bias), hp.eps, hp.norm);
}

ggml_tensor * build_block(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int il,
                          ggml_tensor * inpL, int64_t n_pos, const qk_rope & rope, ggml_tensor * mask) {
    ggml_context * ctx      = g.ctx;
    const float    kq_scale = 1.0f / sqrtf(static_cast<float>(hp.d_head));
    auto W = [&](const char * part, const char * suffix) { return w.find(clip::blk(hp.tower, il, part, suffix)); };

    ggml_tensor * cur = blocks::norm(g, inpL, W("ln1", "weight"), W("ln1", "bias"), hp.eps, hp.norm);
    ggml_tensor * q   = blocks::add_opt(g, blocks::mm(g, W("attn_q", "weight"), cur), W("attn_q", "bias"));
    ggml_tensor * k   = blocks::add_opt(g, blocks::mm(g, W("attn_k", "weight"), cur), W("attn_k", "bias"));
    ggml_tensor * v   = blocks::add_opt(g, blocks::mm(g, W("attn_v", "weight"), cur), W("attn_v", "bias"));
    q                 = ggml_reshape_3d(ctx, q, hp.d_head, hp.n_head, n_pos);
    k                 = ggml_reshape_3d(ctx, k, hp.d_head, hp.n_head, n_pos);
    v                 = ggml_reshape_3d(ctx, v, hp.d_head, hp.n_head, n_pos);
    if (rope) {
        q = rope(q);
        k = rope(k);
    }
    cur  = blocks::attn(g, W("attn_out", "weight"), W("attn_out", "bias"), q, k, v, kq_scale, mask);
    cur  = ggml_add(ctx, cur, inpL);
    inpL = cur;

    cur                = blocks::norm(g, cur, W("ln2", "weight"), W("ln2", "bias"), hp.eps, hp.norm);
    const bool swapped = w.get(clip::blk(hp.tower, il, "ffn_down", "weight"))->ne[0] == hp.n_embd &&
                         w.find(clip::blk(hp.tower, il, "ffn_up", "weight")) != nullptr;
    const char * up   = swapped ? "ffn_down" : "ffn_up";
    const char * down = swapped ? "ffn_up" : "ffn_down";
    cur = blocks::ffn(g, cur, W(up, "weight"), W(up, "bias"), W("ffn_gate", "weight"), W("ffn_gate", "bias"),
                      W(down, "weight"), W(down, "bias"), hp.ffn);
    return ggml_add(ctx, inpL, cur);
}

void set_features(const blocks::graph_ctx & g, vision_graph & out, ggml_tensor * x) {
    ggml_set_name(x, "features");
    ggml_set_output(x);
    ggml_build_forward_expand(g.gf, x);
    out.out = x;
}

}  // namespace mm::vit
