// AddonProjectorTrainer: createProjectorTrainer, then per step one worker (step / evaluate / logits);
// parameters, AdamW moments and the step count are read and written synchronously (checkpoints).
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "addon_vision.h"
#include "projectors/train/projector_trainer.h"

namespace mm::napi {

namespace {

class AddonProjectorTrainer : public Napi::ObjectWrap<AddonProjectorTrainer> {
  public:
    static Napi::Function define(Napi::Env env);
    static Napi::Object   wrap(Napi::Env env, std::shared_ptr<projector_trainer> t);
    explicit AddonProjectorTrainer(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonProjectorTrainer>(info) {}
    MM_GUARDED_METHODS(AddonProjectorTrainer)

  private:
    std::shared_ptr<projector_trainer> get(Napi::Env env) const {
        if (!trainer_) {
            throw_error(env, error_code::disposed, "the trainer was used after dispose()");
        }
        return trainer_;
    }

    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value set_data(const Napi::CallbackInfo & info);
    Napi::Value set_param(const Napi::CallbackInfo & info);
    Napi::Value get_param(const Napi::CallbackInfo & info);
    Napi::Value set_moments(const Napi::CallbackInfo & info);
    Napi::Value get_moment(const Napi::CallbackInfo & info);
    Napi::Value set_steps(const Napi::CallbackInfo & info);
    Napi::Value step(const Napi::CallbackInfo & info);
    Napi::Value evaluate(const Napi::CallbackInfo & info);
    Napi::Value logits(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<projector_trainer> trainer_;
};

Napi::FunctionReference & trainer_ctor(Napi::Env env) {
    static std::unordered_map<napi_env, Napi::FunctionReference *> refs;
    auto &                                                         r = refs[env];
    if (r == nullptr) {
        r = new Napi::FunctionReference();
    }
    return *r;
}

Napi::Float32Array float32_arg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw_error(info.Env(), error_code::invalid_argument, std::string(name) + " must be a Float32Array");
    }
    return info[i].As<Napi::Float32Array>();
}

std::vector<int32_t> int32_vector(Napi::Env env, Napi::Value v, const char * name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw_error(env, error_code::invalid_argument, std::string(name) + " must be an Int32Array");
    }
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Object result_object(Napi::Env env, const step_result & r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", r.loss);
    o.Set("nCorrect", Napi::Number::New(env, static_cast<double>(r.ncorrect)));
    o.Set("nTargets", Napi::Number::New(env, static_cast<double>(r.ntargets)));
    return o;
}

class create_worker : public promise_worker {
  public:
    create_worker(Napi::Env env, trainer_params p) : promise_worker(env), params_(std::move(p)) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        trainer_       = projector_trainer::create(params_);
    }
    Napi::Value result(Napi::Env env) override { return AddonProjectorTrainer::wrap(env, std::move(trainer_)); }

  private:
    trainer_params                     params_;
    std::shared_ptr<projector_trainer> trainer_;
};

class run_worker : public promise_worker {
  public:
    enum class kind { step, evaluate, grads };
    run_worker(Napi::Env env, std::shared_ptr<projector_trainer> t, std::vector<int32_t> batch, kind k,
               adamw_hyper hyper) :
        promise_worker(env), trainer_(std::move(t)), batch_(std::move(batch)), kind_(k), hyper_(hyper) {}

  protected:
    void run() override {
        if (kind_ == kind::step) {
            result_ = trainer_->step(batch_, hyper_, cancel_flag());
        } else {
            result_ = trainer_->evaluate(batch_, kind_ == kind::grads ? &grads_ : nullptr, cancel_flag());
        }
    }
    Napi::Value result(Napi::Env env) override {
        Napi::Object o = result_object(env, result_);
        if (kind_ == kind::grads) {
            Napi::Array a = Napi::Array::New(env, grads_.size());
            for (size_t i = 0; i < grads_.size(); ++i) {
                a.Set(static_cast<uint32_t>(i), float32_array_of(env, grads_[i]));
            }
            o.Set("grads", a);
        }
        return o;
    }

