#include "addon_vision.h"

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "encoders/image.h"
#include "encoders/preprocess.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

// Constructors per environment. (napi instance data is a single slot, already used by the
// backbone glue, so vision keeps its own table, emptied by an env cleanup hook.)
struct vision_ctors {
    Napi::FunctionReference encoder;
    Napi::FunctionReference projector;
    Napi::FunctionReference tensor;
};

std::mutex                                   g_ctors_mu;
std::unordered_map<napi_env, vision_ctors *> g_ctors;

vision_ctors & vctors(Napi::Env env) {
    std::lock_guard<std::mutex> lock(g_ctors_mu);
    auto                        it = g_ctors.find(env);
    if (it != g_ctors.end()) {
        return *it->second;
    }
    auto *   c   = new vision_ctors();
    napi_env key = env;
    g_ctors[key] = c;
    env.AddCleanupHook([key, c]() {
        {
            std::lock_guard<std::mutex> lock(g_ctors_mu);
            g_ctors.erase(key);
        }
        delete c;
    });
    return *c;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

Napi::Object object_arg(const Napi::CallbackInfo & info, size_t i) {
    if (info.Length() > i && info[i].IsObject()) {
        return info[i].As<Napi::Object>();
    }
    return Napi::Object::New(info.Env());
}

int32_t require_int(const Napi::CallbackInfo & info, size_t i, const char * name, int64_t lo, int64_t hi) {
    if (info.Length() <= i || !info[i].IsNumber()) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a number");
    }
    double v = info[i].As<Napi::Number>().DoubleValue();
    if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) ||
        v != static_cast<double>(static_cast<int64_t>(v))) {
        throw_error(
            info.Env(), error_code::invalid_argument,
            std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return static_cast<int32_t>(v);
}

std::vector<uint8_t> bytes_arg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a Uint8Array");
    }
    auto a = info[i].As<Napi::Uint8Array>();
    return std::vector<uint8_t>(a.Data(), a.Data() + a.ElementLength());
}

// (rgb: Uint8Array, width, height) starting at argument i, checked, copied.
rgb_image rgb_args(const Napi::CallbackInfo & info, size_t i) {
    rgb_image img;
    img.data   = bytes_arg(info, i, "rgb");
    img.width  = require_int(info, i + 1, "width", 1, k_max_image_side);
    img.height = require_int(info, i + 2, "height", 1, k_max_image_side);
    if (img.data.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
        throw_error(info.Env(), error_code::invalid_argument,
                    "rgb has " + std::to_string(img.data.size()) + " bytes, width * height * 3 = " +
                        std::to_string(static_cast<uint64_t>(img.width) * img.height * 3));
    }
    return img;
}

Napi::Uint8Array to_uint8_array(Napi::Env env, const std::vector<uint8_t> & v) {
    auto out = Napi::Uint8Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size());
    }
    return out;
}

Napi::Float32Array float32_array_of(Napi::Env env, const std::vector<float> & v) {
    auto out = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size() * sizeof(float));
    }
    return out;
}

Napi::Object image_object(Napi::Env env, const rgb_image & img) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", img.width);
    o.Set("height", img.height);
    o.Set("data", to_uint8_array(env, img.data));
    return o;
}

const char * algo_name(resize_algo a) {
    switch (a) {
        case resize_algo::bilinear:
            return "bilinear";
        case resize_algo::bicubic:
            return "bicubic";
        case resize_algo::lanczos:
            return "lanczos";
    }
    return "bicubic";
}

const char * pad_name(pad_style p) {
    switch (p) {
        case pad_style::none:
            return "none";
        case pad_style::ceil:
            return "ceil";
        case pad_style::nearest:
            return "nearest";
    }
    return "ceil";
}

