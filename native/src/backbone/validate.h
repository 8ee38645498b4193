// Checks a text-model GGUF before llama.cpp sees it. llama.cpp's loader aborts the process on
// some malformed files (absurd block or head counts, per-layer arrays of the wrong length, an
// mmproj given as a text model); these are turned into MM_GGUF_INVALID / MM_MODEL_LOAD here.
#pragma once

#include <string>

namespace mm {

// Throws mm::error when the file cannot be a loadable text model. Reads only the header.
void validate_text_model_file(const std::string & path);

}  // namespace mm
