// AddonVisionEncoder: loadVisionEncoder, preprocess, encode (a picture -> one Features per chunk),
// encodePixels (one preprocessed input -> Features).
#include <chrono>
#include <string>
#include <vector>

#include "addon_vision.h"

namespace mm::napi {

namespace {

class load_encoder_worker : public promise_worker {
  public:
    load_encoder_worker(Napi::Env env, std::string path, vision_encoder_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        encoder_       = vision_encoder::load(path_, params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonVisionEncoder::wrap(env, std::move(encoder_)); }

  private:
    std::string                     path_;
    vision_encoder_params           params_;
    std::shared_ptr<vision_encoder> encoder_;
};

class encode_worker : public promise_worker {
  public:
    encode_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, rgb_image img) :
        promise_worker(env), encoder_(std::move(e)), img_(std::move(img)) {}
    encode_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, pixel_input pixels) :
        promise_worker(env), encoder_(std::move(e)), pixels_(std::move(pixels)), from_pixels_(true) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        if (from_pixels_) {
            auto t0 = std::chrono::steady_clock::now();
            features_.push_back(std::make_shared<token_matrix>(encoder_->encode_pixels(pixels_, cancel_flag())));
            encode_ms_ = ms_since(t0);
        } else {
            encode_timings t;
            for (token_matrix & m : encoder_->encode(img_, cancel_flag(), &t, &layout_)) {
                features_.push_back(std::make_shared<token_matrix>(std::move(m)));
            }
            preprocess_ms_ = t.preprocess_ms;
            encode_ms_     = t.encode_ms;
        }
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        encoder_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("features", AddonTensor::wrap_all(env, std::move(features_)));
        o.Set("layout", layout_object(env, layout_));
        o.Set("preprocessMs", preprocess_ms_);
        o.Set("encodeMs", encode_ms_);
        return o;
    }

  private:
    std::shared_ptr<vision_encoder>                  encoder_;
    rgb_image                                        img_;
    pixel_input                                      pixels_;
    bool                                             from_pixels_ = false;
    std::vector<std::shared_ptr<const token_matrix>> features_;
    slice_layout                                     layout_;
    double                                           preprocess_ms_ = 0;
    double                                           encode_ms_     = 0;
};

// Many pictures in one worker (projector training encodes thousands): one feature map each, rows
// concatenated; a picture that gives several chunks is MM_UNSUPPORTED_FAMILY.
class encode_many_worker : public promise_worker {
  public:
    encode_many_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, std::vector<rgb_image> imgs) :
        promise_worker(env), encoder_(std::move(e)), imgs_(std::move(imgs)) {}

  protected:
    void run() override {
        const auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < imgs_.size(); ++i) {
            if (cancelled()) {
                fail(error_code::aborted, "aborted");
            }
            std::vector<token_matrix> f = encoder_->encode(imgs_[i], cancel_flag(), nullptr, nullptr);
            if (f.size() != 1) {
                fail(error_code::unsupported_family,
                     "picture " + std::to_string(i) + " gives " + std::to_string(f.size()) +
                         " feature maps (a tiled family); encodeMany takes one per picture");
            }
            if (i == 0) {
                n_tokens_ = f[0].n_tokens;
                n_embd_   = f[0].n_embd;
                rows_.reserve(imgs_.size() * f[0].data.size());
            } else if (f[0].n_tokens != n_tokens_ || f[0].n_embd != n_embd_) {
                fail(error_code::invalid_argument, "picture " + std::to_string(i) +
                                                       " gives another feature shape than the first; "
                                                       "encodeMany needs pictures of one shape");
            }
            rows_.insert(rows_.end(), f[0].data.begin(), f[0].data.end());
            imgs_[i].data = {};
        }
        encode_ms_ = ms_since(t0);
        encoder_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("rows", float32_array_of(env, rows_));
        o.Set("nTokens", n_tokens_);
        o.Set("nEmbd", n_embd_);
        o.Set("encodeMs", encode_ms_);
        return o;
    }

  private:
    std::shared_ptr<vision_encoder> encoder_;
    std::vector<rgb_image>          imgs_;
    std::vector<float>              rows_;
    int32_t                         n_tokens_  = 0;
    int32_t                         n_embd_    = 0;
    double                          encode_ms_ = 0;
};

