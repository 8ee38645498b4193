#include "common/system_info.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

Napi::Value system_info_js(const Napi::CallbackInfo & info) {
    Napi::Env       env = info.Env();
    mm::system_info si  = get_system_info();
    Napi::Object    out = Napi::Object::New(env);
    out.Set("llamaCommit", si.llama_commit);
    Napi::Array backends = Napi::Array::New(env, si.backends.size());
    for (size_t i = 0; i < si.backends.size(); ++i) {
        backends.Set(i, si.backends[i]);
    }
    out.Set("backends", backends);
    Napi::Array devices = Napi::Array::New(env, si.devices.size());
    for (size_t i = 0; i < si.devices.size(); ++i) {
        const auto & d = si.devices[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", d.name);
        o.Set("description", d.description);
        o.Set("type", d.type);
        o.Set("backend", d.backend);
        o.Set("memoryTotal", Napi::Number::New(env, static_cast<double>(d.memory_total)));
        o.Set("memoryFree", Napi::Number::New(env, static_cast<double>(d.memory_free)));
        devices.Set(i, o);
    }
    out.Set("devices", devices);
    Napi::Object features = Napi::Object::New(env);
    for (const auto & [k, v] : si.cpu_features) {
        features.Set(k, v);
    }
    out.Set("cpuFeatures", features);
    out.Set("cpuModel", si.cpu_model);
    out.Set("hardwareThreads", si.hardware_threads);
    out.Set("supportsGpuOffload", si.supports_gpu_offload);
    out.Set("supportsMmap", si.supports_mmap);
    out.Set("supportsMlock", si.supports_mlock);
    out.Set("llamaSystemInfo", si.llama_system_info);
    return out;
}

}  // namespace

void register_system(Napi::Env env, Napi::Object exports) {
    exports.Set("systemInfo", Napi::Function::New(env, guarded<system_info_js>, "systemInfo"));
}

}  // namespace mm::napi
