// Every GGUF key and tensor name of an mmproj that mm reads, spelled exactly as llama.cpp's
// tools/mtmd/clip-impl.h spells them (pinned 80fb11ac). Encoders and projectors both use this
// header; no other file writes a key or tensor name as a literal.
#pragma once

#include <cstdio>
#include <string>

namespace mm::clip {

// ---- keys --------------------------------------------------------------------------------
inline constexpr const char * k_architecture     = "general.architecture";
inline constexpr const char * k_name             = "general.name";
inline constexpr const char * k_projector_type   = "clip.projector_type";
inline constexpr const char * k_vision_proj_type = "clip.vision.projector_type";
inline constexpr const char * k_has_vision       = "clip.has_vision_encoder";
inline constexpr const char * k_has_audio        = "clip.has_audio_encoder";
inline constexpr const char * k_use_gelu         = "clip.use_gelu";
inline constexpr const char * k_use_silu         = "clip.use_silu";

inline constexpr const char * k_n_embd            = "clip.vision.embedding_length";
inline constexpr const char * k_n_ff              = "clip.vision.feed_forward_length";
inline constexpr const char * k_n_block           = "clip.vision.block_count";
inline constexpr const char * k_proj_dim          = "clip.vision.projection_dim";
inline constexpr const char * k_n_head            = "clip.vision.attention.head_count";
inline constexpr const char * k_n_head_kv         = "clip.vision.attention.head_count_kv";
inline constexpr const char * k_n_embd_head       = "clip.vision.attention.head_dim";
inline constexpr const char * k_layer_norm_eps    = "clip.vision.attention.layer_norm_epsilon";
inline constexpr const char * k_feature_layer     = "clip.vision.feature_layer";
inline constexpr const char * k_image_size        = "clip.vision.image_size";
inline constexpr const char * k_patch_size        = "clip.vision.patch_size";
inline constexpr const char * k_image_mean        = "clip.vision.image_mean";
inline constexpr const char * k_image_std         = "clip.vision.image_std";
inline constexpr const char * k_grid_pinpoints    = "clip.vision.image_grid_pinpoints";
inline constexpr const char * k_proj_scale_factor = "clip.vision.projector.scale_factor";
inline constexpr const char * k_spatial_merge     = "clip.vision.spatial_merge_size";
inline constexpr const char * k_n_wa_pattern      = "clip.vision.n_wa_pattern";
inline constexpr const char * k_window_size       = "clip.vision.window_size";
inline constexpr const char * k_longest_edge      = "clip.vision.preproc_image_size";  // Idefics3
inline constexpr const char * k_minicpmv_version  = "clip.minicpmv_version";           // int32
inline constexpr const char * k_minicpmv_query    = "clip.minicpmv_query_num";         // uint32

// ---- vision tower tensors (prefix "v") ---------------------------------------------------
inline constexpr const char * t_class_embd   = "v.class_embd";
inline constexpr const char * t_patch_embd   = "v.patch_embd.weight";
inline constexpr const char * t_patch_embd_1 = "v.patch_embd.weight.1";  // Qwen-VL's second temporal kernel
inline constexpr const char * t_patch_bias   = "v.patch_embd.bias";
inline constexpr const char * t_pos_embd     = "v.position_embd.weight";
inline constexpr const char * t_pre_ln_w     = "v.pre_ln.weight";
inline constexpr const char * t_pre_ln_b     = "v.pre_ln.bias";
inline constexpr const char * t_post_ln_w    = "v.post_ln.weight";
inline constexpr const char * t_post_ln_b    = "v.post_ln.bias";

// "v.blk.%d.<part>.<suffix>": parts attn_q, attn_k, attn_v, attn_out, ln1, ln2, ffn_up, ffn_gate,
// ffn_down; suffix "weight" or "bias".
inline std::string blk(int il, const char * part, const char * suffix) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "v.blk.%d.%s.%s", il, part, suffix);
    return buf;
}

// The same block tensors of the tower with prefix `tower` ("v" vision, "a" audio).
inline std::string blk(const char * tower, int il, const char * part, const char * suffix) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s.blk.%d.%s.%s", tower, il, part, suffix);
    return buf;
}

