// Image functions of @mm/encoders: decode (stb_image, bounded), probe a header, resize and
// preprocess exactly as libmtmd does.
#include <string>
#include <vector>

#include "addon_vision.h"

namespace mm::napi {

namespace {

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
    Napi::Value result(Napi::Env env) override { return pixels_object(env, out_); }

  private:
    rgb_image         img_;
    preprocess_params params_;
    pixel_input       out_;
};

std::vector<uint8_t> copy_bytes(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a Uint8Array");
    }
    auto a = info[i].As<Napi::Uint8Array>();
    return std::vector<uint8_t>(a.Data(), a.Data() + a.ElementLength());
}

// decodeImage(bytes: Uint8Array, maxPixels: number) -> op<{ width, height, data }>
Napi::Value decode_image_js(const Napi::CallbackInfo & info) {
    Napi::Env            env   = info.Env();
    std::vector<uint8_t> bytes = copy_bytes(info, 0, "bytes");
    if (info.Length() < 2 || !info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 1)) {
        throw_error(env, error_code::invalid_argument, "maxPixels must be a number >= 1");
    }
    const double max_pixels = info[1].As<Napi::Number>().DoubleValue();
    return promise_worker::start(
        env, new decode_image_worker(env, std::move(bytes),
                                     max_pixels >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(max_pixels)));
}

// decodeImageSync(bytes: Uint8Array, maxPixels: number) -> { width, height, data }: on the calling
// thread, for small pictures (a worker hop costs more than decoding a few thousand pixels).
Napi::Value decode_image_sync_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsNumber() ||
        !(info[1].As<Napi::Number>().DoubleValue() >= 1)) {
        throw_error(env, error_code::invalid_argument, "decodeImageSync(bytes: Uint8Array, maxPixels >= 1)");
    }
    auto         a          = info[0].As<Napi::Uint8Array>();
    const double max_pixels = info[1].As<Napi::Number>().DoubleValue();
    return image_object(env, decode_image(a.Data(), a.ElementLength(),
                                          max_pixels >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(max_pixels)));
}

// probeImage(bytes: Uint8Array) -> { width, height, format } (header only, synchronous)
Napi::Value probe_image_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw_error(env, error_code::invalid_argument, "bytes must be a Uint8Array");
    }
    auto         a = info[0].As<Napi::Uint8Array>();
    image_header h = probe_image(a.Data(), a.ElementLength());
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", h.width);
    o.Set("height", h.height);
    o.Set("format", h.format);
    return o;
}

// resizeImage(rgb, width, height, targetWidth, targetHeight, { resize, pad, padColor }) -> op<image>
Napi::Value resize_image_js(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    rgb_image    img = rgb_args(info, 0);
    int32_t      tw  = require_int(info, 3, "targetWidth", 1, 8192);
    int32_t      th  = require_int(info, 4, "targetHeight", 1, 8192);
    Napi::Object o   = object_arg(info, 5);
    return promise_worker::start(env, new resize_image_worker(env, std::move(img), tw, th, algo_arg(env, o),
                                                              pad_arg(env, o), color_arg(env, o, "padColor")));
}

// preprocessImage(rgb, width, height, params) -> op<{ width, height, data: Float32Array }> ([3][H][W])
Napi::Value preprocess_image_js(const Napi::CallbackInfo & info) {
    Napi::Env         env = info.Env();
    rgb_image         img = rgb_args(info, 0);
    preprocess_params p   = preprocess_params_arg(env, object_arg(info, 3));
    return promise_worker::start(env, new preprocess_worker(env, std::move(img), p));
}

}  // namespace

void register_image(Napi::Env env, Napi::Object exports) {
    exports.Set("decodeImage", Napi::Function::New(env, guarded<decode_image_js>, "decodeImage"));
    exports.Set("decodeImageSync", Napi::Function::New(env, guarded<decode_image_sync_js>, "decodeImageSync"));
    exports.Set("probeImage", Napi::Function::New(env, guarded<probe_image_js>, "probeImage"));
    exports.Set("resizeImage", Napi::Function::New(env, guarded<resize_image_js>, "resizeImage"));
    exports.Set("preprocessImage", Napi::Function::New(env, guarded<preprocess_image_js>, "preprocessImage"));
}

}  // namespace mm::napi
