// Every GGUF key and tensor name of a Pocket TTS mmproj that mm reads, spelled as llama.cpp's
// tools/mtmd/clip-impl.h spells them (pinned 80fb11ac; conversion/pockettts.py writes them).
#pragma once

#include <cstdio>
#include <string>

namespace mm::pockettts::names {

// ---- keys -----------------------------------------------------------------------------------
inline constexpr const char * k_architecture   = "general.architecture";
inline constexpr const char * k_projector_type = "clip.projector_type";
inline constexpr const char * k_has_audio      = "clip.has_audio_encoder";
inline constexpr const char * k_has_gen_audio  = "clip.has_gen_audio_encoder";
inline constexpr const char * k_has_vision     = "clip.has_vision_encoder";

inline constexpr const char * k_audio_proj_type = "clip.audio.projector_type";
inline constexpr const char * k_a_n_embd        = "clip.audio.embedding_length";
inline constexpr const char * k_a_n_ff          = "clip.audio.feed_forward_length";
inline constexpr const char * k_a_n_block       = "clip.audio.block_count";
inline constexpr const char * k_a_proj_dim      = "clip.audio.projection_dim";
inline constexpr const char * k_a_n_head        = "clip.audio.attention.head_count";
inline constexpr const char * k_a_eps           = "clip.audio.attention.layer_norm_epsilon";

inline constexpr const char * k_gen_proj_type = "clip.gen.audio.projector_type";
inline constexpr const char * k_g_n_embd      = "clip.gen.audio.embedding_length";
inline constexpr const char * k_g_n_ff        = "clip.gen.audio.feed_forward_length";
inline constexpr const char * k_g_n_block     = "clip.gen.audio.block_count";
inline constexpr const char * k_g_proj_dim    = "clip.gen.audio.projection_dim";
inline constexpr const char * k_g_n_head      = "clip.gen.audio.attention.head_count";
inline constexpr const char * k_g_eps         = "clip.gen.audio.attention.layer_norm_epsilon";
inline constexpr const char * k_g_variant     = "clip.gen.audio.model_variant";

inline constexpr const char * type_spkenc = "pockettts_spkenc";
inline constexpr const char * type_gen    = "pockettts_gen";

// ---- flow head (GEN_CODE) -------------------------------------------------------------------
inline std::string flow(const char * part, const char * suffix) {
    return std::string("a.gen.flow.") + part + "." + suffix;
}

// "a.gen.flow.time.%d.<freqs|norm>" and "a.gen.flow.time.%d.<up|down>.<suffix>"
inline std::string flow_time(int i, const char * part, const char * suffix = nullptr) {
    char buf[80];
    if (suffix == nullptr) {
        std::snprintf(buf, sizeof(buf), "a.gen.flow.time.%d.%s", i, part);
    } else {
        std::snprintf(buf, sizeof(buf), "a.gen.flow.time.%d.%s.%s", i, part, suffix);
    }
    return buf;
}

// "a.gen.flow.blk.%d.<norm|up|down|ada>.<suffix>"
inline std::string flow_blk(int il, const char * part, const char * suffix) {
    char buf[80];
    std::snprintf(buf, sizeof(buf), "a.gen.flow.blk.%d.%s.%s", il, part, suffix);
    return buf;
}

inline constexpr const char * t_out_eos_w      = "a.gen.out_eos.weight";
inline constexpr const char * t_out_eos_b      = "a.gen.out_eos.bias";
inline constexpr const char * t_input_linear_w = "a.gen.input_linear.weight";
inline constexpr const char * t_emb_mean       = "a.gen.emb_mean";
inline constexpr const char * t_emb_std        = "a.gen.emb_std";

// ---- Mimi decoder (GEN_WAV) -----------------------------------------------------------------
inline constexpr const char * t_quant_out_w = "a.gen.wav.quant_out.weight";
inline constexpr const char * t_upsample_w  = "a.gen.wav.upsample.weight";

// ---- voice encoder --------------------------------------------------------------------------
inline constexpr const char * t_downsample_w = "a.downsample.conv.weight";
inline constexpr const char * t_spk_proj_w   = "a.speaker_proj.weight";

// A transformer block "<prefix>.blk.%d.<part>.<suffix>": prefix "a.gen.wav.tfm" (decoder) or "a"
// (voice encoder); parts ln1, attn_q, attn_k, attn_v, attn_out, ls1, ln2, ffn_up, ffn_down, ls2.
inline std::string blk(const char * prefix, int il, const char * part, const char * suffix) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s.blk.%d.%s.%s", prefix, il, part, suffix);
    return buf;
}

// SEANet convolutions "<prefix>.<conv_in|conv_out>.<suffix>", prefix "a.gen.wav.seanet" (decoder)
// or "a.seanet" (voice encoder).
inline std::string seanet(const char * prefix, const char * part, const char * suffix) {
    return std::string(prefix) + "." + part + "." + suffix;
}

// "<prefix>.blk.%d.<res_conv1|res_conv2|scale_conv>.<suffix>"
inline std::string seanet_blk(const char * prefix, int i, const char * part, const char * suffix) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s.blk.%d.%s.%s", prefix, i, part, suffix);
    return buf;
}

inline constexpr const char * p_dec_tfm    = "a.gen.wav.tfm";
inline constexpr const char * p_enc_tfm    = "a";
inline constexpr const char * p_dec_seanet = "a.gen.wav.seanet";
inline constexpr const char * p_enc_seanet = "a.seanet";

}  // namespace mm::pockettts::names
