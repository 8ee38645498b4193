#include "addon_backbone.h"

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common/rpc.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

struct constructors {
    Napi::FunctionReference model;
    Napi::FunctionReference context;
};

constructors & ctors(Napi::Env env) {
    auto * c = env.GetInstanceData<constructors>();
    if (c == nullptr) {
        c = new constructors();
        env.SetInstanceData<constructors>(c);
    }
    return *c;
}

int32_t get_i32(const Napi::Object & o, const char * key, int32_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

uint32_t get_u32(const Napi::Object & o, const char * key, uint32_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : fallback;
}

float get_f32(const Napi::Object & o, const char * key, float fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().FloatValue() : fallback;
}

std::string get_str(const Napi::Object & o, const char * key, const std::string & fallback) {
    Napi::Value v = o.Get(key);
    return v.IsString() ? v.As<Napi::String>().Utf8Value() : fallback;
}

Napi::Object object_arg(const Napi::CallbackInfo & info, size_t i) {
    if (info.Length() > i && info[i].IsObject()) {
        return info[i].As<Napi::Object>();
    }
    return Napi::Object::New(info.Env());
}

std::vector<int32_t> tokens_arg(Napi::Env env, Napi::Value v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_error(env, error_code::invalid_argument, std::string(name) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t> & v) {
    auto out = Napi::Int32Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size() * sizeof(int32_t));
    }
    return out;
}

Napi::Value to_float32_array(Napi::Env env, const std::vector<float> & v) {
    auto out = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size() * sizeof(float));
    }
    return out;
}

sampling_params sampling_arg(const Napi::Object & o) {
    sampling_params p;
    p.temperature       = get_f32(o, "temperature", p.temperature);
    p.top_k             = get_i32(o, "topK", p.top_k);
    p.top_p             = get_f32(o, "topP", p.top_p);
    p.min_p             = get_f32(o, "minP", p.min_p);
    p.typical_p         = get_f32(o, "typicalP", p.typical_p);
    p.repeat_penalty    = get_f32(o, "repeatPenalty", p.repeat_penalty);
    p.presence_penalty  = get_f32(o, "presencePenalty", p.presence_penalty);
    p.frequency_penalty = get_f32(o, "frequencyPenalty", p.frequency_penalty);
    p.penalty_last_n    = get_i32(o, "penaltyLastN", p.penalty_last_n);
    p.seed              = get_u32(o, "seed", p.seed);
    p.grammar           = get_str(o, "grammar", "");
    p.grammar_root      = get_str(o, "grammarRoot", "root");
    return p;
}

logits_mode logits_arg(const Napi::Object & o) {
    std::string m = get_str(o, "logits", "none");
    return m == "all" ? logits_mode::all : m == "last" ? logits_mode::last : logits_mode::none;
}

// ---- workers -------------------------------------------------------------------------

class load_model_worker : public promise_worker {
  public:
    load_model_worker(Napi::Env env, std::string path, model_load_params params, Napi::Value on_progress) :
        promise_worker(env), path_(std::move(path)), params_(std::move(params)) {
        if (on_progress.IsFunction()) {
            progress_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "mm-load-progress", 0, 1);
            has_progress_ = true;
        }
    }

    ~load_model_worker() override {
        if (has_progress_) {
            progress_.Release();
        }
    }

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        if (has_progress_) {
            params_.on_progress = [this](float p) {
                // At most ~50 updates per load; the JS side throttles further.
                if (p < 1.0f && p - last_ < 0.02f) {
                    return;
                }
                last_    = p;
                auto * v = new float(p);
                progress_.NonBlockingCall(v, [](Napi::Env env, Napi::Function fn, float * value) {
                    if (env != nullptr) {
                        try {
                            fn.Call({Napi::Number::New(env, *value)});
                        } catch (const Napi::Error &) {
                        }
                    }
                    delete value;
                });
            };
        }
        model_ = model::load(path_, params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonModel::wrap(env, std::move(model_)); }

  private:
    std::string              path_;
    model_load_params        params_;
    Napi::ThreadSafeFunction progress_;
    bool                     has_progress_ = false;
    float                    last_         = -1.0f;
    std::shared_ptr<model>   model_;
};

