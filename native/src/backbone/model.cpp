#include "backbone/model.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "backbone/validate.h"
#include "chat.h"
#include "common/error.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/system_info.h"
#include "ggml.h"
#include "graph/gguf_file.h"
#include "llama.h"

namespace mm {

std::shared_ptr<model> model::load(const std::string & path, const model_load_params & params) {
    ensure_backend_initialised();
    const text_model_header header = validate_text_model_file(path);

    struct progress_state {
        const model_load_params * params;
    } state{&params};

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers       = params.gpu_layers;
    mp.load_mode          = params.use_mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    mp.vocab_only         = params.vocab_only;
    // Workers' devices first, then this machine's GPUs: llama.cpp splits the offloaded layers across
    // them by free memory (what `llama-cli --rpc` does). The list must outlive the load.
    std::vector<ggml_backend_dev_t> devices;
    if (!params.rpc.empty() && !params.vocab_only) {
        devices = rpc_devices(params.rpc);
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            const auto         t   = ggml_backend_dev_type(dev);
            if (t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU) {
                devices.push_back(dev);
            }
        }
        devices.push_back(nullptr);
        mp.devices = devices.data();
    }
    mp.progress_callback_user_data = &state;
    mp.progress_callback           = [](float progress, void * user) -> bool {
        const auto * s = static_cast<progress_state *>(user);
        if (s->params->cancel != nullptr && s->params->cancel->load()) {
            return false;
        }
        if (s->params->on_progress) {
            s->params->on_progress(progress);
        }
        return true;
    };

    clear_thread_log_errors();
    llama_model * m = llama_model_load_from_file(path.c_str(), mp);
    if (m == nullptr) {
        if (params.cancel != nullptr && params.cancel->load()) {
            fail(error_code::aborted, "model load was aborted");
        }
        std::string why = thread_log_errors();
        fail(error_code::model_load, "llama.cpp could not load '" + path + "'" + (why.empty() ? "" : ": " + why));
    }
    std::shared_ptr<model> out(new model(m));
    out->header_ = header;
    out->path_   = path;
    if (!params.vocab_only && out->n_layer() <= 0) {
        fail(error_code::model_load, "'" + path + "' has no layers: it is not a text model");
    }
    return out;
}

model::model(llama_model * m) : model_(m), vocab_(llama_model_get_vocab(m)) {}

token_row_reader::token_row_reader(const std::string & path, int64_t n_embd, int64_t n_vocab, bool preload) :
    file_(nullptr, &std::fclose), path_(path), n_embd_(n_embd) {
    const auto          file = gguf_file::open(path);
    const ggml_tensor * t    = file->tensor("token_embd.weight");
    if (t == nullptr) {
        fail(error_code::gguf_unsupported, "'" + path + "' has no token_embd.weight in its first file");
    }
    const ggml_type_traits * traits = ggml_get_type_traits(t->type);
    if (t->ne[0] != n_embd || t->ne[1] < n_vocab || ggml_n_dims(t) > 2 ||
        (t->type != GGML_TYPE_F32 && traits->to_float == nullptr)) {
        file->invalid("token_embd.weight is not a [" + std::to_string(n_embd) + ", n_vocab] matrix of a known type");
    }
    type_      = static_cast<int32_t>(t->type);
    row_bytes_ = ggml_row_size(t->type, n_embd);
    base_      = file->tensor_file_offset("token_embd.weight");
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) {
        fail(error_code::file_not_found, "cannot reopen '" + path + "'");
    }
    raw_.resize(row_bytes_);
    if (preload && static_cast<double>(n_vocab) * static_cast<double>(n_embd) * sizeof(float) <= 64.0 * 1024 * 1024) {
        std::vector<float> all(static_cast<size_t>(n_vocab) * static_cast<size_t>(n_embd));
        for (int64_t v = 0; v < n_vocab; ++v) {
            row(static_cast<int32_t>(v), all.data() + static_cast<size_t>(v) * static_cast<size_t>(n_embd));
        }
        all_ = std::move(all);
    }
}

