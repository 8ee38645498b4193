// One llama.cpp context (KV cache) over a shared model, with decoding of token or embedding
// batches, a generation loop, KV-cache edits and state save/restore. Not thread-safe: the JS
// side runs one operation at a time per context.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backbone/sampling.h"

struct llama_context;
struct llama_batch;

namespace mm {

class model;

struct context_params {
    uint32_t    n_ctx      = 0;  // 0: the model's training context
    uint32_t    n_batch    = 512;
    uint32_t    n_ubatch   = 512;
    uint32_t    n_seq_max  = 1;
    int32_t     n_threads  = 0;   // 0: all hardware threads
    int32_t     flash_attn = -1;  // -1 auto, 0 off, 1 on
    std::string type_k     = "f16";
    std::string type_v     = "f16";
    bool        embeddings = false;  // pooled text embeddings
    // Per-token hidden states (the final-norm rows llama_get_embeddings_ith reads, as llama.cpp's
    // TTS tool does): the context outputs every row, and a decode asked for them copies the last.
    bool    hidden_states = false;
    int32_t pooling       = -1;  // llama_pooling_type; -1: the model's
};

enum class logits_mode { none, last, all };

struct decode_result {
    std::vector<float> logits;  // last: n_vocab; all: n_tokens * n_vocab
    int32_t            n_vocab = 0;
    std::vector<float> hidden;      // the last row's hidden state [n_embd], when asked for
    int32_t            token = -1;  // the token sampled from the last row's logits, when asked for
};

struct generate_params {
    std::vector<int32_t> prompt;          // tokens to decode first (may be empty if logits are current)
    int32_t              pos0       = 0;  // position of prompt[0]
    int32_t              seq        = 0;
    int32_t              max_tokens = 256;
    bool                 ignore_eog = false;
    sampling_params      sampling;
};

struct generate_result {
    std::vector<int32_t> tokens;         // every sampled token (EOG excluded)
    int32_t              n_decoded = 0;  // how many of `tokens` were decoded into the KV cache
    int32_t              n_prompt  = 0;
    std::string          stop_reason;  // "eog" | "length" | "abort"
    double               prefill_ms = 0;
    double               decode_ms  = 0;
};

class context {
  public:
    context(std::shared_ptr<model> m, const context_params & p);
    ~context();

    context(const context &)             = delete;
    context & operator=(const context &) = delete;

    uint32_t      n_ctx() const;
    uint32_t      n_batch() const { return n_batch_; }
    uint32_t      n_seq_max() const { return n_seq_max_; }
    const model & get_model() const { return *model_; }

    // Tokens at positions pos0.. in sequence `seq`.
    decode_result decode_tokens(const std::vector<int32_t> & tokens, int32_t pos0, int32_t seq, logits_mode logits,
                                const std::atomic<bool> * cancel, bool hidden = false);

    // Embedding rows [n, n_embd] at the given positions: n entries (linear) or 4*n (M-RoPE,
    // [dim][token] layout), or empty for pos0, pos0+1, ... `causal` false lets the span attend
    // to itself non-causally.
    // `embd` points at `n_values` floats (n * n_embd), read in place.
    decode_result decode_embeddings(const float * embd, size_t n_values, int32_t n_embd,
                                    const std::vector<int32_t> & positions, int32_t pos0, int32_t seq, bool causal,
                                    logits_mode logits, const std::atomic<bool> * cancel, bool hidden = false);
    decode_result decode_embeddings(const std::vector<float> & embd, int32_t n_embd,
                                    const std::vector<int32_t> & positions, int32_t pos0, int32_t seq, bool causal,
                                    logits_mode logits, const std::atomic<bool> * cancel, bool hidden = false) {
        return decode_embeddings(embd.data(), embd.size(), n_embd, positions, pos0, seq, causal, logits, cancel,
                                 hidden);
    }
    bool hidden_states() const { return hidden_states_; }

    // Sampling loop. `on_token(token)` runs on the calling (worker) thread after each sample.
    generate_result generate(const generate_params & p, const std::function<void(int32_t)> & on_token,
                             const std::atomic<bool> * cancel);

    // Pooled embedding of a token sequence (context made with embeddings = true).
    std::vector<float> embed(const std::vector<int32_t> & tokens, const std::atomic<bool> * cancel);

    // A sampler kept in a slot across decodes (its generator state carries over): a caller that
    // decodes rows itself (a talker) samples the last row's logits with it after each decode.
    void    set_sampler(int32_t slot, const sampling_params * p);
    int32_t sample(int32_t slot);
    void    clear();
    bool    remove(int32_t seq, int32_t p0, int32_t p1);
    void    copy(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    int32_t pos_max(int32_t seq) const;

    std::vector<uint8_t> save_state(int32_t seq) const;  // seq < 0: whole context
    void                 load_state(const std::vector<uint8_t> & data, int32_t seq);

  private:
    friend class scheduler;  // backbone/scheduler.h: the batching thread

    void check_seq(int32_t seq) const;
    void run_batch(::llama_batch & batch, const std::atomic<bool> * cancel);
    // Waits until the last batch's work is done on every backend (a GPU's llama_decode returns
    // once its kernels are queued; the CPU's when they are done).
    void synchronize();

    std::shared_ptr<model>    model_;
    llama_context *           ctx_           = nullptr;
    uint32_t                  n_batch_       = 0;
    uint32_t                  n_seq_max_     = 1;
    bool                      embeddings_    = false;
    bool                      hidden_states_ = false;
    std::vector<sampler_ptr>  samplers_;
    void                      last_hidden(decode_result & out) const;
    const std::atomic<bool> * cancel_ = nullptr;  // read by llama.cpp's abort callback
};

}  // namespace mm
