// A [n_tokens, n_embd] matrix of f32, row-major: the encoder's features and the projector's
// embeddings both travel in this form.
#pragma once

#include <cstdint>
#include <vector>

namespace mm {

struct token_matrix {
    int32_t            n_tokens = 0;
    int32_t            n_embd   = 0;
    std::vector<float> data;  // n_tokens * n_embd
};

}  // namespace mm
