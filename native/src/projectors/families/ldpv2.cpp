// MobileVLM V2 projector `ldpv2` (tools/mtmd/models/llava.cpp): MLP, 2x2 average pooling of the
// 24x24 grid, then a positional-encoding generator (3x3 depthwise conv + bias) added back:
// 144 tokens. The 24x24 grid is fixed, as in libmtmd.
#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

constexpr int k_grid = 24;

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    if (hp.grid != k_grid) {
        f.invalid("projector ldpv2 needs a 24x24 patch grid, the vision tower gives " + std::to_string(hp.grid) + "x" +
                  std::to_string(hp.grid));
    }
    const int64_t D = check_tensor(f, clip::mvlm_mlp(0, "weight"), tensor_use::matrix, {hp.n_embd_out, -1})->ne[1];
    check_tensor(f, clip::mvlm_mlp(0, "bias"), tensor_use::vector, {D});
    check_tensor(f, clip::mvlm_mlp(2, "weight"), tensor_use::matrix, {D, D});
    check_tensor(f, clip::mvlm_mlp(2, "bias"), tensor_use::vector, {D});
    check_dw_kernel(f, clip::mvlm_peg(0, "weight"), D);  // [3, 3, 1, D] or [3, 3, D]
    check_tensor(f, clip::mvlm_peg(0, "bias"), tensor_use::vector, {D});
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = (k_grid / 2) * (k_grid / 2);
    return {clip::mvlm_mlp(0, "weight"), clip::mvlm_mlp(0, "bias"),   clip::mvlm_mlp(2, "weight"),
            clip::mvlm_mlp(2, "bias"),   clip::mvlm_peg(0, "weight"), clip::mvlm_peg(0, "bias")};
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams &, ggml_tensor * x) {
    ggml_context * ctx = g.ctx;
    ggml_tensor *  mlp_0 =
        ggml_add(ctx, blocks::mm(g, w.get(clip::mvlm_mlp(0, "weight")), x), w.get(clip::mvlm_mlp(0, "bias")));
    mlp_0 = ggml_gelu(ctx, mlp_0);
    ggml_tensor * mlp_2 =
        ggml_add(ctx, blocks::mm(g, w.get(clip::mvlm_mlp(2, "weight")), mlp_0), w.get(clip::mvlm_mlp(2, "bias")));
    mlp_2 = ggml_permute(ctx, mlp_2, 1, 0, 2, 3);
    mlp_2 = ggml_cont_4d(ctx, mlp_2, k_grid, k_grid, mlp_2->ne[1], mlp_2->ne[2]);
    mlp_2 = ggml_pool_2d(ctx, mlp_2, GGML_OP_POOL_AVG, 2, 2, 2, 2, 0, 0);

    // the kernel is [3, 3, 1, D] or [3, 3, D]: ggml_conv_2d_dw views either as [3, 3, 1, D], as in libmtmd
    ggml_tensor * peg_0 = ggml_conv_2d_dw(ctx, w.get(clip::mvlm_peg(0, "weight")), mlp_2, 1, 1, 1, 1, 1, 1);
    peg_0               = ggml_cont(ctx, ggml_permute(ctx, peg_0, 1, 2, 0, 3));
    peg_0               = ggml_add(ctx, peg_0, w.get(clip::mvlm_peg(0, "bias")));
    mlp_2               = ggml_cont(ctx, ggml_permute(ctx, mlp_2, 1, 2, 0, 3));
    peg_0               = ggml_add(ctx, peg_0, mlp_2);
    return ggml_reshape_3d(ctx, peg_0, peg_0->ne[0], peg_0->ne[1] * peg_0->ne[2], peg_0->ne[3]);
}

}  // namespace

extern const projector_family ldpv2_family = {"ldpv2", validate, build};

}  // namespace mm
