// What the ViT encoder families (clip.cpp, qwen2vl.cpp, minicpmv.cpp) share, as libmtmd's
// clip_model_loader reads and clip_graph::build_vit runs it: the keys every tower requires, the
// FFN activation and pixel normalisation keys, the tensors of a transformer block, and the
// pre-norm block itself. Each family keeps its own bounds, positions and input layout.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "encoders/vision_hparams.h"
#include "graph/gguf_file.h"

namespace mm {

class weight_set;

namespace vit {

inline constexpr uint32_t k_max_embd   = 1u << 16;
inline constexpr uint32_t k_max_layers = 1024;

// MM_GGUF_INVALID "<key> = v is out of range [lo, hi]" unless lo <= v <= hi.
void check_range(const gguf_file & f, const char * key, int64_t v, int64_t lo, int64_t hi);

// The keys libmtmd requires of every vision tower, read in its order.
struct shape_keys {
    uint32_t image_size = 0;
    uint32_t patch_size = 0;
    uint32_t n_embd     = 0;
    uint32_t n_head     = 0;
    uint32_t n_ff       = 0;
    uint32_t n_layer    = 0;
    uint32_t proj_dim   = 0;  // required by libmtmd; the encoders' graphs do not use it
    float    eps        = 0.0f;
};

shape_keys require_shape_keys(const gguf_file & f);

// The bounds every family puts on the width, heads (at most one per channel), depth, FFN and
// projection widths; image and patch sizes are bounded by each family.
void check_widths(const gguf_file & f, const shape_keys & k);

// The LayerNorm epsilon: finite and >= 0.
void check_eps(const gguf_file & f, float eps);

// clip.vision.attention.head_dim when present (0 when absent), bounded.
uint32_t find_head_dim(const gguf_file & f);

// The keys into hp: sizes and widths, d_head = head_dim when > 0 (else n_embd / n_head), and grid and
// n_patches for the image_size square.
void set_shape(vision_hparams & hp, const shape_keys & k, uint32_t head_dim);

// clip.use_gelu selects GELU (tanh), clip.use_silu SiLU, neither gelu_quick; both is invalid.
blocks::ffn_op read_ffn_op(const gguf_file & f);

// Per-channel mean and std (finite, std != 0) into the preprocessing parameters; `mean` and `stdv`
// hold at least 3 values.
void set_pixel_norm(const gguf_file & f, const std::vector<float> & mean, const std::vector<float> & stdv,
                    preprocess_params & pp);

// clip.vision.image_mean and image_std (3 values each) through set_pixel_norm.
void read_pixel_norm(const gguf_file & f, preprocess_params & pp);

// check_tensor, then `name` appended to `load` when the tensor is present.
const ggml_tensor * check_and_keep(const gguf_file & f, std::vector<std::string> & load, const std::string & name,
                                   tensor_use use, std::vector<int64_t> ne, bool required = true);

// The optional pre and post LayerNorms, weights and biases of n_embd.
void check_outer_norms(const gguf_file & f, int64_t n_embd, std::vector<std::string> & load);

// The tensors of block il, as libmtmd loads them: q, k, v [n_embd, attn_width] (biases required
// when `qkv_bias`), out [attn_width, n_embd], ln1, ln2 (optional), and the FFN: up (whose width
// sets the others'), down, optional gate, optional biases. Legacy files name fc1 `ffn_down`: when
// ffn_down.weight has ne[0] == n_embd, up and down swap. Appends the names present to `load`.
void check_block(const gguf_file & f, int il, int64_t n_embd, int64_t attn_width, bool qkv_bias,
                 std::vector<std::string> & load, const char * tower = "v");

// The [width, height, 3] f32 pixel input `inp_raw`, set as out.pixels.
ggml_tensor * add_pixel_input(ggml_context * ctx, vision_graph & out, int32_t width, int32_t height);

// Patch rows [n_embd, n_pos]: the patch-size strided convolution of the pixels, + the optional bias.
ggml_tensor * build_patch_embd(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                               ggml_tensor * pixels, int64_t n_pos);

// x through the optional norm `weight` / `bias` (the tower's pre_ln or post_ln), else x as it is.
ggml_tensor * build_outer_norm(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                               ggml_tensor * x, const char * weight, const char * bias);

// Rotary positions applied to q and k ([d_head, n_head, n_pos]) of every block (Qwen-VL).
using qk_rope = std::function<ggml_tensor *(ggml_tensor *)>;

// Block il over n_pos rows: norm, q/k/v (+ biases), `rope` on q and k when given, attention
// (masked by `mask` when given), residual; norm, FFN (the legacy up/down swap), residual. hp.norm
// selects LayerNorm or RMSNorm, hp.ffn the activation.
ggml_tensor * build_block(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int il,
                          ggml_tensor * inpL, int64_t n_pos, const qk_rope & rope = nullptr,
                          ggml_tensor * mask = nullptr);

// Names x `features`, makes it the graph's output and out.out.
void set_features(const blocks::graph_ctx & g, vision_graph & out, ggml_tensor * x);

}  // namespace vit

}  // namespace mm
