// AddonQwen3TtsGen: loadQwen3TtsGen, info, genCode (output projector), genWav (decoder), encodeSpeaker,
// dispose. Thin: argument conversion and one promise_worker per operation (abort through the
// worker's cancel flag); the model is src/decoders/qwen3tts.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "decoders/qwen3tts/qwen3tts_gen.h"
#include "napi_util.h"

namespace mm::napi {

class AddonQwen3TtsGen : public Napi::ObjectWrap<AddonQwen3TtsGen> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<qwen3tts_gen> g);
    explicit AddonQwen3TtsGen(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonQwen3TtsGen>(info) {}
    MM_GUARDED_METHODS(AddonQwen3TtsGen)

  private:
    std::shared_ptr<qwen3tts_gen> get(Napi::Env env) const {
        if (!gen_) {
            throw_error(env, error_code::disposed, "the Qwen3-TTS generator was used after dispose()");
        }
        return gen_;
    }

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value gen_code(const Napi::CallbackInfo & info);
    Napi::Value gen_wav(const Napi::CallbackInfo & info);
    Napi::Value encode_speaker(const Napi::CallbackInfo & info);
    Napi::Value forget_seed(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<qwen3tts_gen> gen_;
};

namespace {

env_ctor g_ctor;

Napi::FunctionReference & ctor(Napi::Env env) {
    return g_ctor.get(env);
}

Napi::Float32Array f32(Napi::Env env, const std::vector<float> & v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
}

int threads_arg(Napi::Env env, const Napi::Object & o) {
    Napi::Value v = o.Get("threads");
    if (v.IsUndefined()) {
        return 4;
    }
    if (!v.IsNumber()) {
        throw_error(env, error_code::invalid_argument, "threads must be an integer in [1, 512]");
    }
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 1 && d <= 512) || d != static_cast<int>(d)) {
        throw_error(env, error_code::invalid_argument, "threads must be an integer in [1, 512]");
    }
    return static_cast<int>(d);
}

class load_worker : public promise_worker {
  public:
    load_worker(Napi::Env env, std::string path, qwen3tts_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        gen_           = qwen3tts_gen::load(path_, params_);
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
    }

    Napi::Value result(Napi::Env env) override { return AddonQwen3TtsGen::wrap(env, std::move(gen_)); }

  private:
    std::string                   path_;
    qwen3tts_params               params_;
    std::shared_ptr<qwen3tts_gen> gen_;
};

class code_worker : public promise_worker {
  public:
    code_worker(Napi::Env env, std::shared_ptr<qwen3tts_gen> g, std::vector<float> hidden, int32_t code0, int32_t top_k,
                float top_p, float temp, uint32_t seed) :
        promise_worker(env),
        gen_(std::move(g)),
        hidden_(std::move(hidden)),
        code0_(code0),
        top_k_(top_k),
        top_p_(top_p),
        temp_(temp),
        seed_(seed) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        frame_ = gen_->gen_code(hidden_.data(), hidden_.size(), code0_, top_k_, top_p_, temp_, seed_, cancel_flag());
        gen_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object     o     = Napi::Object::New(env);
        Napi::Int32Array codes = Napi::Int32Array::New(env, frame_.codes.size());
        std::copy(frame_.codes.begin(), frame_.codes.end(), codes.Data());
        o.Set("codes", codes);
        o.Set("feats", env.Null());
        o.Set("embd", f32(env, frame_.embd));
        o.Set("isEos", false);
        return o;
    }

  private:
    std::shared_ptr<qwen3tts_gen> gen_;
    std::vector<float>            hidden_;
    int32_t                       code0_, top_k_;
    float                         top_p_, temp_;
    uint32_t                      seed_;
    qwen3tts_frame                frame_;
};

class wav_worker : public promise_worker {
  public:
    wav_worker(Napi::Env env, std::shared_ptr<qwen3tts_gen> g, std::vector<int32_t> codes, std::vector<uint8_t> state) :
        promise_worker(env), gen_(std::move(g)), codes_(std::move(codes)), state_(std::move(state)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        out_ = gen_->gen_wav(codes_.data(), codes_.size(), state_.data(), state_.size(), cancel_flag());
        gen_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object     o = Napi::Object::New(env);
        Napi::Uint8Array s = Napi::Uint8Array::New(env, out_.state.size());
        std::copy(out_.state.begin(), out_.state.end(), s.Data());
        o.Set("pcm", f32(env, out_.pcm));
        o.Set("state", s);
        return o;
    }

