// Projector `mlp_norm` (Yi-VL style; libmtmd switches `mlp` to it when mm.3.weight exists):
// mm.0 -> LayerNorm(mm.1) -> GELU (tanh) -> mm.3 -> LayerNorm(mm.4).
#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    using clip::llava_proj;
    const int64_t H = check_tensor(f, llava_proj(0, "weight"), tensor_use::matrix, {hp.n_embd_out, -1})->ne[1];
    check_tensor(f, llava_proj(0, "bias"), tensor_use::vector, {H});
    check_tensor(f, llava_proj(1, "weight"), tensor_use::vector, {H});
    check_tensor(f, llava_proj(1, "bias"), tensor_use::vector, {H});
    const int64_t D = check_tensor(f, llava_proj(3, "weight"), tensor_use::matrix, {H, -1})->ne[1];
    check_tensor(f, llava_proj(3, "bias"), tensor_use::vector, {D});
    check_tensor(f, llava_proj(4, "weight"), tensor_use::vector, {D});
    check_tensor(f, llava_proj(4, "bias"), tensor_use::vector, {D});
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = hp.n_patches;
    std::vector<std::string> names;
    for (int i : {0, 1, 3, 4}) {
        names.push_back(llava_proj(i, "weight"));
        names.push_back(llava_proj(i, "bias"));
    }
    return names;
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, ggml_tensor * x) {
    auto W = [&](int i, const char * s) { return w.get(clip::llava_proj(i, s)); };
    x      = ggml_add(g.ctx, blocks::mm(g, W(0, "weight"), x), W(0, "bias"));
    x      = blocks::norm(g, x, W(1, "weight"), W(1, "bias"), hp.eps);
    x      = ggml_gelu(g.ctx, x);
    x      = ggml_add(g.ctx, blocks::mm(g, W(3, "weight"), x), W(3, "bias"));
    x      = blocks::norm(g, x, W(4, "weight"), W(4, "bias"), hp.eps);
    return x;
}

}  // namespace

extern const projector_family mlp_norm_family = {"mlp_norm", validate, build};

}  // namespace mm
