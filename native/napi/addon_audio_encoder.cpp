// AddonAudioEncoder: loadAudioEncoder, info, encode (mono PCM at the tower's rate -> one Features
// per 30 s mel chunk).
#include <chrono>
#include <string>
#include <vector>

#include "addon_vision.h"

namespace mm::napi {

namespace {

class load_audio_encoder_worker : public promise_worker {
  public:
    load_audio_encoder_worker(Napi::Env env, std::string path, audio_encoder_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        encoder_       = audio_encoder::load(path_, params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonAudioEncoder::wrap(env, std::move(encoder_)); }

  private:
    std::string                    path_;
    audio_encoder_params           params_;
    std::shared_ptr<audio_encoder> encoder_;
};

class audio_encode_worker : public promise_worker {
  public:
    audio_encode_worker(Napi::Env env, std::shared_ptr<audio_encoder> e, std::vector<float> pcm) :
        promise_worker(env), encoder_(std::move(e)), pcm_(std::move(pcm)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        audio_encode_timings t;
        for (token_matrix & m : encoder_->encode(pcm_.data(), pcm_.size(), cancel_flag(), &t)) {
            features_.push_back(std::make_shared<token_matrix>(std::move(m)));
        }
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        mel_ms_    = t.mel_ms;
        encode_ms_ = t.encode_ms;
        encoder_.reset();
        pcm_.clear();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("features", AddonTensor::wrap_all(env, std::move(features_)));
        o.Set("melMs", mel_ms_);
        o.Set("encodeMs", encode_ms_);
        return o;
    }

  private:
    std::shared_ptr<audio_encoder>                   encoder_;
    std::vector<float>                               pcm_;
    std::vector<std::shared_ptr<const token_matrix>> features_;
    double                                           mel_ms_    = 0;
    double                                           encode_ms_ = 0;
};

// loadAudioEncoder(path, { threads, gpu, rpc?, flashAttn: 'auto' | 'on' | 'off' }) -> op<AddonAudioEncoder>
Napi::Value load_audio_encoder_js(const Napi::CallbackInfo & info) {
    Napi::Env            env  = info.Env();
    std::string          path = require_string(info, 0, "path");
    Napi::Object         o    = object_arg(info, 1);
    audio_encoder_params p;
    p.n_threads  = threads_opt(env, o);
    p.use_gpu    = optional_bool(o, "gpu", true);
    p.rpc        = rpc_endpoint_opt(o);
    p.flash_attn = flash_attn_arg(env, o);
    return promise_worker::start(env, new load_audio_encoder_worker(env, std::move(path), p));
}

}  // namespace

Napi::Function AddonAudioEncoder::define(Napi::Env env) {
    using E                   = AddonAudioEncoder;
    Napi::Function f          = DefineClass(env, "AddonAudioEncoder",
                                            {
                                                InstanceMethod("info", &E::guarded<&E::info>),
                                                InstanceMethod("encode", &E::guarded<&E::encode>),
                                                InstanceMethod("dispose", &E::guarded<&E::dispose>),
                                   });
    vctors(env).audio_encoder = Napi::Persistent(f);
    return f;
}

Napi::Object AddonAudioEncoder::wrap(Napi::Env env, std::shared_ptr<audio_encoder> e) {
    Napi::Object obj      = vctors(env).audio_encoder.New({});
    Unwrap(obj)->encoder_ = std::move(e);
    return obj;
}

AddonAudioEncoder::AddonAudioEncoder(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonAudioEncoder>(info) {}

std::shared_ptr<audio_encoder> AddonAudioEncoder::get(Napi::Env env) const {
    if (!encoder_) {
        throw_error(env, error_code::disposed, "the audio encoder was used after dispose()");
    }
    return encoder_;
}

Napi::Value AddonAudioEncoder::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         e   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    o.Set("family", "whisper");
    set_vision_facts(env, o, e->hparams());
    o.Set("flashAttn", e->flash_attn());
    o.Set("backend", e->backend_name());
    o.Set("nThreads", e->n_threads());
    o.Set("weightsBytes", Napi::Number::New(env, static_cast<double>(e->weights_bytes())));
    return o;
}

// encode(pcm: Float32Array) -> op<{ features: AddonTensor[], melMs, encodeMs }>
Napi::Value AddonAudioEncoder::encode(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pcm must be a Float32Array");
    }
    auto a = info[0].As<Napi::Float32Array>();
    if (a.ElementLength() == 0) {
        throw_error(env, error_code::invalid_argument, "pcm is empty (no samples)");
    }
    std::vector<float> pcm(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new audio_encode_worker(env, std::move(e), std::move(pcm)));
}

Napi::Value AddonAudioEncoder::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    encoder_.reset();
    return info.Env().Undefined();
}

void register_audio_encoder(Napi::Env env, Napi::Object exports) {
    exports.Set("loadAudioEncoder", Napi::Function::New(env, guarded<load_audio_encoder_js>, "loadAudioEncoder"));
}

}  // namespace mm::napi
