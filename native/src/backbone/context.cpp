#include "backbone/context.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "backbone/model.h"
#include "backbone/owned_batch.h"
#include "common/error.h"
#include "common/log.h"
#include "llama.h"

namespace mm {

namespace {

ggml_type kv_type(const std::string & name) {
    static const std::pair<const char *, ggml_type> types[] = {
        {"f32", GGML_TYPE_F32},   {"f16", GGML_TYPE_F16},   {"bf16", GGML_TYPE_BF16},
        {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1},
        {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1}, {"iq4_nl", GGML_TYPE_IQ4_NL},
    };
    for (const auto & [n, t] : types) {
        if (name == n) {
            return t;
        }
    }
    fail(error_code::invalid_argument, "unknown KV cache type '" + name + "' (f32, f16, bf16, q8_0, q4_0, ...)");
}

void check_decode(int32_t rc, const std::atomic<bool> * cancel) {
    if (rc == 0) {
        return;
    }
    if (rc == 2 || (cancel != nullptr && cancel->load())) {
        fail(error_code::aborted, "decode was aborted");
    }
    if (rc == 1) {
        fail(error_code::out_of_context, "no KV cache slot for the batch: the context is full");
    }
    std::string why = thread_log_errors();
    fail(error_code::decode, "llama_decode failed (" + std::to_string(rc) + ")" + (why.empty() ? "" : ": " + why));
}

}  // namespace

context::context(std::shared_ptr<model> m, const context_params & p) : model_(std::move(m)) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx                = p.n_ctx;
    cp.n_batch              = p.n_batch;
    cp.n_ubatch             = std::min(p.n_ubatch, p.n_batch);
    cp.n_seq_max            = p.n_seq_max;
    int threads             = p.n_threads > 0 ? p.n_threads : static_cast<int>(std::thread::hardware_concurrency());
    cp.n_threads            = std::max(1, threads);
    cp.n_threads_batch      = cp.n_threads;
    cp.flash_attn_type      = p.flash_attn < 0    ? LLAMA_FLASH_ATTN_TYPE_AUTO
                              : p.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                  : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.type_k               = kv_type(p.type_k);
    cp.type_v               = kv_type(p.type_v);
    cp.embeddings           = p.embeddings || p.hidden_states;
    if (p.hidden_states && p.embeddings) {
        fail(error_code::invalid_argument, "a context has pooled embeddings or hidden states, not both");
    }
    cp.no_perf = true;
    if (p.pooling >= 0) {
        cp.pooling_type = static_cast<enum llama_pooling_type>(p.pooling);
    }
    if (p.hidden_states) {
        cp.pooling_type = LLAMA_POOLING_TYPE_NONE;
    }
    if (p.n_ctx > 0 && p.n_ctx < 8) {
        fail(error_code::invalid_argument, "contextSize must be at least 8");
    }
    if (p.n_seq_max < 1 || p.n_seq_max > 256) {
        fail(error_code::invalid_argument, "sequences must be in [1, " + std::string("256") + "]");
    }
    clear_thread_log_errors();
    ctx_ = llama_init_from_model(model_->get(), cp);
    if (ctx_ == nullptr) {
        std::string why = thread_log_errors();
        fail(error_code::model_load, "llama.cpp could not create a context" + (why.empty() ? "" : ": " + why));
    }
    n_batch_       = llama_n_batch(ctx_);
    n_seq_max_     = llama_n_seq_max(ctx_);
    embeddings_    = p.embeddings;
    hidden_states_ = p.hidden_states;
    llama_set_abort_callback(
        ctx_,
        [](void * user) -> bool {
            auto * self = static_cast<context *>(user);
            return self->cancel_ != nullptr && self->cancel_->load();
        },
        this);
}

context::~context() {
    llama_free(ctx_);
}

uint32_t context::n_ctx() const {
    return llama_n_ctx(ctx_);
}

void context::check_seq(int32_t seq) const {
    if (seq < 0 || static_cast<uint32_t>(seq) >= n_seq_max_) {
        fail(error_code::invalid_argument,
             "sequence " + std::to_string(seq) + " is out of range [0, " + std::to_string(n_seq_max_) + ")");
    }
}

void context::run_batch(llama_batch & batch, const std::atomic<bool> * cancel) {
    cancel_ = cancel;
    clear_thread_log_errors();
    int32_t rc = llama_decode(ctx_, batch);
    cancel_    = nullptr;
    check_decode(rc, cancel);
}

void context::synchronize() {
    llama_synchronize(ctx_);
}

