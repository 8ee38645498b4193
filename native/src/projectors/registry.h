// The input-projector families mm implements, keyed by `clip.projector_type` (the GGUF strings
// exactly; a file that says `mlp` and stores `mm.3.weight` is `mlp_norm`, as in libmtmd). Each
// family is one file under families/ with validate and build.
#pragma once

#include <string>
#include <vector>

#include "graph/graph_blocks.h"
#include "encoders/vision_hparams.h"

namespace mm {

class gguf_file;
class weight_set;

struct projector_shape {
    int32_t n_embd_out   = 0;  // the LLM's embedding width the projector writes
    int32_t n_tokens_out = 0;
};

struct projector_family {
    const char * name;  // e.g. "mlp"
    // Checks presence, types and shapes of the family's mm.* tensors against the vision tower's
    // output; fills the output shape; returns the names of the tensors to load.
    std::vector<std::string> (*validate)(const gguf_file & f, const vision_hparams & hp, projector_shape & out);
    // Builds features [n_embd_in, n_tokens_in] -> embeddings [n_embd_out, n_tokens_out].
    ggml_tensor * (*build)(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                           ggml_tensor * features);
};

// The family of the file's projector; MM_UNSUPPORTED_FAMILY listing the supported ones.
const projector_family & find_projector_family(const gguf_file & f);

// "mlp, mlp_norm, ldp, ldpv2"
std::string supported_projector_families();

}  // namespace mm
