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
#include "encoders/families/vit_common.h"
#include "encoders/slicing.h"
#include "encoders/vision_hparams.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

constexpr int32_t k_pos_side      = 70;    // the position table is k_pos_side^2 rows (libmtmd hard-codes 70)
constexpr int32_t k_max_grid_side = 1024;  // libmtmd's bucket arrays
constexpr int32_t k_max_grid      = 64;    // image_size / patch_size: 4096 patches per slice at most
constexpr int32_t k_max_patch     = 256;
constexpr int32_t k_max_slice     = 2048;  // image_size: up to 10 inputs of about image_size^2 pixels

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
    vision_hparams        hp;
    const vit::shape_keys k = vit::require_shape_keys(f);
    vit::check_range(f, clip::k_patch_size, k.patch_size, 1, k_max_patch);
    vit::check_range(f, clip::k_image_size, k.image_size, k.patch_size,
                     std::min<int64_t>(static_cast<int64_t>(k.patch_size) * k_max_grid, k_max_slice));
    vit::check_widths(f, k);
    if (k.image_size % k.patch_size != 0) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + clip::k_image_size + " = " +
                                               std::to_string(k.image_size) + " is not a multiple of " +
                                               clip::k_patch_size + " = " + std::to_string(k.patch_size));
    }
    vit::check_eps(f, k.eps);
    const uint32_t head_dim  = vit::find_head_dim(f);
    uint32_t       n_head_kv = k.n_head;
    if (f.find_u32(clip::k_n_head_kv, n_head_kv) && n_head_kv != k.n_head) {
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

    vit::set_shape(hp, k, head_dim);
    hp.n_blocks_run     = hp.n_layer;
    hp.n_embd_out       = hp.n_embd;
    hp.minicpmv_version = version;
    hp.dynamic          = true;  // inputs come in the slices' sizes
    hp.tiled            = true;  // an overview, then slices
    if (hp.d_head < 1 || static_cast<int64_t>(hp.d_head) * hp.n_head > static_cast<int64_t>(vit::k_max_embd)) {
        f.invalid("head_count * head_dim is out of range");
    }
    hp.ffn = vit::read_ffn_op(f);
    vit::read_pixel_norm(f, hp.preprocess);
    // The overview of a picture that fits one slice: an image_size square, stretched (bicubic, no
    // padding); max_pixels bounds any input's area (the projector checks features against it).
    hp.preprocess.image_size = hp.image_size;
    hp.preprocess.algo       = resize_algo::bicubic;
    hp.preprocess.pad        = pad_style::none;
    hp.preprocess.max_pixels = static_cast<int32_t>(max_input_patches(hp) * hp.patch_size * hp.patch_size);
    return hp;
}

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp) {
    const int64_t            E = hp.n_embd;
    std::vector<std::string> load;
    if (f.tensor(clip::t_class_embd) != nullptr) {
        f.invalid(std::string(clip::t_class_embd) + " is not used by MiniCPM-V's ViT (libmtmd asserts on it)");
    }
    vit::check_and_keep(f, load, clip::t_patch_embd, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E});
    vit::check_and_keep(f, load, clip::t_patch_bias, tensor_use::vector, {E}, false);
    const ggml_tensor * pos = check_tensor(f, clip::t_pos_embd, tensor_use::rows, {E, -1});
    if (pos->ne[1] < static_cast<int64_t>(k_pos_side) * k_pos_side) {
        f.invalid(std::string(clip::t_pos_embd) + " has " + std::to_string(pos->ne[1]) + " rows; MiniCPM-V's " +
                  std::to_string(k_pos_side) + "x" + std::to_string(k_pos_side) + " bucketed positions need " +
                  std::to_string(k_pos_side * k_pos_side));
    }
    load.push_back(clip::t_pos_embd);
    vit::check_outer_norms(f, E, load);
    for (int il = 0; il < hp.n_layer; ++il) {
        vit::check_block(f, il, E, static_cast<int64_t>(hp.n_head) * hp.d_head, false, load);
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

    ggml_tensor * inp       = vit::build_patch_embd(g, w, hp, vit::add_pixel_input(ctx, out, width, height), n_pos);
    ggml_tensor * positions = out.inputs.add_i32(ctx, "positions", bucket_positions(nx, ny));
    inp                     = ggml_add(ctx, inp, ggml_get_rows(ctx, w.get(clip::t_pos_embd), positions));
    inp                     = ggml_reshape_2d(ctx, inp, hp.n_embd, n_pos);

    ggml_tensor * inpL = vit::build_outer_norm(g, w, hp, inp, clip::t_pre_ln_w, clip::t_pre_ln_b);
    for (int il = 0; il < hp.n_layer; ++il) {
        inpL = vit::build_block(g, w, hp, il, inpL, n_pos);
    }
    inpL = vit::build_outer_norm(g, w, hp, inpL, clip::t_post_ln_w, clip::t_post_ln_b);
    vit::set_features(g, out, inpL);
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
