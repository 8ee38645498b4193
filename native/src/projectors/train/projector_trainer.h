// Input-projector training (@mm/projectors trainProjector): the survey's recipe with the modality
// encoder and the LLM frozen. Encoder features are computed once per picture (by the caller) and
// held here; each step builds one ggml graph — projector forward, the frozen llama forward
// (train_llama), cross-entropy on the answer tokens only, ggml's automatic backward pass (gradients
// reach the projector's tensors through the LLM's input embeddings; the LLM's weights get none)
// and ggml's AdamW step (GGML_OP_OPT_STEP_ADAMW, the op ggml-opt uses) — and computes it.
// Optimiser state (moments and step count) is readable and writable, so a run can be checkpointed
// and resumed bit for bit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "projectors/train/train_llama.h"

namespace mm {

class runtime;

struct trainer_params {
    std::string model_path;
    std::string projector =
        "mlp";  // "mlp": mm.0 -> GELU -> mm.2; "linear": one matrix + bias (mm.0); "ldpv2": MobileVLM V2
    int                       n_embd_v  = 0;  // encoder feature width (the projector's input)
    int                       n_hidden  = 0;  // mm.0's output width (mlp); the LLM's n_embd for "linear"
    int                       n_threads = 2;
    bool                      use_gpu   = false;
    const std::atomic<bool> * cancel    = nullptr;
};

// One training sequence: text tokens with the picture's rows inserted at image_pos; targets are
// positions in the full sequence (rows included) of the answer tokens, each predicted from the
// row before it.
struct train_sample {
    int32_t              image     = 0;
    int32_t              image_pos = 0;
    std::vector<int32_t> tokens;
    std::vector<int32_t> targets;
};

struct adamw_hyper {
    float lr           = 1e-3f;
    float beta1        = 0.9f;
    float beta2        = 0.999f;
    float eps          = 1e-8f;
    float weight_decay = 0.0f;
};

struct step_result {
    float   loss     = 0.0f;  // mean cross-entropy over the batch's answer tokens
    int64_t ncorrect = 0;     // answer tokens whose argmax is the label
    int64_t ntargets = 0;
};

struct param_info {
    std::string          name;  // mm.0.weight, ...
    std::vector<int64_t> ne;
};

class projector_trainer {
  public:
    static std::unique_ptr<projector_trainer> create(const trainer_params & params);
    ~projector_trainer();

    const train_llama_hparams &     llm() const { return llm_->hparams(); }
    const std::vector<param_info> & params() const { return infos_; }

    // features: n_images * n_patches * n_embd_v floats. Samples are checked against it.
    void   set_data(std::vector<float> features, int n_images, int n_patches, std::vector<train_sample> samples);
    size_t n_samples() const { return samples_.size(); }

    void               set_param(int i, const float * data, size_t n);
    std::vector<float> get_param(int i) const;
    // AdamW moments of parameter i (m, v) and the number of steps taken (bias correction).
    void               set_moments(int i, const float * m, const float * v, size_t n);
    std::vector<float> get_moment(int i, bool second) const;
    int64_t            steps() const { return steps_; }
    void               set_steps(int64_t s) { steps_ = s; }

    // One AdamW step on the batch (sample indices).
    step_result step(const std::vector<int32_t> & batch, const adamw_hyper & hyper, const std::atomic<bool> * cancel);
    // The loss on a batch without updating; with grads, also each parameter's gradient.
    step_result evaluate(const std::vector<int32_t> & batch, std::vector<std::vector<float>> * grads,
                         const std::atomic<bool> * cancel);
    // The frozen LLM alone: logits [T, n_vocab] for T input embedding rows (n_embd each).
    std::vector<float> llm_logits(const float * embd, int T, const std::atomic<bool> * cancel);

  private:
    enum class mode { forward, grads, train };
    projector_trainer() = default;
    ggml_tensor * build_projector(ggml_context * ctx, ggml_tensor * feats) const;
    step_result   run(const std::vector<int32_t> & batch, mode m, const adamw_hyper * hyper,
                      std::vector<std::vector<float>> * grads, const std::atomic<bool> * cancel);

    trainer_params               params_;
    std::unique_ptr<runtime>     rt_;
    std::unique_ptr<train_llama> llm_;
    ggml_context *               pctx_ = nullptr;  // parameters, moments, the loss seed
    ggml_backend_buffer_t        pbuf_ = nullptr;
    std::vector<ggml_tensor *>   params_t_, m_t_, v_t_;
    std::vector<param_info>      infos_;
    ggml_tensor *                one_ = nullptr;
    std::vector<float>           features_;
    int                          n_images_  = 0;
    int                          n_patches_ = 0;
    int                          n_out_     = 0;  // picture rows after the projector (ldpv2: a quarter of n_patches_)
    std::vector<train_sample>    samples_;
    int64_t                      steps_ = 0;
    std::vector<uint8_t>         meta_;
    mutable std::mutex           mu_;
};

}  // namespace mm
