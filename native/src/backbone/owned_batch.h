// A llama_batch that owns its arrays (llama_batch_init cannot hold M-RoPE positions for
// embeddings, nor rows of several sequences built one by one): the context's decodes and the
// scheduler's batches.
#pragma once

#include <cstdint>
#include <vector>

#include "llama.h"

namespace mm {

struct owned_batch {
    std::vector<llama_token>    token;  // or embd: n rows of n_embd
    std::vector<float>          embd;
    std::vector<llama_pos>      pos;
    std::vector<int32_t>        n_seq_id;
    std::vector<llama_seq_id>   seq_storage;
    std::vector<llama_seq_id *> seq_id;
    std::vector<int8_t>         logits;

    int32_t rows() const { return static_cast<int32_t>(seq_storage.size()); }

    // One row of one sequence at `p`; `token` < 0 for an embedding row (its n_embd floats are
    // appended to `embd` by the caller).
    void add(llama_token t, llama_pos p, llama_seq_id seq, bool want_logits) {
        if (t >= 0) {
            token.push_back(t);
        }
        pos.push_back(p);
        n_seq_id.push_back(1);
        seq_storage.push_back(seq);
        logits.push_back(want_logits ? 1 : 0);
    }

    llama_batch view(int32_t n) {
        seq_id.resize(seq_storage.size());
        for (size_t i = 0; i < seq_storage.size(); ++i) {
            seq_id[i] = &seq_storage[i];
        }
        llama_batch b{};
        b.n_tokens = n;
        b.token    = token.empty() ? nullptr : token.data();
        b.embd     = embd.empty() ? nullptr : embd.data();
        b.pos      = pos.data();
        b.n_seq_id = n_seq_id.data();
        b.seq_id   = seq_id.data();
        b.logits   = logits.data();
        return b;
    }
};

}  // namespace mm
