// A loaded input projector: the `mm.*` tensors of an mmproj on a backend, its graph built and
// allocated once for the vision tower's feature shape. project() is thread-safe (serialised).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "graph/token_matrix.h"
#include "encoders/vision_hparams.h"
#include "projectors/registry.h"

namespace mm {

class runtime;
class weight_set;
class graph_holder;

struct projector_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    const std::atomic<bool> * cancel    = nullptr;
};

// What an mmproj holds, from its header alone (validated as a load would, no weights read).
struct mmproj_info {
    std::string     projector_type;  // as written in the file
    std::string     family;          // resolved projector family
    std::string     encoder_family;  // e.g. "clip"
    vision_hparams  vision;
    projector_shape out;
};

mmproj_info inspect_mmproj(const std::string & path);

class projector {
  public:
    static std::shared_ptr<projector> load(const std::string & path, const projector_params & params);
    ~projector();

    const mmproj_info & info() const { return info_; }
    int32_t             n_embd_in() const { return info_.vision.n_embd_out; }
    int32_t             n_tokens_in() const { return info_.vision.n_patches; }
    int32_t             n_embd_out() const { return info_.out.n_embd_out; }
    int32_t             n_tokens_out() const { return info_.out.n_tokens_out; }
    std::string         backend_name() const;
    int                 n_threads() const;
    int                 graph_threads() const;
    size_t              weights_bytes() const;

    // features [n_tokens_in, n_embd_in] -> embeddings [n_tokens_out, n_embd_out]
    token_matrix project(const token_matrix & features, const std::atomic<bool> * cancel);

  private:
    projector() = default;

    mmproj_info                   info_;
    std::unique_ptr<runtime>      rt_;
    std::unique_ptr<weight_set>   weights_;
    std::unique_ptr<graph_holder> graph_;
    ggml_tensor *                 in_  = nullptr;
    ggml_tensor *                 out_ = nullptr;
    std::mutex                    mu_;
};

}  // namespace mm