void context::set_sampler(int32_t slot, const sampling_params * p) {
    if (slot < 0 || slot >= 16) {
        fail(error_code::invalid_argument, "sampler slot must be in [0, 16)");
    }
    if (samplers_.size() <= static_cast<size_t>(slot)) {
        samplers_.resize(static_cast<size_t>(slot) + 1);
    }
    samplers_[slot] = p != nullptr ? make_sampler(*model_, *p) : sampler_ptr();
}

int32_t context::sample(int32_t slot) {
    if (slot < 0 || static_cast<size_t>(slot) >= samplers_.size() || !samplers_[slot]) {
        fail(error_code::invalid_argument, "no sampler in slot " + std::to_string(slot));
    }
    return llama_sampler_sample(samplers_[slot].get(), ctx_, -1);
}

void context::last_hidden(decode_result & out) const {
    if (!hidden_states_) {
        fail(error_code::invalid_argument, "this context was not created with hiddenStates: true");
    }
    const float * h = llama_get_embeddings_ith(ctx_, -1);
    if (h == nullptr) {
        fail(error_code::internal, "llama.cpp returned no hidden state");
    }
    out.hidden.assign(h, h + llama_model_n_embd(model_->get()));
}

decode_result context::decode_tokens(const std::vector<int32_t> & tokens, int32_t pos0, int32_t seq, logits_mode logits,
                                     const std::atomic<bool> * cancel, bool hidden) {
    check_seq(seq);
    if (hidden && !hidden_states_) {
        fail(error_code::invalid_argument, "this context was not created with hiddenStates: true");
    }
    if (tokens.empty()) {
        fail(error_code::invalid_argument, "nothing to decode");
    }
    for (int32_t t : tokens) {
        model_->check_token(t);
    }
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (pos0 < 0 || pos0 + n > static_cast<int64_t>(n_ctx())) {
        fail(error_code::out_of_context, "positions " + std::to_string(pos0) + ".." + std::to_string(pos0 + n - 1) +
                                             " do not fit in the context of " + std::to_string(n_ctx()) + " tokens");
    }
    const int32_t n_vocab = model_->n_vocab();
    decode_result out;
    out.n_vocab = n_vocab;
    if (logits == logits_mode::all) {
        out.logits.reserve(static_cast<size_t>(n) * n_vocab);
    }
    owned_batch ob;
    for (int64_t start = 0; start < n; start += n_batch_) {
        if (cancel != nullptr && cancel->load()) {
            fail(error_code::aborted, "decode was aborted");
        }
        const int32_t m = static_cast<int32_t>(std::min<int64_t>(n_batch_, n - start));
        ob.token.assign(tokens.begin() + start, tokens.begin() + start + m);
        ob.pos.resize(m);
        ob.n_seq_id.assign(m, 1);
        ob.seq_storage.assign(m, seq);
        ob.logits.assign(m, 0);
        for (int32_t i = 0; i < m; ++i) {
            ob.pos[i] = pos0 + static_cast<int32_t>(start) + i;
            if (logits == logits_mode::all || (logits == logits_mode::last && start + i == n - 1)) {
                ob.logits[i] = 1;
            }
        }
        llama_batch b = ob.view(m);
        run_batch(b, cancel);
        if (logits == logits_mode::all) {
            for (int32_t i = 0; i < m; ++i) {
                const float * l = llama_get_logits_ith(ctx_, i);
                out.logits.insert(out.logits.end(), l, l + n_vocab);
            }
        }
    }
    if (logits == logits_mode::last) {
        const float * l = llama_get_logits_ith(ctx_, -1);
        out.logits.assign(l, l + n_vocab);
    }
    if (hidden) {
        last_hidden(out);
    }
    return out;
}

