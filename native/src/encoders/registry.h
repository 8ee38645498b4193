// The encoder families mm implements, keyed by the mmproj's `clip.projector_type` (the GGUF
// strings exactly). An unknown type is MM_UNSUPPORTED_FAMILY with the list of supported ones.
#pragma once

#include <string>

#include "encoders/vision_hparams.h"

namespace mm {

class gguf_file;

enum class tower_kind { vision, audio };

// clip.projector_type (or the tower's clip.vision / clip.audio.projector_type) as written, except
// libmtmd's legacy "qwen2.5o" (both towers in one file), which reads as the tower's own type
// (qwen2.5vl_merger, qwen2a); MM_GGUF_INVALID when absent.
std::string read_projector_type(const gguf_file & f, tower_kind tower = tower_kind::vision);

// The projector types with a vision encoder, comma separated ("mlp, mlp_norm, ldp, ldpv2").
std::string supported_vision_projector_types();

// Checks that the file is an mmproj with a vision encoder of a supported family.
const encoder_family & find_encoder_family(const gguf_file & f);

// find_encoder_family + its load_hparams, with projector_type filled in.
vision_hparams read_vision_hparams(const gguf_file & f);

}  // namespace mm
