// Checks a text-model GGUF before llama.cpp sees it. llama.cpp's loader aborts the process on
// some malformed files (absurd block or head counts, per-layer arrays of the wrong length, an
// mmproj given as a text model); these are turned into MM_GGUF_INVALID / MM_MODEL_LOAD here.
#pragma once

#include <cstdint>
#include <string>

namespace mm {

// What the checks read that llama.cpp's public API does not give back.
struct text_model_header {
    int32_t n_expert      = 0;  // <arch>.expert_count; 0 for a dense model
    int32_t n_expert_used = 0;  // <arch>.expert_used_count, the most of any block when per block
};

// Throws mm::error when the file cannot be a loadable text model. Reads only the header.
text_model_header validate_text_model_file(const std::string & path);

}  // namespace mm
