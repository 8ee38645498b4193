// The vision tower's hyper-parameters as read (and validated) from an mmproj, and the encoder
// family interface: each family is one file under encoders/families/ with load_hparams, validate
// and build; encoders/registry.cpp lists them, keyed by `clip.projector_type`.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "encoders/preprocess.h"
#include "graph/graph_blocks.h"

namespace mm {

class gguf_file;
class weight_set;

struct vision_hparams {
    std::string projector_type;  // clip.projector_type as written in the file

    int32_t image_size     = 0;  // fixed-size families: the square input side; dynamic: a typical side
    int32_t patch_size     = 0;
    int32_t grid           = 0;  // patches per side of image_size
    int32_t n_patches      = 0;  // grid * grid (dynamic families: for the image_size square)
    int32_t n_embd         = 0;
    int32_t n_head         = 0;
    int32_t d_head         = 0;
    int32_t n_layer        = 0;  // blocks stored
    int32_t n_ff           = 0;
    int32_t projection_dim = 0;
    float   eps            = 1e-6f;

    blocks::ffn_op       ffn  = blocks::ffn_op::gelu_quick;
    blocks::norm_op      norm = blocks::norm_op::layer;
    std::vector<int32_t> feature_layers;      // clip.vision.feature_layer (may be empty)
    int32_t              n_blocks_run   = 0;  // blocks the graph runs (libmtmd's max_feature_layer)
    int32_t              n_stacked      = 0;  // hidden states concatenated into the features (0: last only)
    int32_t              n_embd_out     = 0;  // width of the features: n_embd * max(1, n_stacked)
    bool                 has_class_embd = false;

    // Dynamic resolution and merging (Qwen-VL, Gemma 3).
    bool    dynamic      = false;  // the input size follows the picture (preprocess.align > 0)
    bool    tiled        = false;  // a picture may be cut into several chunks (encoder_family::preprocess)
    int32_t n_merge      = 1;  // patches merged per side by the projector (2 for Qwen-VL, the pool kernel of Gemma 3)
    int32_t n_wa_pattern = 0;  // Qwen2.5-VL: every n-th block attends fully, the others within windows
    int32_t attn_window  = 0;  // window side in pixels (Qwen2.5-VL: 112)
    // LLaVA-1.6 anyres: clip.vision.image_grid_pinpoints as (width, height) candidates (empty: none)
    std::vector<std::array<int32_t, 2>> grid_pinpoints;
    int32_t longest_edge     = 0;  // Idefics3: clip.vision.preproc_image_size, the long side before tiling (0: absent)
    int32_t minicpmv_version = 0;  // MiniCPM-V (resampler): clip.minicpmv_version, 2 when absent

    preprocess_params preprocess;

    // Audio towers (Whisper-style, `a.*` tensors and `clip.audio.*` keys) reuse the tower fields
    // above (n_embd, heads, blocks, FFN, eps; n_patches = the feature rows of one mel chunk,
    // n_embd_out = n_embd) and add these.
    bool    audio        = false;
    int32_t n_mel        = 0;      // mel bins of the input
    int32_t n_frames     = 0;      // mel frames of one chunk (libmtmd: 3000, 30 s)
    int32_t n_pos_max    = 0;      // rows of a.position_embd (the conv stem's output must fit)
    int32_t stack_factor = 0;      // clip.audio.projector.stack_factor (ultravox: frames stacked)
    bool    avgpool      = false;  // average-pool pairs of rows before the post-norm (qwen2a)
    int32_t sample_rate  = 0;
    int32_t n_fft        = 0;
    int32_t window_len   = 0;
    int32_t hop_len      = 0;

    // Tensor-name prefix of the tower: "v" (vision) or "a" (audio).
    const char * tower = "v";
};

// Inputs of a built graph (encoder or projector stage), filled before every compute.
struct graph_inputs {
    std::vector<std::pair<ggml_tensor *, std::vector<int32_t>>> i32;
    std::vector<std::pair<ggml_tensor *, std::vector<float>>>   f32;
    // Inputs written at every compute instead of kept with the cached graph (a Qwen2.5-VL window
    // mask is n_patches^2 floats: 1 GiB at 4096 tokens); each writes its own tensor.
    std::vector<std::function<void()>> deferred;

    ggml_tensor * add_i32(ggml_context * ctx, const char * name, std::vector<int32_t> values) {
        ggml_tensor * t = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, static_cast<int64_t>(values.size()));
        ggml_set_name(t, name);
        ggml_set_input(t);
        i32.emplace_back(t, std::move(values));
        return t;
    }
};

// How a tiling family cut a picture (libmtmd's llava-uhd style preprocessors: LLaVA-1.6 anyres,
// MiniCPM-V slices, Idefics3 tiles): the inputs are the overview first (when there is one), then
// grid_y rows of grid_x slices, row-major. All zero for a picture that makes one plain input.
struct slice_layout {
    int32_t grid_x       = 0;
    int32_t grid_y       = 0;
    bool    has_overview = false;
};

// A built encoder graph for one input size.
struct vision_graph {
    ggml_tensor * pixels = nullptr;  // [W, H, 3] f32, planar
    graph_inputs  inputs;
    ggml_tensor * out = nullptr;  // [n_embd_out, n_rows]
    int32_t       nx  = 0;        // the rows as a grid (the patch grid)
    int32_t       ny  = 0;
};

struct encoder_family {
    const char *              name;             // e.g. "clip"
    std::vector<const char *> projector_types;  // the clip.projector_type values it serves
    // Reads and checks the keys (types, ranges). Throws MM_GGUF_INVALID / MM_GGUF_UNSUPPORTED.
    vision_hparams (*load_hparams)(const gguf_file & f);
    // Checks the tensors' presence, types and shapes; returns the names of the tensors to load.
    std::vector<std::string> (*validate)(const gguf_file & f, const vision_hparams & hp);
    // Builds the graph from width x height pixels (a size preprocessing gives) to the features.
    vision_graph (*build)(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp, int32_t width,
                          int32_t height);
    // Tiling families: the encoder inputs of a picture in the order slice_layout describes, as
    // libmtmd's preprocessor gives them (null: one input from preprocess_image). Bounded: a
    // picture or a file that asks for absurd counts is MM_INVALID_ARGUMENT / MM_GGUF_INVALID.
    std::vector<pixel_input> (*preprocess)(const vision_hparams & hp, const rgb_image & img,
                                           slice_layout & layout) = nullptr;
    // Families whose inputs come in other sizes than the fixed square or the dynamic rule (slices):
    // whether the encoder takes a width x height input (null: the default check).
    bool (*accepts_size)(const vision_hparams & hp, int32_t width, int32_t height) = nullptr;
};

}  // namespace mm
