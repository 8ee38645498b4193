// CLIP ViT, as libmtmd builds it for the LLaVA-style projectors (tools/mtmd/models/llava.cpp):
// patch convolution, optional class embedding (appended AFTER the patches, positions counted as if it
// came first), learned position embeddings, optional pre-LN, pre-LN transformer blocks, optional
// post-LN, feature-layer selection and stacking, then the patch rows (the CLS row dropped).
//
// libmtmd quirks reproduced on purpose (see MTMD-NOTES.md):
//  - without clip.vision.feature_layer only block_count - 1 blocks run;
//  - legacy files name fc1 `ffn_down`: when ffn_down.weight has ne[0] == n_embd, up and down swap;
//  - clip.use_gelu selects GELU (tanh), clip.use_silu SiLU, neither gelu_quick.
#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "encoders/families/vit_common.h"
#include "encoders/idefics3_tiles.h"
#include "encoders/slicing.h"
#include "encoders/vision_hparams.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

constexpr uint32_t k_max_image_size = 8192;       // libmtmd's cap
constexpr int32_t  k_max_patches    = 128 * 128;  // attention is quadratic in the patch count

// libmtmd's llava-uhd parameters for MLP / MLP_NORM / LDP / LDPV2 with pinpoints. clip.cpp sets
// the padded (122, 116, 104) resize only for files WITHOUT pinpoints (where the fixed-size
// preprocessor ignores it), so a LLaVA-1.6 file slices with the defaults: bicubic, the overview
// stretched to the square, the refined picture padded with black.
uhd_params llava16_slicing(const vision_hparams & hp) {
    uhd_params p;
    p.slice_size  = hp.image_size;
    p.patch_align = hp.patch_size;
    p.pinpoints   = hp.grid_pinpoints;
    p.mean        = hp.preprocess.mean;
    p.std         = hp.preprocess.std;
    return p;
}

// One input without pinpoints (the fixed-size preprocessor), else the overview and the slices.
std::vector<pixel_input> llava16_preprocess(const vision_hparams & hp, const rgb_image & img, slice_layout & layout) {
    if (hp.grid_pinpoints.empty()) {
        layout = slice_layout{};
        return {preprocess_image(img, hp.preprocess)};
    }
    return llava_uhd_slices(llava16_slicing(hp), img, layout);
}

bool is_feature_layer(const vision_hparams & hp, int32_t il) {
    for (int32_t v : hp.feature_layers) {
        if (v == il) {
            return true;
        }
    }
    return false;
}

vision_hparams load_hparams(const gguf_file & f) {
    vision_hparams        hp;
    const vit::shape_keys k = vit::require_shape_keys(f);
    vit::check_range(f, clip::k_image_size, k.image_size, 1, k_max_image_size);
    vit::check_range(f, clip::k_patch_size, k.patch_size, 1, k.image_size);
    vit::check_widths(f, k);
    vit::check_eps(f, k.eps);
    vit::set_shape(hp, k, vit::find_head_dim(f));
    if (hp.n_patches > k_max_patches) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': " + std::to_string(hp.n_patches) +
                                               " patches per image is more than mm supports (" +
                                               std::to_string(k_max_patches) + ")");
    }
    if (static_cast<int64_t>(hp.d_head) * hp.n_head > static_cast<int64_t>(vit::k_max_embd)) {
        f.invalid("head_count * head_dim is too large");
    }
    hp.ffn = vit::read_ffn_op(f);

    // LLaVA-1.6 anyres: (width, height) candidates of the picture cut into image_size slices
    std::vector<int32_t> pinpoints;
    f.find_i32_array(clip::k_grid_pinpoints, pinpoints);
    if (pinpoints.size() % 2 != 0) {
        f.invalid(std::string(clip::k_grid_pinpoints) + " has " + std::to_string(pinpoints.size()) +
                  " values, not (width, height) pairs");
    }
    if (pinpoints.size() / 2 > k_uhd_max_pinpoints) {
        f.invalid(std::string(clip::k_grid_pinpoints) + " has " + std::to_string(pinpoints.size() / 2) +
                  " candidates, more than " + std::to_string(k_uhd_max_pinpoints));
    }
    for (size_t i = 0; i + 1 < pinpoints.size(); i += 2) {
        hp.grid_pinpoints.push_back({pinpoints[i], pinpoints[i + 1]});
    }

    std::vector<float> mean, stdv;
    if (!f.find_f32_array(clip::k_image_mean, mean) || !f.find_f32_array(clip::k_image_std, stdv)) {
        f.invalid("clip.vision.image_mean and clip.vision.image_std are required");
    }
    if (mean.size() < 3 || stdv.size() < 3) {
        f.invalid("clip.vision.image_mean / image_std need 3 values");
    }
    vit::set_pixel_norm(f, mean, stdv, hp.preprocess);
    // LLaVA-style projectors without pinpoints: libmtmd's fixed-size preprocessor, bicubic, padded
    // to a square with the colour (122, 116, 104).
    hp.preprocess.image_size = hp.image_size;
    hp.preprocess.algo       = resize_algo::bicubic;
    hp.preprocess.pad        = pad_style::ceil;
    hp.preprocess.pad_color  = {122, 116, 104};

    f.find_i32_array(clip::k_feature_layer, hp.feature_layers);
    int32_t deepest = -1;
    for (int32_t v : hp.feature_layers) {
        deepest = std::max(deepest, v);
    }
    if (deepest > hp.n_layer) {
        f.invalid(std::string(clip::k_feature_layer) + " selects layer " + std::to_string(deepest) + " but there are " +
                  std::to_string(hp.n_layer) + " blocks");
    }
    hp.n_blocks_run = deepest < 0 ? hp.n_layer - 1 : deepest;
    hp.n_stacked    = 0;
    for (int32_t il = 0; il <= hp.n_blocks_run; ++il) {
        hp.n_stacked += is_feature_layer(hp, il) ? 1 : 0;
    }
    hp.n_embd_out     = hp.n_embd * std::max(1, hp.n_stacked);
    hp.has_class_embd = f.tensor(clip::t_class_embd) != nullptr;
    return hp;
}

