// Qwen3-TTS generation on ggml, mm's own graphs matched against libmtmd's (tools/mtmd/models/
// qwen3tts-gen.cpp, qwen3tts-spkenc.cpp, clip.cpp clip_encode, mtmd-audio.cpp):
//
// - the output projector (code predictor): the talker's hidden state and its codebook-0 code ->
//   the 15 other RVQ codes of the frame and the embedding fed back to the talker. 16 positions of
//   a small causal transformer with a 16-row KV cache, each code drawn in the graph exactly as
//   libmtmd draws it (top-k, top-p, then the crossing of one uniform draw with the softmax CDF); the
//   uniform draws come from this object's own std::mt19937, reseeded only when the seed passed
//   differs from the last one (libmtmd's clip_ctx rng rule), 15 draws per call in codebook order;
// - the modality decoder (code2wav): windows of 72 frames of 16 codes -> PCM at 24 kHz. Split RVQ
//   decode, causal pre-conv, the 8-layer pre-transformer with a 72-frame sliding window, 2 upsample
//   blocks (ConvTranspose1d x2 + ConvNeXt), the DAC decoder (SnakeBeta, ConvTranspose1d, dilated
//   residual units), SnakeBeta + post conv, clamp to [-1, 1]. Streaming state (RoPE position,
//   window K/V, conv left contexts, transposed-conv tails) is carried between calls in libmtmd's
//   own byte layout; a partial window is padded with code 0 and its PCM cut, as libmtmd does;
// - the speaker encoder (ECAPA-TDNN) on libmtmd's log-mel (reflect pad 384, periodic Hann 1024,
//   1024-point FFT, magnitude, Slaney mel 128, ln(max(., 1e-5))): PCM -> one embedding row.
//
// Every graph is built once per shape and kept (code: per (top_k, top_p); wav: one; speaker: per
// mel length), each stage on its own scheduler so that alternating calls allocate nothing. Inputs
// are validated before any graph is built: bad input is an mm::error, never a ggml abort. Calls on
// one object are serialised.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace mm {

class gguf_file;
class runtime;
class weight_set;
class graph_holder;
namespace qwen3tts {
struct cached_graph;
}

struct qwen3tts_hparams {
    std::string variant;
    // code predictor
    int32_t n_embd        = 0;  // talker width (hidden state, fed-back embedding)
    int32_t n_pred        = 0;  // predictor width (== n_embd when there is no proj_in)
    int32_t n_pred_layer  = 0;
    int32_t n_pred_head   = 0;
    int32_t n_pred_headkv = 0;
    int32_t d_pred_head   = 0;
    float   pred_eps      = 1e-6f;
    float   pred_theta    = 1e6f;  // hard-coded by libmtmd
    int32_t n_acoustic    = 0;     // codebooks predicted (15): n_codes - 1
    int32_t code_vocab    = 0;     // rows of each acoustic codebook / head
    int32_t code0_vocab   = 0;     // rows of out_embd (the talker's codec vocabulary)
    // code2wav (libmtmd hard-codes the counts)
    int32_t              wav_layers = 8;
    int32_t              wav_heads  = 16;
    int32_t              d_wav_head = 0;
    float                wav_eps    = 1e-5f;
    float                wav_theta  = 1e4f;
    int32_t              window     = 72;
    int32_t              sem_vocab  = 0;  // rows of the semantic (codebook 0) codebook
    int32_t              rest_vocab = 0;  // rows of the acoustic codebooks
    std::vector<int32_t> dac_strides;
    int32_t              samples_per_frame = 0;
    // speaker encoder
    bool    has_speaker     = false;
    int32_t spk_mels        = 0;
    int32_t spk_sample_rate = 24000;
    int32_t spk_n_fft       = 1024;
    int32_t spk_hop         = 256;
    int32_t spk_max_pad     = 0;  // widest reflect padding of its convolutions (frames)
    int32_t spk_n_embd      = 0;

    int32_t n_codes() const { return n_acoustic + 1; }
};

