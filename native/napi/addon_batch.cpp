// AddonBatch: continuous batching over one AddonContext (see src/backbone/batch.h). Thin glue:
// argument conversion and one worker per step; the context is marked busy while a step runs.
#include <napi.h>

#include <atomic>
#include <memory>
#include <vector>

#include "addon_backbone.h"
#include "backbone/batch.h"
#include "napi_util.h"

namespace mm::napi {

namespace {

struct batch_state {
    std::shared_ptr<context> ctx;
    batch_stepper            stepper;

    explicit batch_state(std::shared_ptr<context> c) : ctx(std::move(c)), stepper(*ctx) {}
};

std::vector<int32_t> int32_array(const Napi::Value & v, Napi::Env env, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_error(env, error_code::invalid_argument, std::string(name) + " must be an Int32Array");
    }
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

class step_worker : public promise_worker {
  public:
    step_worker(Napi::Env env, std::shared_ptr<batch_state> s, std::vector<batch_input> in,
                std::shared_ptr<std::atomic<bool>> busy, std::shared_ptr<std::atomic<bool>> stepping) :
        promise_worker(env),
        state_(std::move(s)),
        inputs_(std::move(in)),
        busy_(std::move(busy)),
        stepping_(std::move(stepping)) {}

    ~step_worker() override {
        busy_->store(false);
        stepping_->store(false);
    }

  protected:
    void run() override { out_ = state_->stepper.step(inputs_, cancel_flag()); }

    Napi::Value result(Napi::Env env) override {
        auto a = Napi::Int32Array::New(env, out_.size());
        for (size_t i = 0; i < out_.size(); ++i) {
            a[i] = out_[i];
        }
        return a;
    }

  private:
    std::shared_ptr<batch_state>       state_;
    std::vector<batch_input>           inputs_;
    std::vector<int32_t>               out_;
    std::shared_ptr<std::atomic<bool>> busy_;
    std::shared_ptr<std::atomic<bool>> stepping_;
};

}  // namespace

class AddonBatch : public Napi::ObjectWrap<AddonBatch> {
  public:
    static Napi::Function define(Napi::Env env) {
        return DefineClass(env, "AddonBatch",
                           {
                               InstanceMethod("start", &AddonBatch::guarded<&AddonBatch::start>),
                               InstanceMethod("finish", &AddonBatch::guarded<&AddonBatch::finish>),
                               InstanceMethod("step", &AddonBatch::guarded<&AddonBatch::step>),
                               InstanceMethod("dispose", &AddonBatch::guarded<&AddonBatch::dispose>),
                           });
    }

    // new AddonBatch(context: AddonContext)
    explicit AddonBatch(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonBatch>(info) {
        guard(info.Env(), [&]() -> Napi::Value {
            if (info.Length() < 1 || !info[0].IsObject()) {
                throw_error(info.Env(), error_code::invalid_argument, "AddonBatch takes an AddonContext");
            }
            AddonContext * c = Napi::ObjectWrap<AddonContext>::Unwrap(info[0].As<Napi::Object>());
            if (c == nullptr) {
                throw_error(info.Env(), error_code::invalid_argument, "AddonBatch takes an AddonContext");
            }
            owner_     = c;
            busy_      = c->busy_;
            state_     = std::make_shared<batch_state>(c->get(info.Env()));
            owner_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
            return info.Env().Undefined();
        });
    }

  private:
    MM_GUARDED_METHODS(AddonBatch)

    batch_state & state(Napi::Env env) {
        if (!state_) {
            throw_error(env, error_code::disposed, "the batch was used after dispose()");
        }
        if (stepping_->load()) {
            throw_error(env, error_code::invalid_argument, "a step is running");
        }
        return *state_;
    }

    // start(seq, sampling)
    Napi::Value start(const Napi::CallbackInfo & info) {
        batch_state & s = state(info.Env());
        if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsObject()) {
            throw_error(info.Env(), error_code::invalid_argument, "start(seq, sampling)");
        }
        s.stepper.start(info[0].As<Napi::Number>().Int32Value(), sampling_from_js(info[1].As<Napi::Object>()));
        return info.Env().Undefined();
    }

    // finish(seq)
    Napi::Value finish(const Napi::CallbackInfo & info) {
        batch_state & s = state(info.Env());
        if (info.Length() < 1 || !info[0].IsNumber()) {
            throw_error(info.Env(), error_code::invalid_argument, "finish(seq)");
        }
        s.stepper.finish(info[0].As<Napi::Number>().Int32Value());
        return info.Env().Undefined();
    }

    // step(seqs: Int32Array, tokens: Int32Array, positions: Int32Array) -> { promise<Int32Array>, cancel }
    Napi::Value step(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        state(env);
        if (info.Length() < 3) {
            throw_error(env, error_code::invalid_argument, "step(seqs, tokens, positions)");
        }
        auto seqs   = int32_array(info[0], env, "seqs");
        auto tokens = int32_array(info[1], env, "tokens");
        auto pos    = int32_array(info[2], env, "positions");
        if (seqs.size() != tokens.size() || seqs.size() != pos.size()) {
            throw_error(env, error_code::invalid_argument, "seqs, tokens and positions must have the same length");
        }
        std::vector<batch_input> in(seqs.size());
        for (size_t i = 0; i < seqs.size(); ++i) {
            in[i] = {seqs[i], tokens[i], pos[i]};
        }
        state_->ctx = owner_->get(env);  // throws if the context was disposed or is busy
        busy_->store(true);
        stepping_->store(true);
        return promise_worker::start(env, new step_worker(env, state_, std::move(in), busy_, stepping_));
    }

    Napi::Value dispose(const Napi::CallbackInfo & info) {
        state(info.Env());
        state_.reset();
        owner_ref_.Reset();
        return info.Env().Undefined();
    }

    AddonContext *                     owner_ = nullptr;
    Napi::ObjectReference              owner_ref_;
    std::shared_ptr<batch_state>       state_;
    std::shared_ptr<std::atomic<bool>> busy_;
    std::shared_ptr<std::atomic<bool>> stepping_ = std::make_shared<std::atomic<bool>>(false);
};

void register_batch(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonBatch", AddonBatch::define(env));
}

}  // namespace mm::napi
