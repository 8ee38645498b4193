// The Qwen2-VL / Qwen2.5-VL vision transformer, as libmtmd builds it (tools/mtmd/models/qwen2vl.cpp)
// up to the merger, which is the projector (projectors/families/qwen2vl_merger.cpp):
//  - dynamic resolution: the picture keeps its aspect ratio, each side a multiple of 2 patches,
//    between 8 and 4096 merged tokens (libmtmd's limits), bicubic, padded with black bands;
//  - two patch kernels added (the temporal pair of a still image), no bias, no position table;
//  - patches reordered into 2x2 blocks (the merger's groups), 2-D rotary positions ([y, x, y, x]
//    sections of d_head / 4) inside every block;
//  - Qwen2.5-VL: RMSNorm, gated SiLU FFN, patches permuted into 112-px windows and attention
//    masked to the window except every n_wa_pattern-th block.
#include "encoders/families/qwen2vl.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "encoders/preprocess.h"
#include "encoders/vision_hparams.h"
#include "ggml-backend.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace qwen2vl {

windows make_windows(int32_t npx, int32_t npy, int32_t patch_size, int32_t window_px) {
    constexpr int merge = 2;
    const int     pw    = npx / merge;
    const int     ph    = npy / merge;
    windows       w;
    w.idx.resize(static_cast<size_t>(pw) * ph);
    w.inv_idx.resize(w.idx.size());
    if (window_px <= 0) {
        for (size_t i = 0; i < w.idx.size(); ++i) {
            w.idx[i]     = static_cast<int32_t>(i);
            w.inv_idx[i] = static_cast<int32_t>(i);
        }
        return w;
    }
    const int grid_window = std::max(1, window_px / patch_size / merge);
    int       dst         = 0;
    for (int y = 0; y < ph; y += grid_window) {
        for (int x = 0; x < pw; x += grid_window) {
            const int win_h = std::min(grid_window, ph - y);
            const int win_w = std::min(grid_window, pw - x);
            const int dst_0 = dst;
            for (int dy = 0; dy < win_h; ++dy) {
                for (int dx = 0; dx < win_w; ++dx) {
                    const int src  = (y + dy) * pw + (x + dx);
                    w.idx[src]     = dst;
                    w.inv_idx[dst] = src;
                    ++dst;
                }
            }
            w.spans.emplace_back(dst_0, dst);
        }
    }
    return w;
}

namespace {

template <typename T>
void write_rows(ggml_tensor * mask, const windows & w, T zero, T masked) {
    constexpr int64_t mpow = 4;  // patches per merged token
    const int64_t     n    = mask->ne[0];
    // the rows of one window's patches are equal: 0 over the window's columns
    std::vector<T> row(static_cast<size_t>(n), masked);
    int64_t        r = 0;
    for (const auto & [first, end] : w.spans) {
        std::fill(row.begin() + first * mpow, row.begin() + end * mpow, zero);
        for (int64_t k = 0; k < (end - first) * mpow; ++k, ++r) {
            ggml_backend_tensor_set(mask, row.data(), static_cast<size_t>(r * n) * sizeof(T), n * sizeof(T));
        }
        std::fill(row.begin() + first * mpow, row.begin() + end * mpow, masked);
    }
    if (r != n) {
        fail(error_code::internal, "the windows do not cover the patches");
    }
}

}  // namespace

void write_window_mask(ggml_tensor * mask, const windows & w) {
    constexpr int64_t mpow = 4;  // patches per merged token
    const int64_t     n    = mask->ne[0];
    if ((mask->type != GGML_TYPE_F32 && mask->type != GGML_TYPE_F16) || mask->ne[1] != n ||
        static_cast<int64_t>(w.idx.size()) * mpow != n) {
        fail(error_code::internal, "window mask of the wrong shape");
    }
    if (mask->type == GGML_TYPE_F32) {
        write_rows<float>(mask, w, 0.0f, std::numeric_limits<float>::lowest());
    } else {
        // libmtmd's f32 mask (0 and the lowest float) cast to f16: 0 and -inf
        write_rows<ggml_fp16_t>(mask, w, ggml_fp32_to_fp16(0.0f),
                                ggml_fp32_to_fp16(std::numeric_limits<float>::lowest()));
    }
}

}  // namespace qwen2vl