decode_result context::decode_embeddings(const float * embd, size_t n_values, int32_t n_embd,
                                         const std::vector<int32_t> & positions, int32_t pos0, int32_t seq, bool causal,
                                         logits_mode logits, const std::atomic<bool> * cancel, bool hidden) {
    check_seq(seq);
    if (hidden && !hidden_states_) {
        fail(error_code::invalid_argument, "this context was not created with hiddenStates: true");
    }
    if (n_embd != model_->n_embd_inp()) {
        fail(error_code::model_mismatch, "embeddings have width " + std::to_string(n_embd) + " but the model's is " +
                                             std::to_string(model_->n_embd_inp()));
    }
    if (embd == nullptr || n_values == 0 || n_values % static_cast<size_t>(n_embd) != 0) {
        fail(error_code::invalid_argument, "embeddings must be a non-empty [n, n_embd] matrix");
    }
    const int64_t n            = static_cast<int64_t>(n_values / n_embd);
    const int32_t n_pos        = model_->n_pos_per_embd();
    const bool    explicit_pos = !positions.empty();
    if (explicit_pos && positions.size() != static_cast<size_t>(n) && positions.size() != static_cast<size_t>(n * 4)) {
        fail(error_code::invalid_argument, "positions must have n or 4*n entries");
    }
    if (explicit_pos && positions.size() == static_cast<size_t>(n * 4) && n_pos != 4) {
        fail(error_code::invalid_argument, "4-component (M-RoPE) positions given to a model without M-RoPE");
    }
    int64_t max_pos = explicit_pos ? *std::max_element(positions.begin(), positions.end()) : pos0 + n - 1;
    int64_t min_pos = explicit_pos ? *std::min_element(positions.begin(), positions.end()) : pos0;
    if (min_pos < 0 || max_pos >= static_cast<int64_t>(n_ctx()) || pos0 + n > static_cast<int64_t>(n_ctx())) {
        fail(error_code::out_of_context, std::to_string(n) + " embeddings at positions " + std::to_string(min_pos) +
                                             ".." + std::to_string(max_pos) + " do not fit in the context of " +
                                             std::to_string(n_ctx()) + " tokens");
    }
    // A non-causal span must be decoded in one batch, or it would not see its later part.
    if (!causal && n > static_cast<int64_t>(n_batch_)) {
        fail(error_code::out_of_context, "a non-causal span of " + std::to_string(n) +
                                             " embeddings is larger than the batch size " + std::to_string(n_batch_));
    }
    const int32_t n_vocab = model_->n_vocab();
    decode_result out;
    out.n_vocab = n_vocab;
    if (!causal) {
        llama_set_causal_attn(ctx_, false);
    }
    owned_batch ob;
    try {
        for (int64_t start = 0; start < n; start += n_batch_) {
            if (cancel != nullptr && cancel->load()) {
                fail(error_code::aborted, "decode was aborted");
            }
            const int32_t m = static_cast<int32_t>(std::min<int64_t>(n_batch_, n - start));
            ob.embd.assign(embd + start * n_embd, embd + (start + m) * n_embd);
            ob.pos.assign(static_cast<size_t>(m) * n_pos, 0);
            for (int32_t d = 0; d < n_pos; ++d) {
                for (int32_t i = 0; i < m; ++i) {
                    int32_t p;
                    if (!explicit_pos) {
                        p = (d < 3) ? pos0 + static_cast<int32_t>(start) + i : 0;
                    } else if (positions.size() == static_cast<size_t>(n)) {
                        p = (d < 3) ? positions[start + i] : 0;
                    } else {
                        p = positions[static_cast<size_t>(d) * n + start + i];
                    }
                    ob.pos[static_cast<size_t>(d) * m + i] = p;
                }
            }
            ob.n_seq_id.assign(m, 1);
            ob.seq_storage.assign(m, seq);
            ob.logits.assign(m, 0);
            for (int32_t i = 0; i < m; ++i) {
                if (logits == logits_mode::all || (logits == logits_mode::last && start + i == n - 1)) {
                    ob.logits[i] = 1;
                }
            }
            llama_batch b = ob.view(m);
            run_batch(b, cancel);
            if (logits == logits_mode::all) {
                for (int32_t i = 0; i < m; ++i) {
                    const float * l = llama_get_logits_ith(ctx_, i);
                    out.logits.insert(out.logits.end(), l, l + n_vocab);
                }
            }
        }
    } catch (...) {
        llama_set_causal_attn(ctx_, true);
        throw;
    }
    llama_set_causal_attn(ctx_, true);
    if (logits == logits_mode::last) {
        const float * l = llama_get_logits_ith(ctx_, -1);
        out.logits.assign(l, l + n_vocab);
    }
    if (hidden) {
        last_hidden(out);
    }
    return out;
}

