// The frozen LLM of projector training: a `llama`-architecture text GGUF loaded into a backend
// buffer and built as a ggml graph that gradients can flow through to its input embeddings (the
// weights get none). The same math as libllama's llm_build_llama, with softmax attention (not
// flash attention, which has no backward) over batches of equal-length, right-padded sequences.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace mm {

class gguf_file;
class weight_set;

struct train_llama_hparams {
    int   n_embd      = 0;
    int   n_layer     = 0;
    int   n_head      = 0;
    int   n_head_kv   = 0;
    int   n_ff        = 0;
    int   n_vocab     = 0;
    int   n_rot       = 0;
    int   n_ctx_train = 0;
    float eps         = 1e-5f;
    float freq_base   = 10000.0f;
    float freq_scale  = 1.0f;
};

class train_llama {
  public:
    // MM_GGUF_INVALID for a malformed file, MM_UNSUPPORTED_FAMILY for another architecture or
    // rope scaling than plain llama's.
    static std::unique_ptr<train_llama> load(const std::string & path, ggml_backend_buffer_type_t buft,
                                             const std::atomic<bool> * cancel);
    ~train_llama();

    const train_llama_hparams & hparams() const { return hp_; }
    ggml_tensor *               token_embd() const { return tok_embd_; }

    // x: [n_embd, T * B] input embeddings, B sequences of T rows each; pos: [T] i32; mask: [T, T]
    // f32 causal mask. Returns the last block's output [n_embd, T * B] (before the output norm).
    ggml_tensor * blocks(ggml_context * ctx, ggml_tensor * x, ggml_tensor * pos, ggml_tensor * mask, int T,
                         int B) const;
    // Output norm and head: h [n_embd, N] -> logits [n_vocab, N].
    ggml_tensor * head(ggml_context * ctx, ggml_tensor * h) const;

  private:
    struct layer {
        ggml_tensor *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *ffn_norm, *gate, *up, *down;
    };

    train_llama() = default;

    train_llama_hparams         hp_;
    std::unique_ptr<gguf_file>  file_;
    std::unique_ptr<weight_set> weights_;
    std::vector<layer>          layers_;
    ggml_tensor *               tok_embd_   = nullptr;
    ggml_tensor *               out_norm_   = nullptr;
    ggml_tensor *               output_     = nullptr;
    ggml_tensor *               rope_freqs_ = nullptr;
};

}  // namespace mm