  private:
    std::shared_ptr<qwen3tts_gen> gen_;
    std::vector<int32_t>          codes_;
    std::vector<uint8_t>          state_;
    qwen3tts_pcm                  out_;
};

class speaker_worker : public promise_worker {
  public:
    speaker_worker(Napi::Env env, std::shared_ptr<qwen3tts_gen> g, std::vector<float> pcm) :
        promise_worker(env), gen_(std::move(g)), pcm_(std::move(pcm)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        embd_ = gen_->encode_speaker(pcm_.data(), pcm_.size(), cancel_flag());
        gen_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("rows", 1);
        o.Set("embd", f32(env, embd_));
        return o;
    }

  private:
    std::shared_ptr<qwen3tts_gen> gen_;
    std::vector<float>            pcm_;
    std::vector<float>            embd_;
};

// loadQwen3TtsGen(path, { threads, parts }) -> op<AddonQwen3TtsGen>
Napi::Value load_qwen3tts_gen_js(const Napi::CallbackInfo & info) {
    Napi::Env       env  = info.Env();
    std::string     path = require_string(info, 0, "path");
    Napi::Object    o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    qwen3tts_params p;
    p.n_threads       = threads_arg(env, o);
    p.use_gpu         = optional_bool(o, "gpu", true);
    Napi::Value parts = o.Get("parts");
    if (!parts.IsUndefined()) {
        if (!parts.IsArray()) {
            throw_error(env, error_code::invalid_argument, "parts must be an array of 'code', 'wav', 'speaker'");
        }
        Napi::Array a = parts.As<Napi::Array>();
        p.parts_set   = true;
        p.code = p.wav = p.speaker = false;
        for (uint32_t i = 0; i < a.Length(); ++i) {
            Napi::Value       v = a.Get(i);
            const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
            if (s == "code") {
                p.code = true;
            } else if (s == "wav") {
                p.wav = true;
            } else if (s == "speaker") {
                p.speaker = true;
            } else {
                throw_error(env, error_code::invalid_argument, "parts must be an array of 'code', 'wav', 'speaker'");
            }
        }
    }
    return promise_worker::start(env, new load_worker(env, std::move(path), p));
}

}  // namespace

Napi::Function AddonQwen3TtsGen::define(Napi::Env env) {
    using E          = AddonQwen3TtsGen;
    Napi::Function f = DefineClass(env, "AddonQwen3TtsGen",
                                   {
                                       InstanceMethod("info", &E::guarded<&E::info>),
                                       InstanceMethod("genCode", &E::guarded<&E::gen_code>),
                                       InstanceMethod("genWav", &E::guarded<&E::gen_wav>),
                                       InstanceMethod("encodeSpeaker", &E::guarded<&E::encode_speaker>),
                                       InstanceMethod("forgetSeed", &E::guarded<&E::forget_seed>),
                                       InstanceMethod("dispose", &E::guarded<&E::dispose>),
                                   });
    ctor(env)        = Napi::Persistent(f);
    return f;
}

Napi::Object AddonQwen3TtsGen::wrap(Napi::Env env, std::shared_ptr<qwen3tts_gen> g) {
    Napi::Object obj  = ctor(env).New({});
    Unwrap(obj)->gen_ = std::move(g);
    return obj;
}

Napi::Value AddonQwen3TtsGen::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         g   = get(env);
    const auto & hp  = g->hparams();
    Napi::Object o   = Napi::Object::New(env);
    o.Set("pipeline", "qwen3tts");
    o.Set("variant", hp.variant);
    o.Set("sampleRate", 24000);
    o.Set("nEmbd", hp.n_embd);
    o.Set("nCodebooks", hp.n_codes());
    o.Set("latentDim", 0);
    o.Set("samplesPerFrame", hp.samples_per_frame);
    o.Set("windowFrames", hp.window);
    o.Set("hasSpeakerEncoder", hp.has_speaker);
    o.Set("speakerSampleRate", hp.has_speaker ? hp.spk_sample_rate : 0);
    o.Set("stateBytes", Napi::Number::New(env, static_cast<double>(g->state_bytes())));
    const auto  parts = g->parts();
    Napi::Array a     = Napi::Array::New(env, parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
        a.Set(static_cast<uint32_t>(i), parts[i]);
    }
    o.Set("parts", a);
    return o;
}