// One persisted code2wav state buffer (f32 [ne0, ne1]), in libmtmd's order.
struct qwen3tts_state_slot {
    std::string name;
    int64_t     ne0 = 0;
    int64_t     ne1 = 0;
};

struct qwen3tts_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    bool                      code      = true;
    bool                      wav       = true;
    bool                      speaker   = true;   // when the file has one
    bool                      parts_set = false;  // false: every part the file has
    const std::atomic<bool> * cancel    = nullptr;
};

struct qwen3tts_frame {
    std::vector<int32_t> codes;  // n_codes
    std::vector<float>   embd;   // n_embd
};

struct qwen3tts_pcm {
    std::vector<float>   pcm;
    std::vector<uint8_t> state;
};

// Header facts of a Qwen3-TTS gen mmproj, checked (keys, tensor types and shapes), no weights read.
// MM_MODALITY_UNSUPPORTED without a speech generator, MM_MODEL_MISMATCH for another pipeline's file,
// MM_UNSUPPORTED_FAMILY for an unknown generator, MM_GGUF_INVALID for bad keys or tensors.
qwen3tts_hparams read_qwen3tts_hparams(const gguf_file & f);

class qwen3tts_gen {
  public:
    static std::shared_ptr<qwen3tts_gen> load(const std::string & path, const qwen3tts_params & params);
    ~qwen3tts_gen();

    const qwen3tts_hparams & hparams() const { return hp_; }
    bool                     has_code() const { return code_ != nullptr; }
    bool                     has_wav() const { return wav_ != nullptr; }
    bool                     has_speaker() const { return spk_ != nullptr; }
    std::vector<std::string> parts() const;
    size_t                   state_bytes() const;

    // The next gen_code reseeds with its seed whatever the last one was (a new utterance that must
    // repeat: libmtmd's rule alone keeps drawing from where the previous call left off).
    void forget_seed() { rng_seed_ = UINT32_MAX; }
    // GEN_CODE. hidden: [n_embd]. seed 0xFFFFFFFF = random. temp is accepted and unused (libmtmd).
    qwen3tts_frame gen_code(const float * hidden, size_t n_hidden, int32_t code0, int32_t top_k, float top_p,
                            float temp, uint32_t seed, const std::atomic<bool> * cancel);
    // GEN_WAV. codes: frame-major [n_frames][n_codes], any number of frames: consecutive windows of
    // 72 frames, each exactly one libmtmd call. state: nullptr / empty = cold start.
    qwen3tts_pcm gen_wav(const int32_t * codes, size_t n_codes, const uint8_t * state, size_t n_state,
                         const std::atomic<bool> * cancel);
    // Mono f32 PCM at 24 kHz -> one embedding row [spk_n_embd].
    std::vector<float> encode_speaker(const float * pcm, size_t n, const std::atomic<bool> * cancel);

    struct stage;  // a runtime with its cached graphs

  private:
    qwen3tts_gen() = default;
    std::unique_ptr<qwen3tts::cached_graph> build_code_graph(int32_t top_k, float top_p, bool flash_attn) const;
    std::unique_ptr<qwen3tts::cached_graph> build_wav_graph(bool flash_attn) const;
    std::unique_ptr<qwen3tts::cached_graph> build_spk_graph(int64_t n_frames) const;
    std::vector<float>                      speaker_mel(const float * pcm, size_t n, int64_t & n_frames,
                                                        const std::atomic<bool> * cancel) const;

    qwen3tts_hparams                 hp_;
    std::vector<qwen3tts_state_slot> slots_;
    std::unique_ptr<weight_set>      weights_;
    std::unique_ptr<stage>           code_, wav_, spk_;
    std::vector<float>               mel_filters_;  // [n_mel][n_fft/2 + 1]
    std::vector<float>               hann_, sin_, cos_;
    std::mt19937                     rng_{std::random_device{}()};
    uint32_t                         rng_seed_ = UINT32_MAX;
    std::mutex                       mu_;
};

}  // namespace mm
