// A loaded audio encoder: the Whisper-style `a.*` tower of an mmproj (libmtmd's
// clip_graph_whisper_enc, tools/mtmd/models/whisper-enc.cpp) on a backend. PCM becomes log-mel
// chunks of 3000 frames (encoders/audio/mel), each chunk one graph run: two GELU(erf) 1-D
// convolutions (the second of stride 2), learned positions, pre-norm blocks, then for qwen2a an
// average pool of row pairs, then the post-norm. The graph is built once (every chunk has the same
// length). encode() is thread-safe (serialised).
//
// The audio projector types with this tower in mm's own graphs: ultravox and qwen2a (also read from
// the legacy `qwen2.5o` files that hold a vision tower too). Other audio types are
// MM_UNSUPPORTED_FAMILY here (they run through libmtmd's fused path).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "encoders/audio/mel.h"
#include "encoders/vision_hparams.h"
#include "graph/token_matrix.h"

namespace mm {

class gguf_file;
class runtime;
class weight_set;
class graph_holder;

// "ultravox, qwen2a"
std::string supported_audio_projector_types();

// The audio tower's hyperparameters (checked), with projector_type the audio type (qwen2.5o read as
// qwen2a). MM_MODALITY_UNSUPPORTED without an audio encoder, MM_UNSUPPORTED_FAMILY for an audio
// type mm has no own graph for, MM_GGUF_INVALID for bad keys.
vision_hparams read_audio_hparams(const gguf_file & f);

// Checks the tower's tensors (presence, types, shapes); returns the names to load.
std::vector<std::string> validate_audio_tower(const gguf_file & f, const vision_hparams & hp);

// The mel parameters libmtmd uses for this tower.
mel_params audio_mel_params(const vision_hparams & hp);

struct audio_encoder_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    std::string               rpc;              // a ggml RPC worker that runs the graphs instead (runtime_params::rpc)
    int                       flash_attn = -1;  // -1: when the backend has it, 0: off, 1: on
    const std::atomic<bool> * cancel     = nullptr;
};

struct audio_encode_timings {
    double mel_ms    = 0;
    double encode_ms = 0;
};

class audio_encoder {
  public:
    static std::shared_ptr<audio_encoder> load(const std::string & path, const audio_encoder_params & params);
    ~audio_encoder();

    const vision_hparams & hparams() const { return hp_; }
    bool                   flash_attn() const { return flash_attn_; }
    std::string            backend_name() const;
    int                    n_threads() const;
    size_t                 weights_bytes() const;

    // libmtmd's log-mel chunks of mono PCM at hparams().sample_rate.
    std::vector<mel_chunk> mel(const float * pcm, size_t n, const std::atomic<bool> * cancel) const;
    // Features of one chunk: [n_rows, n_embd] with nx = n_rows, ny = 1.
    token_matrix encode_mel(const mel_chunk & chunk, const std::atomic<bool> * cancel);
    // mel + encode_mel of every chunk, in order.
    std::vector<token_matrix> encode(const float * pcm, size_t n, const std::atomic<bool> * cancel,
                                     audio_encode_timings * t = nullptr);

  private:
    audio_encoder() = default;
    void build_graph();

    vision_hparams                hp_;
    bool                          flash_attn_ = false;
    std::unique_ptr<runtime>      rt_;
    std::unique_ptr<weight_set>   weights_;
    std::unique_ptr<graph_holder> holder_;
    ggml_tensor *                 inp_ = nullptr;  // [n_frames, n_mel]
    ggml_tensor *                 out_ = nullptr;  // [n_embd, n_rows]
    std::mutex                    mu_;
};

}  // namespace mm
