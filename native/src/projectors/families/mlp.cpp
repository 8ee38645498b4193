// LLaVA-1.5 projector `mlp` (tools/mtmd/models/llava.cpp): mm.0 -> GELU (tanh) -> mm.2.
#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    const auto    w0 = clip::llava_proj(0, "weight"), b0 = clip::llava_proj(0, "bias");
    const auto    w2 = clip::llava_proj(2, "weight"), b2 = clip::llava_proj(2, "bias");
    const int64_t H = check_tensor(f, w0, tensor_use::matrix, {hp.n_embd_out, -1})->ne[1];
    check_tensor(f, b0, tensor_use::vector, {H});
    const int64_t D = check_tensor(f, w2, tensor_use::matrix, {H, -1})->ne[1];
    check_tensor(f, b2, tensor_use::vector, {D});
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = hp.n_patches;
    return {w0, b0, w2, b2};
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams &, ggml_tensor * x) {
    x = ggml_add(g.ctx, blocks::mm(g, w.get(clip::llava_proj(0, "weight")), x), w.get(clip::llava_proj(0, "bias")));
    x = ggml_gelu(g.ctx, x);
    x = ggml_add(g.ctx, blocks::mm(g, w.get(clip::llava_proj(2, "weight")), x), w.get(clip::llava_proj(2, "bias")));
    return x;
}

}  // namespace

extern const projector_family mlp_family = {"mlp", validate, build};

}  // namespace mm
