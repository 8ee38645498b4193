#include "projectors/projector.h"

#include "common/error.h"
#include "graph/gguf_file.h"
#include "encoders/registry.h"
#include "graph/runtime.h"

namespace mm {

namespace {

// Validates the whole file (vision keys and tensors, projector tensors); returns the projector's
// tensor names.
std::vector<std::string> read_info(const gguf_file & f, mmproj_info & info, const projector_family *& fam) {
    const encoder_family & enc = find_encoder_family(f);
    info.vision                = read_vision_hparams(f);
    info.projector_type        = info.vision.projector_type;
    info.encoder_family        = enc.name;
    enc.validate(f, info.vision);
    fam         = &find_projector_family(f);
    info.family = fam->name;
    return fam->validate(f, info.vision, info.out);
}

}  // namespace

mmproj_info inspect_mmproj(const std::string & path) {
    auto                     f = gguf_file::open(path);
    mmproj_info              info;
    const projector_family * fam = nullptr;
    read_info(*f, info, fam);
    return info;
}

std::shared_ptr<projector> projector::load(const std::string & path, const projector_params & params) {
    auto                       f = gguf_file::open(path);
    std::shared_ptr<projector> p(new projector());
    const projector_family *   fam   = nullptr;
    std::vector<std::string>   names = read_info(*f, p->info_, fam);

    p->rt_      = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu});
    p->weights_ = std::make_unique<weight_set>(*f, names, p->rt_->weights_buffer_type(), params.cancel);
    p->graph_   = std::make_unique<graph_holder>();
    blocks::graph_ctx g{p->graph_->ctx(), p->graph_->gf(), false};
    p->in_ = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, p->n_embd_in(), p->n_tokens_in());
    ggml_set_name(p->in_, "features");
    ggml_set_input(p->in_);
    p->out_ = fam->build(g, *p->weights_, p->info_.vision, p->in_);
    if (p->out_->ne[0] != p->n_embd_out() || p->out_->ne[1] != p->n_tokens_out()) {
        fail(error_code::internal, "projector graph output shape differs from the validated shape");
    }
    ggml_set_name(p->out_, "embeddings");
    ggml_set_output(p->out_);
    ggml_build_forward_expand(g.gf, p->out_);
    p->rt_->allocate(g.gf);
    return p;
}

projector::~projector() = default;

std::string projector::backend_name() const {
    return rt_->backend_name();
}

int projector::n_threads() const {
    return rt_->n_threads();
}

int projector::graph_threads() const {
    return rt_->graph_threads();
}

size_t projector::weights_bytes() const {
    return weights_->bytes();
}

token_matrix projector::project(const token_matrix & features, const std::atomic<bool> * cancel) {
    if (features.n_embd != n_embd_in() || features.n_tokens != n_tokens_in() ||
        features.data.size() != static_cast<size_t>(n_embd_in()) * n_tokens_in()) {
        fail(error_code::model_mismatch, "features are [" + std::to_string(features.n_tokens) + ", " +
                                             std::to_string(features.n_embd) + "], this projector takes [" +
                                             std::to_string(n_tokens_in()) + ", " + std::to_string(n_embd_in()) +
                                             "]: they come from another vision encoder");
    }
    std::lock_guard<std::mutex> lock(mu_);
    ggml_backend_tensor_set(in_, features.data.data(), 0, ggml_nbytes(in_));
    rt_->compute(graph_->gf(), cancel);
    token_matrix out;
    out.n_embd   = static_cast<int32_t>(out_->ne[0]);
    out.n_tokens = static_cast<int32_t>(out_->ne[1]);
    out.data.resize(static_cast<size_t>(out.n_embd) * out.n_tokens);
    ggml_backend_tensor_get(out_, out.data.data(), 0, ggml_nbytes(out_));
    return out;
}

}  // namespace mm
