// The long tail: projector types mm has no own graph for, run through libmtmd's fused encoder +
// projector (linked into the addon). An mtmd_context is made from the mmproj and the backbone's
// llama_model; a picture becomes what mtmd_tokenize makes of the media marker alone (no BOS, special
// tokens parsed): the marker text libmtmd puts around and between the chunks, and each image chunk's
// embeddings (mtmd_encode_chunk), token grid, KV positions and attention, in libmtmd's order. The
// backbone decodes them exactly as libmtmd's helpers would.
//
// libmtmd aborts the process on some malformed files (a key of the wrong type, ...), so the header is
// validated first (inspect_fused); what libmtmd itself throws becomes a typed error.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "encoders/image.h"
#include "graph/token_matrix.h"

struct mtmd_context;

namespace mm {

class model;

// The vision projector types libmtmd (pinned) runs whole and mm may hand to it: every type its
// mtmd_context sets up for images, except those whose layout depends on the rest of the prompt
// (deepseek4v pads to the tokens before it, hunyuanvl numbers its images), which the marker-alone
// tokenization cannot reproduce. Own families are listed too: a file of an own family that mm's
// graph refuses as unsupported (e.g. a variant it does not implement) may still run fused.
const std::vector<std::string> & fused_projector_types();
bool                             fused_supports(const std::string & projector_type);

// What the header says (validated for libmtmd, no weights read).
struct fused_info {
    std::string projector_type;  // as written in the file
    int32_t     image_size     = 0;
    int32_t     patch_size     = 0;
    int32_t     n_embd_vision  = 0;
    int32_t     n_layer        = 0;
    int32_t     projection_dim = 0;  // as written (libmtmd's output width may differ, e.g. deepstack)
    bool        has_audio      = false;
};

// Opens the mmproj and checks everything libmtmd would read before it reads it: the container, the
// type of every key libmtmd reads (its getters abort on a mismatch), the vision hyperparameters'
// bounds and the tensors' types and shapes where the family is known. MM_UNSUPPORTED_FAMILY when the
// projector type is neither an own family nor one libmtmd runs (the message lists both);
// MM_MODALITY_UNSUPPORTED without a vision encoder; MM_GGUF_INVALID for the rest.
fused_info inspect_fused(const std::string & path);

struct fused_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    const std::atomic<bool> * cancel    = nullptr;
};

// One item of a picture's layout, in libmtmd's order: text tokens, or a media chunk.
struct fused_item {
    bool                 media = false;
    std::vector<int32_t> tokens;  // text
    token_matrix         embd;    // media: [n_tokens, n_embd_inp], grid (nx, ny), causal
    int32_t              n_pos = 0;
};

class fused_media {
  public:
    // `backbone` must stay loaded while this lives (it is held).
    static std::shared_ptr<fused_media> load(const std::string & path, std::shared_ptr<model> backbone,
                                             const fused_params & params);
    ~fused_media();

    fused_media(const fused_media &)             = delete;
    fused_media & operator=(const fused_media &) = delete;

    const fused_info & info() const { return info_; }
    int32_t            n_embd() const { return n_embd_; }  // the backbone's input width
    bool               mrope() const { return mrope_; }
    int                n_threads() const { return n_threads_; }

    // The picture's layout and embeddings. Calls are serialised; `cancel` is checked between chunks.
    std::vector<fused_item> embed(const rgb_image & img, const std::atomic<bool> * cancel,
                                  double * encode_ms = nullptr);

  private:
    fused_media() = default;

    fused_info             info_;
    std::shared_ptr<model> backbone_;
    mtmd_context *         ctx_       = nullptr;
    int32_t                n_embd_    = 0;
    bool                   mrope_     = false;
    int                    n_threads_ = 1;
    std::mutex             mu_;
};

}  // namespace mm
