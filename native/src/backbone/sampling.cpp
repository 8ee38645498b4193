#include "backbone/sampling.h"

#include <cmath>

#include "backbone/model.h"
#include "common/error.h"
#include "common/log.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "llama.h"

namespace mm {

void sampler_deleter::operator()(llama_sampler * s) const {
    llama_sampler_free(s);
}

sampler_ptr make_sampler(const model & m, const sampling_params & p) {
    auto bad = [](const char * what) { fail(error_code::invalid_argument, what); };
    if (!std::isfinite(p.temperature)) {
        bad("temperature must be a finite number");
    }
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
        bad("topP must be in (0, 1]");
    }
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
        bad("minP must be in [0, 1]");
    }
    if (!(p.typical_p > 0.0f && p.typical_p <= 1.0f)) {
        bad("typicalP must be in (0, 1]");
    }
    if (p.top_k < 0) {
        bad("topK must be >= 0");
    }

    sampler_ptr chain(llama_sampler_chain_init(llama_sampler_chain_default_params()));
    if (!p.grammar.empty()) {
        clear_thread_log_errors();
        llama_sampler * g = llama_sampler_init_grammar(m.vocab(), p.grammar.c_str(), p.grammar_root.c_str());
        if (g == nullptr) {
            std::string why = thread_log_errors();
            fail(error_code::grammar, "the grammar could not be parsed" + (why.empty() ? "" : ": " + why));
        }
        llama_sampler_chain_add(chain.get(), g);
    }
    // The model's suppress tokens (tokenizer.ggml.suppress_tokens: a talker's codec specials) can
    // never be sampled, as llama.cpp's common sampler makes them (a -inf logit bias).
    {
        int32_t             n_suppress = 0;
        const llama_token * suppress   = llama_vocab_get_suppress_tokens(m.vocab(), &n_suppress);
        if (n_suppress > 0) {
            std::vector<llama_logit_bias> bias;
            bias.reserve(static_cast<size_t>(n_suppress));
            for (int32_t i = 0; i < n_suppress; ++i) {
                bias.push_back({suppress[i], -INFINITY});
            }
            llama_sampler_chain_add(chain.get(), llama_sampler_init_logit_bias(
                                                     m.n_vocab(), static_cast<int32_t>(bias.size()), bias.data()));
        }
    }
    if (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
        llama_sampler_chain_add(chain.get(),
                                llama_sampler_init_penalties(m.n_vocab(), p.penalty_last_n, p.repeat_penalty,
                                                             p.frequency_penalty, p.presence_penalty));
    }
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
        return chain;
    }
    if (p.top_k > 0) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(p.top_k));
    }
    if (p.typical_p < 1.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_typical(p.typical_p, 1));
    }
    if (p.top_p < 1.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(p.top_p, 1));
    }
    if (p.min_p > 0.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(p.min_p, 1));
    }
    llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(p.seed));
    return chain;
}

std::string json_schema_grammar(const std::string & schema_json) {
    try {
        return json_schema_to_grammar(common_json::parse(schema_json));
    } catch (const std::exception & e) {
        fail(error_code::grammar, std::string("the JSON schema could not be converted to a grammar: ") + e.what());
    }
}

}  // namespace mm
