// Ultravox's audio projector (tools/mtmd/models/whisper-enc.cpp): the Whisper tower's rows are
// stacked `stack_factor` at a time (the last group zero-padded), then RMSNorm (eps 1e-6) x
// mm.a.norm_pre, mm.a.mlp.1, SwiGLU with the halves swapped (silu on the second half), RMSNorm x
// mm.a.norm_mid, mm.a.mlp.2. No biases.
//
// Rows out: libmtmd's build_stack pads the rows with GGML_PAD(rows * E, E * stack), a bit mask that
// rounds to a multiple only for power-of-two strides; for the others it may round down and drop
// the last partial group (Whisper-large, E 1280, stack 8: 187 rows of 1500 / 8 = 187.5). mm builds
// the same view, so the rows are libmtmd's graph's. libmtmd also checks them against its token
// count ((3000 / stack) / 2) and aborts when they differ (E 64 with stack 8, e.g.); mm runs those
// files and gives the graph's rows.
#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

constexpr float k_rms_eps = 1e-6f;

// The rows of build_stack's view: GGML_PAD(rows * E, E * stack) / (E * stack), as libmtmd computes it.
int64_t stacked_rows(int64_t rows, int64_t n_embd, int64_t factor) {
    if (factor <= 1) {
        return rows;
    }
    const int64_t stride = n_embd * factor;
    return GGML_PAD(rows * n_embd, stride) / stride;
}

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    if (hp.stack_factor < 1) {
        f.invalid("clip.audio.projector.stack_factor = " + std::to_string(hp.stack_factor) +
                  " (ultravox stacks at least 1 frame)");
    }
    const int64_t S  = static_cast<int64_t>(hp.n_embd) * hp.stack_factor;
    const auto    w1 = clip::a_mlp(1, "weight");
    const auto    w2 = clip::a_mlp(2, "weight");
    const int64_t H2 = check_tensor(f, w1, tensor_use::matrix, {S, -1})->ne[1];
    if (H2 % 2 != 0) {
        f.invalid(w1 + " has " + std::to_string(H2) + " outputs; SwiGLU needs an even count");
    }
    const int64_t H = H2 / 2;
    const int64_t D = check_tensor(f, w2, tensor_use::matrix, {H, -1})->ne[1];
    check_tensor(f, clip::t_mm_a_norm_pre_w, tensor_use::vector, {S});
    check_tensor(f, clip::t_mm_a_norm_mid_w, tensor_use::vector, {H});
    out.n_embd_out   = static_cast<int32_t>(D);
    out.n_tokens_out = static_cast<int32_t>(stacked_rows(hp.n_patches, hp.n_embd, hp.stack_factor));
    if (out.n_tokens_out < 1) {
        f.invalid("clip.audio.projector.stack_factor = " + std::to_string(hp.stack_factor) + " leaves no row of " +
                  std::to_string(hp.n_patches));
    }
    return {w1, w2, clip::t_mm_a_norm_pre_w, clip::t_mm_a_norm_mid_w};
}

// clip_graph::build_stack
ggml_tensor * stack_rows(ggml_context * ctx, ggml_tensor * cur, int64_t factor, int64_t n_embd) {
    if (factor <= 1) {
        return cur;
    }
    const int64_t total  = ggml_nelements(cur);
    const int64_t stride = n_embd * factor;
    const int64_t padded = GGML_PAD(total, stride);
    if (padded > total) {
        cur = ggml_view_1d(ctx, cur, total, 0);
        cur = ggml_pad(ctx, cur, padded - total, 0, 0, 0);
    }
    return ggml_view_2d(ctx, cur, stride, padded / stride, ggml_row_size(cur->type, stride), 0);
}

ggml_tensor * build(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, ggml_tensor * x) {
    ggml_context * ctx = g.ctx;
    x                  = stack_rows(ctx, x, hp.stack_factor, hp.n_embd);
    x                  = ggml_mul(ctx, ggml_rms_norm(ctx, x, k_rms_eps), w.get(clip::t_mm_a_norm_pre_w));
    x                  = blocks::mm(g, w.get(clip::a_mlp(1, "weight")), x);
    x                  = ggml_swiglu_swapped(ctx, x);
    x                  = ggml_mul(ctx, ggml_rms_norm(ctx, x, k_rms_eps), w.get(clip::t_mm_a_norm_mid_w));
    return blocks::mm(g, w.get(clip::a_mlp(2, "weight")), x);
}

}  // namespace

extern const projector_family ultravox_family = {"ultravox", validate, build};

}  // namespace mm
