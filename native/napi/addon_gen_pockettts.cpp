// AddonGenPocketTts: loadPocketTtsGen, info, genCode, genWav, encodeSpeaker, dispose — Pocket TTS's
// flow head, Mimi decoder and voice encoder (src/decoders/pockettts). One worker per operation;
// arguments are checked here, the model logic is in src/.
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "addon_vision.h"
#include "decoders/pockettts/pockettts_gen.h"

namespace mm::napi {

namespace pt = mm::pockettts;

class AddonGenPocketTts : public Napi::ObjectWrap<AddonGenPocketTts> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<pt::generator> g);
    explicit AddonGenPocketTts(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonGenPocketTts>(info) {}
    MM_GUARDED_METHODS(AddonGenPocketTts)

  private:
    std::shared_ptr<pt::generator> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value gen_code(const Napi::CallbackInfo & info);
    Napi::Value gen_wav(const Napi::CallbackInfo & info);
    Napi::Value encode_speaker(const Napi::CallbackInfo & info);
    Napi::Value forget_seed(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<pt::generator> gen_;
};

namespace {

env_ctor g_ctor;

Napi::FunctionReference & ctor(Napi::Env env) {
    return g_ctor.get(env);
}

const char * const k_part_names[] = {"code", "wav", "speaker"};
const unsigned     k_part_bits[]  = {pt::part_code, pt::part_wav, pt::part_speaker};

unsigned parts_arg(Napi::Env env, const Napi::Object & o) {
    Napi::Value v = o.Get("parts");
    if (v.IsUndefined() || v.IsNull()) {
        return 0;
    }
    if (!v.IsArray() || v.As<Napi::Array>().Length() == 0) {
        throw_error(env, error_code::invalid_argument, "parts must be a non-empty array of 'code', 'wav', 'speaker'");
    }
    Napi::Array a    = v.As<Napi::Array>();
    unsigned    bits = 0;
    for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value e     = a.Get(i);
        bool        known = false;
        for (size_t k = 0; k < 3; ++k) {
            if (e.IsString() && e.As<Napi::String>().Utf8Value() == k_part_names[k]) {
                bits |= k_part_bits[k];
                known = true;
            }
        }
        if (!known) {
            throw_error(env, error_code::invalid_argument,
                        "parts[" + std::to_string(i) + "] must be 'code', 'wav' or 'speaker'");
        }
    }
    return bits;
}

// The first `max` values of a Float32Array argument (all of them by default).
std::vector<float> float32_arg(const Napi::CallbackInfo & info, size_t i, const char * name,
                               size_t max = static_cast<size_t>(-1)) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a Float32Array");
    }
    auto         a = info[i].As<Napi::Float32Array>();
    const size_t n = std::min(a.ElementLength(), max);
    return std::vector<float>(a.Data(), a.Data() + n);
}

Napi::Float32Array to_f32(Napi::Env env, const std::vector<float> & v) {
    auto out = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size() * sizeof(float));
    }
    return out;
}

class load_worker : public promise_worker {
  public:
    load_worker(Napi::Env env, std::string path, pt::load_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        gen_           = pt::generator::load(path_, params_);
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
    }
    Napi::Value result(Napi::Env env) override { return AddonGenPocketTts::wrap(env, std::move(gen_)); }

  private:
    std::string                    path_;
    pt::load_params                params_;
    std::shared_ptr<pt::generator> gen_;
};

class code_worker : public promise_worker {
  public:
    code_worker(Napi::Env env, std::shared_ptr<pt::generator> g, std::vector<float> hidden, pt::code_params p) :
        promise_worker(env), gen_(std::move(g)), hidden_(std::move(hidden)), params_(p) {}

  protected:
    void run() override {
        result_ = gen_->gen_code(hidden_.data(), hidden_.size(), params_, cancel_flag());
        gen_.reset();
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("codes", Napi::Int32Array::New(env, 0));
        o.Set("feats", to_f32(env, result_.latent));
        o.Set("embd", to_f32(env, result_.embd));
        o.Set("isEos", result_.is_eos);
        o.Set("eosScore", result_.eos_score);
        return o;
    }

  private:
    std::shared_ptr<pt::generator> gen_;
    std::vector<float>             hidden_;
    pt::code_params                params_;
    pt::code_result                result_;
};

class wav_worker : public promise_worker {
  public:
    wav_worker(Napi::Env env, std::shared_ptr<pt::generator> g, std::vector<float> feats, std::vector<uint8_t> state,
               bool has_state) :
        promise_worker(env),
        gen_(std::move(g)),
        feats_(std::move(feats)),
        state_(std::move(state)),
        has_state_(has_state) {}

