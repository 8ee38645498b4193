// MiniCPM-V's vision tower (projector type `resampler`), as libmtmd builds it
// (tools/mtmd/models/minicpmv.cpp up to the resampler, which is the projector:
// projectors/families/resampler.cpp):
//  - a SigLIP-style ViT: patch convolution (+ bias), no class embedding, every stored block run
//    (pre-LN blocks, optional pre/post LayerNorm), the FFN activation from clip.use_gelu/use_silu;
//  - a learned 70x70 position table (a NaViT-style idefics2 table) looked up per patch through
//    buckets: patch row i of a grid ny patches high takes bucket floor(70 * i / ny), and likewise
//    across, so every slice size maps onto the whole table;
//  - pictures are cut by libmtmd's llava-uhd preprocessor without pinpoints (encoders/slicing.h):
//    an overview that keeps the aspect ratio (an image_size square when the picture fits in one
//    slice) and up to 9 slices of about image_size^2 pixels each, every side a multiple of the
//    patch size. Inputs therefore come in many sizes; the graph is built per size.
//
// libmtmd quirks reproduced or refused on purpose:
//  - legacy files name fc1 `ffn_down`: when ffn_down.weight has ne[0] == n_embd, up and down swap;
//  - a class embedding makes libmtmd assert: refused;
//  - libmtmd keeps the buckets in int[1024] arrays: inputs wider or taller than 1024 patches (an
//    extreme aspect ratio) would overflow them: MM_IMAGE_TOO_LARGE;
//  - clip.minicpmv_version must be one libmtmd lays out (2, 3, 4, 5, 6, 100045; 0 or absent is 2).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "encoders/slicing.h"
#include "encoders/vision_hparams.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

constexpr int32_t  k_pos_side      = 70;    // the position table is k_pos_side^2 rows (libmtmd hard-codes 70)
constexpr int32_t  k_max_grid_side = 1024;  // libmtmd's bucket arrays
constexpr int32_t  k_max_grid      = 64;    // image_size / patch_size: 4096 patches per slice at most
constexpr int32_t  k_max_patch     = 256;
constexpr int32_t  k_max_slice     = 2048;  // image_size: up to 10 inputs of about image_size^2 pixels
constexpr uint32_t k_max_embd      = 1u << 16;
constexpr uint32_t k_max_layers    = 1024;

