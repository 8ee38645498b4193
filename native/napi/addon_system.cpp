#include "common/backends.h"
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

    const mm::backend_load_info & bl  = mm::backends_loaded();
    Napi::Object                  cpu = Napi::Object::New(env);
    cpu.Set("build", bl.build);
    cpu.Set("dir", bl.dir);
    cpu.Set("binary", bl.binary);
    cpu.Set("chosen", bl.chosen);
    cpu.Set("reason", bl.reason);
    if (!bl.forced.empty()) {
        cpu.Set("forced", bl.forced);
    }
    Napi::Array variants = Napi::Array::New(env, bl.variants.size());
    for (size_t i = 0; i < bl.variants.size(); ++i) {
        Napi::Object v = Napi::Object::New(env);
        v.Set("name", bl.variants[i].name);
        v.Set("file", bl.variants[i].file);
        v.Set("score", bl.variants[i].score);
        variants.Set(i, v);
    }
    cpu.Set("variants", variants);
    Napi::Array others = Napi::Array::New(env, bl.others.size());
    for (size_t i = 0; i < bl.others.size(); ++i) {
        others.Set(i, bl.others[i]);
    }
    cpu.Set("otherBackends", others);
    out.Set("cpuBackend", cpu);
    return out;
}

}  // namespace

void register_system(Napi::Env env, Napi::Object exports) {
    exports.Set("systemInfo", Napi::Function::New(env, guarded<system_info_js>, "systemInfo"));
}

}  // namespace mm::napi
