#include "backbone/batch.h"

#include <llama.h>

#include <set>
#include <string>

#include "backbone/model.h"
#include "common/error.h"

namespace mm {

void batch_stepper::start(int32_t seq, const sampling_params & p) {
    ctx_.check_seq(seq);
    samplers_[seq] = make_sampler(*ctx_.model_, p);
}

void batch_stepper::finish(int32_t seq) {
    samplers_.erase(seq);
}

std::vector<int32_t> batch_stepper::step(const std::vector<batch_input> & inputs, const std::atomic<bool> * cancel) {
    if (inputs.empty()) {
        fail(error_code::invalid_argument, "a step needs at least one sequence");
    }
    if (inputs.size() > ctx_.n_batch()) {
        fail(error_code::invalid_argument, "more sequences than the batch size");
    }
    std::set<int32_t>           seen;
    const int32_t               n = static_cast<int32_t>(inputs.size());
    std::vector<llama_token>    tokens(n);
    std::vector<llama_pos>      pos(n);
    std::vector<int32_t>        n_seq_id(n, 1);
    std::vector<llama_seq_id>   seq_ids(n);
    std::vector<llama_seq_id *> seq_ptrs(n);
    std::vector<int8_t>         logits(n, 1);
    for (int32_t i = 0; i < n; ++i) {
        const batch_input & in = inputs[i];
        ctx_.check_seq(in.seq);
        if (samplers_.count(in.seq) == 0) {
            fail(error_code::invalid_argument, "sequence " + std::to_string(in.seq) + " was not started");
        }
        if (!seen.insert(in.seq).second) {
            fail(error_code::invalid_argument, "sequence " + std::to_string(in.seq) + " appears twice in a step");
        }
        ctx_.model_->check_token(in.token);
        if (in.pos < 0 || in.pos >= static_cast<int32_t>(ctx_.n_ctx())) {
            fail(error_code::out_of_context, "position " + std::to_string(in.pos) + " is outside the context");
        }
        tokens[i]   = in.token;
        pos[i]      = in.pos;
        seq_ids[i]  = in.seq;
        seq_ptrs[i] = &seq_ids[i];
    }
    llama_batch batch{};
    batch.n_tokens = n;
    batch.token    = tokens.data();
    batch.pos      = pos.data();
    batch.n_seq_id = n_seq_id.data();
    batch.seq_id   = seq_ptrs.data();
    batch.logits   = logits.data();
    ctx_.run_batch(batch, cancel);
    std::vector<int32_t> out(n);
    for (int32_t i = 0; i < n; ++i) {
        out[i] = llama_sampler_sample(samplers_[inputs[i].seq].get(), ctx_.ctx_, i);
    }
    return out;
}

}  // namespace mm