void token_row_reader::row(int32_t token, float * dst) {
    const size_t n = static_cast<size_t>(n_embd_);
    if (!all_.empty()) {
        std::memcpy(dst, all_.data() + static_cast<size_t>(token) * n, n * sizeof(float));
        return;
    }
    const uint64_t off = base_ + static_cast<uint64_t>(token) * row_bytes_;
    if (fseeko(file_.get(), static_cast<off_t>(off), SEEK_SET) != 0 ||
        std::fread(raw_.data(), 1, row_bytes_, file_.get()) != row_bytes_) {
        fail(error_code::gguf_invalid,
             "'" + path_ + "': token_embd.weight row " + std::to_string(token) + " cannot be read");
    }
    const auto type = static_cast<ggml_type>(type_);
    if (type == GGML_TYPE_F32) {
        std::memcpy(dst, raw_.data(), row_bytes_);
    } else {
        ggml_get_type_traits(type)->to_float(raw_.data(), dst, n_embd_);
    }
}

std::unique_ptr<token_row_reader> model::token_reader(bool preload) const {
    return std::make_unique<token_row_reader>(path_, n_embd(), n_vocab(), preload);
}

bool model::token_input_is_row() const {
    const std::string arch = architecture();
    return (arch == "llama" || arch == "qwen2" || arch == "qwen3") && n_pos_per_embd() == 1 && n_embd_inp() == n_embd();
}

std::vector<float> model::token_rows(const std::vector<int32_t> & tokens) const {
    for (int32_t t : tokens) {
        check_token(t);
    }
    token_row_reader   reader(path_, n_embd(), n_vocab(), false);
    std::vector<float> out(tokens.size() * static_cast<size_t>(n_embd()));
    for (size_t i = 0; i < tokens.size(); ++i) {
        reader.row(tokens[i], out.data() + i * static_cast<size_t>(n_embd()));
    }
    return out;
}

model::~model() {
    llama_model_free(model_);
}

std::string model::meta(const char * key) const {
    std::vector<char> buf(256);
    int32_t           n = llama_model_meta_val_str(model_, key, buf.data(), buf.size());
    if (n < 0) {
        return {};
    }
    if (static_cast<size_t>(n) >= buf.size()) {
        buf.resize(static_cast<size_t>(n) + 1);
        llama_model_meta_val_str(model_, key, buf.data(), buf.size());
    }
    return std::string(buf.data());
}

std::string model::description() const {
    char buf[256] = {};
    llama_model_desc(model_, buf, sizeof(buf));
    return buf;
}

std::string model::chat_template() const {
    const char * t = llama_model_chat_template(model_, nullptr);
    return t ? t : "";
}

int32_t model::n_embd() const {
    return llama_model_n_embd(model_);
}

int32_t model::n_embd_inp() const {
    return llama_model_n_embd_inp(model_);
}

int32_t model::n_layer() const {
    return llama_model_n_layer(model_);
}

int32_t model::n_ctx_train() const {
    return llama_model_n_ctx_train(model_);
}

int32_t model::n_vocab() const {
    return llama_vocab_n_tokens(vocab_);
}

uint64_t model::n_params() const {
    return llama_model_n_params(model_);
}

uint64_t model::size_bytes() const {
    return llama_model_size(model_);
}

int32_t model::n_pos_per_embd() const {
    auto rope = llama_model_rope_type(model_);
    return (rope == LLAMA_ROPE_TYPE_MROPE || rope == LLAMA_ROPE_TYPE_IMROPE) ? 4 : 1;
}

bool model::has_encoder() const {
    return llama_model_has_encoder(model_);
}

int32_t model::token_bos() const {
    return llama_vocab_bos(vocab_);
}

int32_t model::token_eos() const {
    return llama_vocab_eos(vocab_);
}

int32_t model::token_eot() const {
    return llama_vocab_eot(vocab_);
}

bool model::add_bos() const {
    return llama_vocab_get_add_bos(vocab_);
}

bool model::add_eos() const {
    return llama_vocab_get_add_eos(vocab_);
}

void model::check_token(int32_t token) const {
    if (token < 0 || token >= n_vocab()) {
        fail(error_code::invalid_argument,
             "token " + std::to_string(token) + " is out of range [0, " + std::to_string(n_vocab()) + ")");
    }
}

