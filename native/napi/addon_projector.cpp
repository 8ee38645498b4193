// AddonProjector: loadProjector, inspectMmproj, project (Features -> Embeddings with their token
// grid and causality).
#include <chrono>
#include <string>

#include "addon_vision.h"

namespace mm::napi {

namespace {

class load_projector_worker : public promise_worker {
  public:
    load_projector_worker(Napi::Env env, std::string path, projector_params p) :
        promise_worker(env), path_(std::move(path)), params_(p) {}

  protected:
    void run() override {
        params_.cancel = cancel_flag();
        projector_     = projector::load(path_, params_);
    }

    Napi::Value result(Napi::Env env) override { return AddonProjector::wrap(env, std::move(projector_)); }

  private:
    std::string                path_;
    projector_params           params_;
    std::shared_ptr<projector> projector_;
};

Napi::Array strings_array(Napi::Env env, const std::vector<std::string> & v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        a.Set(static_cast<uint32_t>(i), v[i]);
    }
    return a;
}

// The family's slice template (projectors/registry.h), camel-cased for JS.
Napi::Object slices_object(Napi::Env env, const slice_template & t) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("overviewStart", strings_array(env, t.ov_start));
    o.Set("overviewEnd", strings_array(env, t.ov_end));
    o.Set("slicesStart", strings_array(env, t.slices_start));
    o.Set("slicesEnd", strings_array(env, t.slices_end));
    o.Set("sliceStart", strings_array(env, t.sli_start));
    o.Set("sliceEnd", strings_array(env, t.sli_end));
    o.Set("sliceMid", strings_array(env, t.sli_mid));
    o.Set("rowEnd", strings_array(env, t.row_end));
    o.Set("sliceStartFormat", t.sli_start_fmt);
    o.Set("rowEndTrail", t.row_end_trail);
    o.Set("overviewFirst", t.ov_first);
    return o;
}

void set_projector_facts(Napi::Object & o, const mmproj_info & info, const projector_family & fam) {
    Napi::Env env = o.Env();
    o.Set("slices", slices_object(env, fam.slices != nullptr ? fam.slices(info.vision) : slice_template{}));
    o.Set("family", info.family);
    o.Set("encoderFamily", info.encoder_family);
    o.Set("nEmbdOut", info.out.n_embd_out);
    o.Set("nTokensOut", info.out.n_tokens_out);
    o.Set("causal", fam.causal);
    o.Set("imageBegin", fam.image_begin);
    o.Set("imageEnd", fam.image_end);
    if (info.vision.audio) {
        // the family's begin / end text goes around the audio chunks (mtmd.cpp aud_beg / aud_end)
        o.Set("audioBegin", fam.image_begin);
        o.Set("audioEnd", fam.image_end);
    }
}

class inspect_mmproj_worker : public promise_worker {
  public:
    inspect_mmproj_worker(Napi::Env env, std::string path, bool audio) :
        promise_worker(env), path_(std::move(path)), audio_(audio) {}

  protected:
    void run() override { info_ = inspect_mmproj(path_, &fam_, audio_); }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        set_vision_facts(env, o, info_.vision);
        set_projector_facts(o, info_, *fam_);
        return o;
    }

  private:
    std::string              path_;
    bool                     audio_ = false;
    mmproj_info              info_;
    const projector_family * fam_ = nullptr;
};

class project_worker : public promise_worker {
  public:
    project_worker(Napi::Env env, std::shared_ptr<projector> p, std::shared_ptr<const token_matrix> f) :
        promise_worker(env), projector_(std::move(p)), features_(std::move(f)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        auto t0     = std::chrono::steady_clock::now();
        auto m      = std::make_shared<token_matrix>(projector_->project(*features_, cancel_flag()));
        project_ms_ = ms_since(t0);
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        embeddings_ = std::move(m);
        projector_.reset();
        features_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("embeddings", AddonTensor::wrap(env, std::move(embeddings_)));
        o.Set("projectMs", project_ms_);
        return o;
    }

  private:
    std::shared_ptr<projector>          projector_;
    std::shared_ptr<const token_matrix> features_;
    std::shared_ptr<const token_matrix> embeddings_;
    double                              project_ms_ = 0;
};

// A picture through the encoder and this projector in one worker (one hop instead of two): the
// encoder's chunks (preprocessed, encoded) each projected, with the layout and the stage times.
class encode_project_worker : public promise_worker {
  public:
    encode_project_worker(Napi::Env env, std::shared_ptr<vision_encoder> e, std::shared_ptr<projector> p,
                          rgb_image img) :
        promise_worker(env), encoder_(std::move(e)), projector_(std::move(p)), img_(std::move(img)) {}

  protected:
    void run() override {
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        encode_timings            t;
        std::vector<token_matrix> features = encoder_->encode(img_, cancel_flag(), &t, &layout_);
        preprocess_ms_                     = t.preprocess_ms;
        encode_ms_                         = t.encode_ms;
        img_.data                          = {};
        const auto t0                      = std::chrono::steady_clock::now();
        for (const token_matrix & f : features) {
            if (cancelled()) {
                fail(error_code::aborted, "aborted");
            }
            embeddings_.push_back(std::make_shared<token_matrix>(projector_->project(f, cancel_flag())));
        }
        project_ms_ = ms_since(t0);
        if (cancelled()) {
            fail(error_code::aborted, "aborted");
        }
        encoder_.reset();
        projector_.reset();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("embeddings", AddonTensor::wrap_all(env, std::move(embeddings_)));
        o.Set("layout", layout_object(env, layout_));
        o.Set("preprocessMs", preprocess_ms_);
        o.Set("encodeMs", encode_ms_);
        o.Set("projectMs", project_ms_);
        return o;
    }