class encoder_preprocess_worker : public promise_worker {
  public:
    encoder_preprocess_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, rgb_image img) :
        promise_worker(env), encoder_(std::move(e)), img_(std::move(img)) {}

  protected:
    void run() override {
        out_ = encoder_->preprocess(img_, &layout_);
        encoder_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Array list = Napi::Array::New(env, out_.size());
        for (size_t i = 0; i < out_.size(); ++i) {
            list.Set(static_cast<uint32_t>(i), pixels_object(env, out_[i]));
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("inputs", list);
        o.Set("layout", layout_object(env, layout_));
        return o;
    }

  private:
    std::shared_ptr<vision_encoder> encoder_;
    rgb_image                       img_;
    std::vector<pixel_input>        out_;
    slice_layout                    layout_;
};

// loadVisionEncoder(path, { threads, gpu, rpc?, flashAttn: 'auto' | 'on' | 'off' }) -> op<AddonVisionEncoder>
Napi::Value load_vision_encoder_js(const Napi::CallbackInfo & info) {
    Napi::Env             env  = info.Env();
    std::string           path = require_string(info, 0, "path");
    Napi::Object          o    = object_arg(info, 1);
    vision_encoder_params p;
    p.n_threads  = threads_opt(env, o);
    p.use_gpu    = optional_bool(o, "gpu", true);
    p.rpc        = rpc_endpoint_opt(o);
    p.flash_attn = flash_attn_arg(env, o);
    return promise_worker::start(env, new load_encoder_worker(env, std::move(path), p));
}

}  // namespace

Napi::Function AddonVisionEncoder::define(Napi::Env env) {
    using E             = AddonVisionEncoder;
    Napi::Function f    = DefineClass(env, "AddonVisionEncoder",
                                      {
                                          InstanceMethod("info", &E::guarded<&E::info>),
                                          InstanceMethod("preprocess", &E::guarded<&E::preprocess>),
                                          InstanceMethod("encode", &E::guarded<&E::encode>),
                                          InstanceMethod("encodePixels", &E::guarded<&E::encode_pixels>),
                                          InstanceMethod("encodeMany", &E::guarded<&E::encode_many>),
                                          InstanceMethod("dispose", &E::guarded<&E::dispose>),
                                   });
    vctors(env).encoder = Napi::Persistent(f);
    return f;
}

Napi::Object AddonVisionEncoder::wrap(Napi::Env env, std::shared_ptr<vision_encoder> e) {
    Napi::Object obj      = vctors(env).encoder.New({});
    Unwrap(obj)->encoder_ = std::move(e);
    return obj;
}

AddonVisionEncoder::AddonVisionEncoder(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonVisionEncoder>(info) {}

std::shared_ptr<vision_encoder> AddonVisionEncoder::from(Napi::Env env, Napi::Value v) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(vctors(env).encoder.Value())) {
        throw_error(env, error_code::invalid_argument, "encoder must be a native VisionEncoder handle");
    }
    return Unwrap(v.As<Napi::Object>())->get(env);
}

std::shared_ptr<vision_encoder> AddonVisionEncoder::get(Napi::Env env) const {
    if (!encoder_) {
        throw_error(env, error_code::disposed, "the vision encoder was used after dispose()");
    }
    return encoder_;
}

Napi::Value AddonVisionEncoder::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         e   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    o.Set("family", e->family());
    set_vision_facts(env, o, e->hparams());
    o.Set("flashAttn", e->flash_attn());
    o.Set("backend", e->backend_name());
    o.Set("nThreads", e->n_threads());
    o.Set("graphThreads", e->graph_threads());
    o.Set("weightsBytes", Napi::Number::New(env, static_cast<double>(e->weights_bytes())));
    return o;
}