class create_context_worker : public promise_worker {
  public:
    create_context_worker(Napi::Env env, std::shared_ptr<model> m, context_params p) :
        promise_worker(env), model_(std::move(m)), params_(std::move(p)) {}

  protected:
    void run() override { context_ = std::make_shared<context>(model_, params_); }

    Napi::Value result(Napi::Env env) override { return AddonContext::wrap(env, std::move(context_)); }

  private:
    std::shared_ptr<model>   model_;
    context_params           params_;
    std::shared_ptr<context> context_;
};

// Base for operations on a context: holds it alive and clears its busy flag at the end.
class context_worker : public promise_worker {
  public:
    context_worker(Napi::Env env, std::shared_ptr<context> c, std::shared_ptr<std::atomic<bool>> busy) :
        promise_worker(env), context_(std::move(c)), busy_(std::move(busy)) {}

    ~context_worker() override { busy_->store(false); }

  protected:
    std::shared_ptr<context>           context_;
    std::shared_ptr<std::atomic<bool>> busy_;
};

class decode_worker : public context_worker {
  public:
    using context_worker::context_worker;
    std::vector<int32_t> tokens;
    std::vector<float>   embeddings;
    std::vector<int32_t> positions;
    int32_t              n_embd      = 0;
    int32_t              pos0        = 0;
    int32_t              seq         = 0;
    bool                 causal      = true;
    logits_mode          logits      = logits_mode::none;
    bool                 hidden      = false;
    int32_t              sample_slot = -1;

  protected:
    void run() override {
        if (!tokens.empty()) {
            result_ = context_->decode_tokens(tokens, pos0, seq, logits, cancel_flag(), hidden);
        } else {
            result_ = context_->decode_embeddings(embeddings, n_embd, positions, pos0, seq, causal, logits,
                                                  cancel_flag(), hidden);
        }
        if (sample_slot >= 0) {
            result_.token = context_->sample(sample_slot);
        }
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("nVocab", result_.n_vocab);
        o.Set("logits", logits == logits_mode::none ? env.Undefined() : to_float32_array(env, result_.logits));
        if (hidden) {
            o.Set("hidden", to_float32_array(env, result_.hidden));
        }
        if (sample_slot >= 0) {
            o.Set("token", result_.token);
        }
        return o;
    }

  private:
    decode_result result_;
};

class embed_worker : public context_worker {
  public:
    using context_worker::context_worker;
    std::vector<int32_t> tokens;

  protected:
    void        run() override { result_ = context_->embed(tokens, cancel_flag()); }
    Napi::Value result(Napi::Env env) override { return to_float32_array(env, result_); }

  private:
    std::vector<float> result_;
};

class save_state_worker : public context_worker {
  public:
    using context_worker::context_worker;
    int32_t seq = -1;

  protected:
    void        run() override { data_ = context_->save_state(seq); }
    Napi::Value result(Napi::Env env) override { return Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()); }

  private:
    std::vector<uint8_t> data_;
};

class load_state_worker : public context_worker {
  public:
    using context_worker::context_worker;
    std::vector<uint8_t> data;
    int32_t              seq = -1;

  protected:
    void        run() override { context_->load_state(data, seq); }
    Napi::Value result(Napi::Env env) override { return env.Undefined(); }
};

// Generation streams tokens to JS through a thread-safe function. Tokens produced faster than
// one per millisecond are delivered together (one wake-up of the JS thread for several tokens:
// on small machines each wake-up costs the compute threads time). The promise is settled from
// the same queue, after the last token, so JS never sees the end before all tokens.
class generate_worker : public Napi::AsyncWorker {
  public:
    generate_worker(Napi::Env env, std::shared_ptr<context> c, std::shared_ptr<std::atomic<bool>> busy,
                    generate_params p, Napi::Function on_token) :
        Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        cancelled_(std::make_shared<std::atomic<bool>>(false)),
        context_(std::move(c)),
        busy_(std::move(busy)),
        params_(std::move(p)) {
        tsfn_ = Napi::ThreadSafeFunction::New(env, on_token, "mm-generate", 0, 1);
        SuppressDestruct();
    }

