// N-API classes of the backbone: AddonModel (a loaded text model) and AddonContext (a KV cache
// over it). Thin: argument conversion and workers only; the logic is in src/backbone/.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "backbone/context.h"
#include "backbone/model.h"
#include "napi_util.h"

namespace mm::napi {

class AddonModel : public Napi::ObjectWrap<AddonModel> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<model> m);
    // Whether `v` is an AddonModel of this environment (other glue takes model handles).
    static bool is(Napi::Env env, Napi::Value v);
    explicit AddonModel(const Napi::CallbackInfo & info);

    std::shared_ptr<model> get(Napi::Env env) const;

  private:
    MM_GUARDED_METHODS(AddonModel)

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value tokenize(const Napi::CallbackInfo & info);
    Napi::Value detokenize(const Napi::CallbackInfo & info);
    Napi::Value token_piece(const Napi::CallbackInfo & info);
    Napi::Value lookup_token(const Napi::CallbackInfo & info);
    Napi::Value token_rows(const Napi::CallbackInfo & info);
    Napi::Value token_attr(const Napi::CallbackInfo & info);
    Napi::Value apply_chat_template(const Napi::CallbackInfo & info);
    Napi::Value create_context(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<model> model_;
};

// Sampling parameters from a JS object ({ temperature, topK, ..., grammar }), as generate() reads them.
sampling_params sampling_from_js(const Napi::Object & o);

class AddonContext : public Napi::ObjectWrap<AddonContext> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<context> c);
    explicit AddonContext(const Napi::CallbackInfo & info);

  private:
    friend class AddonScheduler;  // addon_scheduler.cpp: the batching thread over this context
    MM_GUARDED_METHODS(AddonContext)
    std::shared_ptr<context> get(Napi::Env env) const;
    std::shared_ptr<context> begin(Napi::Env env);  // for async operations: marks the context busy

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value decode(const Napi::CallbackInfo & info);
    Napi::Value set_sampler(const Napi::CallbackInfo & info);
    Napi::Value generate(const Napi::CallbackInfo & info);
    Napi::Value embed(const Napi::CallbackInfo & info);
    Napi::Value clear(const Napi::CallbackInfo & info);
    Napi::Value remove(const Napi::CallbackInfo & info);
    Napi::Value copy(const Napi::CallbackInfo & info);
    Napi::Value pos_max(const Napi::CallbackInfo & info);
    Napi::Value save_state(const Napi::CallbackInfo & info);
    Napi::Value load_state(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<context>           context_;
    std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace mm::napi
