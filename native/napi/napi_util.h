// Thin N-API helpers shared by every Addon* file: typed errors, and one promise-returning
// worker shape for every operation (Execute() never touches N-API; all C++ exceptions are
// caught and become JS errors with a `code`).
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "common/abort_guard.h"
#include "common/error.h"
#include "common/rpc.h"

namespace mm::napi {

inline Napi::Error make_error(Napi::Env env, error_code code, const std::string & message) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, error_code_name(code)));
    return err;
}

[[noreturn]] inline void throw_error(Napi::Env env, error_code code, const std::string & message) {
    throw make_error(env, code, message);
}

// Runs a synchronous N-API body, turning C++ exceptions into JS errors with a code. (Only
// Napi::Error crosses into JS by itself; anything else thrown from a callback would terminate.)
template <typename F>
Napi::Value guard(Napi::Env env, F && body) {
    try {
        return body();
    } catch (const Napi::Error &) {
        throw;
    } catch (const error & e) {
        throw make_error(env, e.code(), e.what());
    } catch (const std::bad_alloc &) {
        throw make_error(env, error_code::out_of_memory, "out of memory");
    } catch (const std::exception & e) {
        throw make_error(env, error_code::internal, e.what());
    }
}

// A module-level function wrapped in guard().
template <Napi::Value (*F)(const Napi::CallbackInfo &)>
Napi::Value guarded(const Napi::CallbackInfo & info) {
    return guard(info.Env(), [&] { return F(info); });
}

// An ObjectWrap method wrapped in guard(): InstanceMethod("x", &T::template guarded<&T::x>).
#define MM_GUARDED_METHODS(T)                                                   \
    template <Napi::Value (T::*M)(const Napi::CallbackInfo &)>                  \
    Napi::Value guarded(const Napi::CallbackInfo & info) {                      \
        return ::mm::napi::guard(info.Env(), [&] { return (this->*M)(info); }); \
    }

inline std::string require_string(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsString()) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a string");
    }
    return info[i].As<Napi::String>().Utf8Value();
}

inline bool optional_bool(const Napi::Object & o, const char * key, bool fallback) {
    Napi::Value v = o.Get(key);
    return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : fallback;
}

// The optional `rpc` option of a loader: a ggml RPC worker's "host:port" ("" when absent). Its
// form is checked here (MM_INVALID_ARGUMENT); connecting happens in the load, off this thread.
inline std::string rpc_endpoint_opt(const Napi::Object & o) {
    Napi::Value v = o.Get("rpc");
    if (v.IsUndefined() || v.IsNull()) {
        return "";
    }
    if (!v.IsString()) {
        fail(error_code::invalid_argument, "rpc must be a 'host:port' string");
    }
    std::string endpoint = v.As<Napi::String>().Utf8Value();
    check_rpc_endpoint(endpoint);
    return endpoint;
}

// Base for one asynchronous operation. Subclasses implement run() (worker thread, no N-API)
// and result() (JS thread). start() queues it and returns { promise, cancel }: cancel() sets a
// flag that run() polls (through llama.cpp's abort/progress callbacks).
class promise_worker : public Napi::AsyncWorker {
  public:
    explicit promise_worker(Napi::Env env) :
        Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        cancelled_(std::make_shared<std::atomic<bool>>(false)) {}

    // Queues the worker; returns { promise, cancel }.
    static Napi::Object start(Napi::Env env, promise_worker * worker) {
        Napi::Object out = Napi::Object::New(env);
        out.Set("promise", worker->deferred_.Promise());
        std::shared_ptr<std::atomic<bool>> flag = worker->cancelled_;
        out.Set("cancel", Napi::Function::New(env, [flag](const Napi::CallbackInfo &) { flag->store(true); }));
        worker->Queue();
        return out;
    }

  protected:
    virtual void              run()                 = 0;
    virtual Napi::Value       result(Napi::Env env) = 0;
    const std::atomic<bool> * cancel_flag() const { return cancelled_.get(); }
    bool                      cancelled() const { return cancelled_->load(); }

    void Execute() override {
        try {
            abort_guard guard;
            run();
        } catch (const error & e) {
            fail_with(e.code(), e.what());
        } catch (const std::bad_alloc &) {
            fail_with(error_code::out_of_memory, "out of memory");
        } catch (const std::exception & e) {
            fail_with(error_code::internal, e.what());
        } catch (...) {
            fail_with(error_code::internal, "unknown native exception");
        }
    }

    void OnOK() override {
        Napi::Env         env = Env();
        Napi::HandleScope scope(env);
        try {
            deferred_.Resolve(result(env));
        } catch (const Napi::Error & e) {
            deferred_.Reject(e.Value());
        } catch (const std::exception & e) {
            deferred_.Reject(make_error(env, error_code::internal, e.what()).Value());
        }
    }

    void OnError(const Napi::Error & e) override {
        Napi::Env         env = Env();
        Napi::HandleScope scope(env);
        deferred_.Reject(make_error(env, code_, e.Message()).Value());
    }

  private:
    void fail_with(error_code code, const std::string & message) {
        code_ = code;
        SetError(message.empty() ? std::string(error_code_name(code)) : message);
    }

    Napi::Promise::Deferred            deferred_;
    std::shared_ptr<std::atomic<bool>> cancelled_;
    error_code                         code_ = error_code::internal;
};

// A class constructor kept per napi environment (the napi instance data is the backbone glue's):
// one static per addon file, freed by the environment's cleanup hook.
class env_ctor {
  public:
    Napi::FunctionReference & get(Napi::Env env) {
        std::lock_guard<std::mutex> lock(mu_);
        auto                        it = refs_.find(env);
        if (it != refs_.end()) {
            return *it->second;
        }
        auto *   r   = new Napi::FunctionReference();
        napi_env key = env;
        refs_[key]   = r;
        env.AddCleanupHook([this, key, r]() {
            {
                std::lock_guard<std::mutex> lock(mu_);
                refs_.erase(key);
            }
            delete r;
        });
        return *r;
    }

  private:
    std::mutex                                              mu_;
    std::unordered_map<napi_env, Napi::FunctionReference *> refs_;
};

}  // namespace mm::napi