    Napi::Object start(Napi::Env env) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("promise", deferred_.Promise());
        std::shared_ptr<std::atomic<bool>> flag = cancelled_;
        out.Set("cancel", Napi::Function::New(env, [flag](const Napi::CallbackInfo &) { flag->store(true); }));
        Queue();
        return out;
    }

  protected:
    using clock = std::chrono::steady_clock;

    struct token_event {
        int32_t     token;
        std::string piece;
    };

    void Execute() override {
        try {
            abort_guard   guard;
            const model & m = context_->get_model();
            result_         = context_->generate(
                        params_, [&](int32_t tok) { emit(tok, m.token_piece(tok, false)); }, cancelled_.get());
        } catch (const error & e) {
            failed_  = true;
            code_    = e.code();
            message_ = e.what();
        } catch (const std::bad_alloc &) {
            failed_  = true;
            code_    = error_code::out_of_memory;
            message_ = "out of memory";
        } catch (const std::exception & e) {
            failed_  = true;
            code_    = error_code::internal;
            message_ = e.what();
        }
    }

    void OnOK() override { finish(); }

    void OnError(const Napi::Error &) override { finish(); }

  private:
    // Worker thread: queue the token; wake JS unless a wake-up is pending or was sent < 1 ms ago
    // (then the next token, or the end, carries it).
    void emit(int32_t tok, std::string piece) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            pending_.push_back({tok, std::move(piece)});
            if (scheduled_ || clock::now() - last_flush_ < std::chrono::milliseconds(1)) {
                return;
            }
            scheduled_ = true;
        }
        tsfn_.NonBlockingCall(this, [](Napi::Env env, Napi::Function fn, generate_worker * w) { w->flush(env, fn); });
    }

    // JS thread: hand every queued token to the callback.
    void flush(Napi::Env env, Napi::Function fn) {
        std::vector<token_event> batch;
        {
            std::lock_guard<std::mutex> lock(mu_);
            batch.swap(pending_);
            scheduled_  = false;
            last_flush_ = clock::now();
        }
        if (env == nullptr) {
            return;
        }
        Napi::HandleScope scope(env);
        for (const auto & ev : batch) {
            try {
                fn.Call({Napi::Number::New(env, ev.token),
                         Napi::Buffer<char>::Copy(env, ev.piece.data(), ev.piece.size())});
            } catch (const Napi::Error &) {
                // the JS callback threw; the generation itself goes on and settles normally
            }
        }
    }

    // JS thread (OnOK/OnError): queue the final flush + settle behind every pending wake-up.
    void finish() {
        tsfn_.BlockingCall(this, [](Napi::Env env, Napi::Function fn, generate_worker * w) {
            w->flush(env, fn);
            if (env != nullptr) {
                Napi::HandleScope scope(env);
                w->settle(env);
            }
            w->busy_->store(false);
            delete w;
        });
        tsfn_.Release();
    }

    void settle(Napi::Env env) {
        if (failed_) {
            deferred_.Reject(make_error(env, code_, message_).Value());
            return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("tokens", to_int32_array(env, result_.tokens));
        o.Set("nDecoded", result_.n_decoded);
        o.Set("nPrompt", result_.n_prompt);
        o.Set("stopReason", result_.stop_reason);
        o.Set("prefillMs", result_.prefill_ms);
        o.Set("decodeMs", result_.decode_ms);
        deferred_.Resolve(o);
    }

    Napi::Promise::Deferred            deferred_;
    std::shared_ptr<std::atomic<bool>> cancelled_;
    std::shared_ptr<context>           context_;
    std::shared_ptr<std::atomic<bool>> busy_;
    generate_params                    params_;
    Napi::ThreadSafeFunction           tsfn_;
    generate_result                    result_;
    bool                               failed_ = false;
    error_code                         code_   = error_code::internal;
    std::string                        message_;
    std::mutex                         mu_;
    std::vector<token_event>           pending_;
    bool                               scheduled_ = false;
    clock::time_point                  last_flush_{};
};

// probeModel(path, { vocabOnly }) -> { promise, cancel }: load, describe, free.
class probe_model_worker : public promise_worker {
  public:
    probe_model_worker(Napi::Env env, std::string path, bool vocab_only) :
        promise_worker(env), path_(std::move(path)), vocab_only_(vocab_only) {}

