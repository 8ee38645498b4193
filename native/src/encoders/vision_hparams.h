// The vision tower's hyper-parameters as read (and validated) from an mmproj, and the encoder
// family interface: each family is one file under encoders/families/ with load_hparams, validate
// and build; encoders/registry.cpp lists them, keyed by `clip.projector_type`.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "graph/graph_blocks.h"
#include "encoders/preprocess.h"

namespace mm {

class gguf_file;
class weight_set;

struct vision_hparams {
    std::string projector_type;  // clip.projector_type as written in the file

    int32_t image_size     = 0;
    int32_t patch_size     = 0;
    int32_t grid           = 0;  // patches per side: image_size / patch_size
    int32_t n_patches      = 0;  // grid * grid
    int32_t n_embd         = 0;
    int32_t n_head         = 0;
    int32_t d_head         = 0;
    int32_t n_layer        = 0;  // blocks stored
    int32_t n_ff           = 0;
    int32_t projection_dim = 0;
    float   eps            = 1e-6f;

    blocks::ffn_op       ffn = blocks::ffn_op::gelu_quick;
    std::vector<int32_t> feature_layers;      // clip.vision.feature_layer (may be empty)
    int32_t              n_blocks_run   = 0;  // blocks the graph runs (libmtmd's max_feature_layer)
    int32_t              n_stacked      = 0;  // hidden states concatenated into the features (0: last only)
    int32_t              n_embd_out     = 0;  // width of the features: n_embd * max(1, n_stacked)
    bool                 has_class_embd = false;

    preprocess_params preprocess;
};

// Inputs of a built encoder graph, filled before every compute.
struct vision_graph {
    ggml_tensor *                                               pixels = nullptr;  // [W, H, 3] f32, planar
    std::vector<std::pair<ggml_tensor *, std::vector<int32_t>>> i32_inputs;
    ggml_tensor *                                               out = nullptr;  // [n_embd_out, n_patches]
};

struct encoder_family {
    const char *              name;             // e.g. "clip"
    std::vector<const char *> projector_types;  // the clip.projector_type values it serves
    // Reads and checks the keys (types, ranges). Throws MM_GGUF_INVALID / MM_GGUF_UNSUPPORTED.
    vision_hparams (*load_hparams)(const gguf_file & f);
    // Checks the tensors' presence, types and shapes; returns the names of the tensors to load.
    std::vector<std::string> (*validate)(const gguf_file & f, const vision_hparams & hp);
    // Builds the graph from the pixels to the features.
    vision_graph (*build)(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp);
};

}  // namespace mm