  protected:
    void run() override {
        result_ = gen_->gen_wav(feats_.data(), feats_.size(), has_state_ ? state_.data() : nullptr, state_.size(),
                                cancel_flag());
        gen_.reset();
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Object o     = Napi::Object::New(env);
        auto         state = Napi::Uint8Array::New(env, result_.state.size());
        if (!result_.state.empty()) {
            std::memcpy(state.Data(), result_.state.data(), result_.state.size());
        }
        o.Set("pcm", to_f32(env, result_.pcm));
        o.Set("state", state);
        return o;
    }

  private:
    std::shared_ptr<pt::generator> gen_;
    std::vector<float>             feats_;
    std::vector<uint8_t>           state_;
    bool                           has_state_;
    pt::wav_result                 result_;
};

class speaker_worker : public promise_worker {
  public:
    speaker_worker(Napi::Env env, std::shared_ptr<pt::generator> g, std::vector<float> pcm) :
        promise_worker(env), gen_(std::move(g)), pcm_(std::move(pcm)) {}

  protected:
    void run() override {
        result_ = gen_->encode_speaker(pcm_.data(), pcm_.size(), cancel_flag());
        gen_.reset();
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("rows", result_.rows);
        o.Set("embd", to_f32(env, result_.embd));
        return o;
    }

  private:
    std::shared_ptr<pt::generator> gen_;
    std::vector<float>             pcm_;
    pt::speaker_result             result_;
};

// loadPocketTtsGen(path, { threads?, gpu?, parts? }) -> op<AddonGenPocketTts>
Napi::Value load_pockettts_gen_js(const Napi::CallbackInfo & info) {
    Napi::Env       env  = info.Env();
    std::string     path = require_string(info, 0, "path");
    Napi::Object    o    = object_arg(info, 1);
    pt::load_params p;
    p.n_threads = threads_opt(env, o);
    p.use_gpu   = optional_bool(o, "gpu", true);
    p.parts     = parts_arg(env, o);
    return promise_worker::start(env, new load_worker(env, std::move(path), p));
}

}  // namespace

Napi::Function AddonGenPocketTts::define(Napi::Env env) {
    using G          = AddonGenPocketTts;
    Napi::Function f = DefineClass(env, "AddonGenPocketTts",
                                   {
                                       InstanceMethod("info", &G::guarded<&G::info>),
                                       InstanceMethod("genCode", &G::guarded<&G::gen_code>),
                                       InstanceMethod("genWav", &G::guarded<&G::gen_wav>),
                                       InstanceMethod("encodeSpeaker", &G::guarded<&G::encode_speaker>),
                                       InstanceMethod("forgetSeed", &G::guarded<&G::forget_seed>),
                                       InstanceMethod("dispose", &G::guarded<&G::dispose>),
                                   });
    ctor(env)        = Napi::Persistent(f);
    return f;
}

Napi::Object AddonGenPocketTts::wrap(Napi::Env env, std::shared_ptr<pt::generator> g) {
    Napi::Object obj  = ctor(env).New({});
    Unwrap(obj)->gen_ = std::move(g);
    return obj;
}

std::shared_ptr<pt::generator> AddonGenPocketTts::get(Napi::Env env) const {
    if (!gen_) {
        throw_error(env, error_code::disposed, "the Pocket TTS generator was used after dispose()");
    }
    return gen_;
}

Napi::Value AddonGenPocketTts::info(const Napi::CallbackInfo & info) {
    Napi::Env           env = info.Env();
    auto                g   = get(env);
    const pt::hparams & hp  = g->hp();
    Napi::Object        o   = Napi::Object::New(env);
    o.Set("pipeline", "pockettts");
    o.Set("variant", hp.variant);
    o.Set("sampleRate", pt::k_sample_rate);
    o.Set("nEmbd", hp.n_embd);
    o.Set("nCodebooks", 0);
    o.Set("latentDim", hp.latent_dim);
    o.Set("samplesPerFrame", pt::k_samples_per_frame);
    o.Set("windowFrames", pt::k_window_frames);
    o.Set("hasSpeakerEncoder", hp.has_speaker);
    o.Set("speakerSampleRate", pt::k_sample_rate);
    Napi::Array parts = Napi::Array::New(env);
    for (size_t k = 0; k < 3; ++k) {
        if ((hp.parts & k_part_bits[k]) != 0) {
            parts.Set(parts.Length(), k_part_names[k]);
        }
    }
    o.Set("parts", parts);
    // Pocket TTS's own facts
    o.Set("stateBytes", Napi::Number::New(env, static_cast<double>(g->state_size())));
    o.Set("eosThreshold", pt::k_eos_threshold);
    o.Set("flowSteps", pt::k_flow_steps);
    o.Set("defaultTemp", pt::k_default_temp);
    o.Set("maxWavFrames", pt::k_max_wav_frames);
    o.Set("maxSpeakerSeconds", pt::k_max_speaker_seconds);
    o.Set("backend", g->backend_name());
    o.Set("weightsBytes", Napi::Number::New(env, static_cast<double>(g->weights_bytes())));
    return o;
}

