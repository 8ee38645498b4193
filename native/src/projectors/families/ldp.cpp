// MobileVLM projector `ldp` (tools/mtmd/models/llava.cpp): MLP, then two MobileNet-style blocks
// (3x3 depthwise conv, LayerNorm, hardswish, squeeze-excite, pointwise projection, LayerNorm), the
// second with stride 2: 24x24 patches -> 12x12 = 144 tokens. The 24x24 grid is fixed, as in libmtmd.
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
        f.invalid("projector ldp needs a 24x24 patch grid, the vision tower gives " + std::to_string(hp.grid) + "x" +
                  std::to_string(hp.grid));
    }
    std::vector<std::string> names;
    auto                     t = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne) {
        names.push_back(name);
        return check_tensor(f, name, use, std::move(ne));
    };
    const int64_t D = t(clip::mvlm_mlp(1, "weight"), tensor_use::matrix, {hp.n_embd_out, -1})->ne[1];
    t(clip::mvlm_mlp(1, "bias"), tensor_use::vector, {D});
    t(clip::mvlm_mlp(3, "weight"), tensor_use::matrix, {D, D});
    t(clip::mvlm_mlp(3, "bias"), tensor_use::vector, {D});
    for (int b : {1, 2}) {
        names.push_back(clip::mvlm_block(b, 0, "0.weight"));
        check_dw_kernel(f, names.back(), D);  // [3, 3, 1, D] or [3, 3, D]
        t(clip::mvlm_block(b, 0, "1.weight"), tensor_use::vector, {D});
        t(clip::mvlm_block(b, 0, "1.bias"), tensor_use::vector, {D});
        const int64_t R = t(clip::mvlm_block(b, 1, "fc1.weight"), tensor_use::matrix, {D, -1})->ne[1];
        t(clip::mvlm_block(b, 1, "fc1.bias"), tensor_use::vector, {R});
        t(clip::mvlm_block(b, 1, "fc2.weight"), tensor_use::matrix, {R, D});
        t(clip::mvlm_block(b, 1, "fc2.bias"), tensor_use::vector, {D});
        t(clip::mvlm_block(b, 2, "0.weight"), tensor_use::matrix, {D, D});
        t(clip::mvlm_block(b, 2, "1.weight"), tensor_use::vector, {D});
        t(clip::mvlm_block(b, 2, "1.bias"), tensor_use::vector, {D});
    }
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = (k_grid / 2) * (k_grid / 2);
    return names;
}

// One MobileNet block over x [w, h, D, 1]; `stride` of the depthwise conv.
ggml_tensor * mb_block(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int b,
                       ggml_tensor * x, int stride, ggml_tensor * residual) {
    ggml_context * ctx = g.ctx;
    auto           W   = [&](int part, const char * s) { return w.get(clip::mvlm_block(b, part, s)); };

    // the kernel is [3, 3, 1, D] or [3, 3, D]: ggml_conv_2d_dw views either as [3, 3, 1, D], as in libmtmd
    ggml_tensor * cur = ggml_conv_2d_dw(ctx, W(0, "0.weight"), x, stride, stride, 1, 1, 1, 1);
    cur               = ggml_cont(ctx, ggml_permute(ctx, cur, 1, 2, 0, 3));
    cur               = ggml_norm(ctx, cur, hp.eps);
    cur               = ggml_add(ctx, ggml_mul(ctx, cur, W(0, "1.weight")), W(0, "1.bias"));
    cur               = ggml_cont(ctx, ggml_permute(ctx, cur, 2, 0, 1, 3));

    ggml_tensor * hw = ggml_hardswish(ctx, cur);
    cur              = ggml_pool_2d(ctx, hw, GGML_OP_POOL_AVG, hw->ne[0], hw->ne[1], hw->ne[0], hw->ne[1], 0, 0);
    cur              = ggml_reshape_2d(ctx, cur, cur->ne[0] * cur->ne[1] * cur->ne[2], cur->ne[3]);
    cur              = ggml_add(ctx, blocks::mm(g, W(1, "fc1.weight"), cur), W(1, "fc1.bias"));
    cur              = ggml_relu(ctx, cur);
    cur              = ggml_add(ctx, blocks::mm(g, W(1, "fc2.weight"), cur), W(1, "fc2.bias"));
    cur              = ggml_hardsigmoid(ctx, cur);
    cur              = ggml_reshape_4d(ctx, cur, 1, 1, cur->ne[0], cur->ne[1]);
    cur              = ggml_mul(ctx, hw, cur);

    const int64_t ww = cur->ne[0], hh = cur->ne[1];
    cur = ggml_reshape_3d(ctx, cur, ww * hh, cur->ne[2], cur->ne[3]);
    cur = ggml_cont(ctx, ggml_permute(ctx, cur, 1, 0, 2, 3));
    cur = blocks::mm(g, W(2, "0.weight"), cur);
    cur = ggml_reshape_4d(ctx, cur, cur->ne[0], ww, hh, cur->ne[3]);
    cur = ggml_norm(ctx, cur, hp.eps);
    cur = ggml_add(ctx, ggml_mul(ctx, cur, W(2, "1.weight")), W(2, "1.bias"));
    if (residual != nullptr) {
        cur = ggml_cont(ctx, ggml_permute(ctx, cur, 2, 0, 1, 3));
        cur = ggml_add(ctx, residual, cur);
    }
    return cur;
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, ggml_tensor * x) {
    ggml_context * ctx = g.ctx;
    ggml_tensor *  mlp_1 =
        ggml_add(ctx, blocks::mm(g, w.get(clip::mvlm_mlp(1, "weight")), x), w.get(clip::mvlm_mlp(1, "bias")));
    mlp_1 = ggml_gelu(ctx, mlp_1);
    ggml_tensor * mlp_3 =
        ggml_add(ctx, blocks::mm(g, w.get(clip::mvlm_mlp(3, "weight")), mlp_1), w.get(clip::mvlm_mlp(3, "bias")));
    // [D, 576] -> [24, 24, D, 1]
    mlp_3 = ggml_permute(ctx, mlp_3, 1, 0, 2, 3);
    mlp_3 = ggml_cont_4d(ctx, mlp_3, k_grid, k_grid, mlp_3->ne[1], mlp_3->ne[2]);

    ggml_tensor * cur = mb_block(g, w, hp, 1, mlp_3, 1, mlp_3);  // [24, 24, D, 1]
    cur               = mb_block(g, w, hp, 2, cur, 2, nullptr);  // [D, 12, 12, 1]
    return ggml_reshape_3d(ctx, cur, cur->ne[0], cur->ne[1] * cur->ne[2], cur->ne[3]);
}

}  // namespace

extern const projector_family ldp_family = {"ldp", validate, build};

}  // namespace mm