  private:
    std::shared_ptr<projector_trainer> trainer_;
    std::vector<int32_t>               batch_;
    kind                               kind_;
    adamw_hyper                        hyper_;
    step_result                        result_;
    std::vector<std::vector<float>>    grads_;
};

class logits_worker : public promise_worker {
  public:
    logits_worker(Napi::Env env, std::shared_ptr<projector_trainer> t, std::vector<float> embd, int n) :
        promise_worker(env), trainer_(std::move(t)), embd_(std::move(embd)), n_(n) {}

  protected:
    void        run() override { out_ = trainer_->llm_logits(embd_.data(), n_, cancel_flag()); }
    Napi::Value result(Napi::Env env) override { return float32_array_of(env, out_); }

  private:
    std::shared_ptr<projector_trainer> trainer_;
    std::vector<float>                 embd_;
    int                                n_;
    std::vector<float>                 out_;
};

float number_or(const Napi::Object & o, const char * key, float fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) {
        return fallback;
    }
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) {
        throw_error(o.Env(), error_code::invalid_argument, std::string(key) + " must be a finite number");
    }
    return v.As<Napi::Number>().FloatValue();
}

// createProjectorTrainer({ model, projector, nEmbdV, nHidden, threads }) -> op<AddonProjectorTrainer>
Napi::Value create_js(const Napi::CallbackInfo & info) {
    Napi::Env      env = info.Env();
    Napi::Object   o   = object_arg(info, 0);
    trainer_params p;
    Napi::Value    model = o.Get("model");
    Napi::Value    proj  = o.Get("projector");
    if (!model.IsString() || !proj.IsString()) {
        throw_error(env, error_code::invalid_argument, "model and projector must be strings");
    }
    p.model_path = model.As<Napi::String>().Utf8Value();
    p.projector  = proj.As<Napi::String>().Utf8Value();
    p.n_embd_v   = static_cast<int>(number_or(o, "nEmbdV", 0));
    p.n_hidden   = static_cast<int>(number_or(o, "nHidden", 0));
    p.n_threads  = threads_opt(env, o);
    return promise_worker::start(env, new create_worker(env, std::move(p)));
}

}  // namespace

Napi::Function AddonProjectorTrainer::define(Napi::Env env) {
    using T           = AddonProjectorTrainer;
    Napi::Function f  = DefineClass(env, "AddonProjectorTrainer",
                                    {
                                        InstanceMethod("info", &T::guarded<&T::info>),
                                        InstanceMethod("setData", &T::guarded<&T::set_data>),
                                        InstanceMethod("setParam", &T::guarded<&T::set_param>),
                                        InstanceMethod("getParam", &T::guarded<&T::get_param>),
                                        InstanceMethod("setMoments", &T::guarded<&T::set_moments>),
                                        InstanceMethod("getMoment", &T::guarded<&T::get_moment>),
                                        InstanceMethod("setSteps", &T::guarded<&T::set_steps>),
                                        InstanceMethod("step", &T::guarded<&T::step>),
                                        InstanceMethod("evaluate", &T::guarded<&T::evaluate>),
                                        InstanceMethod("logits", &T::guarded<&T::logits>),
                                        InstanceMethod("dispose", &T::guarded<&T::dispose>),
                                   });
    trainer_ctor(env) = Napi::Persistent(f);
    return f;
}

Napi::Object AddonProjectorTrainer::wrap(Napi::Env env, std::shared_ptr<projector_trainer> t) {
    Napi::Object obj      = trainer_ctor(env).New({});
    Unwrap(obj)->trainer_ = std::move(t);
    return obj;
}