  protected:
    void run() override {
        model_load_params p;
        p.vocab_only = vocab_only_;
        p.cancel     = cancel_flag();
        model_       = model::load(path_, p);
    }

    Napi::Value result(Napi::Env env) override;

  private:
    std::string            path_;
    bool                   vocab_only_;
    std::shared_ptr<model> model_;
};

Napi::Object describe(Napi::Env env, const model & m, bool vocab_only) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("architecture", m.architecture());
    o.Set("description", m.description());
    o.Set("chatTemplate", m.chat_template());
    o.Set("nParams", Napi::Number::New(env, static_cast<double>(m.n_params())));
    o.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(m.size_bytes())));
    o.Set("nEmbd", m.n_embd());
    o.Set("nEmbdInp", m.n_embd_inp());
    o.Set("nLayer", m.n_layer());
    o.Set("nExpert", m.n_expert());
    o.Set("nExpertUsed", m.n_expert_used());
    o.Set("nCtxTrain", m.n_ctx_train());
    o.Set("nVocab", m.n_vocab());
    o.Set("nPosPerEmbd", m.n_pos_per_embd());
    o.Set("tokenBos", m.token_bos());
    o.Set("tokenEos", m.token_eos());
    o.Set("tokenEot", m.token_eot());
    o.Set("addBos", m.add_bos());
    o.Set("addEos", m.add_eos());
    o.Set("hasEncoder", m.has_encoder());
    o.Set("vocabOnly", vocab_only);
    return o;
}

Napi::Value probe_model_worker::result(Napi::Env env) {
    Napi::Object o = describe(env, *model_, vocab_only_);
    model_.reset();
    return o;
}

Napi::Value probe_model_js(const Napi::CallbackInfo & info) {
    Napi::Env   env        = info.Env();
    std::string path       = require_string(info, 0, "path");
    bool        vocab_only = optional_bool(object_arg(info, 1), "vocabOnly", false);
    return promise_worker::start(env, new probe_model_worker(env, std::move(path), vocab_only));
}

// loadModel(path, { gpuLayers, mmap, vocabOnly, rpc? }, onProgress?) -> { promise<AddonModel>, cancel }
Napi::Value load_model_js(const Napi::CallbackInfo & info) {
    Napi::Env         env  = info.Env();
    std::string       path = require_string(info, 0, "path");
    Napi::Object      o    = object_arg(info, 1);
    model_load_params p;
    p.gpu_layers = get_i32(o, "gpuLayers", 0);
    p.use_mmap   = optional_bool(o, "mmap", true);
    p.vocab_only = optional_bool(o, "vocabOnly", false);
    if (o.Has("rpc") && !o.Get("rpc").IsUndefined()) {
        if (!o.Get("rpc").IsArray()) {
            throw_error(env, error_code::invalid_argument, "rpc must be an array of 'host:port' strings");
        }
        Napi::Array rpc = o.Get("rpc").As<Napi::Array>();
        for (uint32_t i = 0; i < rpc.Length(); ++i) {
            if (!rpc.Get(i).IsString()) {
                throw_error(env, error_code::invalid_argument, "rpc must be an array of 'host:port' strings");
            }
            p.rpc.push_back(rpc.Get(i).As<Napi::String>().Utf8Value());
            check_rpc_endpoint(p.rpc.back());
        }
    }
    Napi::Value progress = info.Length() > 2 ? info[2] : env.Undefined();
    return promise_worker::start(env, new load_model_worker(env, std::move(path), std::move(p), progress));
}

// jsonSchemaToGrammar(schemaJson: string) -> GBNF string (llama.cpp's converter)
Napi::Value json_schema_to_grammar_js(const Napi::CallbackInfo & info) {
    std::string schema = require_string(info, 0, "schema");
    return Napi::String::New(info.Env(), json_schema_grammar(schema));
}

}  // namespace

// For addon_scheduler.cpp: the same sampling arguments as generate().
sampling_params sampling_from_js(const Napi::Object & o) {
    return sampling_arg(o);
}

// ---- AddonModel ----------------------------------------------------------------------

