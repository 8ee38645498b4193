// A loaded vision encoder: the `v.*` tensors of an mmproj on a backend, with its graph built and
// allocated once. encode() is thread-safe (calls are serialised); preprocess() is pure.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "encoders/image.h"
#include "graph/token_matrix.h"
#include "encoders/vision_hparams.h"

namespace mm {

class runtime;
class weight_set;
class graph_holder;

struct vision_encoder_params {
    int                       n_threads  = 4;
    bool                      use_gpu    = true;
    int                       flash_attn = -1;  // -1: when the backend has it, 0: off, 1: on
    const std::atomic<bool> * cancel     = nullptr;
};

struct encode_timings {
    double preprocess_ms = 0;
    double encode_ms     = 0;
};

class vision_encoder {
  public:
    static std::shared_ptr<vision_encoder> load(const std::string & path, const vision_encoder_params & params);
    ~vision_encoder();

    const vision_hparams & hparams() const { return hp_; }
    const std::string &    family() const { return family_; }
    bool                   flash_attn() const { return flash_attn_; }
    std::string            backend_name() const;
    int                    n_threads() const;
    int                    graph_threads() const;
    size_t                 weights_bytes() const;

    // Pixels ready for the encoder: [3][image_size][image_size] f32 (libmtmd's preprocessing).
    std::vector<float> preprocess(const rgb_image & img) const { return preprocess_image(img, hp_.preprocess); }
    // preprocess + encode_pixels.
    token_matrix encode(const rgb_image & img, const std::atomic<bool> * cancel, encode_timings * t = nullptr);
    // Runs the encoder on preprocessed pixels; returns [n_patches, n_embd_out] features.
    token_matrix encode_pixels(const std::vector<float> & pixels, const std::atomic<bool> * cancel);

  private:
    vision_encoder() = default;

    std::string                   family_;
    vision_hparams                hp_;
    bool                          flash_attn_ = false;
    std::unique_ptr<runtime>      rt_;
    std::unique_ptr<weight_set>   weights_;
    std::unique_ptr<graph_holder> graph_;
    vision_graph                  vg_;
    std::mutex                    mu_;
};

}  // namespace mm
