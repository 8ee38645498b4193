// N-API classes of @mm/encoders and @mm/projectors: AddonVisionEncoder, AddonProjector and
// AddonTensor (a Features or Embeddings matrix owned by native code). Thin: argument conversion and
// workers only; the logic is in src/encoders/ and src/projectors/.
#pragma once

#include <napi.h>

#include <memory>

#include "encoders/token_matrix.h"
#include "encoders/vision_encoder.h"
#include "projectors/projector.h"

namespace mm::napi {

class AddonVisionEncoder : public Napi::ObjectWrap<AddonVisionEncoder> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<vision_encoder> e);
    explicit AddonVisionEncoder(const Napi::CallbackInfo & info);

  private:
    std::shared_ptr<vision_encoder> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value preprocess(const Napi::CallbackInfo & info);
    Napi::Value encode(const Napi::CallbackInfo & info);
    Napi::Value encode_pixels(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<vision_encoder> encoder_;
};

class AddonProjector : public Napi::ObjectWrap<AddonProjector> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<projector> p);
    explicit AddonProjector(const Napi::CallbackInfo & info);

  private:
    std::shared_ptr<projector> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value project(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<projector> projector_;
};

// A [nTokens, nEmbd] f32 matrix held natively (shared, immutable).
class AddonTensor : public Napi::ObjectWrap<AddonTensor> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<const token_matrix> m);
    static bool           is(Napi::Env env, Napi::Value v);
    explicit AddonTensor(const Napi::CallbackInfo & info);

    std::shared_ptr<const token_matrix> get(Napi::Env env) const;

  private:
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value to_float32_array(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<const token_matrix> matrix_;
};

void register_vision(Napi::Env env, Napi::Object exports);

}  // namespace mm::napi