void check_range(const gguf_file & f, const char * key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(key) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

// Patches an input may have: a slice is about image_size^2 pixels, each side rounded to the patch
// size (at most ~2x the square's patches); a thin picture's single row of patches stays under the
// bucket limit.
int64_t max_input_patches(const vision_hparams & hp) {
    return std::max<int64_t>(4 * static_cast<int64_t>(hp.grid) * hp.grid, k_max_grid_side);
}

bool accepts_size(const vision_hparams & hp, int32_t width, int32_t height) {
    const int32_t p = hp.patch_size;
    if (width < p || height < p || width % p != 0 || height % p != 0) {
        return false;
    }
    const int64_t nx = width / p, ny = height / p;
    return nx <= k_max_grid_side && ny <= k_max_grid_side && nx * ny <= max_input_patches(hp);
}

vision_hparams load_hparams(const gguf_file & f) {
    vision_hparams hp;
    const uint32_t image_size = f.require_u32(clip::k_image_size);
    const uint32_t patch_size = f.require_u32(clip::k_patch_size);
    const uint32_t n_embd     = f.require_u32(clip::k_n_embd);
    const uint32_t n_head     = f.require_u32(clip::k_n_head);
    const uint32_t n_ff       = f.require_u32(clip::k_n_ff);
    const uint32_t n_layer    = f.require_u32(clip::k_n_block);
    const uint32_t proj_dim   = f.require_u32(clip::k_proj_dim);  // required by libmtmd, unused by the graph
    const float    eps        = f.require_f32(clip::k_layer_norm_eps);

    check_range(f, clip::k_patch_size, patch_size, 1, k_max_patch);
    check_range(f, clip::k_image_size, image_size, patch_size,
                std::min<int64_t>(static_cast<int64_t>(patch_size) * k_max_grid, k_max_slice));
    check_range(f, clip::k_n_embd, n_embd, 1, k_max_embd);
    check_range(f, clip::k_n_head, n_head, 1, n_embd);
    check_range(f, clip::k_n_block, n_layer, 1, k_max_layers);
    check_range(f, clip::k_n_ff, n_ff, 0, 1u << 20);
    check_range(f, clip::k_proj_dim, proj_dim, 0, k_max_embd);
    if (image_size % patch_size != 0) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_image_size + " = " +
                                               std::to_string(image_size) + " is not a multiple of " +
                                               clip::k_patch_size + " = " + std::to_string(patch_size));
    }
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid(std::string(clip::k_layer_norm_eps) + " = " + std::to_string(eps) + " is not a finite value >= 0");
    }
    uint32_t head_dim = 0;
    if (f.find_u32(clip::k_n_embd_head, head_dim)) {
        check_range(f, clip::k_n_embd_head, head_dim, 0, k_max_embd);
    }
    uint32_t n_head_kv = n_head;
    if (f.find_u32(clip::k_n_head_kv, n_head_kv) && n_head_kv != n_head) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_n_head_kv + " = " +
                                               std::to_string(n_head_kv) +
                                               " (grouped attention) is not supported in a resampler's ViT");
    }

    int32_t version = 0;
    f.find_i32(clip::k_minicpmv_version, version);
    if (version == 0) {
        version = 2;  // libmtmd's default
    }
    if (version != 2 && version != 3 && version != 4 && version != 5 && version != 6 && version != 100045) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_minicpmv_version + " = " +
                                               std::to_string(version) +
                                               " is not a MiniCPM-V version libmtmd knows (2, 3, 4, 5, 6, 100045)");
    }
    if (f.has_key(clip::k_grid_pinpoints)) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_grid_pinpoints +
                                               " in a resampler file (pinpoint slicing of MiniCPM-V) is not supported");
    }

    hp.image_size       = static_cast<int32_t>(image_size);
    hp.patch_size       = static_cast<int32_t>(patch_size);
    hp.grid             = hp.image_size / hp.patch_size;
    hp.n_patches        = hp.grid * hp.grid;
    hp.n_embd           = static_cast<int32_t>(n_embd);
    hp.n_head           = static_cast<int32_t>(n_head);
    hp.d_head           = head_dim > 0 ? static_cast<int32_t>(head_dim) : hp.n_embd / hp.n_head;
    hp.n_layer          = static_cast<int32_t>(n_layer);
    hp.n_ff             = static_cast<int32_t>(n_ff);
    hp.projection_dim   = static_cast<int32_t>(proj_dim);
    hp.eps              = eps;
    hp.n_blocks_run     = hp.n_layer;
    hp.n_embd_out       = hp.n_embd;
    hp.minicpmv_version = version;
    hp.dynamic          = true;  // inputs come in the slices' sizes
    hp.tiled            = true;  // an overview, then slices
    if (hp.d_head < 1 || static_cast<int64_t>(hp.d_head) * hp.n_head > static_cast<int64_t>(k_max_embd)) {
        f.invalid("head_count * head_dim is out of range");
    }

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
    // The overview of a picture that fits one slice: an image_size square, stretched (bicubic, no
    // padding); max_pixels bounds any input's area (the projector checks features against it).
    hp.preprocess.image_size = hp.image_size;
    hp.preprocess.algo       = resize_algo::bicubic;
    hp.preprocess.pad        = pad_style::none;
    hp.preprocess.max_pixels = static_cast<int32_t>(max_input_patches(hp) * hp.patch_size * hp.patch_size);
    return hp;
}

struct ffn_names {
    std::string up_w, up_b, down_w, down_b;
};

