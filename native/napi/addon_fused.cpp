// AddonFusedMedia: the long tail through libmtmd's fused encoder + projector (src/projectors/
// fused_media.h). inspectFused (header only), fusedProjectorTypes, loadFusedMedia(path, model),
// embed(rgb) -> the picture's layout and embedAudio(pcm) -> the sound's, in libmtmd's order. Thin: argument conversion
// and workers only; every entry point runs inside guard().
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "addon_backbone.h"
#include "addon_vision.h"
#include "projectors/fused_media.h"
#include "projectors/registry.h"

namespace mm::napi {

class AddonFusedMedia : public Napi::ObjectWrap<AddonFusedMedia> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<fused_media> m);
    explicit AddonFusedMedia(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonFusedMedia>(info) {}
    MM_GUARDED_METHODS(AddonFusedMedia)

  private:
    std::shared_ptr<fused_media> get(Napi::Env env) const;

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value embed(const Napi::CallbackInfo & info);
    Napi::Value embed_audio(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<fused_media> media_;
};

namespace {

env_ctor g_ctor;

Napi::FunctionReference & ctor(Napi::Env env) {
    return g_ctor.get(env);
}

Napi::Array strings(Napi::Env env, const std::vector<std::string> & v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        a.Set(static_cast<uint32_t>(i), v[i]);
    }
    return a;
}

Napi::Object info_object(Napi::Env env, const fused_info & i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("projectorType", i.projector_type);
    o.Set("visionProjectorType", i.vision_projector_type);
    o.Set("audioProjectorType", i.audio_projector_type);
    o.Set("hasVision", i.has_vision);
    o.Set("imageSize", i.image_size);
    o.Set("patchSize", i.patch_size);
    o.Set("nEmbdVision", i.n_embd_vision);
    o.Set("nLayer", i.n_layer);
    o.Set("projectionDim", i.projection_dim);
    o.Set("hasAudio", i.has_audio);
    o.Set("audioSampleRate", i.audio_sample_rate);
    o.Set("nMelBins", i.n_mel_bins);
    o.Set("nEmbdAudio", i.n_embd_audio);
    o.Set("nLayerAudio", i.n_layer_audio);
    return o;
}

class inspect_fused_worker : public promise_worker {
  public:
    inspect_fused_worker(Napi::Env env, std::string path) : promise_worker(env), path_(std::move(path)) {}

  protected:
    void        run() override { info_ = inspect_fused(path_); }
    Napi::Value result(Napi::Env env) override { return info_object(env, info_); }

  private:
    std::string path_;
    fused_info  info_;
};

class load_fused_worker : public promise_worker {
  public:
    load_fused_worker(Napi::Env env, std::string path, std::shared_ptr<model> m, fused_params p) :
        promise_worker(env), path_(std::move(path)), model_(std::move(m)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        media_         = fused_media::load(path_, std::move(model_), params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonFusedMedia::wrap(env, std::move(media_)); }

  private:
    std::string                  path_;
    std::shared_ptr<model>       model_;
    fused_params                 params_;
    std::shared_ptr<fused_media> media_;
};

Napi::Object items_object(Napi::Env env, const std::vector<fused_item> & items, double encode_ms, double total_ms) {
    Napi::Array arr = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        const fused_item & it = items[i];
        Napi::Object       o  = Napi::Object::New(env);
        if (it.media) {
            o.Set("kind", "media");
            o.Set("modality", it.audio ? "audio" : "image");
            o.Set("rows", float32_array_of(env, it.embd.data));
            o.Set("nTokens", it.embd.n_tokens);
            o.Set("nEmbd", it.embd.n_embd);
            o.Set("nx", it.embd.nx);
            o.Set("ny", it.embd.ny);
            o.Set("causal", it.embd.causal);
            o.Set("nPos", it.n_pos);
        } else {
            auto t = Napi::Int32Array::New(env, it.tokens.size());
            if (!it.tokens.empty()) {
                std::memcpy(t.Data(), it.tokens.data(), it.tokens.size() * sizeof(int32_t));
            }
            o.Set("kind", "text");
            o.Set("tokens", t);
        }
        arr.Set(static_cast<uint32_t>(i), o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("items", arr);
    out.Set("encodeMs", encode_ms);
    out.Set("totalMs", total_ms);
    return out;
}

class embed_worker : public promise_worker {
  public:
    embed_worker(Napi::Env env, std::shared_ptr<fused_media> m, rgb_image img) :
        promise_worker(env), media_(std::move(m)), img_(std::move(img)) {}

  protected:
    void run() override {
        auto t0   = std::chrono::steady_clock::now();
        items_    = media_->embed(img_, cancel_flag(), &encode_ms_);
        total_ms_ = ms_since(t0);
        img_.data = {};
        media_.reset();
    }

    Napi::Value result(Napi::Env env) override { return items_object(env, items_, encode_ms_, total_ms_); }

  private:
    std::shared_ptr<fused_media> media_;
    rgb_image                    img_;
    std::vector<fused_item>      items_;
    double                       encode_ms_ = 0;
    double                       total_ms_  = 0;
};

class embed_audio_worker : public promise_worker {
  public:
    embed_audio_worker(Napi::Env env, std::shared_ptr<fused_media> m, std::vector<float> pcm) :
        promise_worker(env), media_(std::move(m)), pcm_(std::move(pcm)) {}

  protected:
    void run() override {
        auto t0   = std::chrono::steady_clock::now();
        items_    = media_->embed_audio(pcm_.data(), pcm_.size(), cancel_flag(), &encode_ms_);
        total_ms_ = ms_since(t0);
        pcm_      = {};
        media_.reset();
    }

    Napi::Value result(Napi::Env env) override { return items_object(env, items_, encode_ms_, total_ms_); }

  private:
    std::shared_ptr<fused_media> media_;
    std::vector<float>           pcm_;
    std::vector<fused_item>      items_;
    double                       encode_ms_ = 0;
    double                       total_ms_  = 0;
};

// inspectFused(path) -> op<info>: the header validated as libmtmd will read it, no weights read
Napi::Value inspect_fused_js(const Napi::CallbackInfo & info) {
    Napi::Env   env  = info.Env();
    std::string path = require_string(info, 0, "path");
    return promise_worker::start(env, new inspect_fused_worker(env, std::move(path)));
}

// fusedProjectorTypes() -> { fused: string[], fusedAudio: string[], own: string[] }
Napi::Value projector_types_js(const Napi::CallbackInfo & info) {
    Napi::Env                env = info.Env();
    std::vector<std::string> own;
    const std::string        list = supported_projector_families();
    for (size_t at = 0; at < list.size();) {
        size_t end = list.find(", ", at);
        own.push_back(list.substr(at, end == std::string::npos ? std::string::npos : end - at));
        at = end == std::string::npos ? list.size() : end + 2;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("fused", strings(env, fused_projector_types()));
    o.Set("fusedAudio", strings(env, fused_audio_projector_types()));
    o.Set("own", strings(env, own));
    return o;
}

// loadFusedMedia(path, model: AddonModel, { threads, gpu }) -> op<AddonFusedMedia>
Napi::Value load_fused_js(const Napi::CallbackInfo & info) {
    Napi::Env   env  = info.Env();
    std::string path = require_string(info, 0, "path");
    if (info.Length() < 2 || !AddonModel::is(env, info[1])) {
        throw_error(env, error_code::invalid_argument, "model must be a native model handle (a loaded Backbone's)");
    }
    std::shared_ptr<model> m = AddonModel::Unwrap(info[1].As<Napi::Object>())->get(env);
    Napi::Object           o = object_arg(info, 2);
    fused_params           p;
    p.n_threads = threads_opt(env, o);
    p.use_gpu   = optional_bool(o, "gpu", true);
    return promise_worker::start(env, new load_fused_worker(env, std::move(path), std::move(m), p));
}

}  // namespace

Napi::Function AddonFusedMedia::define(Napi::Env env) {
    using F          = AddonFusedMedia;
    Napi::Function f = DefineClass(env, "AddonFusedMedia",
                                   {
                                       InstanceMethod("info", &F::guarded<&F::info>),
                                       InstanceMethod("embed", &F::guarded<&F::embed>),
                                       InstanceMethod("embedAudio", &F::guarded<&F::embed_audio>),
                                       InstanceMethod("dispose", &F::guarded<&F::dispose>),
                                   });
    ctor(env)        = Napi::Persistent(f);
    return f;
}

Napi::Object AddonFusedMedia::wrap(Napi::Env env, std::shared_ptr<fused_media> m) {
    Napi::Object obj    = ctor(env).New({});
    Unwrap(obj)->media_ = std::move(m);
    return obj;
}

std::shared_ptr<fused_media> AddonFusedMedia::get(Napi::Env env) const {
    if (!media_) {
        throw_error(env, error_code::disposed, "the fused media model was used after dispose()");
    }
    return media_;
}

Napi::Value AddonFusedMedia::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         m   = get(env);
    Napi::Object o   = info_object(env, m->info());
    o.Set("nEmbd", m->n_embd());
    o.Set("mrope", m->mrope());
    o.Set("nThreads", m->n_threads());
    o.Set("audioSampleRate", m->audio_sample_rate());
    return o;
}

// embed(rgb: Uint8Array, width, height) -> op<{ items, encodeMs, totalMs }>
Napi::Value AddonFusedMedia::embed(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      m   = get(env);
    rgb_image img = rgb_args(info, 0);
    return promise_worker::start(env, new embed_worker(env, std::move(m), std::move(img)));
}

// embedAudio(pcm: Float32Array) -> op<{ items, encodeMs, totalMs }>: mono f32 at the file's audio rate
Napi::Value AddonFusedMedia::embed_audio(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      m   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pcm must be a Float32Array");
    }
    auto               a = info[0].As<Napi::Float32Array>();
    std::vector<float> pcm(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new embed_audio_worker(env, std::move(m), std::move(pcm)));
}

Napi::Value AddonFusedMedia::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    media_.reset();
    return info.Env().Undefined();
}

void register_fused(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonFusedMedia", AddonFusedMedia::define(env));
    exports.Set("inspectFused", Napi::Function::New(env, guarded<inspect_fused_js>, "inspectFused"));
    exports.Set("fusedProjectorTypes", Napi::Function::New(env, guarded<projector_types_js>, "fusedProjectorTypes"));
    exports.Set("loadFusedMedia", Napi::Function::New(env, guarded<load_fused_js>, "loadFusedMedia"));
}

}  // namespace mm::napi
