// A [n_tokens, n_embd] matrix of f32, row-major: the encoder's features and the projector's
// embeddings both travel in this form. A media chunk is one such matrix plus how its rows lie
// (a 2-D grid for pictures) and how the LLM attends inside it.
#pragma once

#include <cstdint>
#include <vector>

namespace mm {

struct token_matrix {
    int32_t            n_tokens = 0;
    int32_t            n_embd   = 0;
    std::vector<float> data;  // n_tokens * n_embd

    // The rows as a grid, row-major (nx * ny == n_tokens), when they come from a picture; 0 when
    // the rows have no 2-D layout. For features: the patch grid; for embeddings: the token grid
    // M-RoPE positions are taken from.
    int32_t nx = 0;
    int32_t ny = 0;
    // Embeddings only: false when the LLM attends to the whole span at once (Gemma 3).
    bool causal = true;
};

}  // namespace mm