// preprocess(rgb, width, height) -> op<{ width, height, data }[]>
Napi::Value AddonVisionEncoder::preprocess(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    return promise_worker::start(env, new encoder_preprocess_worker(env, std::move(e), rgb_args(info, 0)));
}

// encode(rgb, width, height) -> op<{ features: AddonTensor[], preprocessMs, encodeMs }>
Napi::Value AddonVisionEncoder::encode(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    return promise_worker::start(env, new encode_worker(env, std::move(e), rgb_args(info, 0)));
}

// encodeMany(images: [{ data, width, height }]) -> op<{ rows: Float32Array, nTokens, nEmbd, encodeMs }>
Napi::Value AddonVisionEncoder::encode_many(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    if (info.Length() < 1 || !info[0].IsArray()) {
        throw_error(env, error_code::invalid_argument, "images must be an array");
    }
    Napi::Array            list = info[0].As<Napi::Array>();
    std::vector<rgb_image> imgs(list.Length());
    for (uint32_t i = 0; i < list.Length(); ++i) {
        Napi::Value v = list.Get(i);
        if (!v.IsObject()) {
            throw_error(env, error_code::invalid_argument, "each image must be { data, width, height }");
        }
        Napi::Object o = v.As<Napi::Object>();
        Napi::Value  d = o.Get("data"), w = o.Get("width"), h = o.Get("height");
        if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !w.IsNumber() ||
            !h.IsNumber()) {
            throw_error(env, error_code::invalid_argument, "each image must be { data: Uint8Array, width, height }");
        }
        Napi::Uint8Array bytes = d.As<Napi::Uint8Array>();
        const int64_t    W = w.As<Napi::Number>().Int64Value(), H = h.As<Napi::Number>().Int64Value();
        if (W < 1 || H < 1 || W > k_max_image_side || H > k_max_image_side ||
            static_cast<uint64_t>(bytes.ElementLength()) != static_cast<uint64_t>(W) * static_cast<uint64_t>(H) * 3) {
            throw_error(env, error_code::invalid_argument,
                        "image " + std::to_string(i) + ": data must hold width * height * 3 bytes");
        }
        imgs[i].width  = static_cast<int32_t>(W);
        imgs[i].height = static_cast<int32_t>(H);
        imgs[i].data.assign(bytes.Data(), bytes.Data() + bytes.ElementLength());
    }
    return promise_worker::start(env, new encode_many_worker(env, std::move(e), std::move(imgs)));
}

// encodePixels(pixels: Float32Array, width?, height?) -> op<{ features: [AddonTensor], preprocessMs, encodeMs }>
Napi::Value AddonVisionEncoder::encode_pixels(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pixels must be a Float32Array");
    }
    pixel_input p;
    p.width  = info.Length() > 1 && !info[1].IsUndefined() ? require_int(info, 1, "width", 1, 1 << 16)
                                                           : e->hparams().image_size;
    p.height = info.Length() > 2 && !info[2].IsUndefined() ? require_int(info, 2, "height", 1, 1 << 16)
                                                           : e->hparams().image_size;
    e->check_input_size(p.width, p.height);
    auto         a    = info[0].As<Napi::Float32Array>();
    const size_t want = static_cast<size_t>(p.width) * p.height * 3;
    if (a.ElementLength() != want) {
        throw_error(env, error_code::invalid_argument,
                    "pixels must hold 3 x " + std::to_string(p.width) + " x " + std::to_string(p.height) + " values");
    }
    p.data.assign(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new encode_worker(env, std::move(e), std::move(p)));
}

Napi::Value AddonVisionEncoder::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());  // a second dispose is MM_DISPOSED
    encoder_.reset();
    return info.Env().Undefined();
}

void register_encoder(Napi::Env env, Napi::Object exports) {
    exports.Set("loadVisionEncoder", Napi::Function::New(env, guarded<load_vision_encoder_js>, "loadVisionEncoder"));
}

}  // namespace mm::napi
