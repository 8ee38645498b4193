#include "encoders/vision_encoder.h"

#include <chrono>

#include "common/error.h"
#include "graph/gguf_file.h"
#include "encoders/registry.h"
#include "graph/runtime.h"

namespace mm {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::shared_ptr<vision_encoder> vision_encoder::load(const std::string & path, const vision_encoder_params & params) {
    auto                            f   = gguf_file::open(path);
    const encoder_family &          fam = find_encoder_family(*f);
    std::shared_ptr<vision_encoder> enc(new vision_encoder());
    enc->family_                   = fam.name;
    enc->hp_                       = read_vision_hparams(*f);
    std::vector<std::string> names = fam.validate(*f, enc->hp_);

    enc->rt_      = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu});
    enc->weights_ = std::make_unique<weight_set>(*f, names, enc->rt_->weights_buffer_type(), params.cancel);

    // Flash attention when the backend has it (libmtmd's CLIP_FLASH_ATTN_TYPE_AUTO): build with it,
    // and rebuild without when the main backend cannot run it.
    auto build = [&](bool fa) {
        enc->graph_ = std::make_unique<graph_holder>();
        blocks::graph_ctx g{enc->graph_->ctx(), enc->graph_->gf(), fa};
        enc->vg_         = fam.build(g, *enc->weights_, enc->hp_);
        enc->flash_attn_ = fa;
    };
    build(params.flash_attn != 0);
    if (params.flash_attn < 0 && !enc->rt_->supports_flash_attn(enc->graph_->gf())) {
        build(false);
    }
    enc->rt_->allocate(enc->graph_->gf());
    return enc;
}

vision_encoder::~vision_encoder() = default;

std::string vision_encoder::backend_name() const {
    return rt_->backend_name();
}

int vision_encoder::n_threads() const {
    return rt_->n_threads();
}

int vision_encoder::graph_threads() const {
    return rt_->graph_threads();
}

size_t vision_encoder::weights_bytes() const {
    return weights_->bytes();
}

token_matrix vision_encoder::encode(const rgb_image & img, const std::atomic<bool> * cancel, encode_timings * t) {
    auto               t0     = std::chrono::steady_clock::now();
    std::vector<float> pixels = preprocess(img);
    if (t != nullptr) {
        t->preprocess_ms = ms_since(t0);
    }
    auto         t1  = std::chrono::steady_clock::now();
    token_matrix out = encode_pixels(pixels, cancel);
    if (t != nullptr) {
        t->encode_ms = ms_since(t1);
    }
    return out;
}

token_matrix vision_encoder::encode_pixels(const std::vector<float> & pixels, const std::atomic<bool> * cancel) {
    if (pixels.size() != static_cast<size_t>(ggml_nelements(vg_.pixels))) {
        fail(error_code::invalid_argument, "expected " + std::to_string(ggml_nelements(vg_.pixels)) +
                                               " preprocessed values, got " + std::to_string(pixels.size()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    ggml_backend_tensor_set(vg_.pixels, pixels.data(), 0, ggml_nbytes(vg_.pixels));
    for (const auto & [tensor, values] : vg_.i32_inputs) {
        ggml_backend_tensor_set(tensor, values.data(), 0, ggml_nbytes(tensor));
    }
    rt_->compute(graph_->gf(), cancel);
    token_matrix out;
    out.n_embd   = static_cast<int32_t>(vg_.out->ne[0]);
    out.n_tokens = static_cast<int32_t>(vg_.out->ne[1]);
    out.data.resize(static_cast<size_t>(out.n_embd) * out.n_tokens);
    ggml_backend_tensor_get(vg_.out, out.data.data(), 0, ggml_nbytes(vg_.out));
    return out;
}

}  // namespace mm