Napi::Function AddonModel::define(Napi::Env env) {
    Napi::Function f =
        DefineClass(env, "AddonModel",
                    {
                        InstanceMethod("info", &AddonModel::guarded<&AddonModel::info>),
                        InstanceMethod("tokenize", &AddonModel::guarded<&AddonModel::tokenize>),
                        InstanceMethod("detokenize", &AddonModel::guarded<&AddonModel::detokenize>),
                        InstanceMethod("tokenPiece", &AddonModel::guarded<&AddonModel::token_piece>),
                        InstanceMethod("tokenAttr", &AddonModel::guarded<&AddonModel::token_attr>),
                        InstanceMethod("lookupToken", &AddonModel::guarded<&AddonModel::lookup_token>),
                        InstanceMethod("tokenRows", &AddonModel::guarded<&AddonModel::token_rows>),
                        InstanceMethod("applyChatTemplate", &AddonModel::guarded<&AddonModel::apply_chat_template>),
                        InstanceMethod("createContext", &AddonModel::guarded<&AddonModel::create_context>),
                        InstanceMethod("dispose", &AddonModel::guarded<&AddonModel::dispose>),
                    });
    ctors(env).model = Napi::Persistent(f);
    return f;
}

Napi::Object AddonModel::wrap(Napi::Env env, std::shared_ptr<model> m) {
    Napi::Object obj    = ctors(env).model.New({});
    Unwrap(obj)->model_ = std::move(m);
    return obj;
}

bool AddonModel::is(Napi::Env env, Napi::Value v) {
    return v.IsObject() && !ctors(env).model.IsEmpty() && v.As<Napi::Object>().InstanceOf(ctors(env).model.Value());
}

AddonModel::AddonModel(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonModel>(info) {}

std::shared_ptr<model> AddonModel::get(Napi::Env env) const {
    if (!model_) {
        throw_error(env, error_code::disposed, "the model was used after dispose()");
    }
    return model_;
}

Napi::Value AddonModel::info(const Napi::CallbackInfo & info) {
    auto m = get(info.Env());
    return describe(info.Env(), *m, false);
}

// tokenize(text, addSpecial, parseSpecial) -> Int32Array
Napi::Value AddonModel::tokenize(const Napi::CallbackInfo & info) {
    auto        m             = get(info.Env());
    std::string text          = require_string(info, 0, "text");
    bool        add_special   = info.Length() > 1 && info[1].ToBoolean().Value();
    bool        parse_special = info.Length() > 2 && info[2].ToBoolean().Value();
    return to_int32_array(info.Env(), m->tokenize(text, add_special, parse_special));
}

// detokenize(Int32Array, removeSpecial, unparseSpecial) -> string
Napi::Value AddonModel::detokenize(const Napi::CallbackInfo & info) {
    auto                 m = get(info.Env());
    std::vector<int32_t> tokens =
        tokens_arg(info.Env(), info.Length() > 0 ? info[0] : info.Env().Undefined(), "tokens");
    bool remove_special  = info.Length() > 1 && info[1].ToBoolean().Value();
    bool unparse_special = info.Length() > 2 && info[2].ToBoolean().Value();
    return Napi::String::New(info.Env(), m->detokenize(tokens.data(), tokens.size(), remove_special, unparse_special));
}

// tokenPiece(token, special) -> Buffer (raw bytes; may be a partial UTF-8 sequence)
Napi::Value AddonModel::token_piece(const Napi::CallbackInfo & info) {
    auto m = get(info.Env());
    if (info.Length() < 1 || !info[0].IsNumber()) {
        throw_error(info.Env(), error_code::invalid_argument, "token must be a number");
    }
    std::string piece =
        m->token_piece(info[0].As<Napi::Number>().Int32Value(), info.Length() > 1 && info[1].ToBoolean().Value());
    return Napi::Buffer<char>::Copy(info.Env(), piece.data(), piece.size());
}

// lookupToken(text) -> the first token whose piece is exactly `text`, or -1
Napi::Value AddonModel::lookup_token(const Napi::CallbackInfo & info) {
    auto m = get(info.Env());
    return Napi::Number::New(info.Env(), m->lookup_token(require_string(info, 0, "text")));
}

// tokenRows(Int32Array) -> Float32Array [n][n_embd]: the tokens' input-embedding rows
Napi::Value AddonModel::token_rows(const Napi::CallbackInfo & info) {
    auto                 m = get(info.Env());
    std::vector<int32_t> tokens =
        tokens_arg(info.Env(), info.Length() > 0 ? info[0] : info.Env().Undefined(), "tokens");
    return to_float32_array(info.Env(), m->token_rows(tokens));
}

// tokenAttr(token) -> { attr, eog }
Napi::Value AddonModel::token_attr(const Napi::CallbackInfo & info) {
    auto m = get(info.Env());
    if (info.Length() < 1 || !info[0].IsNumber()) {
        throw_error(info.Env(), error_code::invalid_argument, "token must be a number");
    }
    int32_t      t = info[0].As<Napi::Number>().Int32Value();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("attr", m->token_attr(t));
    o.Set("eog", m->is_eog(t));
    return o;
}

// applyChatTemplate([{ role, content }], addGenerationPrompt, templateOverride, jinja = true) -> string
Napi::Value AddonModel::apply_chat_template(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      m   = get(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
        throw_error(env, error_code::invalid_argument, "messages must be an array");
    }
    Napi::Array               arr = info[0].As<Napi::Array>();
    std::vector<chat_message> messages;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value v = arr.Get(i);
        if (!v.IsObject()) {
            throw_error(env, error_code::invalid_argument, "messages[" + std::to_string(i) + "] must be an object");
        }
        Napi::Object o = v.As<Napi::Object>();
        messages.push_back({get_str(o, "role", ""), get_str(o, "content", "")});
    }
    bool        add_gen = info.Length() < 2 || info[1].ToBoolean().Value();
    std::string tmpl    = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    bool        jinja   = info.Length() < 4 || info[3].ToBoolean().Value();
    return Napi::String::New(env, m->apply_chat_template(messages, add_gen, tmpl, jinja));
}