generate_result context::generate(const generate_params & p, const std::function<void(int32_t)> & on_token,
                                  const std::atomic<bool> * cancel) {
    using clock = std::chrono::steady_clock;
    auto ms     = [](clock::time_point a, clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    };
    check_seq(p.seq);
    if (p.max_tokens < 0) {
        fail(error_code::invalid_argument, "maxTokens must be >= 0");
    }
    sampler_ptr     smpl = make_sampler(*model_, p.sampling);
    generate_result r;
    r.n_prompt = static_cast<int32_t>(p.prompt.size());
    auto t0    = clock::now();
    if (!p.prompt.empty()) {
        decode_tokens(p.prompt, p.pos0, p.seq, logits_mode::last, cancel);
    }
    auto    t1    = clock::now();
    int32_t pos   = p.pos0 + static_cast<int32_t>(p.prompt.size());
    r.stop_reason = "length";
    llama_token    tok;
    llama_batch    single{};
    int32_t        n_seq_id    = 1;
    llama_seq_id   seq_id      = p.seq;
    llama_seq_id * seq_ids     = &seq_id;
    int8_t         want_logits = 1;
    for (int32_t i = 0; i < p.max_tokens; ++i) {
        if (cancel != nullptr && cancel->load()) {
            r.stop_reason = "abort";
            break;
        }
        tok = llama_sampler_sample(smpl.get(), ctx_, -1);
        if (!p.ignore_eog && model_->is_eog(tok)) {
            r.stop_reason = "eog";
            break;
        }
        r.tokens.push_back(tok);
        on_token(tok);
        if (i + 1 == p.max_tokens) {
            break;
        }
        if (cancel != nullptr && cancel->load()) {
            r.stop_reason = "abort";
            break;
        }
        if (pos >= static_cast<int32_t>(n_ctx())) {
            r.stop_reason = "context";
            break;
        }
        single.n_tokens = 1;
        single.token    = &tok;
        single.pos      = &pos;
        single.n_seq_id = &n_seq_id;
        single.seq_id   = &seq_ids;
        single.logits   = &want_logits;
        try {
            run_batch(single, cancel);
        } catch (const error & e) {
            if (e.code() != error_code::aborted) {
                throw;
            }
            r.stop_reason = "abort";
            break;
        }
        ++pos;
        ++r.n_decoded;
    }
    auto t2      = clock::now();
    r.prefill_ms = ms(t0, t1);
    r.decode_ms  = ms(t1, t2);
    return r;
}

std::vector<float> context::embed(const std::vector<int32_t> & tokens, const std::atomic<bool> * cancel) {
    if (!embeddings_) {
        fail(error_code::invalid_argument, "this context was not created with embeddings: true");
    }
    if (tokens.size() > n_batch_) {
        fail(error_code::out_of_context, "the text has " + std::to_string(tokens.size()) +
                                             " tokens, more than the batch size " + std::to_string(n_batch_));
    }
    llama_memory_clear(llama_get_memory(ctx_), true);
    decode_tokens(tokens, 0, 0, logits_mode::last, cancel);
    const float * e = llama_get_embeddings_seq(ctx_, 0);
    if (e == nullptr) {
        e = llama_get_embeddings_ith(ctx_, -1);
    }
    if (e == nullptr) {
        fail(error_code::internal, "llama.cpp returned no embeddings");
    }
    std::vector<float> out(e, e + llama_model_n_embd_out(model_->get()));
    llama_memory_clear(llama_get_memory(ctx_), true);
    return out;
}

void context::clear() {
    llama_memory_clear(llama_get_memory(ctx_), true);
}

bool context::remove(int32_t seq, int32_t p0, int32_t p1) {
    if (seq >= 0) {
        check_seq(seq);
    }
    return llama_memory_seq_rm(llama_get_memory(ctx_), seq, p0, p1);
}

void context::copy(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    check_seq(src);
    check_seq(dst);
    llama_memory_seq_cp(llama_get_memory(ctx_), src, dst, p0, p1);
}

int32_t context::pos_max(int32_t seq) const {
    check_seq(seq);
    return llama_memory_seq_pos_max(llama_get_memory(ctx_), seq);
}

std::vector<uint8_t> context::save_state(int32_t seq) const {
    std::vector<uint8_t> out;
    if (seq < 0) {
        out.resize(llama_state_get_size(ctx_));
        out.resize(llama_state_get_data(ctx_, out.data(), out.size()));
    } else {
        check_seq(seq);
        out.resize(llama_state_seq_get_size(ctx_, seq));
        out.resize(llama_state_seq_get_data(ctx_, out.data(), out.size(), seq));
    }
    return out;
}

void context::load_state(const std::vector<uint8_t> & data, int32_t seq) {
    size_t n;
    clear_thread_log_errors();
    if (seq < 0) {
        n = llama_state_set_data(ctx_, data.data(), data.size());
    } else {
        check_seq(seq);
        n = llama_state_seq_set_data(ctx_, data.data(), data.size(), seq);
    }
    if (n == 0) {
        std::string why = thread_log_errors();
        fail(error_code::invalid_argument,
             "the state does not fit this context or model" + (why.empty() ? "" : ": " + why));
    }
}

}  // namespace mm
