// A llama.cpp sampler chain built from plain parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

struct llama_sampler;

namespace mm {

class model;

struct sampling_params {
    float       temperature       = 0.0f;  // <= 0: greedy
    int32_t     top_k             = 0;     // 0: off
    float       top_p             = 1.0f;  // 1: off
    float       min_p             = 0.0f;  // 0: off
    float       typical_p         = 1.0f;  // 1: off
    float       repeat_penalty    = 1.0f;  // 1: off
    float       presence_penalty  = 0.0f;
    float       frequency_penalty = 0.0f;
    int32_t     penalty_last_n    = 64;
    uint32_t    seed              = 0xFFFFFFFFu;  // LLAMA_DEFAULT_SEED: random
    std::string grammar;                          // GBNF; empty: none
    std::string grammar_root = "root";
};

struct sampler_deleter {
    void operator()(llama_sampler * s) const;
};

using sampler_ptr = std::unique_ptr<llama_sampler, sampler_deleter>;

// Throws MM_GRAMMAR for a grammar llama.cpp cannot parse, MM_INVALID_ARGUMENT for bad values.
sampler_ptr make_sampler(const model & m, const sampling_params & p);

// GBNF for a JSON schema (llama.cpp's converter). Throws MM_GRAMMAR.
std::string json_schema_grammar(const std::string & schema_json);

}  // namespace mm