// createContext({ contextSize, batchSize, ubatchSize, sequences, threads, flashAttention, typeK, typeV,
//                 embeddings, pooling }) -> { promise<AddonContext>, cancel }
Napi::Value AddonModel::create_context(const Napi::CallbackInfo & info) {
    Napi::Env      env = info.Env();
    auto           m   = get(env);
    Napi::Object   o   = object_arg(info, 0);
    context_params p;
    p.n_ctx         = get_u32(o, "contextSize", 0);
    p.n_batch       = get_u32(o, "batchSize", 512);
    p.n_ubatch      = get_u32(o, "ubatchSize", p.n_batch);
    p.n_seq_max     = get_u32(o, "sequences", 1);
    p.n_threads     = get_i32(o, "threads", 0);
    p.flash_attn    = get_i32(o, "flashAttention", -1);
    p.type_k        = get_str(o, "typeK", "f16");
    p.type_v        = get_str(o, "typeV", "f16");
    p.embeddings    = optional_bool(o, "embeddings", false);
    p.hidden_states = optional_bool(o, "hiddenStates", false);
    p.pooling       = get_i32(o, "pooling", -1);
    return promise_worker::start(env, new create_context_worker(env, std::move(m), std::move(p)));
}

Napi::Value AddonModel::dispose(const Napi::CallbackInfo & info) {
    model_.reset();
    return info.Env().Undefined();
}

// ---- AddonContext --------------------------------------------------------------------

Napi::Function AddonContext::define(Napi::Env env) {
    Napi::Function f   = DefineClass(env, "AddonContext",
                                     {
                                         InstanceMethod("info", &AddonContext::guarded<&AddonContext::info>),
                                         InstanceMethod("decode", &AddonContext::guarded<&AddonContext::decode>),
                                         InstanceMethod("setSampler", &AddonContext::guarded<&AddonContext::set_sampler>),
                                         InstanceMethod("generate", &AddonContext::guarded<&AddonContext::generate>),
                                         InstanceMethod("embed", &AddonContext::guarded<&AddonContext::embed>),
                                         InstanceMethod("clear", &AddonContext::guarded<&AddonContext::clear>),
                                         InstanceMethod("remove", &AddonContext::guarded<&AddonContext::remove>),
                                         InstanceMethod("copy", &AddonContext::guarded<&AddonContext::copy>),
                                         InstanceMethod("posMax", &AddonContext::guarded<&AddonContext::pos_max>),
                                         InstanceMethod("saveState", &AddonContext::guarded<&AddonContext::save_state>),
                                         InstanceMethod("loadState", &AddonContext::guarded<&AddonContext::load_state>),
                                         InstanceMethod("dispose", &AddonContext::guarded<&AddonContext::dispose>),
                                   });
    ctors(env).context = Napi::Persistent(f);
    return f;
}