namespace {

constexpr uint32_t k_max_embd   = 1u << 16;
constexpr uint32_t k_max_layers = 1024;
constexpr int32_t  k_merge      = 2;
// libmtmd's set_limit_image_tokens(8, 4096) for Qwen2/2.5-VL: merged tokens per picture
constexpr int32_t k_min_tokens = 8;
constexpr int32_t k_max_tokens = 4096;
constexpr int32_t k_window_px  = 112;
// libmtmd's set_warmup_n_tokens(46*46) "to avoid OOM on warmup"
constexpr int32_t k_warmup_side = 46;

void check_range(const gguf_file & f, const char * key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(key) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

bool is_qwen25(const vision_hparams & hp) {
    return hp.projector_type == "qwen2.5vl_merger";
}

vision_hparams load_hparams(const gguf_file & f) {
    vision_hparams hp;
    std::string    type;
    if (!f.find_string(clip::k_projector_type, type) || type.empty()) {
        f.find_string(clip::k_vision_proj_type, type);
    }
    hp.projector_type         = type;
    const uint32_t image_size = f.require_u32(clip::k_image_size);
    const uint32_t patch_size = f.require_u32(clip::k_patch_size);
    const uint32_t n_embd     = f.require_u32(clip::k_n_embd);
    const uint32_t n_head     = f.require_u32(clip::k_n_head);
    const uint32_t n_ff       = f.require_u32(clip::k_n_ff);
    const uint32_t n_layer    = f.require_u32(clip::k_n_block);
    const uint32_t proj_dim   = f.require_u32(clip::k_proj_dim);
    const float    eps        = f.require_f32(clip::k_layer_norm_eps);
    check_range(f, clip::k_image_size, image_size, 1, 8192);
    check_range(f, clip::k_patch_size, patch_size, 1, 1024);
    check_range(f, clip::k_n_embd, n_embd, 1, k_max_embd);
    check_range(f, clip::k_n_head, n_head, 1, n_embd);
    check_range(f, clip::k_n_block, n_layer, 1, k_max_layers);
    check_range(f, clip::k_n_ff, n_ff, 0, 1u << 20);
    check_range(f, clip::k_proj_dim, proj_dim, 0, k_max_embd);
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid(std::string(clip::k_layer_norm_eps) + " = " + std::to_string(eps) + " is not a finite value >= 0");
    }
    if (n_embd % n_head != 0 || (n_embd / n_head) % 4 != 0) {
        f.invalid("embedding_length / head_count must be a multiple of 4 (2-D rotary sections)");
    }
    uint32_t merge = k_merge;
    f.find_u32(clip::k_spatial_merge, merge);
    if (merge != k_merge) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_spatial_merge + " = " +
                                               std::to_string(merge) + "; libmtmd's Qwen-VL graph merges 2x2");
    }
    uint32_t   wa     = 0;
    const bool has_wa = f.find_u32(clip::k_n_wa_pattern, wa);
    hp.projector_type = type;
    if (is_qwen25(hp) && !has_wa) {
        f.invalid(std::string(clip::k_n_wa_pattern) + " is required for qwen2.5vl_merger");
    }
    check_range(f, clip::k_n_wa_pattern, wa, 0, n_layer);
    if (!is_qwen25(hp) && wa > 0) {
        // libmtmd's Qwen2-VL graph would build window attention from it, but only fills the window
        // inputs for qwen2.5vl_merger: the windows would be uninitialised memory.
        f.invalid(std::string(clip::k_n_wa_pattern) + " = " + std::to_string(wa) +
                  " in a qwen2vl_merger file (window attention is Qwen2.5-VL's)");
    }
    if (is_qwen25(hp) && wa == 1) {
        // every block attends fully: libmtmd's graph then never uses the window mask it builds, and
        // it aborts looking it up at the first encode
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_n_wa_pattern +
                                               " = 1 (every block full, no windows): libmtmd aborts on it; "
                                               "0 means no windows");
    }
    if (is_qwen25(hp) && wa > 0 && k_window_px / (static_cast<int64_t>(patch_size) * k_merge) == 0) {
        // libmtmd's window loop steps by 112 / patch / 2 tokens: 0 for patches over 56 px, and it
        // never ends.
        fail(error_code::gguf_unsupported,
             "'" + f.path() + "': " + clip::k_patch_size + " = " + std::to_string(patch_size) +
                 " is wider than half the " + std::to_string(k_window_px) +
                 "-pixel attention window of qwen2.5vl_merger (at most " + std::to_string(k_window_px / k_merge) + ")");
    }

    hp.image_size     = static_cast<int32_t>(image_size);
    hp.patch_size     = static_cast<int32_t>(patch_size);
    hp.n_embd         = static_cast<int32_t>(n_embd);
    hp.n_head         = static_cast<int32_t>(n_head);
    hp.d_head         = hp.n_embd / hp.n_head;
    hp.n_layer        = static_cast<int32_t>(n_layer);
    hp.n_ff           = static_cast<int32_t>(n_ff);
    hp.projection_dim = static_cast<int32_t>(proj_dim);
    hp.eps            = eps;
    hp.n_blocks_run   = hp.n_layer;
    hp.n_embd_out     = hp.n_embd;
    hp.n_merge        = k_merge;
    hp.n_wa_pattern   = is_qwen25(hp) ? static_cast<int32_t>(wa) : 0;
    hp.attn_window    = hp.n_wa_pattern > 0 ? k_window_px : 0;
    hp.norm           = is_qwen25(hp) ? blocks::norm_op::rms : blocks::norm_op::layer;
    hp.dynamic        = true;

    bool use_gelu = false, use_silu = false;
    f.find_bool(clip::k_use_gelu, use_gelu);
    f.find_bool(clip::k_use_silu, use_silu);
    if (use_gelu && use_silu) {
        f.invalid("both clip.use_gelu and clip.use_silu are true");
    }
    hp.ffn = use_gelu ? blocks::ffn_op::gelu : use_silu ? blocks::ffn_op::silu : blocks::ffn_op::gelu_quick;

    std::vector<float> mean, stdv;
    if (!f.find_f32_array(clip::k_image_mean, mean) || !f.find_f32_array(clip::k_image_std, stdv) || mean.size() < 3 ||
        stdv.size() < 3) {
        f.invalid("clip.vision.image_mean and clip.vision.image_std need 3 values");
    }
    for (int c = 0; c < 3; ++c) {
        if (!std::isfinite(mean[c]) || !std::isfinite(stdv[c]) || stdv[c] == 0.0f) {
            f.invalid("clip.vision.image_mean / image_std must be finite, with std != 0");
        }
        hp.preprocess.mean[c] = mean[c];
        hp.preprocess.std[c]  = stdv[c];
    }
    const int64_t align = static_cast<int64_t>(hp.patch_size) * k_merge;
    if (align * align * k_max_tokens > INT32_MAX) {
        f.invalid(std::string(clip::k_patch_size) + " is too large");
    }
    hp.preprocess.align      = static_cast<int32_t>(align);
    hp.preprocess.min_pixels = static_cast<int32_t>(align * align * k_min_tokens);
    hp.preprocess.max_pixels = static_cast<int32_t>(align * align * k_max_tokens);
    hp.preprocess.algo       = resize_algo::bicubic;
    hp.preprocess.pad        = pad_style::ceil;
    hp.preprocess.pad_color  = {0, 0, 0};
    hp.preprocess.image_size = hp.image_size;
    // a typical input, for sizing and reports (the graph built at load): what an image_size square
    // resizes to, at most libmtmd's warmup size of 46x46 merged tokens however large image_size is
    int32_t side_w = 0, side_h = 0;
    dynamic_target_size(hp.image_size, hp.image_size, hp.preprocess.align, hp.preprocess.min_pixels,
                        hp.preprocess.max_pixels, side_w, side_h);
    if (side_w != side_h || side_w < hp.preprocess.align ||
        static_cast<int64_t>(side_w) * side_h > hp.preprocess.max_pixels) {
        f.invalid("no typical input size for " + std::string(clip::k_image_size) + " = " +
                  std::to_string(hp.image_size));
    }
    side_w       = std::min(side_w, k_warmup_side * hp.preprocess.align);
    hp.grid      = side_w / hp.patch_size;
    hp.n_patches = hp.grid * hp.grid;
    return hp;
}

