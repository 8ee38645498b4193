// Test-only reference: llama.cpp's own greedy generation, with nothing of mm in between.
// Tokenises the prompt with libllama (add_special, parse_special), decodes it in one batch,
// then samples greedily with llama.cpp's sampler chain until EOG or -n tokens.
// Prints one JSON object: prompt tokens, generated tokens, text pieces, timings.
//
//   mm-ref-generate -m model.gguf -p "prompt" [-n 64] [-t threads] [-c ctx] [--no-special] [--ignore-eog]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"

static std::string json_escape(const std::string & s) {
    std::string out;
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out;
}

int main(int argc, char ** argv) {
    std::string model_path, prompt;
    int         n_predict = 64, threads = 2, n_ctx = 256;
    bool        add_special = true;
    bool        ignore_eog  = false;
    for (int i = 1; i < argc; ++i) {
        std::string a    = argv[i];
        auto        next = [&]() -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-m")
            model_path = next();
        else if (a == "-p")
            prompt = next();
        else if (a == "-n")
            n_predict = std::atoi(next());
        else if (a == "-t")
            threads = std::atoi(next());
        else if (a == "-c")
            n_ctx = std::atoi(next());
        else if (a == "--no-special")
            add_special = false;
        else if (a == "--ignore-eog")
            ignore_eog = true;
        else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (model_path.empty()) {
        std::fprintf(stderr, "usage: mm-ref-generate -m model.gguf -p prompt [-n 64] [-t 2] [-c 256]\n");
        return 2;
    }
    llama_log_set(
        [](ggml_log_level level, const char * text, void *) {
            if (level == GGML_LOG_LEVEL_ERROR)
                std::fputs(text, stderr);
        },
        nullptr);
    ggml_backend_load_all();  // backends are shared libraries beside the executable (GGML_BACKEND_DL)
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers       = 0;
    llama_model * model   = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) {
        std::fprintf(stderr, "failed to load %s\n", model_path.c_str());
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    int                      n = -llama_tokenize(vocab, prompt.c_str(), prompt.size(), nullptr, 0, add_special, true);
    std::vector<llama_token> tokens(n);
    if (llama_tokenize(vocab, prompt.c_str(), prompt.size(), tokens.data(), n, add_special, true) < 0) {
        std::fprintf(stderr, "tokenize failed\n");
        return 1;
    }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx                = n_ctx;
    cp.n_batch              = n_ctx;
    cp.n_threads            = threads;
    cp.n_threads_batch      = threads;
    cp.no_perf              = false;
    llama_context * ctx     = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "failed to create context\n");
        return 1;
    }
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());

    using clock = std::chrono::steady_clock;
    auto t0     = clock::now();
    if (llama_decode(ctx, llama_batch_get_one(tokens.data(), tokens.size())) != 0) {
        std::fprintf(stderr, "prompt decode failed\n");
        return 1;
    }
    auto                     t1 = clock::now();
    std::vector<llama_token> out;
    std::vector<std::string> pieces;
    for (int i = 0; i < n_predict; ++i) {
        llama_token tok = llama_sampler_sample(smpl, ctx, -1);
        if (!ignore_eog && llama_vocab_is_eog(vocab, tok)) {
            break;
        }
        out.push_back(tok);
        char buf[256];
        int  len = llama_token_to_piece(vocab, tok, buf, sizeof(buf), 0, false);
        pieces.emplace_back(buf, len > 0 ? len : 0);
        if (i + 1 == n_predict) {
            break;
        }
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) {
            std::fprintf(stderr, "decode failed\n");
            return 1;
        }
    }
    auto t2 = clock::now();

    std::string text;
    for (auto & p : pieces)
        text += p;
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("{\"prompt_tokens\":[");
    for (size_t i = 0; i < tokens.size(); ++i)
        std::printf("%s%d", i ? "," : "", tokens[i]);
    std::printf("],\"tokens\":[");
    for (size_t i = 0; i < out.size(); ++i)
        std::printf("%s%d", i ? "," : "", out[i]);
    std::printf("],\"text\":\"%s\",\"prefill_ms\":%.4f,\"decode_ms\":%.4f}\n", json_escape(text).c_str(), ms(t0, t1),
                ms(t1, t2));

    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