Napi::Object AddonContext::wrap(Napi::Env env, std::shared_ptr<context> c) {
    Napi::Object obj      = ctors(env).context.New({});
    Unwrap(obj)->context_ = std::move(c);
    return obj;
}

AddonContext::AddonContext(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonContext>(info) {}

std::shared_ptr<context> AddonContext::get(Napi::Env env) const {
    if (!context_) {
        throw_error(env, error_code::disposed, "the context was used after dispose()");
    }
    if (busy_->load()) {
        throw_error(env, error_code::invalid_argument, "the context is busy with another operation");
    }
    return context_;
}

std::shared_ptr<context> AddonContext::begin(Napi::Env env) {
    auto c = get(env);
    busy_->store(true);
    return c;
}

Napi::Value AddonContext::info(const Napi::CallbackInfo & info) {
    if (!context_) {
        throw_error(info.Env(), error_code::disposed, "the context was used after dispose()");
    }
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("contextSize", context_->n_ctx());
    o.Set("batchSize", context_->n_batch());
    o.Set("sequences", context_->n_seq_max());
    return o;
}

// setSampler(slot, sampling | null): a sampler kept in a slot for decode({ sampleSlot })
Napi::Value AddonContext::set_sampler(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      c   = get(env);
    if (busy_->load()) {
        throw_error(env, error_code::invalid_argument, "the context is busy with another operation");
    }
    if (info.Length() < 1 || !info[0].IsNumber()) {
        throw_error(env, error_code::invalid_argument, "slot must be a number");
    }
    const int32_t slot = info[0].As<Napi::Number>().Int32Value();
    if (info.Length() > 1 && info[1].IsObject()) {
        sampling_params p = sampling_arg(info[1].As<Napi::Object>());
        c->set_sampler(slot, &p);
    } else {
        c->set_sampler(slot, nullptr);
    }
    return env.Undefined();
}

// decode({ tokens } | { embeddings, nEmbd, positions?, causal? }, pos0, seq, logits) -> { promise, cancel }
Napi::Value AddonContext::decode(const Napi::CallbackInfo & info) {
    Napi::Env                      env = info.Env();
    Napi::Object                   o   = object_arg(info, 0);
    auto                           c   = get(env);
    auto *                         w   = new decode_worker(env, c, busy_);
    std::unique_ptr<decode_worker> guard(w);
    Napi::Value                    tokens = o.Get("tokens");
    if (!tokens.IsUndefined()) {
        w->tokens = tokens_arg(env, tokens, "tokens");
    } else {
        Napi::Value e = o.Get("embeddings");
        if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
            throw_error(env, error_code::invalid_argument, "embeddings must be a Float32Array");
        }
        auto arr      = e.As<Napi::Float32Array>();
        w->embeddings = std::vector<float>(arr.Data(), arr.Data() + arr.ElementLength());
        w->n_embd     = get_i32(o, "nEmbd", 0);
        if (!o.Get("positions").IsUndefined()) {
            w->positions = tokens_arg(env, o.Get("positions"), "positions");
        }
        w->causal = optional_bool(o, "causal", true);
    }
    w->pos0        = get_i32(o, "pos0", 0);
    w->seq         = get_i32(o, "seq", 0);
    w->logits      = logits_arg(o);
    w->hidden      = optional_bool(o, "hidden", false);
    w->sample_slot = get_i32(o, "sampleSlot", -1);
    if (w->sample_slot >= 0 && w->logits != logits_mode::last) {
        throw_error(env, error_code::invalid_argument, "sampling needs logits: 'last'");
    }
    busy_->store(true);
    return promise_worker::start(env, guard.release());
}

