// ggml RPC worker glue: serve this machine's devices to other mm / llama.cpp processes.
#include <napi.h>

#include <string>
#include <thread>
#include <vector>

#include "common/rpc.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

std::vector<std::string> string_list(const Napi::Object & o, const char * key) {
    std::vector<std::string> out;
    Napi::Value              v = o.Get(key);
    if (v.IsUndefined()) {
        return out;
    }
    if (!v.IsArray()) {
        throw_error(o.Env(), error_code::invalid_argument, std::string(key) + " must be an array of strings");
    }
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
        if (!a.Get(i).IsString()) {
            throw_error(o.Env(), error_code::invalid_argument, std::string(key) + " must be an array of strings");
        }
        out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
    return out;
}

rpc_worker_params worker_params(const Napi::CallbackInfo & info) {
    if (info.Length() < 1 || !info[0].IsObject()) {
        throw_error(info.Env(), error_code::invalid_argument, "options must be an object");
    }
    Napi::Object      o = info[0].As<Napi::Object>();
    rpc_worker_params p;
    if (o.Get("host").IsString()) {
        p.host = o.Get("host").As<Napi::String>().Utf8Value();
    }
    if (o.Get("port").IsNumber()) {
        p.port = o.Get("port").As<Napi::Number>().Int32Value();
    }
    if (o.Get("threads").IsNumber()) {
        p.threads = o.Get("threads").As<Napi::Number>().Int32Value();
    }
    if (o.Get("cacheDir").IsString()) {
        p.cache_dir = o.Get("cacheDir").As<Napi::String>().Utf8Value();
    }
    p.devices = string_list(o, "devices");
    return p;
}

// rpcWorkerDevices(names: string[]) -> [{ name, description }]: the devices a worker would serve
// (the CPU for []); MM_INVALID_ARGUMENT listing the available ones for an unknown name.
Napi::Value rpc_worker_devices_js(const Napi::CallbackInfo & info) {
    Napi::Env                env = info.Env();
    std::vector<std::string> names;
    if (info.Length() > 0 && info[0].IsArray()) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("devices", info[0]);
        names = string_list(o, "devices");
    }
    std::vector<ggml_backend_dev_t> devs = rpc_worker_devices(names);
    Napi::Array                     out  = Napi::Array::New(env, devs.size());
    for (size_t i = 0; i < devs.size(); ++i) {
        Napi::Object d = Napi::Object::New(env);
        d.Set("name", ggml_backend_dev_name(devs[i]));
        d.Set("description", ggml_backend_dev_description(devs[i]));
        out.Set(static_cast<uint32_t>(i), d);
    }
    return out;
}

// startRpcWorker({ host, port, threads, devices, cacheDir? }, onExit(error)) -> undefined.
// ggml's server blocks its thread for as long as it listens, so it runs on a thread of its own
// (not the libuv pool) and the JS thread stays free for signals. It returns only when it could not
// start; onExit is then called with the typed error. Until then the pending callback keeps the
// event loop (and so the process) alive.
Napi::Value start_rpc_worker_js(const Napi::CallbackInfo & info) {
    Napi::Env         env = info.Env();
    rpc_worker_params p   = worker_params(info);
    if (info.Length() < 2 || !info[1].IsFunction()) {
        throw_error(env, error_code::invalid_argument, "onExit must be a function");
    }
    rpc_worker_devices(p.devices);  // unknown names fail here, synchronously
    check_rpc_endpoint(p.host + ":" + std::to_string(p.port));
    auto tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "mm-rpc-worker", 0, 1);
    std::thread([p = std::move(p), tsfn]() mutable {
        error_code  code = error_code::internal;
        std::string message;
        try {
            abort_guard guard;
            rpc_serve(p);
        } catch (const error & e) {
            code    = e.code();
            message = e.what();
        } catch (const std::exception & e) {
            message = e.what();
        }
        tsfn.BlockingCall(
            [code, message](Napi::Env env, Napi::Function cb) { cb.Call({make_error(env, code, message).Value()}); });
        tsfn.Release();
    }).detach();
    return env.Undefined();
}

}  // namespace

void register_rpc(Napi::Env env, Napi::Object exports) {
    exports.Set("startRpcWorker", Napi::Function::New(env, guarded<start_rpc_worker_js>, "startRpcWorker"));
    exports.Set("rpcWorkerDevices", Napi::Function::New(env, guarded<rpc_worker_devices_js>, "rpcWorkerDevices"));
}

}  // namespace mm::napi