// ---- audio tower (prefix "a"; clip.audio.* keys) -------------------------------------------
inline constexpr const char * k_audio_proj_type  = "clip.audio.projector_type";
inline constexpr const char * k_a_n_embd         = "clip.audio.embedding_length";
inline constexpr const char * k_a_n_ff           = "clip.audio.feed_forward_length";
inline constexpr const char * k_a_n_block        = "clip.audio.block_count";
inline constexpr const char * k_a_proj_dim       = "clip.audio.projection_dim";
inline constexpr const char * k_a_n_head         = "clip.audio.attention.head_count";
inline constexpr const char * k_a_n_head_kv      = "clip.audio.attention.head_count_kv";
inline constexpr const char * k_a_n_embd_head    = "clip.audio.attention.head_dim";
inline constexpr const char * k_a_layer_norm_eps = "clip.audio.attention.layer_norm_epsilon";
inline constexpr const char * k_a_num_mel_bins   = "clip.audio.num_mel_bins";
inline constexpr const char * k_a_proj_stack     = "clip.audio.projector.stack_factor";
inline constexpr const char * t_a_pos_embd       = "a.position_embd.weight";
inline constexpr const char * t_a_pre_ln_w       = "a.pre_ln.weight";
inline constexpr const char * t_a_pre_ln_b       = "a.pre_ln.bias";
inline constexpr const char * t_a_post_ln_w      = "a.post_ln.weight";
inline constexpr const char * t_a_post_ln_b      = "a.post_ln.bias";

// Whisper's convolution stem: "a.conv1d.%d.%s" (TN_CONV1D), 1 and 2.
inline std::string a_conv1d(int i, const char * suffix) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "a.conv1d.%d.%s", i, suffix);
    return buf;
}

// Audio projectors: "mm.a.mlp.%d.%s" (TN_MM_AUDIO_MLP), "mm.a.fc.%s" (TN_MM_AUDIO_FC),
// "mm.a.norm_pre.%s", "mm.a.norm_mid.%s".
inline std::string a_mlp(int i, const char * suffix) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "mm.a.mlp.%d.%s", i, suffix);
    return buf;
}

inline constexpr const char * t_mm_a_fc_w       = "mm.a.fc.weight";
inline constexpr const char * t_mm_a_fc_b       = "mm.a.fc.bias";
inline constexpr const char * t_mm_a_norm_pre_w = "mm.a.norm_pre.weight";
inline constexpr const char * t_mm_a_norm_mid_w = "mm.a.norm_mid.weight";

// ---- projector tensors (prefix "mm") -----------------------------------------------------
// LLaVA mlp / mlp_norm: "mm.%d.%s" (TN_LLAVA_PROJ)
inline std::string llava_proj(int i, const char * suffix) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "mm.%d.%s", i, suffix);
    return buf;
}

// Gemma 3
inline constexpr const char * t_mm_input_proj = "mm.input_projection.weight";
inline constexpr const char * t_mm_soft_emb_n = "mm.soft_emb_norm.weight";

// Idefics3 / SmolVLM: the projection after the pixel shuffle (TN_MM_PROJECTOR)
inline constexpr const char * t_mm_model_fc = "mm.model.fc.weight";

// MiniCPM-V resampler (TN_MINICPMV_*): learned queries, kv projection, attention, norms
inline constexpr const char * t_resampler_query     = "resampler.query";
inline constexpr const char * t_resampler_kv        = "resampler.kv.weight";
inline constexpr const char * t_resampler_proj      = "resampler.proj.weight";
inline constexpr const char * t_resampler_pos_embdk = "resampler.pos_embed_k";  // required by libmtmd, unused

// "resampler.attn.<q|k|v|out>.<weight|bias>"
inline std::string resampler_attn(const char * part, const char * suffix) {
    return std::string("resampler.attn.") + part + "." + suffix;
}

// "resampler.ln_<q|kv|post>.<weight|bias>"
inline std::string resampler_ln(const char * part, const char * suffix) {
    return std::string("resampler.ln_") + part + "." + suffix;
}

// MobileVLM ldp / ldpv2 MLP: "mm.model.mlp.%d.%s" (TN_MVLM_PROJ_MLP)
inline std::string mvlm_mlp(int i, const char * suffix) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "mm.model.mlp.%d.%s", i, suffix);
    return buf;
}

// MobileVLM ldp blocks: "mm.model.mb_block.%d.block.%d.%s" (TN_MVLM_PROJ_BLOCK)
inline std::string mvlm_block(int b, int part, const char * suffix) {
    char buf[80];
    std::snprintf(buf, sizeof(buf), "mm.model.mb_block.%d.block.%d.%s", b, part, suffix);
    return buf;
}

// MobileVLM V2 positional encoding generator: "mm.model.peg.%d.%s" (TN_MVLM_PROJ_PEG)
inline std::string mvlm_peg(int i, const char * suffix) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "mm.model.peg.%d.%s", i, suffix);
    return buf;
}

}  // namespace mm::clip
