// AddonScheduler: the native batching thread over one AddonContext (src/backbone/scheduler.h).
// The thread wakes JS through a thread-safe function (at most one wake-up pending at a time);
// JS then drains every queued event in one call. While the scheduler lives the context is busy:
// nothing else decodes on it.
#include <napi.h>

#include <memory>
#include <vector>

#include "addon_backbone.h"
#include "addon_vision.h"
#include "backbone/scheduler.h"
#include "float_views.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

int32_t i32(const Napi::Object & o, const char * key, int32_t fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : fallback;
}

std::vector<int32_t> i32_array(Napi::Env env, const Napi::Value & v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_error(env, error_code::invalid_argument, std::string(name) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

sched_item item_from_js(Napi::Env env, const Napi::Value & v) {
    if (!v.IsObject()) {
        throw_error(env, error_code::invalid_argument, "each prompt item must be an object");
    }
    Napi::Object o = v.As<Napi::Object>();
    sched_item   it;
    it.pos0 = i32(o, "pos0", 0);
    if (!o.Get("tokens").IsUndefined()) {
        it.tokens = i32_array(env, o.Get("tokens"), "tokens");
        return it;
    }
    Napi::Value e = o.Get("embeddings");
    if (AddonTensor::is(env, e)) {
        // a projector's output as it is: the rows are shared, and V8 never sees them (an
        // ArrayBuffer of 4.7 MB per CLIP-L picture counts toward V8's old-generation limit)
        std::shared_ptr<const token_matrix> m = Napi::ObjectWrap<AddonTensor>::Unwrap(e.As<Napi::Object>())->get(env);
        it.embd                               = {std::shared_ptr<const float>(m, m->data.data()), m->data.size()};
    } else if (e.IsTypedArray() && e.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
        it.embd = rows_of(e.As<Napi::Float32Array>());  // a picture's rows in place, else a copy
    } else {
        throw_error(env, error_code::invalid_argument, "embeddings must be a Float32Array or a native tensor");
    }
    it.n_embd = i32(o, "nEmbd", 0);
    if (it.n_embd <= 0) {
        throw_error(env, error_code::invalid_argument, "nEmbd must be a positive integer");
    }
    if (!o.Get("positions").IsUndefined()) {
        it.positions = i32_array(env, o.Get("positions"), "positions");
    }
    it.causal = optional_bool(o, "causal", true);
    return it;
}

}  // namespace

class AddonScheduler : public Napi::ObjectWrap<AddonScheduler> {
  public:
    static Napi::Function define(Napi::Env env) {
        return DefineClass(env, "AddonScheduler",
                           {
                               InstanceMethod("submit", &AddonScheduler::guarded<&AddonScheduler::submit>),
                               InstanceMethod("cancel", &AddonScheduler::guarded<&AddonScheduler::cancel>),
                               InstanceMethod("drain", &AddonScheduler::guarded<&AddonScheduler::drain>),
                               InstanceMethod("stats", &AddonScheduler::guarded<&AddonScheduler::stats>),
                               InstanceMethod("ref", &AddonScheduler::guarded<&AddonScheduler::ref>),
                               InstanceMethod("unref", &AddonScheduler::guarded<&AddonScheduler::unref>),
                               InstanceMethod("dispose", &AddonScheduler::guarded<&AddonScheduler::dispose>),
                           });
    }

    // new AddonScheduler(context: AddonContext, onEvents: () => void)
    explicit AddonScheduler(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonScheduler>(info) {
        guard(info.Env(), [&]() -> Napi::Value {
            Napi::Env env = info.Env();
            if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
                throw_error(env, error_code::invalid_argument, "AddonScheduler(context, onEvents)");
            }
            AddonContext * c = Napi::ObjectWrap<AddonContext>::Unwrap(info[0].As<Napi::Object>());
            if (c == nullptr) {
                throw_error(env, error_code::invalid_argument, "AddonScheduler takes an AddonContext");
            }
            std::shared_ptr<context> ctx = c->get(env);  // throws if disposed or busy
            busy_                        = c->busy_;
            tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "mm-scheduler", 0, 1);
            tsfn_.Unref(env);
            Napi::ThreadSafeFunction tsfn = tsfn_;
            sched_ = std::make_unique<scheduler>(ctx, [tsfn]() mutable { tsfn.NonBlockingCall(); });
            busy_->store(true);
            owner_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
            napi_add_env_cleanup_hook(env, &AddonScheduler::cleanup, this);
            hooked_ = true;
            return env.Undefined();
        });
    }

    ~AddonScheduler() override { shutdown(Env()); }

  private:
    MM_GUARDED_METHODS(AddonScheduler)

    static void cleanup(void * self) { static_cast<AddonScheduler *>(self)->shutdown(nullptr, true); }

    void shutdown(napi_env env, bool from_hook = false) {
        if (sched_) {
            sched_->stop();
            sched_.reset();
            tsfn_.Release();
            busy_->store(false);
        }
        if (hooked_ && !from_hook && env != nullptr) {
            napi_remove_env_cleanup_hook(env, &AddonScheduler::cleanup, this);
        }
        hooked_ = from_hook ? false : hooked_;
    }

    scheduler & get(Napi::Env env) {
        if (!sched_) {
            throw_error(env, error_code::disposed, "the scheduler was used after dispose()");
        }
        return *sched_;
    }

    // submit({ id, seq, keep, items, maxTokens, limit, ignoreEog, sampling })
    Napi::Value submit(const Napi::CallbackInfo & info) {
        Napi::Env   env = info.Env();
        scheduler & s   = get(env);
        if (info.Length() < 1 || !info[0].IsObject()) {
            throw_error(env, error_code::invalid_argument, "submit(request)");
        }
        Napi::Object  o = info[0].As<Napi::Object>();
        sched_request r;
        r.id         = i32(o, "id", 0);
        r.seq        = i32(o, "seq", -1);
        r.keep       = i32(o, "keep", 0);
        r.max_tokens = i32(o, "maxTokens", 256);
        r.limit      = i32(o, "limit", 0);
        r.ignore_eog = optional_bool(o, "ignoreEog", false);
        if (r.max_tokens < 1) {
            throw_error(env, error_code::invalid_argument, "maxTokens must be at least 1");
        }
        Napi::Value items = o.Get("items");
        if (!items.IsArray()) {
            throw_error(env, error_code::invalid_argument, "items must be an array");
        }
        auto a = items.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) {
            r.items.push_back(item_from_js(env, a.Get(i)));
        }
        if (o.Get("sampling").IsObject()) {
            r.sampling = sampling_from_js(o.Get("sampling").As<Napi::Object>());
        }
        s.submit(std::move(r));
        return env.Undefined();
    }

    Napi::Value cancel(const Napi::CallbackInfo & info) {
        scheduler & s = get(info.Env());
        if (info.Length() < 1 || !info[0].IsNumber()) {
            throw_error(info.Env(), error_code::invalid_argument, "cancel(id)");
        }
        s.cancel(info[0].As<Napi::Number>().Int32Value());
        return info.Env().Undefined();
    }

    // drain() -> { tokens: Int32Array [id, token, id, token, ...], ends: [...] }: every token of a
    // request comes before its end.
    Napi::Value drain(const Napi::CallbackInfo & info) {
        Napi::Env                env    = info.Env();
        std::vector<sched_event> events = get(env).drain();
        size_t                   n_tok  = 0;
        for (const auto & e : events) {
            n_tok += e.kind == sched_event::token ? 1 : 0;
        }
        auto     tokens = Napi::Int32Array::New(env, n_tok * 2);
        auto     ends   = Napi::Array::New(env);
        size_t   t      = 0;
        uint32_t k      = 0;
        for (const auto & e : events) {
            if (e.kind == sched_event::token) {
                tokens[t++] = e.id;
                tokens[t++] = e.value;
                continue;
            }
            Napi::Object o = Napi::Object::New(env);
            o.Set("id", e.id);
            if (e.kind == sched_event::failed) {
                o.Set("error", make_error(env, e.code, e.message).Value());
            } else {
                o.Set("reason", e.reason);
                o.Set("generated", e.value);
                o.Set("decoded", e.decoded);
                o.Set("prefilled", e.prefilled);
                o.Set("queueMs", e.queue_ms);
                o.Set("prefillMs", e.prefill_ms);
                o.Set("decodeMs", e.decode_ms);
                o.Set("decodeComputeMs", e.decode_compute_ms);
            }
            ends.Set(k++, o);
        }
        Napi::Object out = Napi::Object::New(env);
        out.Set("tokens", tokens);
        out.Set("ends", ends);
        return out;
    }

    Napi::Value stats(const Napi::CallbackInfo & info) {
        sched_stats  s = get(info.Env()).stats();
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("iterations", static_cast<double>(s.iterations));
        o.Set("tokenSteps", static_cast<double>(s.token_steps));
        o.Set("decodeSteps", static_cast<double>(s.decode_steps));
        o.Set("decodeRows", static_cast<double>(s.decode_rows));
        o.Set("prefillRows", static_cast<double>(s.prefill_rows));
        o.Set("spans", static_cast<double>(s.spans));
        o.Set("mixedSteps", static_cast<double>(s.mixed_steps));
        o.Set("maxRows", s.max_rows);
        o.Set("decodeOnlySteps", static_cast<double>(s.decode_only_steps));
        o.Set("decodeOnlyRows", static_cast<double>(s.decode_only_rows));
        o.Set("decodeOnlyMs", s.decode_only_ms);
        o.Set("lentSteps", static_cast<double>(s.lent_steps));
        o.Set("active", s.active);
        return o;
    }

    // ref()/unref(): whether pending work keeps the event loop alive.
    Napi::Value ref(const Napi::CallbackInfo & info) {
        get(info.Env());
        tsfn_.Ref(info.Env());
        return info.Env().Undefined();
    }

    Napi::Value unref(const Napi::CallbackInfo & info) {
        get(info.Env());
        tsfn_.Unref(info.Env());
        return info.Env().Undefined();
    }

    Napi::Value dispose(const Napi::CallbackInfo & info) {
        shutdown(info.Env());
        owner_ref_.Reset();
        return info.Env().Undefined();
    }

    std::unique_ptr<scheduler>         sched_;
    Napi::ThreadSafeFunction           tsfn_;
    Napi::ObjectReference              owner_ref_;
    std::shared_ptr<std::atomic<bool>> busy_;
    bool                               hooked_ = false;
};

void register_scheduler(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonScheduler", AddonScheduler::define(env));
}

}  // namespace mm::napi
