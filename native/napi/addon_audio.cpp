// Audio functions of @mm/encoders: decoding (WAV, MP3, FLAC) and PCM conversion to mono at the
// model's rate as libmtmd's helper does it, and the log-mel spectrogram of Whisper-style encoders
// (libmtmd's). Thin: argument conversion and workers; the logic is in src/encoders/audio/.
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "encoders/audio/audio.h"
#include "encoders/audio/mel.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

class log_mel_worker : public promise_worker {
  public:
    log_mel_worker(Napi::Env env, std::vector<float> pcm, mel_params p) :
        promise_worker(env), pcm_(std::move(pcm)), params_(p) {}

  protected:
    void run() override {
        chunks_ = log_mel_spectrogram(pcm_.data(), pcm_.size(), params_, cancel_flag());
        pcm_.clear();
        pcm_.shrink_to_fit();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object out = Napi::Object::New(env);
        out.Set("nMel", Napi::Number::New(env, params_.n_mel));
        out.Set("nFrames", Napi::Number::New(env, params_.frames_per_chunk));
        Napi::Array chunks = Napi::Array::New(env, chunks_.size());
        for (size_t i = 0; i < chunks_.size(); ++i) {
            const std::vector<float> & d = chunks_[i].data;
            Napi::Float32Array         a = Napi::Float32Array::New(env, d.size());
            std::copy(d.begin(), d.end(), a.Data());
            chunks.Set(static_cast<uint32_t>(i), a);
        }
        out.Set("chunks", chunks);
        return out;
    }

  private:
    std::vector<float>     pcm_;
    mel_params             params_;
    std::vector<mel_chunk> chunks_;
};

Napi::Object pcm_object(Napi::Env env, const pcm_audio & a) {
    Napi::Object       out = Napi::Object::New(env);
    Napi::Float32Array s   = Napi::Float32Array::New(env, a.samples.size());
    std::copy(a.samples.begin(), a.samples.end(), s.Data());
    out.Set("sampleRate", Napi::Number::New(env, a.sample_rate));
    out.Set("samples", s);
    return out;
}

class decode_audio_worker : public promise_worker {
  public:
    decode_audio_worker(Napi::Env env, std::vector<uint8_t> bytes, int32_t rate, uint64_t max_samples) :
        promise_worker(env), bytes_(std::move(bytes)), rate_(rate), max_samples_(max_samples) {}

  protected:
    void run() override {
        audio_ = decode_audio(bytes_.data(), bytes_.size(), rate_, max_samples_);
        bytes_.clear();
        bytes_.shrink_to_fit();
    }

    Napi::Value result(Napi::Env env) override { return pcm_object(env, audio_); }

  private:
    std::vector<uint8_t> bytes_;
    int32_t              rate_;
    uint64_t             max_samples_;
    pcm_audio            audio_;
};

class convert_pcm_worker : public promise_worker {
  public:
    convert_pcm_worker(Napi::Env env, std::vector<float> pcm, int32_t channels, int32_t rate, int32_t target,
                       uint64_t max_samples) :
        promise_worker(env),
        pcm_(std::move(pcm)),
        channels_(channels),
        rate_(rate),
        target_(target),
        max_samples_(max_samples) {}

  protected:
    void run() override {
        audio_ = convert_pcm(pcm_.data(), pcm_.size(), channels_, rate_, target_, max_samples_);
        pcm_.clear();
        pcm_.shrink_to_fit();
    }

    Napi::Value result(Napi::Env env) override { return pcm_object(env, audio_); }

  private:
    std::vector<float> pcm_;
    int32_t            channels_, rate_, target_;
    uint64_t           max_samples_;
    pcm_audio          audio_;
};

int32_t int_arg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsNumber()) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be an integer");
    }
    const double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int32_t>(d))) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be an integer");
    }
    return static_cast<int32_t>(d);
}

uint64_t max_samples_arg(const Napi::CallbackInfo & info, size_t i) {
    if (info.Length() <= i || !info[i].IsNumber() || !(info[i].As<Napi::Number>().DoubleValue() >= 1)) {
        throw_error(info.Env(), error_code::invalid_argument, "maxSamples must be a number >= 1");
    }
    const double d = info[i].As<Napi::Number>().DoubleValue();
    return d >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(d);
}

// decodeAudio(bytes: Uint8Array, sampleRate: number, maxSamples: number) -> op<{ sampleRate, samples }>
Napi::Value decode_audio_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(env, error_code::invalid_argument, "bytes must be a Uint8Array");
    }
    auto                 a           = info[0].As<Napi::Uint8Array>();
    const int32_t        rate        = int_arg(info, 1, "sampleRate");
    const uint64_t       max_samples = max_samples_arg(info, 2);
    std::vector<uint8_t> bytes(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new decode_audio_worker(env, std::move(bytes), rate, max_samples));
}

// convertPcm(samples: Float32Array, channels, sampleRate, targetRate, maxSamples) -> op<{ sampleRate, samples }>
Napi::Value convert_pcm_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "samples must be a Float32Array");
    }
    auto               a           = info[0].As<Napi::Float32Array>();
    const int32_t      channels    = int_arg(info, 1, "channels");
    const int32_t      rate        = int_arg(info, 2, "sampleRate");
    const int32_t      target      = int_arg(info, 3, "targetRate");
    const uint64_t     max_samples = max_samples_arg(info, 4);
    std::vector<float> pcm(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new convert_pcm_worker(env, std::move(pcm), channels, rate, target, max_samples));
}

int32_t int_field(const Napi::Object & o, const char * key) {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) {
        throw_error(o.Env(), error_code::invalid_argument, std::string("params.") + key + " must be an integer");
    }
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int32_t>(d))) {
        throw_error(o.Env(), error_code::invalid_argument, std::string("params.") + key + " must be an integer");
    }
    return static_cast<int32_t>(d);
}

// logMelSpectrogram(pcm: Float32Array, params: { nMel, nFft, windowLen, hopLen, sampleRate,
// framesPerChunk }) -> op<{ nMel, nFrames, chunks: Float32Array[] }>
Napi::Value log_mel_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pcm must be a Float32Array");
    }
    if (info.Length() < 2 || !info[1].IsObject()) {
        throw_error(env, error_code::invalid_argument, "params must be an object");
    }
    auto         a = info[0].As<Napi::Float32Array>();
    Napi::Object o = info[1].As<Napi::Object>();
    mel_params   p;
    p.n_mel            = int_field(o, "nMel");
    p.n_fft            = int_field(o, "nFft");
    p.window_len       = int_field(o, "windowLen");
    p.hop_len          = int_field(o, "hopLen");
    p.sample_rate      = int_field(o, "sampleRate");
    p.frames_per_chunk = int_field(o, "framesPerChunk");
    std::vector<float> pcm(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new log_mel_worker(env, std::move(pcm), p));
}

}  // namespace

void register_audio(Napi::Env env, Napi::Object exports) {
    exports.Set("decodeAudio", Napi::Function::New(env, guarded<decode_audio_js>, "decodeAudio"));
    exports.Set("convertPcm", Napi::Function::New(env, guarded<convert_pcm_js>, "convertPcm"));
    exports.Set("logMelSpectrogram", Napi::Function::New(env, guarded<log_mel_js>, "logMelSpectrogram"));
}

}  // namespace mm::napi