resize_algo algo_arg(Napi::Env env, const Napi::Object & o) {
    Napi::Value v = o.Get("resize");
    std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "bicubic";
    if (s == "bilinear") {
        return resize_algo::bilinear;
    }
    if (s == "bicubic") {
        return resize_algo::bicubic;
    }
    if (s == "lanczos") {
        return resize_algo::lanczos;
    }
    throw_error(env, error_code::invalid_argument, "resize must be 'bilinear', 'bicubic' or 'lanczos'");
}

pad_style pad_arg(Napi::Env env, const Napi::Object & o) {
    Napi::Value v = o.Get("pad");
    std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "ceil";
    if (s == "none") {
        return pad_style::none;
    }
    if (s == "ceil") {
        return pad_style::ceil;
    }
    if (s == "nearest") {
        return pad_style::nearest;
    }
    throw_error(env, error_code::invalid_argument, "pad must be 'none', 'ceil' or 'nearest'");
}

template <typename T, size_t N>
std::array<T, N> numbers_arg(Napi::Env env, const Napi::Object & o, const char * key, std::array<T, N> fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) {
        return fallback;
    }
    if (!v.IsArray() || v.As<Napi::Array>().Length() != N) {
        throw_error(env, error_code::invalid_argument, std::string(key) + " must be an array of " + std::to_string(N));
    }
    std::array<T, N> out{};
    auto             a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < N; ++i) {
        Napi::Value e = a.Get(i);
        if (!e.IsNumber()) {
            throw_error(env, error_code::invalid_argument, std::string(key) + " must hold numbers");
        }
        out[i] = static_cast<T>(e.As<Napi::Number>().DoubleValue());
    }
    return out;
}

Napi::Object preprocess_params_object(Napi::Env env, const preprocess_params & p) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("imageSize", p.image_size);
    o.Set("resize", algo_name(p.algo));
    o.Set("pad", pad_name(p.pad));
    Napi::Array color = Napi::Array::New(env, 3), mean = Napi::Array::New(env, 3), stdv = Napi::Array::New(env, 3);
    for (uint32_t i = 0; i < 3; ++i) {
        color.Set(i, p.pad_color[i]);
        mean.Set(i, p.mean[i]);
        stdv.Set(i, p.std[i]);
    }
    o.Set("padColor", color);
    o.Set("mean", mean);
    o.Set("std", stdv);
    return o;
}

preprocess_params preprocess_params_arg(Napi::Env env, const Napi::Object & o) {
    preprocess_params p;
    Napi::Value       size = o.Get("imageSize");
    if (!size.IsNumber() || size.As<Napi::Number>().DoubleValue() < 1 || size.As<Napi::Number>().DoubleValue() > 8192) {
        throw_error(env, error_code::invalid_argument, "imageSize must be a number in [1, 8192]");
    }
    p.image_size = size.As<Napi::Number>().Int32Value();
    p.algo       = algo_arg(env, o);
    p.pad        = pad_arg(env, o);
    p.pad_color  = numbers_arg<uint8_t, 3>(env, o, "padColor", {0, 0, 0});
    p.mean       = numbers_arg<float, 3>(env, o, "mean", {0, 0, 0});
    p.std        = numbers_arg<float, 3>(env, o, "std", {1, 1, 1});
    return p;
}

const char * ffn_name(blocks::ffn_op op) {
    switch (op) {
        case blocks::ffn_op::gelu:
            return "gelu";
        case blocks::ffn_op::gelu_quick:
            return "gelu_quick";
        case blocks::ffn_op::silu:
            return "silu";
    }
    return "gelu";
}