// genCode(hidden: Float32Array, code0: number, { topK, topP, temp, seed }) -> op<frame>. code0, topK
// and topP are Qwen3-TTS's; Pocket TTS draws gaussian noise of std sqrt(temp).
Napi::Value AddonGenPocketTts::gen_code(const Napi::CallbackInfo & info) {
    Napi::Env          env    = info.Env();
    auto               g      = get(env);
    std::vector<float> hidden = float32_arg(info, 0, "hidden");
    Napi::Object       o      = object_arg(info, 2);
    pt::code_params    p;
    Napi::Value        temp = o.Get("temp");
    if (!temp.IsUndefined()) {
        if (!temp.IsNumber()) {
            throw_error(env, error_code::invalid_argument, "temp must be a number");
        }
        p.temp = temp.As<Napi::Number>().FloatValue();
    }
    Napi::Value seed = o.Get("seed");
    if (!seed.IsUndefined()) {
        const double s = seed.IsNumber() ? seed.As<Napi::Number>().DoubleValue() : -1.0;
        if (!(s >= 0 && s <= 4294967295.0) || s != static_cast<double>(static_cast<uint32_t>(s))) {
            throw_error(env, error_code::invalid_argument, "seed must be an integer in [0, 2^32)");
        }
        p.seed = static_cast<uint32_t>(s);
    }
    return promise_worker::start(env, new code_worker(env, std::move(g), std::move(hidden), p));
}

// genWav(latents: Float32Array, state: Uint8Array | null) -> op<{ pcm, state }>
Napi::Value AddonGenPocketTts::gen_wav(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      g   = get(env);
    if (info.Length() > 0 && info[0].IsTypedArray() &&
        info[0].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
        throw_error(env, error_code::invalid_argument,
                    "Pocket TTS decodes latent frames (a Float32Array), not codes (an Int32Array)");
    }
    // one value past the most a call takes, so that too many frames is still refused (not cut)
    const size_t       max   = static_cast<size_t>(pt::k_max_wav_frames) * g->hp().latent_dim + 1;
    std::vector<float> feats = float32_arg(info, 0, "frames", max);
    if (feats.empty()) {
        throw_error(env, error_code::invalid_argument, "frames is empty (no latent frame)");
    }
    std::vector<uint8_t> state;
    bool                 has_state = false;
    if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) {
        if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
            throw_error(env, error_code::invalid_argument, "state must be a Uint8Array or null");
        }
        auto a = info[1].As<Napi::Uint8Array>();
        state.assign(a.Data(), a.Data() + a.ElementLength());
        has_state = true;
    }
    return promise_worker::start(env, new wav_worker(env, std::move(g), std::move(feats), std::move(state), has_state));
}

// encodeSpeaker(pcm: Float32Array at 24 kHz) -> op<{ rows, embd }>
Napi::Value AddonGenPocketTts::encode_speaker(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      g   = get(env);
    // references are cut to their first 30 s (libmtmd's preprocessor does it too)
    const size_t       max = static_cast<size_t>(pt::k_max_speaker_seconds) * pt::k_sample_rate;
    std::vector<float> pcm = float32_arg(info, 0, "pcm", max);
    if (pcm.empty()) {
        throw_error(env, error_code::invalid_argument, "pcm is empty (no samples)");
    }
    return promise_worker::start(env, new speaker_worker(env, std::move(g), std::move(pcm)));
}

// forgetSeed(): the next genCode reseeds with its seed (see gen_code's reseed rule)
Napi::Value AddonGenPocketTts::forget_seed(const Napi::CallbackInfo & info) {
    get(info.Env())->forget_seed();
    return info.Env().Undefined();
}

Napi::Value AddonGenPocketTts::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    gen_.reset();
    return info.Env().Undefined();
}

void register_gen_pockettts(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonGenPocketTts", AddonGenPocketTts::define(env));
    exports.Set("loadPocketTtsGen", Napi::Function::New(env, guarded<load_pockettts_gen_js>, "loadPocketTtsGen"));
}

}  // namespace mm::napi
