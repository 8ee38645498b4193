// Pocket TTS's gen mmproj as libmtmd reads it (tools/mtmd/clip.cpp, PROJECTOR_TYPE_POCKETTTS_GEN and
// PROJECTOR_TYPE_POCKETTTS_SPKENC; written by conversion/pockettts.py), in three parts mm loads on
// their own:
//   code    the flow-matching head (GEN_CODE): backbone hidden state -> one latent frame, the
//           end-of-speech score, and the latent projected back into the backbone's input space;
//   wav     the Mimi decoder (GEN_WAV): latent frames -> 24 kHz PCM, streaming;
//   speaker the voice encoder: 24 kHz PCM -> one conditioning row per 80 ms frame.
// libmtmd hard-codes the SEANet strides, the resampling factor, the transformer window, the flow
// steps and the end-of-speech threshold (below); everything else comes from the file and is
// checked here, before any graph is built (a bad file is MM_GGUF_INVALID, never a ggml abort).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mm {

class gguf_file;

namespace pockettts {

inline constexpr int32_t k_sample_rate = 24000;
// SEANet strides in encoder order (clip.cpp's seanet_ratios); the decoder walks them backwards.
inline constexpr std::array<int32_t, 3> k_ratios              = {4, 5, 6};
inline constexpr int32_t                k_downsample          = 16;   // encoder frames per latent frame
inline constexpr int32_t                k_tfm_context         = 250;  // Mimi transformers' window, in encoder frames
inline constexpr float                  k_rope_theta          = 10000.0f;
inline constexpr int32_t                k_flow_steps          = 1;
inline constexpr float                  k_eos_threshold       = -4.0f;
inline constexpr float                  k_default_temp        = 0.7f;       // when the caller's temperature is <= 0
inline constexpr int32_t                k_hop                 = 4 * 5 * 6;  // samples per encoder frame
inline constexpr int32_t                k_samples_per_frame   = k_hop * k_downsample;  // 1920: 80 ms
inline constexpr int32_t                k_max_speaker_seconds = 30;  // longer references are truncated
inline constexpr int32_t                k_window_frames       = 8;   // frames per GEN_WAV call of the helper
// frames one genWav call takes: the decoder's attention mask is [n_pos + 249, n_pos] at 16 positions
// per frame, so memory grows with the square (128 frames: 10.24 s, a 19 MB mask)
inline constexpr int32_t k_max_wav_frames = 128;

// The parts of the file, as bits.
enum part : unsigned { part_code = 1u, part_wav = 2u, part_speaker = 4u };

// A Mimi transformer: pre-norm LayerNorm blocks with layer scales, RoPE, a GELU FFN, no biases.
struct tfm_hparams {
    int32_t n_embd  = 0;
    int32_t n_head  = 0;
    int32_t d_head  = 0;
    int32_t n_layer = 0;
    float   eps     = 0.0f;
};

// A SEANet stack's convolutions (kernel sizes and channels), stage i in graph order.
struct seanet_shape {
    int64_t                in_ch      = 0;  // conv_in's input channels
    int64_t                conv_in_k  = 0;
    int64_t                conv_out_k = 0;
    std::array<int64_t, 4> ch{};  // ch[0]: after conv_in; ch[i + 1]: after stage i
    std::array<int64_t, 3> scale_k{};
    std::array<int64_t, 3> res1_k{};
    std::array<int64_t, 3> res2_k{};
    std::array<int64_t, 3> hidden{};  // the residual unit's inner width
    int64_t                out_ch = 0;
};

struct hparams {
    std::string variant;  // clip.gen.audio.model_variant ("" when absent)
    unsigned    parts       = 0;
    int32_t     n_embd      = 0;  // the backbone's width
    int32_t     latent_dim  = 0;
    bool        has_speaker = false;  // the file has a voice encoder (loaded or not)

    // code
    int32_t flow_dim    = 0;
    int32_t flow_blocks = 0;
    int32_t flow_freqs  = 0;

    // wav
    tfm_hparams  dec;
    seanet_shape dec_seanet;
    int64_t      upsample_k = 0;

    // speaker
    tfm_hparams  enc;
    seanet_shape enc_seanet;
    int64_t      downsample_k  = 0;
    int64_t      downsample_ch = 0;
};

// The settings mtmd-helper-gen.cpp keeps per variant (pack) and not in the file; zero / false when
// the pack does not tune them (the model defaults then apply). `known` is false for other variants.
struct pack_settings {
    bool  known            = false;
    float temp             = 0.0f;
    int   frames_after_eos = 0;
    bool  pad_short_text   = false;
};
pack_settings pack_for(const std::string & variant);

// One slot of the decoder's streaming state: an f32 [ne0, ne1] matrix.
struct state_slot {
    std::string name;
    int64_t     ne0 = 0;
    int64_t     ne1 = 0;
};

// The decoder state in libmtmd's order (list_pockettts_state_slots): the position counter, each
// layer's K and V window, the upsample's overlap tail, then the SEANet convolutions' left contexts
// and transposed-convolution tails.
std::vector<state_slot> decoder_state_slots(const hparams & hp);
size_t                  state_bytes(const std::vector<state_slot> & slots);

struct validated_file {
    hparams                  hp;
    std::vector<std::string> code;  // tensor names per part
    std::vector<std::string> wav;
    std::vector<std::string> speaker;
};

// Reads and checks the parts in `parts` (0: every part the file has). MM_MODEL_LOAD for a file that
// is not an mmproj, MM_MODALITY_UNSUPPORTED when it has no generator (or lacks a part asked for),
// MM_UNSUPPORTED_FAMILY for another generator (e.g. Qwen3-TTS), MM_GGUF_INVALID for bad keys,
// tensors or shapes.
validated_file read_pockettts(const gguf_file & f, unsigned parts);

}  // namespace pockettts
}  // namespace mm
