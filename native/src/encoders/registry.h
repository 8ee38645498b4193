// The encoder families mm implements, keyed by the mmproj's `clip.projector_type` (the GGUF
// strings exactly). An unknown type is MM_UNSUPPORTED_FAMILY with the list of supported ones.
#pragma once

#include <string>

#include "encoders/vision_hparams.h"

namespace mm {

class gguf_file;

// clip.projector_type (or clip.vision.projector_type) as written; MM_GGUF_INVALID when absent.
std::string read_projector_type(const gguf_file & f);

// The projector types with a vision encoder, comma separated ("mlp, mlp_norm, ldp, ldpv2").
std::string supported_vision_projector_types();

// Checks that the file is an mmproj with a vision encoder of a supported family.
const encoder_family & find_encoder_family(const gguf_file & f);

// find_encoder_family + its load_hparams, with projector_type filled in.
vision_hparams read_vision_hparams(const gguf_file & f);

}  // namespace mm
