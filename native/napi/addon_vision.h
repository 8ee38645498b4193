// N-API classes of @mm/encoders and @mm/projectors, one file each: AddonVisionEncoder
// (addon_encoder.cpp), AddonProjector (addon_projector.cpp) and AddonTensor (addon_tensor.cpp: a
// Features or Embeddings matrix owned by native code); image functions in addon_image.cpp and the
// helpers they share in addon_media.cpp. Thin: argument conversion and workers only; the logic is
// in src/encoders/ and src/projectors/. Every entry point runs inside guard(): C++ exceptions
// (std::bad_alloc included) become JS errors with a code.
#pragma once

#include <napi.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "encoders/audio/audio_encoder.h"
#include "encoders/image.h"
#include "encoders/preprocess.h"
#include "encoders/vision_encoder.h"
#include "graph/token_matrix.h"
#include "napi_util.h"
#include "projectors/projector.h"

namespace mm::napi {

class AddonVisionEncoder : public Napi::ObjectWrap<AddonVisionEncoder> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<vision_encoder> e);
    explicit AddonVisionEncoder(const Napi::CallbackInfo & info);
    MM_GUARDED_METHODS(AddonVisionEncoder)
    // The encoder behind a JS handle (MM_INVALID_ARGUMENT when `v` is not one, MM_DISPOSED after
    // dispose()), for the projector's fused encode + project.
    static std::shared_ptr<vision_encoder> from(Napi::Env env, Napi::Value v);

  private:
    std::shared_ptr<vision_encoder> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value preprocess(const Napi::CallbackInfo & info);
    Napi::Value encode(const Napi::CallbackInfo & info);
    Napi::Value encode_pixels(const Napi::CallbackInfo & info);
    Napi::Value encode_many(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<vision_encoder> encoder_;
};

class AddonAudioEncoder : public Napi::ObjectWrap<AddonAudioEncoder> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<audio_encoder> e);
    explicit AddonAudioEncoder(const Napi::CallbackInfo & info);
    MM_GUARDED_METHODS(AddonAudioEncoder)

  private:
    std::shared_ptr<audio_encoder> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value encode(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<audio_encoder> encoder_;
};

class AddonProjector : public Napi::ObjectWrap<AddonProjector> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<projector> p);
    explicit AddonProjector(const Napi::CallbackInfo & info);
    MM_GUARDED_METHODS(AddonProjector)

  private:
    std::shared_ptr<projector> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value project(const Napi::CallbackInfo & info);
    Napi::Value encode_project(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<projector> projector_;
};

// A [nTokens, nEmbd] f32 matrix held natively (shared, immutable), with its grid and causality.
class AddonTensor : public Napi::ObjectWrap<AddonTensor> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<const token_matrix> m);
    // One handle per matrix, in order (a worker's chunks), as a JS array.
    static Napi::Array wrap_all(Napi::Env env, std::vector<std::shared_ptr<const token_matrix>> && ms);
    static bool        is(Napi::Env env, Napi::Value v);
    explicit AddonTensor(const Napi::CallbackInfo & info);
    MM_GUARDED_METHODS(AddonTensor)

    std::shared_ptr<const token_matrix> get(Napi::Env env) const;

  private:
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value to_float32_array(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<const token_matrix> matrix_;
};

// ---- shared by the media glue (addon_media.cpp) ----------------------------------------------

// Constructors per environment (napi instance data is a single slot, used by the backbone glue).
struct vision_ctors {
    Napi::FunctionReference encoder;
    Napi::FunctionReference audio_encoder;
    Napi::FunctionReference projector;
    Napi::FunctionReference tensor;
};
vision_ctors & vctors(Napi::Env env);

double             ms_since(std::chrono::steady_clock::time_point t0);
Napi::Object       object_arg(const Napi::CallbackInfo & info, size_t i);
int32_t            require_int(const Napi::CallbackInfo & info, size_t i, const char * name, int64_t lo, int64_t hi);
rgb_image          rgb_args(const Napi::CallbackInfo & info, size_t i);
Napi::Float32Array float32_array_of(Napi::Env env, const std::vector<float> & v);
Napi::Object       image_object(Napi::Env env, const rgb_image & img);
Napi::Object       pixels_object(Napi::Env env, const pixel_input & p);
// { gridX, gridY, hasOverview }
Napi::Object           layout_object(Napi::Env env, const slice_layout & l);
resize_algo            algo_arg(Napi::Env env, const Napi::Object & o);
pad_style              pad_arg(Napi::Env env, const Napi::Object & o);
std::array<uint8_t, 3> color_arg(Napi::Env env, const Napi::Object & o, const char * key);
preprocess_params      preprocess_params_arg(Napi::Env env, const Napi::Object & o);
int                    threads_opt(Napi::Env env, const Napi::Object & o);
// o.flashAttn: 'auto' (default) -> -1, 'on' -> 1, 'off' -> 0; anything else MM_INVALID_ARGUMENT
int  flash_attn_arg(Napi::Env env, const Napi::Object & o);
void set_vision_facts(Napi::Env env, Napi::Object & o, const vision_hparams & hp);

// Module functions of each file.
void register_image(Napi::Env env, Napi::Object exports);
void register_encoder(Napi::Env env, Napi::Object exports);
void register_audio_encoder(Napi::Env env, Napi::Object exports);
void register_projector(Napi::Env env, Napi::Object exports);
void register_tensor(Napi::Env env, Napi::Object exports);
void register_vision(Napi::Env env, Napi::Object exports);
void register_train(Napi::Env env, Napi::Object exports);

}  // namespace mm::napi
