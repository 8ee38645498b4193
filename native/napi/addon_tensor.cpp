// AddonTensor: a Features or Embeddings matrix held natively, shared and immutable, with the grid
// its rows form and (embeddings) whether the LLM attends causally inside it.
#include <cstring>
#include <string>

#include "addon_vision.h"
#include "float_views.h"

namespace mm::napi {

namespace {

// tensorFromFloat32(data: Float32Array, nTokens, nEmbd, { nx, ny, causal }?) -> AddonTensor (copied)
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
    if (info.Length() > 3 && info[3].IsObject()) {
        Napi::Object o  = info[3].As<Napi::Object>();
        Napi::Value  nx = o.Get("nx"), ny = o.Get("ny");
        if (!nx.IsUndefined() || !ny.IsUndefined()) {
            if (!nx.IsNumber() || !ny.IsNumber()) {
                throw_error(env, error_code::invalid_argument, "nx and ny must be numbers");
            }
            const int64_t x = nx.As<Napi::Number>().Int64Value(), y = ny.As<Napi::Number>().Int64Value();
            if (x < 1 || y < 1 || x * y != n_tokens) {
                throw_error(env, error_code::invalid_argument, "nx * ny must equal nTokens");
            }
            m->nx = static_cast<int32_t>(x);
            m->ny = static_cast<int32_t>(y);
        }
        m->causal = optional_bool(o, "causal", true);
    }
    m->data.assign(a.Data(), a.Data() + a.ElementLength());
    return AddonTensor::wrap(env, std::move(m));
}

}  // namespace

Napi::Function AddonTensor::define(Napi::Env env) {
    Napi::Function f =
        DefineClass(env, "AddonTensor",
                    {
                        InstanceMethod("info", &AddonTensor::guarded<&AddonTensor::info>),
                        InstanceMethod("toFloat32Array", &AddonTensor::guarded<&AddonTensor::to_float32_array>),
                        InstanceMethod("dispose", &AddonTensor::guarded<&AddonTensor::dispose>),
                    });
    vctors(env).tensor = Napi::Persistent(f);
    return f;
}

Napi::Object AddonTensor::wrap(Napi::Env env, std::shared_ptr<const token_matrix> m) {
    Napi::Object obj     = vctors(env).tensor.New({});
    Unwrap(obj)->matrix_ = std::move(m);
    return obj;
}

Napi::Array AddonTensor::wrap_all(Napi::Env env, std::vector<std::shared_ptr<const token_matrix>> && ms) {
    Napi::Array list = Napi::Array::New(env, ms.size());
    for (size_t i = 0; i < ms.size(); ++i) {
        list.Set(static_cast<uint32_t>(i), wrap(env, std::move(ms[i])));
    }
    return list;
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
    o.Set("nx", m->nx);
    o.Set("ny", m->ny);
    o.Set("causal", m->causal);
    return o;
}

Napi::Value AddonTensor::to_float32_array(const Napi::CallbackInfo & info) {
    return float32_view_of(info.Env(), get(info.Env()));
}

Napi::Value AddonTensor::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    matrix_.reset();
    return info.Env().Undefined();
}

void register_tensor(Napi::Env env, Napi::Object exports) {
    exports.Set("tensorFromFloat32", Napi::Function::New(env, guarded<tensor_from_float32_js>, "tensorFromFloat32"));
}

}  // namespace mm::napi
