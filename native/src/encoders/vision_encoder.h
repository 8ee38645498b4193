// A loaded vision encoder: the `v.*` tensors of an mmproj on a backend. Its graph is built for
// each input size the preprocessing gives (one size for fixed-size families, the picture's
// dynamic size for Qwen-VL) and kept for the last few sizes. encode() is thread-safe (calls are
// serialised); preprocess() is pure.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "encoders/image.h"
#include "encoders/vision_hparams.h"
#include "graph/token_matrix.h"

namespace mm {

class runtime;
class weight_set;
class graph_holder;

struct vision_encoder_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    std::string               rpc;              // a ggml RPC worker that runs the graphs instead (runtime_params::rpc)
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

    // The encoder inputs of a picture (libmtmd's preprocessing): one, or for tiling families the
    // overview and the slices, as `layout` (optional) describes.
    std::vector<pixel_input> preprocess(const rgb_image & img, slice_layout * layout = nullptr) const;
    // preprocess + encode_pixels for each input: one features matrix per chunk, in preprocess's order.
    std::vector<token_matrix> encode(const rgb_image & img, const std::atomic<bool> * cancel,
                                     encode_timings * t = nullptr, slice_layout * layout = nullptr);
    // Runs the encoder on one preprocessed input; returns [n_rows, n_embd_out] features with
    // their patch grid.
    token_matrix encode_pixels(const pixel_input & pixels, const std::atomic<bool> * cancel);
    // Checks that a size is one this encoder takes (MM_INVALID_ARGUMENT otherwise).
    void check_input_size(int32_t width, int32_t height) const;

  private:
    struct shaped_graph;
    vision_encoder() = default;
    shaped_graph & graph_for(int32_t width, int32_t height);

    std::string                              family_;
    const encoder_family *                   fam_ = nullptr;
    vision_hparams                           hp_;
    bool                                     flash_attn_ = false;
    std::unique_ptr<runtime>                 rt_;
    std::unique_ptr<weight_set>              weights_;
    std::list<std::unique_ptr<shaped_graph>> graphs_;  // most recently used first
    std::mutex                               mu_;
};

}  // namespace mm