std::vector<int32_t> model::tokenize(const std::string & text, bool add_special, bool parse_special) const {
    if (text.size() > static_cast<size_t>(INT32_MAX) / 2) {
        fail(error_code::invalid_argument, "text is too long to tokenize");
    }
    std::vector<int32_t> out(text.size() + 8);
    int32_t              n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out.data(),
                                            static_cast<int32_t>(out.size()), add_special, parse_special);
    if (n < 0) {
        out.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), out.data(),
                           static_cast<int32_t>(out.size()), add_special, parse_special);
        if (n < 0) {
            fail(error_code::internal, "tokenization failed");
        }
    }
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string model::detokenize(const int32_t * tokens, size_t n, bool remove_special, bool unparse_special) const {
    for (size_t i = 0; i < n; ++i) {
        check_token(tokens[i]);
    }
    std::string out(n * 8 + 16, '\0');
    int32_t     len = llama_detokenize(vocab_, tokens, static_cast<int32_t>(n), out.data(),
                                       static_cast<int32_t>(out.size()), remove_special, unparse_special);
    if (len < 0) {
        out.resize(static_cast<size_t>(-len));
        len = llama_detokenize(vocab_, tokens, static_cast<int32_t>(n), out.data(), static_cast<int32_t>(out.size()),
                               remove_special, unparse_special);
        if (len < 0) {
            fail(error_code::internal, "detokenization failed");
        }
    }
    out.resize(static_cast<size_t>(len));
    return out;
}

int32_t model::lookup_token(const std::string & text) const {
    const int32_t n = n_vocab();
    for (int32_t i = 0; i < n; ++i) {
        if (token_piece(i, true) == text) {
            return i;
        }
    }
    return -1;
}

std::string model::token_piece(int32_t token, bool special) const {
    check_token(token);
    char    buf[128];
    int32_t n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, special);
    if (n >= 0) {
        return std::string(buf, static_cast<size_t>(n));
    }
    std::string big(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(vocab_, token, big.data(), static_cast<int32_t>(big.size()), 0, special);
    big.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return big;
}

uint32_t model::token_attr(int32_t token) const {
    check_token(token);
    return static_cast<uint32_t>(llama_vocab_get_attr(vocab_, token));
}

bool model::is_eog(int32_t token) const {
    return token >= 0 && token < n_vocab() && llama_vocab_is_eog(vocab_, token);
}

std::string model::apply_chat_template(const std::vector<chat_message> & messages, bool add_generation_prompt,
                                       const std::string & template_override, bool use_jinja) const {
    try {
        std::shared_ptr<common_chat_templates> tmpls;
        {
            std::lock_guard<std::mutex> lock(templates_mu_);
            auto                        it = templates_.find(template_override);
            if (it != templates_.end()) {
                tmpls = it->second;
            } else {
                tmpls = std::shared_ptr<common_chat_templates>(
                    common_chat_templates_init(model_, template_override).release(), common_chat_templates_deleter());
                if (!tmpls) {
                    fail(error_code::chat_template, "the model has no usable chat template");
                }
                if (templates_.size() >= 8) {
                    templates_.clear();  // overrides are rare: keep the cache small
                }
                templates_.emplace(template_override, tmpls);
            }
        }
        common_chat_templates_inputs inputs;
        inputs.add_generation_prompt = add_generation_prompt;
        inputs.use_jinja             = use_jinja;
        const std::time_t day        = std::chrono::system_clock::to_time_t(inputs.now) / 86400;
        std::string key = std::to_string(day) + (use_jinja ? "|j" : "|l") + (add_generation_prompt ? "g|" : "n|") +
                          std::to_string(template_override.size()) + "|" + template_override;
        for (const auto & m : messages) {
            key +=
                "|" + std::to_string(m.role.size()) + ":" + m.role + std::to_string(m.content.size()) + ":" + m.content;
        }
        {
            std::lock_guard<std::mutex> lock(templates_mu_);
            auto                        it = rendered_.find(key);
            if (it != rendered_.end()) {
                return it->second;
            }
        }
        for (const auto & m : messages) {
            common_chat_msg msg;
            msg.role    = m.role;
            msg.content = m.content;
            inputs.messages.push_back(std::move(msg));
        }
        std::string prompt = common_chat_templates_apply(tmpls.get(), inputs).prompt;
        if (key.size() <= 16384) {
            std::lock_guard<std::mutex> lock(templates_mu_);
            if (rendered_.size() >= 256) {
                rendered_.clear();
            }
            rendered_.emplace(std::move(key), prompt);
        }
        return prompt;
    } catch (const error &) {
        throw;
    } catch (const std::exception & e) {
        fail(error_code::chat_template, std::string("the chat template could not be rendered: ") + e.what());
    }
}

}  // namespace mm