// info() -> { params: [{ name, ne }], steps, nSamples, llm: { nEmbd, nLayer, nHead, nHeadKv, nFf, nVocab, nCtxTrain } }
Napi::Value AddonProjectorTrainer::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         t   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    Napi::Array  ps  = Napi::Array::New(env, t->params().size());
    for (size_t i = 0; i < t->params().size(); ++i) {
        Napi::Object p  = Napi::Object::New(env);
        Napi::Array  ne = Napi::Array::New(env, t->params()[i].ne.size());
        for (size_t k = 0; k < t->params()[i].ne.size(); ++k) {
            ne.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(t->params()[i].ne[k])));
        }
        p.Set("name", t->params()[i].name);
        p.Set("ne", ne);
        ps.Set(static_cast<uint32_t>(i), p);
    }
    o.Set("params", ps);
    o.Set("steps", Napi::Number::New(env, static_cast<double>(t->steps())));
    o.Set("nSamples", Napi::Number::New(env, static_cast<double>(t->n_samples())));
    const train_llama_hparams & hp  = t->llm();
    Napi::Object                llm = Napi::Object::New(env);
    llm.Set("nEmbd", hp.n_embd);
    llm.Set("nLayer", hp.n_layer);
    llm.Set("nHead", hp.n_head);
    llm.Set("nHeadKv", hp.n_head_kv);
    llm.Set("nFf", hp.n_ff);
    llm.Set("nVocab", hp.n_vocab);
    llm.Set("nCtxTrain", hp.n_ctx_train);
    o.Set("llm", llm);
    return o;
}

// setData(features: Float32Array, nImages, nPatches, samples: [{ image, imagePos, tokens, targets }])
Napi::Value AddonProjectorTrainer::set_data(const Napi::CallbackInfo & info) {
    Napi::Env          env = info.Env();
    auto               t   = get(env);
    Napi::Float32Array f   = float32_arg(info, 0, "features");
    const int          ni  = require_int(info, 1, "nImages", 0, 1 << 30);
    const int          np  = require_int(info, 2, "nPatches", 1, 1 << 20);
    if (info.Length() < 4 || !info[3].IsArray()) {
        throw_error(env, error_code::invalid_argument, "samples must be an array");
    }
    Napi::Array               arr = info[3].As<Napi::Array>();
    std::vector<train_sample> samples(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value v = arr.Get(i);
        if (!v.IsObject()) {
            throw_error(env, error_code::invalid_argument, "each sample must be an object");
        }
        Napi::Object s       = v.As<Napi::Object>();
        samples[i].image     = static_cast<int32_t>(number_or(s, "image", -1));
        samples[i].image_pos = static_cast<int32_t>(number_or(s, "imagePos", -1));
        samples[i].tokens    = int32_vector(env, s.Get("tokens"), "tokens");
        samples[i].targets   = int32_vector(env, s.Get("targets"), "targets");
    }
    t->set_data(std::vector<float>(f.Data(), f.Data() + f.ElementLength()), ni, np, std::move(samples));
    return env.Undefined();
}

Napi::Value AddonProjectorTrainer::set_param(const Napi::CallbackInfo & info) {
    auto               t = get(info.Env());
    const int          i = require_int(info, 0, "index", 0, 1 << 20);
    Napi::Float32Array a = float32_arg(info, 1, "data");
    t->set_param(i, a.Data(), a.ElementLength());
    return info.Env().Undefined();
}

Napi::Value AddonProjectorTrainer::get_param(const Napi::CallbackInfo & info) {
    auto t = get(info.Env());
    return float32_array_of(info.Env(), t->get_param(require_int(info, 0, "index", 0, 1 << 20)));
}

Napi::Value AddonProjectorTrainer::set_moments(const Napi::CallbackInfo & info) {
    auto               t = get(info.Env());
    const int          i = require_int(info, 0, "index", 0, 1 << 20);
    Napi::Float32Array m = float32_arg(info, 1, "m");
    Napi::Float32Array v = float32_arg(info, 2, "v");
    if (m.ElementLength() != v.ElementLength()) {
        throw_error(info.Env(), error_code::invalid_argument, "m and v must have the same length");
    }
    t->set_moments(i, m.Data(), v.Data(), m.ElementLength());
    return info.Env().Undefined();
}

