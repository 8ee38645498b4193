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

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "encoders/families/vit_common.h"
#include "encoders/preprocess.h"
#include "encoders/registry.h"
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

constexpr int32_t k_merge = 2;
// libmtmd's set_limit_image_tokens(8, 4096) for Qwen2/2.5-VL: merged tokens per picture
constexpr int32_t k_min_tokens = 8;
constexpr int32_t k_max_tokens = 4096;
constexpr int32_t k_window_px  = 112;
// libmtmd's set_warmup_n_tokens(46*46) "to avoid OOM on warmup"
constexpr int32_t k_warmup_side = 46;

bool is_qwen25(const vision_hparams & hp) {
    return hp.projector_type == "qwen2.5vl_merger";
}

vision_hparams load_hparams(const gguf_file & f) {
    vision_hparams hp;
    hp.projector_type       = read_projector_type(f);  // a legacy qwen2.5o file reads as qwen2.5vl_merger
    const vit::shape_keys k = vit::require_shape_keys(f);
    vit::check_range(f, clip::k_image_size, k.image_size, 1, 8192);
    vit::check_range(f, clip::k_patch_size, k.patch_size, 1, 1024);
    vit::check_widths(f, k);
    vit::check_eps(f, k.eps);
    if (k.n_embd % k.n_head != 0 || (k.n_embd / k.n_head) % 4 != 0) {
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
    if (is_qwen25(hp) && !has_wa) {
        f.invalid(std::string(clip::k_n_wa_pattern) + " is required for qwen2.5vl_merger");
    }
    vit::check_range(f, clip::k_n_wa_pattern, wa, 0, k.n_layer);
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
    if (is_qwen25(hp) && wa > 0 && k_window_px / (static_cast<int64_t>(k.patch_size) * k_merge) == 0) {
        // libmtmd's window loop steps by 112 / patch / 2 tokens: 0 for patches over 56 px, and it
        // never ends.
        fail(error_code::gguf_unsupported,
             "'" + f.path() + "': " + clip::k_patch_size + " = " + std::to_string(k.patch_size) +
                 " is wider than half the " + std::to_string(k_window_px) +
                 "-pixel attention window of qwen2.5vl_merger (at most " + std::to_string(k_window_px / k_merge) + ")");
    }

    vit::set_shape(hp, k, 0);  // grid and n_patches: of the typical input, below
    hp.n_blocks_run = hp.n_layer;
    hp.n_embd_out   = hp.n_embd;
    hp.n_merge      = k_merge;
    hp.n_wa_pattern = is_qwen25(hp) ? static_cast<int32_t>(wa) : 0;
    hp.attn_window  = hp.n_wa_pattern > 0 ? k_window_px : 0;
    hp.norm         = is_qwen25(hp) ? blocks::norm_op::rms : blocks::norm_op::layer;
    hp.dynamic      = true;
    hp.ffn          = vit::read_ffn_op(f);
    vit::read_pixel_norm(f, hp.preprocess);
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

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp) {
    const int64_t            E = hp.n_embd;
    std::vector<std::string> load;
    for (const char * kernel : {clip::t_patch_embd, clip::t_patch_embd_1}) {
        vit::check_and_keep(f, load, kernel, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E});
    }
    for (const char * absent : {clip::t_patch_bias, clip::t_class_embd}) {
        if (f.tensor(absent) != nullptr) {
            f.invalid(std::string(absent) + " is not part of a Qwen-VL encoder");
        }
    }
    vit::check_outer_norms(f, E, load);
    for (int il = 0; il < hp.n_layer; ++il) {
        vit::check_block(f, il, E, E, true, load);  // q, k, v with biases, as wide as the tower
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

    ggml_tensor * inp_raw = vit::add_pixel_input(ctx, out, width, height);
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

    ggml_tensor * inpL        = vit::build_outer_norm(g, w, hp, inp, clip::t_pre_ln_w, clip::t_pre_ln_b);
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

    int          sections[4] = {hp.d_head / 4, hp.d_head / 4, hp.d_head / 4, hp.d_head / 4};
    vit::qk_rope rope        = [&](ggml_tensor * x) {
        return ggml_rope_multi(ctx, x, pos, nullptr, hp.d_head / 2, sections, GGML_ROPE_TYPE_VISION, 32768, 10000, 1, 0,
                                      1, 32, 1);
    };
    for (int il = 0; il < hp.n_layer; ++il) {
        const bool full_attn = use_window ? (il + 1) % hp.n_wa_pattern == 0 : true;
        inpL                 = vit::build_block(g, w, hp, il, inpL, n, rope, full_attn ? nullptr : window_mask);
    }
    inpL = vit::build_outer_norm(g, w, hp, inpL, clip::t_post_ln_w, clip::t_post_ln_b);
    vit::set_features(g, out, ggml_reshape_2d(ctx, inpL, E, n));
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