// The LLaVA-style projectors: with pinpoints, libmtmd slices the picture (llava-uhd).
vision_hparams load_llava_hparams(const gguf_file & f) {
    vision_hparams hp = load_hparams(f);
    if (!hp.grid_pinpoints.empty()) {
        const std::string problem = uhd_params_problem(llava16_slicing(hp));
        if (!problem.empty()) {
            f.invalid(std::string(clip::k_grid_pinpoints) + ": " + problem);
        }
        hp.tiled = true;
    }
    return hp;
}

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp) {
    const int64_t            E = hp.n_embd;
    std::vector<std::string> load;
    vit::check_and_keep(f, load, clip::t_patch_embd, tensor_use::patch_kernel, {hp.patch_size, hp.patch_size, 3, E});
    vit::check_and_keep(f, load, clip::t_patch_bias, tensor_use::vector, {E}, false);
    vit::check_and_keep(f, load, clip::t_class_embd, tensor_use::vector, {E}, false);
    const ggml_tensor * pos   = check_tensor(f, clip::t_pos_embd, tensor_use::rows, {E, -1});
    const int64_t       n_pos = hp.n_patches + (hp.has_class_embd ? 1 : 0);
    if (pos->ne[1] < n_pos) {
        f.invalid(std::string(clip::t_pos_embd) + " has " + std::to_string(pos->ne[1]) + " rows, " +
                  std::to_string(n_pos) + " positions are needed");
    }
    load.push_back(clip::t_pos_embd);
    vit::check_outer_norms(f, E, load);

    // Every stored block must be complete (libmtmd loads them all); only those that run are loaded.
    for (int il = 0; il < hp.n_layer; ++il) {
        std::vector<std::string> names;
        vit::check_block(f, il, E, static_cast<int64_t>(hp.n_head) * hp.d_head, false, names);
        if (il < hp.n_blocks_run) {
            load.insert(load.end(), names.begin(), names.end());
        }
    }
    return load;
}

vision_graph build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int32_t width,
                   int32_t height) {
    if (width != hp.image_size || height != hp.image_size) {
        fail(error_code::internal, "a fixed-size encoder was asked for another input size");
    }
    ggml_context * ctx   = g.ctx;
    const int      n_pos = hp.n_patches + (hp.has_class_embd ? 1 : 0);
    vision_graph   out;
    out.nx = hp.grid;
    out.ny = hp.grid;

    ggml_tensor * inp =
        vit::build_patch_embd(g, w, hp, vit::add_pixel_input(ctx, out, hp.image_size, hp.image_size), hp.n_patches);
    if (hp.has_class_embd) {
        inp = ggml_concat(ctx, inp, w.get(clip::t_class_embd), 1);
    }

    std::vector<int32_t> pos_values(n_pos);
    for (int i = 0; i < n_pos; ++i) {
        pos_values[i] = i;
    }
    ggml_tensor * positions = out.inputs.add_i32(ctx, "positions", std::move(pos_values));

    inp = ggml_add(ctx, inp, ggml_get_rows(ctx, w.get(clip::t_pos_embd), positions));

    ggml_tensor *              inpL = vit::build_outer_norm(g, w, hp, inp, clip::t_pre_ln_w, clip::t_pre_ln_b);
    std::vector<ggml_tensor *> stack;
    for (int il = 0; il < hp.n_blocks_run; ++il) {
        if (is_feature_layer(hp, il)) {
            stack.push_back(inpL);
        }
        inpL = vit::build_block(g, w, hp, il, inpL, n_pos);
    }
    inpL = vit::build_outer_norm(g, w, hp, inpL, clip::t_post_ln_w, clip::t_post_ln_b);

    ggml_tensor * embeddings = inpL;
    if (is_feature_layer(hp, hp.n_blocks_run)) {
        stack.push_back(inpL);
    }
    if (!stack.empty()) {
        embeddings = stack[0];
        for (size_t i = 1; i < stack.size(); ++i) {
            embeddings = ggml_concat(ctx, embeddings, stack[i], 0);
        }
    }
    embeddings = ggml_reshape_2d(ctx, embeddings, embeddings->ne[0], embeddings->ne[1]);

    std::vector<int32_t> patch_values(hp.n_patches);
    for (int i = 0; i < hp.n_patches; ++i) {
        patch_values[i] = i + (hp.has_class_embd ? 1 : 0);
    }
    ggml_tensor * patches = out.inputs.add_i32(ctx, "patches", std::move(patch_values));

    vit::set_features(g, out, ggml_get_rows(ctx, embeddings, patches));
    return out;
}