// generate({ prompt: Int32Array, pos0, seq, maxTokens, ignoreEog, sampling }, onToken) -> { promise, cancel }
Napi::Value AddonContext::generate(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    Napi::Object o   = object_arg(info, 0);
    if (info.Length() < 2 || !info[1].IsFunction()) {
        throw_error(env, error_code::invalid_argument, "onToken must be a function");
    }
    auto            c = get(env);
    generate_params p;
    if (!o.Get("prompt").IsUndefined()) {
        p.prompt = tokens_arg(env, o.Get("prompt"), "prompt");
    }
    p.pos0        = get_i32(o, "pos0", 0);
    p.seq         = get_i32(o, "seq", 0);
    p.max_tokens  = get_i32(o, "maxTokens", 256);
    p.ignore_eog  = optional_bool(o, "ignoreEog", false);
    Napi::Value s = o.Get("sampling");
    if (s.IsObject()) {
        p.sampling = sampling_arg(s.As<Napi::Object>());
    }
    busy_->store(true);
    auto * w = new generate_worker(env, c, busy_, std::move(p), info[1].As<Napi::Function>());
    return w->start(env);
}

// embed(tokens) -> { promise<Float32Array>, cancel }
Napi::Value AddonContext::embed(const Napi::CallbackInfo & info) {
    Napi::Env                     env = info.Env();
    auto                          c   = get(env);
    auto *                        w   = new embed_worker(env, c, busy_);
    std::unique_ptr<embed_worker> guard(w);
    w->tokens = tokens_arg(env, info.Length() > 0 ? info[0] : env.Undefined(), "tokens");
    busy_->store(true);
    return promise_worker::start(env, guard.release());
}

Napi::Value AddonContext::clear(const Napi::CallbackInfo & info) {
    get(info.Env())->clear();
    return info.Env().Undefined();
}

// remove(seq, p0, p1) -> boolean (seq -1: all sequences; p0/p1 -1: open ends)
Napi::Value AddonContext::remove(const Napi::CallbackInfo & info) {
    auto    c   = get(info.Env());
    int32_t seq = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
    int32_t p0  = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
    int32_t p1  = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
    return Napi::Boolean::New(info.Env(), c->remove(seq, p0, p1));
}

// copy(src, dst, p0, p1)
Napi::Value AddonContext::copy(const Napi::CallbackInfo & info) {
    auto    c   = get(info.Env());
    int32_t src = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    int32_t dst = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    int32_t p0  = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
    int32_t p1  = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
    c->copy(src, dst, p0, p1);
    return info.Env().Undefined();
}

Napi::Value AddonContext::pos_max(const Napi::CallbackInfo & info) {
    auto    c   = get(info.Env());
    int32_t seq = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    return Napi::Number::New(info.Env(), c->pos_max(seq));
}

// saveState(seq) -> { promise<Buffer>, cancel }
Napi::Value AddonContext::save_state(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      c   = get(env);
    auto *    w   = new save_state_worker(env, c, busy_);
    w->seq        = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
    busy_->store(true);
    return promise_worker::start(env, w);
}

// loadState(buffer, seq) -> { promise<void>, cancel }
Napi::Value AddonContext::load_state(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      c   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
        throw_error(env, error_code::invalid_argument, "state must be a Buffer or Uint8Array");
    }
    auto   arr = info[0].As<Napi::Uint8Array>();
    auto * w   = new load_state_worker(env, c, busy_);
    w->data.assign(arr.Data(), arr.Data() + arr.ByteLength());
    w->seq = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
    busy_->store(true);
    return promise_worker::start(env, w);
}

Napi::Value AddonContext::dispose(const Napi::CallbackInfo & info) {
    context_.reset();
    return info.Env().Undefined();
}

void register_backbone(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonModel", AddonModel::define(env));
    exports.Set("AddonContext", AddonContext::define(env));
    exports.Set("loadModel", Napi::Function::New(env, guarded<load_model_js>, "loadModel"));
    exports.Set("probeModel", Napi::Function::New(env, guarded<probe_model_js>, "probeModel"));
    exports.Set("jsonSchemaToGrammar",
                Napi::Function::New(env, guarded<json_schema_to_grammar_js>, "jsonSchemaToGrammar"));
}

}  // namespace mm::napi