struct ffn_names {
    std::string up_w, up_b, down_w, down_b;
};

ffn_names ffn_roles(const gguf_file & f, int il, int32_t n_embd) {
    ffn_names n{clip::blk(il, "ffn_up", "weight"), clip::blk(il, "ffn_up", "bias"), clip::blk(il, "ffn_down", "weight"),
                clip::blk(il, "ffn_down", "bias")};
    const ggml_tensor * up   = f.tensor(n.up_w);
    const ggml_tensor * down = f.tensor(n.down_w);
    if (up != nullptr && down != nullptr && down->ne[0] == n_embd) {
        std::swap(n.up_w, n.down_w);
        std::swap(n.up_b, n.down_b);
    }
    return n;
}

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp) {
    const int64_t            E = hp.n_embd;
    std::vector<std::string> load;
    auto                     keep = [&](const ggml_tensor * t, const std::string & name) {
        if (t != nullptr) {
            load.push_back(name);
        }
    };
    keep(check_tensor(f, clip::t_patch_embd, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E}),
         clip::t_patch_embd);
    keep(check_tensor(f, clip::t_patch_embd_1, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E}),
         clip::t_patch_embd_1);
    for (const char * absent : {clip::t_patch_bias, clip::t_class_embd}) {
        if (f.tensor(absent) != nullptr) {
            f.invalid(std::string(absent) + " is not part of a Qwen-VL encoder");
        }
    }
    for (const char * name : {clip::t_pre_ln_w, clip::t_pre_ln_b, clip::t_post_ln_w, clip::t_post_ln_b}) {
        keep(check_tensor(f, name, tensor_use::vector, {E}, false), name);
    }
    for (int il = 0; il < hp.n_layer; ++il) {
        auto t = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne, bool required) {
            keep(check_tensor(f, name, use, std::move(ne), required), name);
        };
        for (const char * part : {"attn_q", "attn_k", "attn_v"}) {
            t(clip::blk(il, part, "weight"), tensor_use::matrix, {E, E}, true);
            t(clip::blk(il, part, "bias"), tensor_use::vector, {E}, true);
        }
        t(clip::blk(il, "attn_out", "weight"), tensor_use::matrix, {E, E}, true);
        t(clip::blk(il, "attn_out", "bias"), tensor_use::vector, {E}, false);
        for (const char * part : {"ln1", "ln2"}) {
            t(clip::blk(il, part, "weight"), tensor_use::vector, {E}, false);
            t(clip::blk(il, part, "bias"), tensor_use::vector, {E}, false);
        }
        const ffn_names     r  = ffn_roles(f, il, hp.n_embd);
        const ggml_tensor * up = check_tensor(f, r.up_w, tensor_use::matrix, {E, -1});
        const int64_t       F  = up->ne[1];
        load.push_back(r.up_w);
        t(r.up_b, tensor_use::vector, {F}, false);
        t(r.down_w, tensor_use::matrix, {F, E}, true);
        t(r.down_b, tensor_use::vector, {E}, false);
        t(clip::blk(il, "ffn_gate", "weight"), tensor_use::matrix, {E, F}, false);
        t(clip::blk(il, "ffn_gate", "bias"), tensor_use::vector, {F}, false);
    }
    return load;
}