  private:
    std::shared_ptr<vision_encoder>                  encoder_;
    std::shared_ptr<projector>                       projector_;
    rgb_image                                        img_;
    std::vector<std::shared_ptr<const token_matrix>> embeddings_;
    slice_layout                                     layout_;
    double                                           preprocess_ms_ = 0;
    double                                           encode_ms_     = 0;
    double                                           project_ms_    = 0;
};

// loadProjector(path, { threads, gpu, rpc?, audio }) -> op<AddonProjector>
Napi::Value load_projector_js(const Napi::CallbackInfo & info) {
    Napi::Env        env  = info.Env();
    std::string      path = require_string(info, 0, "path");
    Napi::Object     o    = object_arg(info, 1);
    projector_params p;
    p.n_threads = threads_opt(env, o);
    p.use_gpu   = optional_bool(o, "gpu", true);
    p.rpc       = rpc_endpoint_opt(o);
    p.audio     = optional_bool(o, "audio", false);
    return promise_worker::start(env, new load_projector_worker(env, std::move(path), p));
}

// inspectMmproj(path, { audio }?) -> op<info>: the whole header validated, no weights read
Napi::Value inspect_mmproj_js(const Napi::CallbackInfo & info) {
    Napi::Env   env  = info.Env();
    std::string path = require_string(info, 0, "path");
    const bool  audio =
        info.Length() > 1 && info[1].IsObject() && optional_bool(info[1].As<Napi::Object>(), "audio", false);
    return promise_worker::start(env, new inspect_mmproj_worker(env, std::move(path), audio));
}

}  // namespace

Napi::Function AddonProjector::define(Napi::Env env) {
    using P               = AddonProjector;
    Napi::Function f      = DefineClass(env, "AddonProjector",
                                        {
                                            InstanceMethod("info", &P::guarded<&P::info>),
                                            InstanceMethod("project", &P::guarded<&P::project>),
                                            InstanceMethod("encodeProject", &P::guarded<&P::encode_project>),
                                            InstanceMethod("dispose", &P::guarded<&P::dispose>),
                                   });
    vctors(env).projector = Napi::Persistent(f);
    return f;
}

Napi::Object AddonProjector::wrap(Napi::Env env, std::shared_ptr<projector> p) {
    Napi::Object obj        = vctors(env).projector.New({});
    Unwrap(obj)->projector_ = std::move(p);
    return obj;
}

AddonProjector::AddonProjector(const Napi::CallbackInfo & info) : Napi::ObjectWrap<AddonProjector>(info) {}

std::shared_ptr<projector> AddonProjector::get(Napi::Env env) const {
    if (!projector_) {
        throw_error(env, error_code::disposed, "the projector was used after dispose()");
    }
    return projector_;
}

Napi::Value AddonProjector::info(const Napi::CallbackInfo & info) {
    Napi::Env    env = info.Env();
    auto         p   = get(env);
    Napi::Object o   = Napi::Object::New(env);
    set_vision_facts(env, o, p->info().vision);
    set_projector_facts(o, p->info(), p->family_def());
    o.Set("nEmbdIn", p->n_embd_in());
    o.Set("nTokensIn", p->n_tokens_in());
    o.Set("backend", p->backend_name());
    o.Set("nThreads", p->n_threads());
    o.Set("graphThreads", p->graph_threads());
    o.Set("weightsBytes", Napi::Number::New(env, static_cast<double>(p->weights_bytes())));
    return o;
}

// project(features: AddonTensor) -> op<{ embeddings, projectMs }>
Napi::Value AddonProjector::project(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      p   = get(env);
    if (info.Length() < 1 || !AddonTensor::is(env, info[0])) {
        throw_error(env, error_code::invalid_argument, "features must be a native Features handle");
    }
    auto f = AddonTensor::Unwrap(info[0].As<Napi::Object>())->get(env);
    return promise_worker::start(env, new project_worker(env, std::move(p), std::move(f)));
}

// encodeProject(encoder: AddonVisionEncoder, rgb, width, height)
//   -> op<{ embeddings: AddonTensor[], layout, preprocessMs, encodeMs, projectMs }>
Napi::Value AddonProjector::encode_project(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto      p   = get(env);
    auto      e   = AddonVisionEncoder::from(env, info.Length() > 0 ? info[0] : env.Undefined());
    return promise_worker::start(env, new encode_project_worker(env, std::move(e), std::move(p), rgb_args(info, 1)));
}

Napi::Value AddonProjector::dispose(const Napi::CallbackInfo & info) {
    get(info.Env());
    projector_.reset();
    return info.Env().Undefined();
}

void register_projector(Napi::Env env, Napi::Object exports) {
    exports.Set("loadProjector", Napi::Function::New(env, guarded<load_projector_js>, "loadProjector"));
    exports.Set("inspectMmproj", Napi::Function::New(env, guarded<inspect_mmproj_js>, "inspectMmproj"));
}

}  // namespace mm::napi
