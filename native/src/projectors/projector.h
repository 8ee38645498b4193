// A loaded input projector: the `mm.*` tensors of an mmproj on a backend. Its graph is built for
// each feature grid it is given (one for fixed-size families) and kept for the last few.
// project() is thread-safe (serialised).
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "encoders/vision_hparams.h"
#include "graph/token_matrix.h"
#include "projectors/registry.h"

namespace mm {

class runtime;
class weight_set;
class graph_holder;

struct projector_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    std::string               rpc;              // a ggml RPC worker that runs the graphs instead (runtime_params::rpc)
    int                       flash_attn = -1;  // families with attention (resampler): -1 when the backend has it
    const std::atomic<bool> * cancel     = nullptr;
    bool                      audio      = false;  // the audio projector (`mm.a.*`) after the `a.*` tower
};

// What an mmproj holds, from its header alone (validated as a load would, no weights read).
struct mmproj_info {
    std::string     projector_type;  // as written in the file
    std::string     family;          // resolved projector family
    std::string     encoder_family;  // e.g. "clip"
    vision_hparams  vision;
    projector_shape out;
};

// `fam` (optional) receives the projector family (causality, markers). `audio`: the audio tower and
// its projector (`vision` then holds the audio tower's hyperparameters, vision.audio is true).
mmproj_info inspect_mmproj(const std::string & path, const projector_family ** fam = nullptr, bool audio = false);

class projector {
  public:
    static std::shared_ptr<projector> load(const std::string & path, const projector_params & params);
    ~projector();

    const mmproj_info &      info() const { return info_; }
    int32_t                  n_embd_in() const { return info_.vision.n_embd_out; }
    int32_t                  n_tokens_in() const { return info_.vision.n_patches; }  // typical (dynamic: varies)
    int32_t                  n_embd_out() const { return info_.out.n_embd_out; }
    int32_t                  n_tokens_out() const { return info_.out.n_tokens_out; }
    bool                     dynamic() const { return info_.vision.dynamic; }
    bool                     causal() const { return fam_->causal; }
    bool                     flash_attn() const { return flash_attn_; }
    const projector_family & family_def() const { return *fam_; }
    std::string              backend_name() const;
    int                      n_threads() const;
    int                      graph_threads() const;
    size_t                   weights_bytes() const;

    // features [n_tokens_in, n_embd_in] with their grid -> embeddings [n_tokens_out, n_embd_out]
    // with their token grid and whether the span is causal
    token_matrix project(const token_matrix & features, const std::atomic<bool> * cancel);

  private:
    struct shaped_graph;
    projector() = default;
    shaped_graph & graph_for(int32_t nx, int32_t ny);
    void           check_features(const token_matrix & features) const;

    mmproj_info                              info_;
    const projector_family *                 fam_ = nullptr;
    std::unique_ptr<runtime>                 rt_;
    std::unique_ptr<weight_set>              weights_;
    bool                                     flash_attn_ = false;
    std::list<std::unique_ptr<shaped_graph>> graphs_;  // most recently used first
    std::mutex                               mu_;
};

}  // namespace mm
