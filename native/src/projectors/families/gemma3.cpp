// Gemma 3's projector (tools/mtmd/models/siglip.cpp, PROJECTOR_TYPE_GEMMA3): the SigLIP patch grid
// average-pooled n_merge x n_merge (4: 64x64 -> 16x16 = 256 tokens), RMSNorm with the soft
// embedding norm, then the input projection (stored transposed: its output width is ne[0]).
// The LLM attends to the image span non-causally.
#include <string>

#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    check_tensor(f, clip::t_mm_soft_emb_n, tensor_use::vector, {hp.n_embd});
    const int64_t D = check_tensor(f, clip::t_mm_input_proj, tensor_use::matrix, {-1, hp.n_embd})->ne[0];
    if (hp.n_merge < 1 || hp.grid % hp.n_merge != 0) {
        f.invalid("the pool kernel does not divide the patch grid");
    }
    const int32_t side = hp.grid / hp.n_merge;
    out.n_embd_out     = static_cast<int32_t>(D);
    out.n_tokens_out   = side * side;
    return {clip::t_mm_soft_emb_n, clip::t_mm_input_proj};
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, ggml_tensor * x) {
    ggml_context * ctx = g.ctx;
    const int      k   = hp.n_merge;
    ggml_tensor *  cur = ggml_transpose(ctx, x);
    cur                = ggml_cont_4d(ctx, cur, hp.grid, hp.grid, hp.n_embd, 1);
    cur                = ggml_pool_2d(ctx, cur, GGML_OP_POOL_AVG, k, k, k, k, 0, 0);
    cur                = ggml_reshape_3d(ctx, cur, cur->ne[0] * cur->ne[0], hp.n_embd, 1);
    cur                = ggml_cont(ctx, ggml_transpose(ctx, cur));
    cur                = ggml_rms_norm(ctx, cur, hp.eps);
    cur                = ggml_mul(ctx, cur, w.get(clip::t_mm_soft_emb_n));
    cur                = ggml_mul_mat(ctx, ggml_cont(ctx, ggml_transpose(ctx, w.get(clip::t_mm_input_proj))), cur);
    return ggml_reshape_2d(ctx, cur, cur->ne[0], cur->ne[1]);
}

}  // namespace

// <start_of_image> ... (image embeddings) ... <end_of_image> (mtmd.cpp)
extern const projector_family gemma3_family = {"gemma3",          validate,           build,           nullptr,
                                               /*causal =*/false, "<start_of_image>", "<end_of_image>"};

}  // namespace mm
