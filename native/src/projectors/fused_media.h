// The long tail: projector types mm has no own graph for, run through libmtmd's fused encoder +
// projector (linked into the addon). An mtmd_context is made from the mmproj and the backbone's
// llama_model; a picture or a sound becomes what mtmd_tokenize makes of the media marker alone (no
// BOS, special tokens parsed): the marker text libmtmd puts around and between the chunks, and each
// image or audio chunk's embeddings (mtmd_encode_chunk), token grid, KV positions and attention, in
// libmtmd's order. The backbone decodes them exactly as libmtmd's helpers would (audio chunks: causal,
// one position per row, the same in every M-RoPE section).
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
struct mtmd_bitmap;

namespace mm {

class model;

// The vision projector types libmtmd (pinned) runs whole and mm may hand to it: every type its
// mtmd_context sets up for images, except those whose layout depends on the rest of the prompt
// (deepseek4v pads to the tokens before it, hunyuanvl numbers its images), which the marker-alone
// tokenization cannot reproduce. Own families are listed too: a file of an own family that mm's
// graph refuses as unsupported (e.g. a variant it does not implement) may still run fused.
const std::vector<std::string> & fused_projector_types();
bool                             fused_supports(const std::string & projector_type);

// The audio projector types libmtmd (pinned) runs for understanding (its init_audio, without the
// speaker encoders of speech generation) and mm hands to it whole: Whisper-style (ultravox, qwen2a,
// qwen2.5o's audio half, voxtral, musicflamingo, meralion, glma) and the others (qwen3a, lfm2a,
// granite_speech, gemma4a, gemma4ua, parakeet, dots3note_a, mimo_audio).
const std::vector<std::string> & fused_audio_projector_types();
bool                             fused_supports_audio(const std::string & projector_type);

// What the header says (validated for libmtmd, no weights read).
struct fused_info {
    std::string projector_type;         // as written: clip.projector_type, else the vision, else the audio one
    std::string vision_projector_type;  // as libmtmd reads it for the vision encoder ('' without one)
    std::string audio_projector_type;   // as libmtmd reads it for the audio encoder ('' without one)
    bool        has_vision        = false;
    bool        has_audio         = false;
    int32_t     image_size        = 0;  // vision (0 without)
    int32_t     patch_size        = 0;
    int32_t     n_embd_vision     = 0;
    int32_t     n_layer           = 0;
    int32_t     projection_dim    = 0;  // as written (libmtmd's output width may differ, e.g. deepstack)
    int32_t     audio_sample_rate = 0;  // audio (0 without): the PCM rate libmtmd's preprocessor takes
    int32_t     n_mel_bins        = 0;
    int32_t     n_embd_audio      = 0;
    int32_t     n_layer_audio     = 0;
};

// Opens the mmproj and checks everything libmtmd would read before it reads it: the container, the
// type of every key libmtmd reads (its getters abort on a mismatch), the vision hyperparameters'
// bounds and the tensors' types and shapes where the family is known, for each encoder the file has
// (vision, audio or both). MM_UNSUPPORTED_FAMILY when a projector type is neither an own family nor
// one libmtmd runs for that modality (the message lists them); MM_MODALITY_UNSUPPORTED without a
// vision or an audio encoder; MM_GGUF_INVALID for the rest.
fused_info inspect_fused(const std::string & path);

struct fused_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    const std::atomic<bool> * cancel    = nullptr;
};

// One item of a picture's or a sound's layout, in libmtmd's order: text tokens, or a media chunk.
struct fused_item {
    bool                 media = false;
    bool                 audio = false;  // an audio chunk: causal, one position per row (M-RoPE: 1-D)
    std::vector<int32_t> tokens;         // text
    token_matrix         embd;           // media: [n_tokens, n_embd_inp], grid (nx, ny), causal
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
    // MM_MODALITY_UNSUPPORTED when the file has no vision encoder.
    std::vector<fused_item> embed(const rgb_image & img, const std::atomic<bool> * cancel,
                                  double * encode_ms = nullptr);

    // A sound's layout and embeddings: `pcm` is mono f32 at audio_sample_rate() (at least 2 samples),
    // one chunk per mel chunk libmtmd cuts (30 s for Whisper-style encoders) between its begin / end
    // marker text. MM_MODALITY_UNSUPPORTED when the file has no audio encoder.
    std::vector<fused_item> embed_audio(const float * pcm, size_t n_samples, const std::atomic<bool> * cancel,
                                        double * encode_ms = nullptr);

    bool    has_vision() const { return has_vision_; }
    bool    has_audio() const { return has_audio_; }
    int32_t audio_sample_rate() const { return audio_sample_rate_; }

  private:
    fused_media() = default;

    // mtmd_tokenize of the marker alone with `bitmap`, then every media chunk encoded, in order.
    std::vector<fused_item> run(const mtmd_bitmap * bitmap, bool audio, const std::atomic<bool> * cancel,
                                double * encode_ms);

    fused_info             info_;
    std::shared_ptr<model> backbone_;
    mtmd_context *         ctx_               = nullptr;
    int32_t                n_embd_            = 0;
    bool                   mrope_             = false;
    bool                   has_vision_        = false;
    bool                   has_audio_         = false;
    int32_t                audio_sample_rate_ = 0;
    int                    n_threads_         = 1;
    std::mutex             mu_;
};

}  // namespace mm