void set_vision_facts(Napi::Env env, Napi::Object & o, const vision_hparams & hp) {
    o.Set("projectorType", hp.projector_type);
    o.Set("imageSize", hp.image_size);
    o.Set("patchSize", hp.patch_size);
    o.Set("gridSize", hp.grid);
    o.Set("nPatches", hp.n_patches);
    o.Set("nEmbdVision", hp.n_embd);
    o.Set("nHead", hp.n_head);
    o.Set("nLayer", hp.n_layer);
    o.Set("nBlocksRun", hp.n_blocks_run);
    Napi::Array layers = Napi::Array::New(env, hp.feature_layers.size());
    for (size_t i = 0; i < hp.feature_layers.size(); ++i) {
        layers.Set(static_cast<uint32_t>(i), hp.feature_layers[i]);
    }
    o.Set("featureLayers", layers);
    o.Set("nEmbdFeatures", hp.n_embd_out);
    o.Set("hasClassEmbd", hp.has_class_embd);
    o.Set("ffnOp", ffn_name(hp.ffn));
    o.Set("preprocess", preprocess_params_object(env, hp.preprocess));
}

// ---- free-standing workers ---------------------------------------------------------------

class decode_image_worker : public promise_worker {
  public:
    decode_image_worker(Napi::Env env, std::vector<uint8_t> bytes, uint64_t max_pixels) :
        promise_worker(env), bytes_(std::move(bytes)), max_pixels_(max_pixels) {}

  protected:
    void run() override {
        image_ = decode_image(bytes_.data(), bytes_.size(), max_pixels_);
        bytes_.clear();
        bytes_.shrink_to_fit();
    }

    Napi::Value result(Napi::Env env) override { return image_object(env, image_); }

  private:
    std::vector<uint8_t> bytes_;
    uint64_t             max_pixels_;
    rgb_image            image_;
};

class resize_image_worker : public promise_worker {
  public:
    resize_image_worker(Napi::Env env, rgb_image img, int32_t w, int32_t h, resize_algo a, pad_style p,
                        std::array<uint8_t, 3> color) :
        promise_worker(env), img_(std::move(img)), w_(w), h_(h), algo_(a), pad_(p), color_(color) {}

  protected:
    void        run() override { img_ = resize_image(img_, w_, h_, algo_, pad_, color_); }
    Napi::Value result(Napi::Env env) override { return image_object(env, img_); }

  private:
    rgb_image              img_;
    int32_t                w_, h_;
    resize_algo            algo_;
    pad_style              pad_;
    std::array<uint8_t, 3> color_;
};

class preprocess_worker : public promise_worker {
  public:
    preprocess_worker(Napi::Env env, rgb_image img, preprocess_params p) :
        promise_worker(env), img_(std::move(img)), params_(p) {}

  protected:
    void        run() override { out_ = preprocess_image(img_, params_); }
    Napi::Value result(Napi::Env env) override { return float32_array_of(env, out_); }

  private:
    rgb_image          img_;
    preprocess_params  params_;
    std::vector<float> out_;
};

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

class load_projector_worker : public promise_worker {
  public:
    load_projector_worker(Napi::Env env, std::string path, projector_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        projector_     = projector::load(path_, params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonProjector::wrap(env, std::move(projector_)); }

  private:
    std::string                path_;
    projector_params           params_;
    std::shared_ptr<projector> projector_;
};

class inspect_mmproj_worker : public promise_worker {
  public:
    inspect_mmproj_worker(Napi::Env env, std::string path) : promise_worker(env), path_(std::move(path)) {}

  protected:
    void run() override { info_ = inspect_mmproj(path_); }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("family", info_.family);
        o.Set("encoderFamily", info_.encoder_family);
        set_vision_facts(env, o, info_.vision);
        o.Set("nEmbdOut", info_.out.n_embd_out);
        o.Set("nTokensOut", info_.out.n_tokens_out);
        return o;
    }

  private:
    std::string path_;
    mmproj_info info_;
};

// ---- encoder / projector workers -----------------------------------------------------------

