// Pocket TTS's output projector and modality decoder on ggml: mm's own graphs of what libmtmd's
// mtmd_gen_audio_process runs for a pockettts_gen mmproj (tools/mtmd/models/pockettts-*.cpp), call
// for call:
//   gen_code   the flow-matching head: one latent frame from the backbone's hidden state (lsd_decode
//              from gaussian noise of std sqrt(temp), drawn from this object's std::mt19937 exactly as
//              clip.cpp draws it), the end-of-speech decision, and the latent fed back to the backbone;
//   gen_wav    the Mimi decoder: latent frames -> PCM, with its streaming state (libmtmd's slots, in
//              its layout) carried between calls by the caller;
//   encode_speaker  the voice encoder: 24 kHz PCM -> one conditioning row per 80 ms frame.
// Each part has its own backend runtime and weights and is loaded only when asked for; graphs are
// built once per input shape and cached. Each part's calls are serialised by its own mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "decoders/pockettts/pockettts_model.h"

namespace mm {

class runtime;
class weight_set;
class graph_holder;

namespace pockettts {

struct load_params {
    int                       n_threads = 4;
    bool                      use_gpu   = true;
    unsigned                  parts     = 0;  // part bits; 0 = every part the file has
    const std::atomic<bool> * cancel    = nullptr;
};

struct code_params {
    float    temp = 0.0f;        // <= 0: libmtmd's default 0.7
    uint32_t seed = UINT32_MAX;  // UINT32_MAX: random
};

struct code_result {
    std::vector<float> latent;  // [latent_dim]
    std::vector<float> embd;    // [n_embd], the next backbone input
    float              eos_score = 0.0f;
    bool               is_eos    = false;
};

struct wav_result {
    std::vector<float>   pcm;
    std::vector<uint8_t> state;
};

struct speaker_result {
    int32_t            rows = 0;
    std::vector<float> embd;  // [rows][n_embd]
};

class generator {
  public:
    static std::shared_ptr<generator> load(const std::string & path, const load_params & params);
    ~generator();

    const hparams & hp() const { return hp_; }
    bool            has(part p) const { return (hp_.parts & p) != 0; }
    std::string     backend_name() const;
    size_t          weights_bytes() const;
    size_t          state_size() const { return state_bytes_; }

    // The next gen_code reseeds with its seed whatever the last one was (a new utterance that must
    // repeat: libmtmd's rule alone keeps drawing from where the previous call left off).
    void forget_seed() { rng_seed_ = UINT32_MAX; }
    // `hidden` holds n_embd values. The noise is drawn after a reseed when `seed` differs from the
    // last seed given (the first call reseeds unless its seed is random). An aborted call leaves the
    // generator's random state as it was.
    code_result gen_code(const float * hidden, size_t n, const code_params & p, const std::atomic<bool> * cancel);
    // `feats` holds whole frames of latent_dim values (frame-major); `state` is null (cold start) or
    // exactly state_size() bytes a previous call returned.
    wav_result gen_wav(const float * feats, size_t n, const uint8_t * state, size_t state_n,
                       const std::atomic<bool> * cancel);
    // Mono PCM at 24 kHz; references over 30 s are truncated, as libmtmd does.
    speaker_result encode_speaker(const float * pcm, size_t n, const std::atomic<bool> * cancel);

  private:
    struct part_rt;
    struct code_graph;
    struct wav_graph;
    struct speaker_graph;

    generator() = default;
    void                           build_code_graph();
    std::unique_ptr<wav_graph>     build_wav_graph(int64_t n_frames, bool flash_attn);
    std::unique_ptr<speaker_graph> build_speaker_graph(int64_t n_samples, bool flash_attn);
    wav_graph &                    wav_graph_for(int64_t n_frames);
    speaker_graph &                speaker_graph_for(int64_t n_samples);

    hparams                 hp_;
    std::vector<state_slot> slots_;
    size_t                  state_bytes_ = 0;

    std::unique_ptr<part_rt> code_;
    std::unique_ptr<part_rt> wav_;
    std::unique_ptr<part_rt> speaker_;

    std::unique_ptr<code_graph>                       code_graph_;
    std::map<int64_t, std::unique_ptr<wav_graph>>     wav_graphs_;
    std::map<int64_t, std::unique_ptr<speaker_graph>> speaker_graphs_;
    std::vector<int64_t>                              wav_lru_;
    std::vector<int64_t>                              speaker_lru_;

    // clip.cpp's clip_ctx::rng / rng_seed
    std::mt19937 rng_{std::random_device{}()};
    uint32_t     rng_seed_ = UINT32_MAX;
};

}  // namespace pockettts
}  // namespace mm
