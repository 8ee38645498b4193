#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "addon_vision.h"

namespace mm::napi {

namespace {

std::mutex                                   g_ctors_mu;
std::unordered_map<napi_env, vision_ctors *> g_ctors;

Napi::Uint8Array to_uint8_array(Napi::Env env, const std::vector<uint8_t> & v) {
    auto out = Napi::Uint8Array::New(env, v.size());
    if (!v.empty()) {
        std::memcpy(out.Data(), v.data(), v.size());
    }
    return out;
}

std::vector<uint8_t> bytes_arg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a Uint8Array");
    }
    auto a = info[i].As<Napi::Uint8Array>();
    return std::vector<uint8_t>(a.Data(), a.Data() + a.ElementLength());
}

}  // namespace

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

static const char * algo_name(resize_algo a) {
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

static const char * pad_name(pad_style p) {
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
static std::array<T, N> numbers_arg(Napi::Env env, const Napi::Object & o, const char * key,
                                    std::array<T, N> fallback) {
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

static Napi::Object preprocess_params_object(Napi::Env env, const preprocess_params & p) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("imageSize", p.image_size);
    if (p.align > 0) {
        o.Set("align", p.align);
        o.Set("minPixels", p.min_pixels);
        o.Set("maxPixels", p.max_pixels);
    }
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
    p.image_size      = size.As<Napi::Number>().Int32Value();
    Napi::Value align = o.Get("align");
    if (!align.IsUndefined()) {
        auto int_in = [&](const char * key, int64_t lo, int64_t hi) {
            Napi::Value v = o.Get(key);
            double      d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
            if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) ||
                d != static_cast<double>(static_cast<int64_t>(d))) {
                throw_error(env, error_code::invalid_argument,
                            std::string(key) + " must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
            }
            return static_cast<int32_t>(d);
        };
        p.align      = int_in("align", 1, 4096);
        p.min_pixels = int_in("minPixels", 1, 1 << 28);
        p.max_pixels = int_in("maxPixels", p.min_pixels, 1 << 28);
    }
    p.algo      = algo_arg(env, o);
    p.pad       = pad_arg(env, o);
    p.pad_color = numbers_arg<uint8_t, 3>(env, o, "padColor", {0, 0, 0});
    p.mean      = numbers_arg<float, 3>(env, o, "mean", {0, 0, 0});
    p.std       = numbers_arg<float, 3>(env, o, "std", {1, 1, 1});
    return p;
}

static const char * ffn_name(blocks::ffn_op op) {
    switch (op) {
        case blocks::ffn_op::gelu:
            return "gelu";
        case blocks::ffn_op::gelu_quick:
            return "gelu_quick";
        case blocks::ffn_op::silu:
            return "silu";
        case blocks::ffn_op::gelu_erf:
            return "gelu_erf";
    }
    return "gelu";
}

int flash_attn_arg(Napi::Env env, const Napi::Object & o) {
    Napi::Value       fa = o.Get("flashAttn");
    const std::string s  = fa.IsString() ? fa.As<Napi::String>().Utf8Value() : "auto";
    if (s != "auto" && s != "on" && s != "off") {
        throw_error(env, error_code::invalid_argument, "flashAttn must be 'auto', 'on' or 'off'");
    }
    return s == "auto" ? -1 : s == "on" ? 1 : 0;
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
    o.Set("normOp", hp.norm == blocks::norm_op::rms ? "rms" : "layer");
    o.Set("dynamicResolution", hp.dynamic);
    o.Set("tiled", hp.tiled);
    o.Set("nMerge", hp.n_merge);
    o.Set("windowPattern", hp.n_wa_pattern);
    o.Set("preprocess", preprocess_params_object(env, hp.preprocess));
    if (hp.audio) {
        Napi::Object a = Napi::Object::New(env);
        a.Set("nMel", hp.n_mel);
        a.Set("nFrames", hp.n_frames);
        a.Set("sampleRate", hp.sample_rate);
        a.Set("nFft", hp.n_fft);
        a.Set("windowLen", hp.window_len);
        a.Set("hopLen", hp.hop_len);
        a.Set("stackFactor", hp.stack_factor);
        a.Set("avgPool", hp.avgpool);
        o.Set("audio", a);
    }
}

Napi::Object layout_object(Napi::Env env, const slice_layout & l) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gridX", l.grid_x);
    o.Set("gridY", l.grid_y);
    o.Set("hasOverview", l.has_overview);
    return o;
}

Napi::Object pixels_object(Napi::Env env, const pixel_input & p) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", p.width);
    o.Set("height", p.height);
    o.Set("data", float32_array_of(env, p.data));
    return o;
}

std::array<uint8_t, 3> color_arg(Napi::Env env, const Napi::Object & o, const char * key) {
    return numbers_arg<uint8_t, 3>(env, o, key, {0, 0, 0});
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

void register_vision(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonVisionEncoder", AddonVisionEncoder::define(env));
    exports.Set("AddonProjector", AddonProjector::define(env));
    exports.Set("AddonAudioEncoder", AddonAudioEncoder::define(env));
    exports.Set("AddonTensor", AddonTensor::define(env));
    register_image(env, exports);
    register_encoder(env, exports);
    register_audio_encoder(env, exports);
    register_projector(env, exports);
    register_tensor(env, exports);
    register_train(env, exports);
}

}  // namespace mm::napi