class encode_worker : public promise_worker {
  public:
    encode_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, rgb_image img) :
        promise_worker(env), encoder_(std::move(e)), img_(std::move(img)) {}
    encode_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, std::vector<float> pixels) :
        promise_worker(env), encoder_(std::move(e)), pixels_(std::move(pixels)), from_pixels_(true) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        auto m = std::make_shared<token_matrix>();
        if (from_pixels_) {
            auto t0    = std::chrono::steady_clock::now();
            *m         = encoder_->encode_pixels(pixels_, cancel_flag());
            encode_ms_ = ms_since(t0);
        } else {
            encode_timings t;
            *m             = encoder_->encode(img_, cancel_flag(), &t);
            preprocess_ms_ = t.preprocess_ms;
            encode_ms_     = t.encode_ms;
        }
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        features_ = std::move(m);
        encoder_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("features", AddonTensor::wrap(env, std::move(features_)));
        o.Set("preprocessMs", preprocess_ms_);
        o.Set("encodeMs", encode_ms_);
        return o;
    }

  private:
    std::shared_ptr<vision_encoder>     encoder_;
    rgb_image                           img_;
    std::vector<float>                  pixels_;
    bool                                from_pixels_ = false;
    std::shared_ptr<const token_matrix> features_;
    double                              preprocess_ms_ = 0;
    double                              encode_ms_     = 0;
};

class encoder_preprocess_worker : public promise_worker {
  public:
    encoder_preprocess_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, rgb_image img) :
        promise_worker(env), encoder_(std::move(e)), img_(std::move(img)) {}

  protected:
    void run() override {
        out_ = encoder_->preprocess(img_);
        encoder_.reset();
    }

    Napi::Value result(Napi::Env env) override { return float32_array_of(env, out_); }

  private:
    std::shared_ptr<vision_encoder> encoder_;
    rgb_image                       img_;
    std::vector<float>              out_;
};

class project_worker : public promise_worker {
  public:
    project_worker(Napi::Env env, std::shared_ptr<projector> p, std::shared_ptr<const token_matrix> f) :
        promise_worker(env), projector_(std::move(p)), features_(std::move(f)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        auto t0     = std::chrono::steady_clock::now();
        auto m      = std::make_shared<token_matrix>(projector_->project(*features_, cancel_flag()));
        project_ms_ = ms_since(t0);
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        embeddings_ = std::move(m);
        projector_.reset();
        features_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("embeddings", AddonTensor::wrap(env, std::move(embeddings_)));
        o.Set("projectMs", project_ms_);
        return o;
    }

  private:
    std::shared_ptr<projector>          projector_;
    std::shared_ptr<const token_matrix> features_;
    std::shared_ptr<const token_matrix> embeddings_;
    double                              project_ms_ = 0;
};

// ---- module functions ----------------------------------------------------------------------

// decodeImage(bytes: Uint8Array, maxPixels: number) -> op<{ width, height, data }>
Napi::Value decode_image_js(const Napi::CallbackInfo & info) {
    Napi::Env            env   = info.Env();
    std::vector<uint8_t> bytes = bytes_arg(info, 0, "bytes");
    if (info.Length() < 2 || !info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 1)) {
        throw_error(env, error_code::invalid_argument, "maxPixels must be a number >= 1");
    }
    const double max_pixels = info[1].As<Napi::Number>().DoubleValue();
    return promise_worker::start(
        env, new decode_image_worker(env, std::move(bytes),
                                     max_pixels >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(max_pixels)));
}

// probeImage(bytes: Uint8Array) -> { width, height, format } (header only, synchronous)
Napi::Value probe_image_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(env, error_code::invalid_argument, "bytes must be a Uint8Array");
    }
    auto a = info[0].As<Napi::Uint8Array>();
    try {
        image_header h = probe_image(a.Data(), a.ElementLength());
        Napi::Object o = Napi::Object::New(env);
        o.Set("width", h.width);
        o.Set("height", h.height);
        o.Set("format", h.format);
        return o;
    } catch (const error & e) {
        throw_error(env, e.code(), e.what());
    }
}

