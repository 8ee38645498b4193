// Qwen2-VL / Qwen2.5-VL merger (tools/mtmd/models/qwen2vl.cpp, after the ViT): each 2x2 block of
// patch features (adjacent rows in the encoder's order) is concatenated, then mm.0 -> GELU (tanh)
// -> mm.2. Qwen2.5-VL's encoder works in window order; the merged tokens are put back in raster
// order with the window index. The output is a (W/2p) x (H/2p) token grid: its M-RoPE positions
// are (row, column).
#include <string>

#include "common/error.h"
#include "encoders/families/qwen2vl.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    const auto    w0 = clip::llava_proj(0, "weight"), b0 = clip::llava_proj(0, "bias");
    const auto    w2 = clip::llava_proj(2, "weight"), b2 = clip::llava_proj(2, "bias");
    const int64_t H = check_tensor(f, w0, tensor_use::matrix, {static_cast<int64_t>(hp.n_embd) * 4, -1})->ne[1];
    check_tensor(f, b0, tensor_use::vector, {H});
    const int64_t D = check_tensor(f, w2, tensor_use::matrix, {H, -1})->ne[1];
    check_tensor(f, b2, tensor_use::vector, {D});
    if (hp.n_wa_pattern > 0 && D != hp.projection_dim) {
        f.invalid(std::string(clip::k_proj_dim) + " = " + std::to_string(hp.projection_dim) +
                  " differs from the merger's output width " + std::to_string(D) +
                  " (libmtmd reorders the windows with projection_dim)");
    }
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = hp.n_patches / 4;
    return {w0, b0, w2, b2};
}

ggml_tensor * build_grid(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                         projector_io & io) {
    if (io.nx % 2 != 0 || io.ny % 2 != 0) {
        fail(error_code::model_mismatch, "the Qwen-VL merger takes a patch grid with even sides");
    }
    const int64_t n = static_cast<int64_t>(io.nx) * io.ny;
    ggml_tensor * x = ggml_reshape_3d(g.ctx, io.features, static_cast<int64_t>(hp.n_embd) * 4, n / 4, 1);
    x = blocks::ffn(g, x, w.get(clip::llava_proj(0, "weight")), w.get(clip::llava_proj(0, "bias")), nullptr, nullptr,
                    w.get(clip::llava_proj(2, "weight")), w.get(clip::llava_proj(2, "bias")), blocks::ffn_op::gelu);
    if (hp.n_wa_pattern > 0) {
        const qwen2vl::windows win = qwen2vl::make_windows(io.nx, io.ny, hp.patch_size, hp.attn_window);
        ggml_tensor *          idx = io.inputs.add_i32(g.ctx, "window_idx", win.idx);
        x                          = ggml_reshape_2d(g.ctx, x, hp.projection_dim, n / 4);
        x                          = ggml_get_rows(g.ctx, x, idx);
        x                          = ggml_reshape_3d(g.ctx, x, hp.projection_dim, n / 4, 1);
    }
    io.out_nx = io.nx / 2;
    io.out_ny = io.ny / 2;
    return ggml_reshape_2d(g.ctx, x, x->ne[0], n / 4);
}

}  // namespace

// <|vision_start|> ... (image embeddings) ... <|vision_end|> (mtmd.cpp)
extern const projector_family qwen2vl_merger_family = {
    "qwen2vl_merger", validate, nullptr, build_grid, /*causal =*/true, "<|vision_start|>", "<|vision_end|>"};
extern const projector_family qwen25vl_merger_family = {
    "qwen2.5vl_merger", validate, nullptr, build_grid, /*causal =*/true, "<|vision_start|>", "<|vision_end|>"};

}  // namespace mm