vision_graph build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int32_t width,
                   int32_t height) {
    const int32_t align = hp.patch_size * k_merge;
    if (width < align || height < align || width % align != 0 || height % align != 0) {
        fail(error_code::internal, "a Qwen-VL input must be a multiple of 2 patches per side");
    }
    ggml_context * ctx = g.ctx;
    const int32_t  npx = width / hp.patch_size;
    const int32_t  npy = height / hp.patch_size;
    const int32_t  n   = npx * npy;
    const int64_t  E   = hp.n_embd;
    vision_graph   out;
    out.nx = npx;
    out.ny = npy;

    ggml_tensor * inp_raw = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, width, height, 3, 1);
    ggml_set_name(inp_raw, "inp_raw");
    ggml_set_input(inp_raw);
    out.pixels = inp_raw;

    ggml_tensor * inp =
        ggml_add(ctx, ggml_conv_2d(ctx, w.get(clip::t_patch_embd), inp_raw, hp.patch_size, hp.patch_size, 0, 0, 1, 1),
                 ggml_conv_2d(ctx, w.get(clip::t_patch_embd_1), inp_raw, hp.patch_size, hp.patch_size, 0, 0, 1, 1));
    // [npx, npy, E] -> rows in 2x2-block order
    inp = ggml_permute(ctx, inp, 1, 2, 0, 3);
    inp = ggml_cont_4d(ctx, inp, E * 2, npx / 2, npy, 1);
    inp = ggml_reshape_4d(ctx, inp, E * 2, npx / 2, 2, npy / 2);
    inp = ggml_permute(ctx, inp, 0, 2, 1, 3);
    inp = ggml_cont_3d(ctx, inp, E, n, 1);

    const bool use_window = hp.n_wa_pattern > 0;
    // the mask only when some block attends within windows (an input outside the graph has no buffer)
    const bool             use_mask = use_window && hp.n_wa_pattern > 1;
    const qwen2vl::windows win      = qwen2vl::make_windows(npx, npy, hp.patch_size, hp.attn_window);

    // positions [y, x, y, x] of every patch, in the order the rows have after the window permutation
    std::vector<int32_t> positions(static_cast<size_t>(n) * 4);
    {
        constexpr int mpow = k_merge * k_merge;
        int           ptr  = 0;
        for (int y = 0; y < npy; y += k_merge) {
            for (int x = 0; x < npx; x += k_merge) {
                for (int dy = 0; dy < 2; ++dy) {
                    for (int dx = 0; dx < 2; ++dx) {
                        int remap = ptr;
                        if (hp.projector_type == "qwen2.5vl_merger") {
                            remap = win.idx[ptr / mpow] * mpow + ptr % mpow;
                        }
                        positions[remap]         = y + dy;
                        positions[n + remap]     = x + dx;
                        positions[2 * n + remap] = y + dy;
                        positions[3 * n + remap] = x + dx;
                        ++ptr;
                    }
                }
            }
        }
    }

    ggml_tensor * inpL = inp;
    if (w.find(clip::t_pre_ln_w) != nullptr) {
        inpL = blocks::norm(g, inpL, w.find(clip::t_pre_ln_w), w.find(clip::t_pre_ln_b), hp.eps, hp.norm);
    }
    ggml_tensor * window_mask = nullptr;
    if (use_window) {
        ggml_tensor * inv_idx = out.inputs.add_i32(ctx, "inv_window_idx", win.inv_idx);
        if (use_mask) {
            // with flash attention the mask is f16: written as such (libmtmd writes f32, casts it, then copies it
            // in each windowed block; the values are the same)
            window_mask = ggml_new_tensor_2d(ctx, g.flash_attn ? GGML_TYPE_F16 : GGML_TYPE_F32, n, n);
            ggml_set_name(window_mask, "window_mask");
            ggml_set_input(window_mask);
            out.inputs.deferred.emplace_back([window_mask, win]() { qwen2vl::write_window_mask(window_mask, win); });
        }
        inpL = ggml_reshape_2d(ctx, inpL, E * 4, n / 4);
        inpL = ggml_get_rows(ctx, inpL, inv_idx);
        inpL = ggml_reshape_3d(ctx, inpL, E, n, 1);
    }
    ggml_tensor * pos = out.inputs.add_i32(ctx, "positions", std::move(positions));

    int         sections[4] = {hp.d_head / 4, hp.d_head / 4, hp.d_head / 4, hp.d_head / 4};
    const float kq_scale    = 1.0f / sqrtf(static_cast<float>(hp.d_head));
    for (int il = 0; il < hp.n_layer; ++il) {
        auto       W = [&](const char * part, const char * suffix) { return w.find(clip::blk(il, part, suffix)); };
        const bool full_attn = use_window ? (il + 1) % hp.n_wa_pattern == 0 : true;

        ggml_tensor * cur = blocks::norm(g, inpL, W("ln1", "weight"), W("ln1", "bias"), hp.eps, hp.norm);
        ggml_tensor * q   = ggml_add(ctx, blocks::mm(g, W("attn_q", "weight"), cur), W("attn_q", "bias"));
        ggml_tensor * k   = ggml_add(ctx, blocks::mm(g, W("attn_k", "weight"), cur), W("attn_k", "bias"));
        ggml_tensor * v   = ggml_add(ctx, blocks::mm(g, W("attn_v", "weight"), cur), W("attn_v", "bias"));
        q                 = ggml_reshape_3d(ctx, q, hp.d_head, hp.n_head, n);
        k                 = ggml_reshape_3d(ctx, k, hp.d_head, hp.n_head, n);
        v                 = ggml_reshape_3d(ctx, v, hp.d_head, hp.n_head, n);
        q = ggml_rope_multi(ctx, q, pos, nullptr, hp.d_head / 2, sections, GGML_ROPE_TYPE_VISION, 32768, 10000, 1, 0, 1,
                            32, 1);
        k = ggml_rope_multi(ctx, k, pos, nullptr, hp.d_head / 2, sections, GGML_ROPE_TYPE_VISION, 32768, 10000, 1, 0, 1,
                            32, 1);
        cur  = blocks::attn(g, W("attn_out", "weight"), W("attn_out", "bias"), q, k, v, kq_scale,
                           full_attn ? nullptr : window_mask);
        cur  = ggml_add(ctx, cur, inpL);
        inpL = cur;

        cur                = blocks::norm(g, cur, W("ln2", "weight"), W("ln2", "bias"), hp.eps, hp.norm);
        const bool swapped = w.get(clip::blk(il, "ffn_down", "weight"))->ne[0] == hp.n_embd &&
                             w.find(clip::blk(il, "ffn_up", "weight")) != nullptr;
        const char * up   = swapped ? "ffn_down" : "ffn_up";
        const char * down = swapped ? "ffn_up" : "ffn_down";
        cur  = blocks::ffn(g, cur, W(up, "weight"), W(up, "bias"), W("ffn_gate", "weight"), W("ffn_gate", "bias"),
                           W(down, "weight"), W(down, "bias"), hp.ffn);
        cur  = ggml_add(ctx, inpL, cur);
        inpL = cur;
    }
    if (w.find(clip::t_post_ln_w) != nullptr) {
        inpL = blocks::norm(g, inpL, w.find(clip::t_post_ln_w), w.find(clip::t_post_ln_b), hp.eps, hp.norm);
    }
    ggml_tensor * features = ggml_reshape_2d(ctx, inpL, E, n);
    ggml_set_name(features, "features");
    ggml_set_output(features);
    ggml_build_forward_expand(g.gf, features);
    out.out = features;
    return out;
}

}  // namespace

extern const encoder_family qwen2vl_family = {
    /*name =*/"qwen2vl",
    /*projector_types =*/{"qwen2vl_merger", "qwen2.5vl_merger"},
    load_hparams,
    validate,
    build,
};

}  // namespace mm