// SigLIP as libmtmd builds it for Gemma 3 (clip_graph_siglip + build_vit): the same ops as the
// CLIP graph above without a class embedding, every stored block run, no feature-layer stacking;
// bilinear resize to the square input, padded with black.
vision_hparams load_siglip_hparams(const gguf_file & f) {
    vision_hparams hp = load_hparams(f);
    if (hp.has_class_embd) {
        f.invalid(std::string(clip::t_class_embd) + " is not used by a SigLIP encoder");
    }
    hp.feature_layers.clear();
    hp.grid_pinpoints.clear();  // libmtmd's fixed-size preprocessor ignores them
    hp.n_blocks_run         = hp.n_layer;
    hp.n_stacked            = 0;
    hp.n_embd_out           = hp.n_embd;
    hp.preprocess.algo      = resize_algo::bilinear;
    hp.preprocess.pad       = pad_style::ceil;
    hp.preprocess.pad_color = {0, 0, 0};
    uint32_t merge          = 4;  // libmtmd's default pool kernel for every Gemma 3 size
    f.find_u32(clip::k_proj_scale_factor, merge);
    vit::check_range(f, clip::k_proj_scale_factor, merge, 1, hp.grid);
    if (hp.grid % static_cast<int32_t>(merge) != 0) {
        f.invalid(std::string(clip::k_proj_scale_factor) + " = " + std::to_string(merge) +
                  " does not divide the patch grid side " + std::to_string(hp.grid));
    }
    hp.n_merge = static_cast<int32_t>(merge);
    return hp;
}

// SigLIP as libmtmd builds it for Idefics3 / SmolVLM: the same tower at the tile size (image_size);
// a picture is cut into a global image and tiles, one chunk each (encoders/idefics3_tiles.cpp).
// The projector's pixel shuffle needs clip.vision.projector.scale_factor >= 2: without it libmtmd's
// graph asserts at its warmup encode, so the key is required here.
vision_hparams load_idefics3_hparams(const gguf_file & f) {
    if (!f.has_key(clip::k_proj_scale_factor)) {
        f.invalid(std::string(clip::k_proj_scale_factor) + " is required by an idefics3 projector");
    }
    vision_hparams hp = load_siglip_hparams(f);
    if (hp.n_merge < 2) {
        f.invalid(std::string(clip::k_proj_scale_factor) + " = " + std::to_string(hp.n_merge) +
                  " must be at least 2 (the pixel shuffle)");
    }
    uint32_t edge = 0;
    f.find_u32(clip::k_longest_edge, edge);
    vit::check_range(f, clip::k_longest_edge, edge, 0, idefics3::k_max_longest_edge);
    const int64_t per_side = (static_cast<int64_t>(edge) + hp.image_size - 1) / hp.image_size;
    if (per_side > idefics3::k_max_tiles_per_side) {
        fail(error_code::gguf_unsupported,
             "'" + f.path() + "': a longest edge of " + std::to_string(edge) + " px cuts pictures into up to " +
                 std::to_string(per_side) + " tiles of " + std::to_string(hp.image_size) +
                 " px per side, more than mm supports (" + std::to_string(idefics3::k_max_tiles_per_side) + ")");
    }
    hp.longest_edge    = static_cast<int32_t>(edge);
    hp.tiled           = true;
    hp.preprocess.algo = edge > 0 ? resize_algo::lanczos : resize_algo::bicubic;
    hp.preprocess.pad  = pad_style::none;
    return hp;
}

}  // namespace

extern const encoder_family siglip_family = {
    /*name =*/"siglip",
    /*projector_types =*/{"gemma3"},
    load_siglip_hparams,
    validate,
    build,
};

extern const encoder_family siglip_idefics3_family = {
    /*name =*/"siglip",
    /*projector_types =*/{"idefics3"},
    load_idefics3_hparams,
    validate,
    build,
    idefics3::tiles,
};

extern const encoder_family clip_family = {
    /*name =*/"clip",
    /*projector_types =*/{"mlp", "mlp_norm", "ldp", "ldpv2"},
    load_llava_hparams,
    validate,
    build,
    llava16_preprocess,
};

}  // namespace mm