// resizeImage(rgb, width, height, targetWidth, targetHeight, { resize, pad, padColor }) -> op<image>
Napi::Value resize_image_js(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    rgb_image    img = rgb_args(info, 0);
    int32_t      tw  = require_int(info, 3, "targetWidth", 1, 8192);
    int32_t      th  = require_int(info, 4, "targetHeight", 1, 8192);
    Napi::Object o   = object_arg(info, 5);
    return promise_worker::start(env,
                                 new resize_image_worker(env, std::move(img), tw, th, algo_arg(env, o), pad_arg(env, o),
                                                         numbers_arg<uint8_t, 3>(env, o, "padColor", {0, 0, 0})));
}

// preprocessImage(rgb, width, height, params) -> op<Float32Array> ([3][size][size])
Napi::Value preprocess_image_js(const Napi::CallbackInfo & info) {
    Napi::Env         env = info.Env();
    rgb_image         img = rgb_args(info, 0);
    preprocess_params p   = preprocess_params_arg(env, object_arg(info, 3));
    return promise_worker::start(env, new preprocess_worker(env, std::move(img), p));
}

int threads_opt(Napi::Env env, const Napi::Object & o) {
    Napi::Value v = o.Get("threads");
    if (v.IsUndefined()) {
        return 4;
    }
    if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 1 || v.As<Napi::Number>().Int32Value() > 512) {
        throw_error(env, error_code::invalid_argument, "threads must be an integer in [1, 512]");
    }
    return v.As<Napi::Number>().Int32Value();
}

// loadVisionEncoder(path, { threads, gpu, flashAttn: 'auto' | 'on' | 'off' }) -> op<AddonVisionEncoder>
Napi::Value load_vision_encoder_js(const Napi::CallbackInfo & info) {
    Napi::Env             env  = info.Env();
    std::string           path = require_string(info, 0, "path");
    Napi::Object          o    = object_arg(info, 1);
    vision_encoder_params p;
    p.n_threads    = threads_opt(env, o);
    p.use_gpu      = optional_bool(o, "gpu", true);
    Napi::Value fa = o.Get("flashAttn");
    std::string s  = fa.IsString() ? fa.As<Napi::String>().Utf8Value() : "auto";
    if (s != "auto" && s != "on" && s != "off") {
        throw_error(env, error_code::invalid_argument, "flashAttn must be 'auto', 'on' or 'off'");
    }
    p.flash_attn = s == "auto" ? -1 : s == "on" ? 1 : 0;
    return promise_worker::start(env, new load_encoder_worker(env, std::move(path), p));
}

// loadProjector(path, { threads, gpu }) -> op<AddonProjector>
Napi::Value load_projector_js(const Napi::CallbackInfo & info) {
    Napi::Env        env  = info.Env();
    std::string      path = require_string(info, 0, "path");
    Napi::Object     o    = object_arg(info, 1);
    projector_params p;
    p.n_threads = threads_opt(env, o);
    p.use_gpu   = optional_bool(o, "gpu", true);
    return promise_worker::start(env, new load_projector_worker(env, std::move(path), p));
}

// inspectMmproj(path) -> op<info>: the whole header validated, no weights read
Napi::Value inspect_mmproj_js(const Napi::CallbackInfo & info) {
    Napi::Env   env  = info.Env();
    std::string path = require_string(info, 0, "path");
    return promise_worker::start(env, new inspect_mmproj_worker(env, std::move(path)));
}

// tensorFromFloat32(data: Float32Array, nTokens, nEmbd) -> AddonTensor (copied)
Napi::Value tensor_from_float32_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "data must be a Float32Array");
    }
    auto    a        = info[0].As<Napi::Float32Array>();
    int32_t n_tokens = require_int(info, 1, "nTokens", 1, 1 << 24);
    int32_t n_embd   = require_int(info, 2, "nEmbd", 1, 1 << 20);
    if (a.ElementLength() != static_cast<size_t>(n_tokens) * static_cast<size_t>(n_embd)) {
        throw_error(env, error_code::invalid_argument,
                    "data has " + std::to_string(a.ElementLength()) +
                        " values, nTokens * nEmbd = " + std::to_string(static_cast<int64_t>(n_tokens) * n_embd));
    }
    auto m      = std::make_shared<token_matrix>();
    m->n_tokens = n_tokens;
    m->n_embd   = n_embd;
    m->data.assign(a.Data(), a.Data() + a.ElementLength());
    return AddonTensor::wrap(env, std::move(m));
}

}  // namespace

