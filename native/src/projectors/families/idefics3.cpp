// Idefics3 / SmolVLM's connector (tools/mtmd/models/siglip.cpp, PROJECTOR_TYPE_IDEFICS3): the
// SigLIP patch grid pixel-shuffled by scale_factor s (each s x s block of patches becomes one token
// of s^2 * n_embd values, libmtmd's build_patch_merge_permute), then mm.model.fc (no bias). Every
// tile and the global image give (grid / s)^2 tokens; the LLM attends causally. libmtmd lays a
// picture out as the tiles row by row, each after "<fake_token_around_image><row_R_col_C>", a "\n"
// after each row but the last, then "\n\n<fake_token_around_image><global-img>", the global
// image and "<fake_token_around_image>" (mtmd.cpp, MTMD_SLICE_TMPL_IDEFICS3).
#include <string>

#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    const int32_t s = hp.n_merge;
    if (s < 2 || hp.grid % s != 0) {
        f.invalid(std::string(clip::k_proj_scale_factor) + " = " + std::to_string(s) +
                  " must be at least 2 and divide the patch grid side " + std::to_string(hp.grid));
    }
    const int64_t in   = static_cast<int64_t>(hp.n_embd) * s * s;
    const int64_t D    = check_tensor(f, clip::t_mm_model_fc, tensor_use::matrix, {in, -1})->ne[1];
    const int32_t side = hp.grid / s;
    out.n_embd_out     = static_cast<int32_t>(D);
    out.n_tokens_out   = side * side;
    return {clip::t_mm_model_fc};
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, ggml_tensor * x) {
    ggml_context * ctx = g.ctx;
    const int64_t  E   = hp.n_embd;
    const int64_t  s   = hp.n_merge;
    const int64_t  n   = hp.grid;  // patches per side (validate: a multiple of s)
    // rows are patches in raster order: [E, n (x), n (y)]
    ggml_tensor * cur = ggml_reshape_3d(ctx, x, E, n, n);
    // s neighbours along x into one row, then s such rows along y
    cur = ggml_reshape_3d(ctx, cur, E * s, n / s, n);
    cur = ggml_permute(ctx, cur, 0, 2, 1, 3);
    cur = ggml_cont_3d(ctx, cur, E * s * s, n / s, n / s);
    cur = ggml_permute(ctx, cur, 0, 2, 1, 3);
    cur = ggml_cont_2d(ctx, cur, cur->ne[0], cur->ne[1] * cur->ne[2]);
    return ggml_mul_mat(ctx, w.get(clip::t_mm_model_fc), cur);
}

slice_template slices(const vision_hparams &) {
    slice_template t;
    t.ov_start      = {"\n\n", "<fake_token_around_image>", "<global-img>"};
    t.ov_end        = {"<fake_token_around_image>"};
    t.row_end       = {"\n"};
    t.sli_start_fmt = "<fake_token_around_image><row_%d_col_%d>";
    t.row_end_trail = false;
    t.ov_first      = false;
    return t;
}

}  // namespace

// no image begin / end text: the tile and global-image markers come from the slice template
extern const projector_family idefics3_family = {
    "idefics3", validate, build, nullptr, /*causal =*/true, "", "", slices,
};

}  // namespace mm