Napi::Value AddonProjectorTrainer::get_moment(const Napi::CallbackInfo & info) {
    auto       t      = get(info.Env());
    const int  i      = require_int(info, 0, "index", 0, 1 << 20);
    const bool second = info.Length() > 1 && info[1].ToBoolean().Value();
    return float32_array_of(info.Env(), t->get_moment(i, second));
}

Napi::Value AddonProjectorTrainer::set_steps(const Napi::CallbackInfo & info) {
    auto t = get(info.Env());
    t->set_steps(require_int(info, 0, "steps", 0, 1 << 30));
    return info.Env().Undefined();
}

// step(batch: Int32Array, { lr, beta1, beta2, eps, weightDecay }) -> op<{ loss, nCorrect, nTargets }>
Napi::Value AddonProjectorTrainer::step(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         t   = get(env);
    auto         b   = int32_vector(env, info.Length() > 0 ? info[0] : env.Undefined(), "batch");
    Napi::Object o   = object_arg(info, 1);
    adamw_hyper  h;
    h.lr           = number_or(o, "lr", h.lr);
    h.beta1        = number_or(o, "beta1", h.beta1);
    h.beta2        = number_or(o, "beta2", h.beta2);
    h.eps          = number_or(o, "eps", h.eps);
    h.weight_decay = number_or(o, "weightDecay", h.weight_decay);
    if (!(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f && h.eps > 0.0f && h.lr >= 0.0f &&
          h.weight_decay >= 0.0f)) {
        throw_error(env, error_code::invalid_argument,
                    "AdamW needs lr >= 0, 0 <= beta1, beta2 < 1, eps > 0 and weightDecay >= 0");
    }
    return promise_worker::start(env, new run_worker(env, std::move(t), std::move(b), run_worker::kind::step, h));
}

// evaluate(batch: Int32Array, grads: boolean) -> op<{ loss, nCorrect, nTargets, grads? }>
Napi::Value AddonProjectorTrainer::evaluate(const Napi::CallbackInfo & info) {
    Napi::Env  env   = info.Env();
    auto       t     = get(env);
    auto       b     = int32_vector(env, info.Length() > 0 ? info[0] : env.Undefined(), "batch");
    const bool grads = info.Length() > 1 && info[1].ToBoolean().Value();
    return promise_worker::start(
        env, new run_worker(env, std::move(t), std::move(b),
                            grads ? run_worker::kind::grads : run_worker::kind::evaluate, adamw_hyper{}));
}

// logits(embeddings: Float32Array [T * nEmbd]) -> op<Float32Array [T * nVocab]>
Napi::Value AddonProjectorTrainer::logits(const Napi::CallbackInfo & info) {
    Napi::Env          env = info.Env();
    auto               t   = get(env);
    Napi::Float32Array e   = float32_arg(info, 0, "embeddings");
    const size_t       E   = static_cast<size_t>(t->llm().n_embd);
    if (e.ElementLength() == 0 || e.ElementLength() % E != 0) {
        throw_error(env, error_code::invalid_argument, "embeddings must hold a whole number of rows of nEmbd");
    }
    std::vector<float> embd(e.Data(), e.Data() + e.ElementLength());
    return promise_worker::start(
        env, new logits_worker(env, std::move(t), std::move(embd), static_cast<int>(e.ElementLength() / E)));
}

Napi::Value AddonProjectorTrainer::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    trainer_.reset();
    return info.Env().Undefined();
}

void register_train(Napi::Env env, Napi::Object exports) {
    exports.Set("AddonProjectorTrainer", AddonProjectorTrainer::define(env));
    exports.Set("createProjectorTrainer", Napi::Function::New(env, guarded<create_js>, "createProjectorTrainer"));
}

}  // namespace mm::napi