// Which stored tensors play up and down (legacy files name fc1 `ffn_down`).
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
    const int64_t            A = static_cast<int64_t>(hp.n_head) * hp.d_head;
    std::vector<std::string> load;
    auto                     keep = [&](const ggml_tensor * t, const std::string & name) {
        if (t != nullptr) {
            load.push_back(name);
        }
    };
    if (f.tensor(clip::t_class_embd) != nullptr) {
        f.invalid(std::string(clip::t_class_embd) + " is not used by MiniCPM-V's ViT (libmtmd asserts on it)");
    }
    keep(check_tensor(f, clip::t_patch_embd, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E}),
         clip::t_patch_embd);
    keep(check_tensor(f, clip::t_patch_bias, tensor_use::vector, {E}, false), clip::t_patch_bias);
    const ggml_tensor * pos = check_tensor(f, clip::t_pos_embd, tensor_use::rows, {E, -1});
    if (pos->ne[1] < static_cast<int64_t>(k_pos_side) * k_pos_side) {
        f.invalid(std::string(clip::t_pos_embd) + " has " + std::to_string(pos->ne[1]) + " rows; MiniCPM-V's " +
                  std::to_string(k_pos_side) + "x" + std::to_string(k_pos_side) + " bucketed positions need " +
                  std::to_string(k_pos_side * k_pos_side));
    }
    keep(pos, clip::t_pos_embd);
    for (const char * name : {clip::t_pre_ln_w, clip::t_pre_ln_b, clip::t_post_ln_w, clip::t_post_ln_b}) {
        keep(check_tensor(f, name, tensor_use::vector, {E}, false), name);
    }
    for (int il = 0; il < hp.n_layer; ++il) {
        auto t = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne, bool required) {
            keep(check_tensor(f, name, use, std::move(ne), required), name);
        };
        for (const char * part : {"attn_q", "attn_k", "attn_v"}) {
            t(clip::blk(il, part, "weight"), tensor_use::matrix, {E, A}, true);
            t(clip::blk(il, part, "bias"), tensor_use::vector, {A}, false);
        }
        t(clip::blk(il, "attn_out", "weight"), tensor_use::matrix, {A, E}, true);
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

// libmtmd's bucketed positions: row i of n takes floor(70 * i / n) (double arithmetic).
std::vector<int32_t> bucket_positions(int32_t nx, int32_t ny) {
    std::vector<int32_t> bx(nx), by(ny), out(static_cast<size_t>(nx) * ny);
    for (int32_t i = 0; i < ny; ++i) {
        by[i] = static_cast<int32_t>(std::floor(static_cast<double>(k_pos_side) * i / ny));
    }
    for (int32_t j = 0; j < nx; ++j) {
        bx[j] = static_cast<int32_t>(std::floor(static_cast<double>(k_pos_side) * j / nx));
    }
    size_t id = 0;
    for (int32_t i = 0; i < ny; ++i) {
        for (int32_t j = 0; j < nx; ++j) {
            out[id++] = by[i] * k_pos_side + bx[j];
        }
    }
    return out;
}