// ---- AddonVisionEncoder ------------------------------------------------------------------

Napi::Function AddonVisionEncoder::define(Napi::Env env) {
    Napi::Function f    = DefineClass(env, "AddonVisionEncoder",
                                      {
                                          InstanceMethod("info", &AddonVisionEncoder::info),
                                          InstanceMethod("preprocess", &AddonVisionEncoder::preprocess),
                                          InstanceMethod("encode", &AddonVisionEncoder::encode),
                                          InstanceMethod("encodePixels", &AddonVisionEncoder::encode_pixels),
                                          InstanceMethod("dispose", &AddonVisionEncoder::dispose),
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

// preprocess(rgb, width, height) -> op<Float32Array>
Napi::Value AddonVisionEncoder::preprocess(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    return promise_worker::start(env, new encoder_preprocess_worker(env, std::move(e), rgb_args(info, 0)));
}

// encode(rgb, width, height) -> op<{ features, preprocessMs, encodeMs }>
Napi::Value AddonVisionEncoder::encode(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    return promise_worker::start(env, new encode_worker(env, std::move(e), rgb_args(info, 0)));
}

// encodePixels(pixels: Float32Array) -> op<{ features, preprocessMs, encodeMs }>
Napi::Value AddonVisionEncoder::encode_pixels(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      e   = get(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(env, error_code::invalid_argument, "pixels must be a Float32Array");
    }
    auto         a    = info[0].As<Napi::Float32Array>();
    const size_t want = static_cast<size_t>(e->hparams().image_size) * e->hparams().image_size * 3;
    if (a.ElementLength() != want) {
        throw_error(env, error_code::invalid_argument,
                    "pixels must hold 3 x " + std::to_string(e->hparams().image_size) + " x " +
                        std::to_string(e->hparams().image_size) + " values");
    }
    std::vector<float> pixels(a.Data(), a.Data() + a.ElementLength());
    return promise_worker::start(env, new encode_worker(env, std::move(e), std::move(pixels)));
}

Napi::Value AddonVisionEncoder::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());  // a second dispose is MM_DISPOSED
    encoder_.reset();
    return info.Env().Undefined();
}

// ---- AddonProjector ----------------------------------------------------------------------

Napi::Function AddonProjector::define(Napi::Env env) {
    Napi::Function f      = DefineClass(env, "AddonProjector",
                                        {
                                            InstanceMethod("info", &AddonProjector::info),
                                            InstanceMethod("project", &AddonProjector::project),
                                            InstanceMethod("dispose", &AddonProjector::dispose),
                                   });
    vctors(env).projector = Napi::Persistent(f);
    return f;
}

Napi::Object AddonProjector::wrap(Napi::Env env, std::shared_ptr<projector> p) {
    Napi::Object obj        = vctors(env).projector.New({});
    Unwrap(obj)->projector_ = std::move(p);
    return obj;
}

AddonProjector::AddonProjector(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonProjector>(info) {}

std::shared_ptr<projector> AddonProjector::get(Napi::Env env) const {
    if (!projector_) {
        throw_error(env, error_code::disposed, "the projector was used after dispose()");
    }
    return projector_;
}

Napi::Value AddonProjector::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         p   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    o.Set("family", p->info().family);
    o.Set("encoderFamily", p->info().encoder_family);
    set_vision_facts(env, o, p->info().vision);
    o.Set("nEmbdIn", p->n_embd_in());
    o.Set("nTokensIn", p->n_tokens_in());
    o.Set("nEmbdOut", p->n_embd_out());
    o.Set("nTokensOut", p->n_tokens_out());
    o.Set("backend", p->backend_name());
    o.Set("nThreads", p->n_threads());
    o.Set("graphThreads", p->graph_threads());
    o.Set("weightsBytes", Napi::Number::New(env, static_cast<double>(p->weights_bytes())));
    return o;
}

// project(features: AddonTensor) -> op<{ embeddings, projectMs }>
Napi::Value AddonProjector::project(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      p   = get(env);
    if (info.Length() < 1 || !AddonTensor::is(env, info[0])) {
        throw_error(env, error_code::invalid_argument, "features must be a native Features handle");
    }
    auto f = AddonTensor::Unwrap(info[0].As<Napi::Object>())->get(env);
    return promise_worker::start(env, new project_worker(env, std::move(p), std::move(f)));
}

Napi::Value AddonProjector::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    projector_.reset();
    return info.Env().Undefined();
}

