// The input-projector families mm implements, keyed by `clip.projector_type` (the GGUF strings
// exactly; a file that says `mlp` and stores `mm.3.weight` is `mlp_norm`, as in libmtmd). Each
// family is one file under families/ with validate and build.
#pragma once

#include <string>
#include <vector>

#include "encoders/vision_hparams.h"
#include "graph/graph_blocks.h"

namespace mm {

class gguf_file;
class weight_set;

struct projector_shape {
    int32_t n_embd_out   = 0;  // the LLM's embedding width the projector writes
    int32_t n_tokens_out = 0;  // for the encoder's typical input (dynamic families: varies)
};

// A projector graph's input and output when the input grid varies (Qwen-VL's merger).
struct projector_io {
    ggml_tensor * features = nullptr;  // [n_embd_in, nx * ny], rows in the encoder's order
    int32_t       nx       = 0;        // the encoder's patch grid
    int32_t       ny       = 0;
    graph_inputs  inputs;      // extra inputs the family fills
    int32_t       out_nx = 0;  // the output token grid (row-major), set by the family
    int32_t       out_ny = 0;
};

// How libmtmd lays out the chunks of a tiled picture in the prompt (mtmd.cpp's slice templates:
// MiniCPM-V 2.5 / 2.6, Idefics3, ...): the text around the overview, the slices and each row. The
// token lists are token texts that each name one token of the LLM's vocabulary (libmtmd's
// lookup_token); `sli_start_fmt` is a printf format taking (row + 1, col + 1), tokenized with
// special tokens parsed, used when `sli_start` is empty. An all-empty template with ov_first false
// (the default) lays the slices out first and the overview last with no text (LLaVA-1.6).
struct slice_template {
    std::vector<std::string> ov_start, ov_end;
    std::vector<std::string> slices_start, slices_end;
    std::vector<std::string> sli_start, sli_end, sli_mid;
    std::vector<std::string> row_end;
    std::string              sli_start_fmt;
    bool                     row_end_trail = false;  // a row_end after the last row too
    bool                     ov_first      = false;  // the overview before the slices
};

struct projector_family {
    const char * name;  // e.g. "mlp"
    // Checks presence, types and shapes of the family's mm.* tensors against the vision tower's
    // output; fills the output shape; returns the names of the tensors to load.
    std::vector<std::string> (*validate)(const gguf_file & f, const vision_hparams & hp, projector_shape & out);
    // Builds features [n_embd_in, n_tokens_in] -> embeddings [n_embd_out, n_tokens_out] for the
    // encoder's one input size.
    ggml_tensor * (*build)(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                           ggml_tensor * features);
    // Families whose input grid follows the picture build from `io` instead (build is then unused).
    ggml_tensor * (*build_grid)(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                                projector_io & io) = nullptr;
    // Whether the LLM attends causally inside the span (Gemma 3: no).
    bool causal = true;
    // Text libmtmd puts before and after each image chunk (mtmd.cpp img_beg / img_end), tokenized
    // with special tokens parsed; empty for none.
    const char * image_begin = "";
    const char * image_end   = "";
    // Tiling families: the template of the file (it may depend on its keys); null: the default.
    slice_template (*slices)(const vision_hparams & hp) = nullptr;
};

enum class tower_kind;

// The family of the file's projector (of the vision or the audio tower); MM_UNSUPPORTED_FAMILY
// listing the supported ones.
const projector_family & find_projector_family(const gguf_file & f);
const projector_family & find_projector_family(const gguf_file & f, tower_kind tower);

// "mlp, mlp_norm, ldp, ldpv2"
std::string supported_projector_families();

}  // namespace mm
