// Qwen2-Audio's projector (tools/mtmd/models/whisper-enc.cpp, also the audio half of the legacy
// `qwen2.5o` files): one linear layer with bias, mm.a.fc, over the Whisper tower's pooled rows.
// The span sits between <|audio_bos|> and <|audio_eos|> (mtmd.cpp).
#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    const int64_t D = check_tensor(f, clip::t_mm_a_fc_w, tensor_use::matrix, {hp.n_embd_out, -1})->ne[1];
    check_tensor(f, clip::t_mm_a_fc_b, tensor_use::vector, {D});
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = hp.n_patches;
    return {clip::t_mm_a_fc_w, clip::t_mm_a_fc_b};
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams &, ggml_tensor * x) {
    x = blocks::mm(g, w.get(clip::t_mm_a_fc_w), x);
    return ggml_add(g.ctx, x, w.get(clip::t_mm_a_fc_b));
}

}  // namespace

extern const projector_family qwen2a_family = {
    "qwen2a", validate, build, nullptr, true, "<|audio_bos|>", "<|audio_eos|>",
};

}  // namespace mm