// ---- AddonTensor -------------------------------------------------------------------------

Napi::Function AddonTensor::define(Napi::Env env) {
    Napi::Function f   = DefineClass(env, "AddonTensor",
                                     {
                                         InstanceMethod("info", &AddonTensor::info),
                                         InstanceMethod("toFloat32Array", &AddonTensor::to_float32_array),
                                         InstanceMethod("dispose", &AddonTensor::dispose),
                                   });
    vctors(env).tensor = Napi::Persistent(f);
    return f;
}

Napi::Object AddonTensor::wrap(Napi::Env env, std::shared_ptr<const token_matrix> m) {
    Napi::Object obj     = vctors(env).tensor.New({});
    Unwrap(obj)->matrix_ = std::move(m);
    return obj;
}

bool AddonTensor::is(Napi::Env env, Napi::Value v) {
    return v.IsObject() && v.As<Napi::Object>().InstanceOf(vctors(env).tensor.Value());
}

AddonTensor::AddonTensor(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonTensor>(info) {}

std::shared_ptr<const token_matrix> AddonTensor::get(Napi::Env env) const {
    if (!matrix_) {
        throw_error(env, error_code::disposed, "the tensor was used after dispose()");
    }
    return matrix_;
}

Napi::Value AddonTensor::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         m   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    o.Set("nTokens", m->n_tokens);
    o.Set("nEmbd", m->n_embd);
    return o;
}

Napi::Value AddonTensor::to_float32_array(const Napi::CallbackInfo & info) {
    return float32_array_of(info.Env(), get(info.Env())->data);
}

Napi::Value AddonTensor::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    matrix_.reset();
    return info.Env().Undefined();
}

void register_vision(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonVisionEncoder", AddonVisionEncoder::define(env));
    exports.Set("AddonProjector", AddonProjector::define(env));
    exports.Set("AddonTensor", AddonTensor::define(env));
    exports.Set("decodeImage", Napi::Function::New(env, decode_image_js, "decodeImage"));
    exports.Set("probeImage", Napi::Function::New(env, probe_image_js, "probeImage"));
    exports.Set("resizeImage", Napi::Function::New(env, resize_image_js, "resizeImage"));
    exports.Set("preprocessImage", Napi::Function::New(env, preprocess_image_js, "preprocessImage"));
    exports.Set("loadVisionEncoder", Napi::Function::New(env, load_vision_encoder_js, "loadVisionEncoder"));
    exports.Set("loadProjector", Napi::Function::New(env, load_projector_js, "loadProjector"));
    exports.Set("inspectMmproj", Napi::Function::New(env, inspect_mmproj_js, "inspectMmproj"));
    exports.Set("tensorFromFloat32", Napi::Function::New(env, tensor_from_float32_js, "tensorFromFloat32"));
}

}  // namespace mm::napi
