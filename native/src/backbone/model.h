// A loaded llama.cpp text model: vocabulary, tokenizer, chat template. Shared (shared_ptr) by
// the contexts made from it, so disposing the JS object never frees it under a running context.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backbone/validate.h"

struct llama_model;
struct llama_vocab;
struct common_chat_templates;

namespace mm {

struct model_load_params {
    int32_t gpu_layers = 0;  // -1: all
    bool    use_mmap   = true;
    bool    vocab_only = false;
    // ggml RPC workers ("host:port") whose devices take the offloaded layers, before any local GPU
    // (as llama.cpp's --rpc); connecting to them can fail with MM_RPC_CONNECT.
    std::vector<std::string>   rpc;
    std::function<void(float)> on_progress;  // called on the loading thread
    const std::atomic<bool> *  cancel = nullptr;
};

// token_embd rows of one model file, read from one open handle and converted as llama.cpp's
// get_rows converts them (to_float of the tensor's type; f16 -> f32 is exact). With `preload`, a
// table of at most 64 MiB as f32 is read whole once; otherwise rows are read one by one (a few
// microseconds from the page cache, where the loaded model's pages already are).
class token_row_reader {
  public:
    token_row_reader(const std::string & path, int64_t n_embd, int64_t n_vocab, bool preload);
    token_row_reader(const token_row_reader &)             = delete;
    token_row_reader & operator=(const token_row_reader &) = delete;

    // Writes n_embd floats; the token must be checked by the caller (model::check_token).
    void    row(int32_t token, float * dst);
    int64_t n_embd() const { return n_embd_; }

  private:
    std::unique_ptr<FILE, int (*)(FILE *)> file_;
    std::string                            path_;
    int64_t                                n_embd_    = 0;
    int32_t                                type_      = 0;  // ggml_type
    size_t                                 row_bytes_ = 0;
    uint64_t                               base_      = 0;
    std::vector<uint8_t>                   raw_;
    std::vector<float>                     all_;  // the whole table, when small
};

struct chat_message {
    std::string role;
    std::string content;
};

class model {
  public:
    static std::shared_ptr<model> load(const std::string & path, const model_load_params & params);
    ~model();

    model(const model &)             = delete;
    model & operator=(const model &) = delete;

    llama_model *       get() const { return model_; }
    const llama_vocab * vocab() const { return vocab_; }

    std::string architecture() const { return meta("general.architecture"); }
    std::string meta(const char * key) const;
    std::string description() const;
    std::string chat_template() const;

    int32_t  n_embd() const;
    int32_t  n_embd_inp() const;  // decode's row width: n_embd, wider with Qwen3-VL's deepstack features
    int32_t  n_layer() const;
    int32_t  n_ctx_train() const;
    int32_t  n_vocab() const;
    uint64_t n_params() const;
    uint64_t size_bytes() const;
    int32_t  n_pos_per_embd() const;  // 4 for M-RoPE models, else 1
    bool     has_encoder() const;
    // Mixture of experts: experts per block and experts each token goes through (the most of any
    // block when it varies per block); 0 and 0 for a dense model.
    int32_t n_expert() const { return header_.n_expert; }
    int32_t n_expert_used() const { return header_.n_expert_used; }

    int32_t token_bos() const;
    int32_t token_eos() const;
    int32_t token_eot() const;
    bool    add_bos() const;
    bool    add_eos() const;

    std::vector<int32_t> tokenize(const std::string & text, bool add_special, bool parse_special) const;
    std::string          detokenize(const int32_t * tokens, size_t n, bool remove_special, bool unparse_special) const;
    // The raw bytes of one token (as llama_token_to_piece gives them; special tokens rendered).
    std::string token_piece(int32_t token, bool special) const;
    // The first token whose piece (special tokens rendered) is exactly `text`, or -1: libmtmd's
    // lookup_token, how it finds the marker tokens of tiled pictures.
    int32_t lookup_token(const std::string & text) const;
    // The input-embedding rows of these tokens, [n][n_embd] f32, read from the file's token_embd
    // tensor row by row and converted as llama.cpp converts it (a talker builds its prompt from
    // sums of such rows, as llama.cpp's TTS helper does from llama_model_get_tok_embd).
    std::vector<float>                token_rows(const std::vector<int32_t> & tokens) const;
    std::unique_ptr<token_row_reader> token_reader(bool preload) const;
    // Whether llama.cpp's graph treats a token exactly as its token_embd row given as an embedding
    // (no scale, padding or M-RoPE for token input only): true for the llama, qwen2 and qwen3
    // architectures with one position per row. The scheduler then decodes generating rows in the
    // same batch as a media span, as embedding rows.
    bool     token_input_is_row() const;
    uint32_t token_attr(int32_t token) const;
    bool     is_eog(int32_t token) const;
    void     check_token(int32_t token) const;

    // Renders messages with the model's own template (or `template_override`) through llama.cpp's
    // chat code: the Jinja engine (llama-server's default), or with use_jinja false the built-in
    // renderings of known templates (llama-mtmd-cli's and llama-cli's default). Throws
    // MM_CHAT_TEMPLATE when it cannot be rendered.
    std::string apply_chat_template(const std::vector<chat_message> & messages, bool add_generation_prompt,
                                    const std::string & template_override, bool use_jinja = true) const;

  private:
    explicit model(llama_model * m);

    std::string         path_;
    llama_model *       model_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    text_model_header   header_;
    // Parsed chat templates by override ("" = the model's): parsing a Jinja template costs
    // milliseconds, and every prompt renders one.
    mutable std::mutex                                                    templates_mu_;
    mutable std::map<std::string, std::shared_ptr<common_chat_templates>> templates_;
    // Rendered prompts by their exact inputs (and the day: a template may print the date). With
    // Jinja, llama.cpp analyses the template on every render (~2 ms); a server asked the same
    // question about many pictures renders the same text each time (the pictures are markers).
    mutable std::map<std::string, std::string> rendered_;
};

}  // namespace mm