vision_graph build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int32_t width,
                   int32_t height) {
    if (!accepts_size(hp, width, height)) {
        fail(error_code::internal, "the MiniCPM-V encoder was asked for a size its preprocessing does not give");
    }
    ggml_context * ctx   = g.ctx;
    const int32_t  nx    = width / hp.patch_size;
    const int32_t  ny    = height / hp.patch_size;
    const int32_t  n_pos = nx * ny;
    vision_graph   out;
    out.nx = nx;
    out.ny = ny;

    ggml_tensor * inp_raw = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, width, height, 3, 1);
    ggml_set_name(inp_raw, "inp_raw");
    ggml_set_input(inp_raw);
    out.pixels = inp_raw;

    ggml_tensor * inp = ggml_conv_2d(ctx, w.get(clip::t_patch_embd), inp_raw, hp.patch_size, hp.patch_size, 0, 0, 1, 1);
    inp               = ggml_reshape_3d(ctx, inp, n_pos, hp.n_embd, 1);
    inp               = ggml_cont(ctx, ggml_transpose(ctx, inp));
    inp               = blocks::add_opt(g, inp, w.find(clip::t_patch_bias));

    ggml_tensor * positions = out.inputs.add_i32(ctx, "positions", bucket_positions(nx, ny));
    inp                     = ggml_add(ctx, inp, ggml_get_rows(ctx, w.get(clip::t_pos_embd), positions));
    inp                     = ggml_reshape_2d(ctx, inp, hp.n_embd, n_pos);

    ggml_tensor * inpL = inp;
    if (w.find(clip::t_pre_ln_w) != nullptr) {
        inpL = blocks::norm(g, inpL, w.find(clip::t_pre_ln_w), w.find(clip::t_pre_ln_b), hp.eps);
    }

    const float kq_scale = 1.0f / sqrtf(static_cast<float>(hp.d_head));
    for (int il = 0; il < hp.n_layer; ++il) {
        auto W = [&](const char * part, const char * suffix) { return w.find(clip::blk(il, part, suffix)); };

        ggml_tensor * cur = blocks::norm(g, inpL, W("ln1", "weight"), W("ln1", "bias"), hp.eps);
        ggml_tensor * q   = blocks::add_opt(g, blocks::mm(g, W("attn_q", "weight"), cur), W("attn_q", "bias"));
        ggml_tensor * k   = blocks::add_opt(g, blocks::mm(g, W("attn_k", "weight"), cur), W("attn_k", "bias"));
        ggml_tensor * v   = blocks::add_opt(g, blocks::mm(g, W("attn_v", "weight"), cur), W("attn_v", "bias"));
        q                 = ggml_reshape_3d(ctx, q, hp.d_head, hp.n_head, n_pos);
        k                 = ggml_reshape_3d(ctx, k, hp.d_head, hp.n_head, n_pos);
        v                 = ggml_reshape_3d(ctx, v, hp.d_head, hp.n_head, n_pos);
        cur               = blocks::attn(g, W("attn_out", "weight"), W("attn_out", "bias"), q, k, v, kq_scale);
        cur               = ggml_add(ctx, cur, inpL);
        inpL              = cur;

        cur                = blocks::norm(g, cur, W("ln2", "weight"), W("ln2", "bias"), hp.eps);
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
        inpL = blocks::norm(g, inpL, w.find(clip::t_post_ln_w), w.find(clip::t_post_ln_b), hp.eps);
    }
    ggml_set_name(inpL, "features");
    ggml_set_output(inpL);
    ggml_build_forward_expand(g.gf, inpL);
    out.out = inpL;
    return out;
}

uhd_params slicing_params(const vision_hparams & hp) {
    uhd_params p;
    p.slice_size  = hp.image_size;
    p.patch_align = hp.patch_size;  // n_merge is 1 for the resampler
    p.mean        = hp.preprocess.mean;
    p.std         = hp.preprocess.std;
    return p;  // libmtmd's defaults otherwise: 9 slices at most, bicubic, overview stretched, slices padded black
}

std::vector<pixel_input> preprocess(const vision_hparams & hp, const rgb_image & img, slice_layout & layout) {
    const uhd_params       p    = slicing_params(hp);
    const uhd_instructions inst = llava_uhd_instructions(p, img.width, img.height);
    auto                   too  = [&](int32_t w, int32_t h) {
        fail(error_code::image_too_large, "a " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                                                                 " picture makes a " + std::to_string(w) + "x" + std::to_string(h) +
                                                                 " MiniCPM-V input (at most " + std::to_string(k_max_grid_side) +
                                                                 " patches a side, " + std::to_string(max_input_patches(hp)) +
                                                                 " in all): its aspect ratio is too extreme");
    };
    if (!accepts_size(hp, inst.ov_w, inst.ov_h)) {
        too(inst.ov_w, inst.ov_h);
    }
    for (const uhd_slice & s : inst.slices) {
        if (!accepts_size(hp, s.w, s.h)) {
            too(s.w, s.h);
        }
    }
    return llava_uhd_cut(p, img, inst, layout);
}

}  // namespace

extern const encoder_family minicpmv_family = {
    /*name =*/"minicpmv",
    /*projector_types =*/{"resampler"},
    load_hparams,
    validate,
    build,
    preprocess,
    accepts_size,
};

}  // namespace mm