// genCode(hidden: Float32Array, code0, { topK, topP, temp, seed }) -> op<{ codes, feats, embd, isEos }>
Napi::Value AddonQwen3TtsGen::gen_code(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      g   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "hidden must be a Float32Array");
    }
    auto h = info[0].As<Napi::Float32Array>();
    if (h.ElementLength() != static_cast<size_t>(g->hparams().n_embd)) {
        throw_error(env, error_code::invalid_argument,
                    "hidden has " + std::to_string(h.ElementLength()) + " values, the talker width is " +
                        std::to_string(g->hparams().n_embd));
    }
    if (info.Length() < 2 || !info[1].IsNumber()) {
        throw_error(env, error_code::invalid_argument, "code0 must be an integer");
    }
    const double c0 = info[1].As<Napi::Number>().DoubleValue();
    if (c0 != static_cast<double>(static_cast<int64_t>(c0)) || c0 < -2147483648.0 || c0 > 2147483647.0) {
        throw_error(env, error_code::invalid_argument, "code0 must be an integer");
    }
    Napi::Object o   = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
    auto         num = [&](const char * key, double fallback) {
        Napi::Value v = o.Get(key);
        if (v.IsUndefined()) {
            return fallback;
        }
        if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) {
            throw_error(env, error_code::invalid_argument, std::string(key) + " must be a finite number");
        }
        return v.As<Napi::Number>().DoubleValue();
    };
    const double top_k = num("topK", 50);
    const double top_p = num("topP", 1.0);
    const double temp  = num("temp", 0.9);
    const double seed  = num("seed", 4294967295.0);
    if (top_k != static_cast<int64_t>(top_k) || top_k < 0 || top_k > 2147483647.0) {
        throw_error(env, error_code::invalid_argument, "topK must be an integer >= 0");
    }
    if (!(top_p > 0 && top_p <= 1)) {
        throw_error(env, error_code::invalid_argument, "topP must be in (0, 1]");
    }
    if (seed != static_cast<int64_t>(seed) || seed < 0 || seed > 4294967295.0) {
        throw_error(env, error_code::invalid_argument, "seed must be an integer in [0, 2^32)");
    }
    std::vector<float> hidden(h.Data(), h.Data() + h.ElementLength());
    return promise_worker::start(env, new code_worker(env, std::move(g), std::move(hidden), static_cast<int32_t>(c0),
                                                      static_cast<int32_t>(top_k), static_cast<float>(top_p),
                                                      static_cast<float>(temp), static_cast<uint32_t>(seed)));
}

// genWav(frames: Int32Array, state: Uint8Array | null) -> op<{ pcm, state }>
Napi::Value AddonQwen3TtsGen::gen_wav(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      g   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_error(env, error_code::invalid_argument, "frames must be an Int32Array of codes (Qwen3-TTS)");
    }
    auto a = info[0].As<Napi::Int32Array>();
    if (a.ElementLength() == 0) {
        throw_error(env, error_code::invalid_argument, "frames is empty");
    }
    std::vector<uint8_t> state;
    if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) {
        if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
            throw_error(env, error_code::invalid_argument, "state must be a Uint8Array or null");
        }
        auto s = info[1].As<Napi::Uint8Array>();
        if (s.ElementLength() != g->state_bytes()) {
            throw_error(env, error_code::invalid_argument,
                        "state has " + std::to_string(s.ElementLength()) + " bytes, this decoder's has " +
                            std::to_string(g->state_bytes()) + " (pass the state a genWav call returned, or null)");
        }
        state.assign(s.Data(), s.Data() + s.ElementLength());
    }
    std::vector<int32_t> codes(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new wav_worker(env, std::move(g), std::move(codes), std::move(state)));
}

// encodeSpeaker(pcm: Float32Array) -> op<{ rows, embd }>
Napi::Value AddonQwen3TtsGen::encode_speaker(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      g   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pcm must be a Float32Array");
    }
    auto a = info[0].As<Napi::Float32Array>();
    if (a.ElementLength() == 0) {
        throw_error(env, error_code::invalid_argument, "pcm is empty (no samples)");
    }
    std::vector<float> pcm(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new speaker_worker(env, std::move(g), std::move(pcm)));
}

// forgetSeed(): the next genCode reseeds with its seed (see gen_code's reseed rule)
Napi::Value AddonQwen3TtsGen::forget_seed(const Napi::CallbackInfo & info) {
    get(info.Env())->forget_seed();
    return info.Env().Undefined();
}

Napi::Value AddonQwen3TtsGen::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    gen_.reset();
    return info.Env().Undefined();
}

void register_gen_qwen3tts(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonQwen3TtsGen", AddonQwen3TtsGen::define(env));
    exports.Set("loadQwen3TtsGen", Napi::Function::New(env, guarded<load_qwen3tts_gen_js>, "loadQwen3TtsGen"));
}

}  // namespace mm::napi
