// Continuous batching over one context: every step decodes ONE llama_batch holding the next
// token of every active sequence (each at its own position, with logits), then samples each
// sequence with its own sampler chain. Sequences join (start) and leave (finish) between
// steps. Not thread-safe: the caller runs one step at a time and nothing else on the context.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <vector>

#include "backbone/context.h"
#include "backbone/sampling.h"

namespace mm {

struct batch_input {
    int32_t seq   = 0;
    int32_t token = 0;  // decoded at `pos` in `seq`; the next token is sampled from its logits
    int32_t pos   = 0;
};

class batch_stepper {
  public:
    explicit batch_stepper(context & ctx) : ctx_(ctx) {}

    // A fresh sampler chain for `seq` (replaces any previous one).
    void start(int32_t seq, const sampling_params & p);
    void finish(int32_t seq);
    bool active(int32_t seq) const { return samplers_.count(seq) != 0; }

    // One llama_decode of all inputs (distinct sequences, each started); returns the sampled
    // token of each input, in order.
    std::vector<int32_t> step(const std::vector<batch_input> & inputs, const std::atomic<bool> * cancel);

  private:
    context &                      ctx_;
    std::map<int32_t, sampler_ptr> samplers_;
};

}  // namespace mm
