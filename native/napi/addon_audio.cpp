// Audio functions of @mm/encoders: the log-mel spectrogram of Whisper-style encoders (libmtmd's).
// Thin: argument conversion and one worker; the logic is in src/encoders/audio/.
#include <napi.h>

#include <string>
#include <vector>

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
    exports.Set("logMelSpectrogram", Napi::Function::New(env, guarded<log_mel_js>, "logMelSpectrogram"));
}

}  // namespace mm::napi
