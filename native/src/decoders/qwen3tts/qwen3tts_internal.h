// What qwen3tts_gen.cpp and qwen3tts_graphs.cpp share: the key and tensor names (libmtmd's, from
// tools/mtmd/clip-impl.h), the code2wav state slots, and a stage (one scheduler with its graphs).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "decoders/qwen3tts/qwen3tts_gen.h"
#include "ggml.h"
#include "graph/runtime.h"

namespace mm::qwen3tts {

inline constexpr const char * k_has_gen       = "clip.has_gen_audio_encoder";
inline constexpr const char * k_has_audio     = "clip.has_audio_encoder";
inline constexpr const char * k_proj_type     = "clip.projector_type";
inline constexpr const char * k_gen_proj_type = "clip.gen.audio.projector_type";
inline constexpr const char * k_a_proj_type   = "clip.audio.projector_type";
inline constexpr const char * k_variant       = "clip.gen.audio.model_variant";
inline constexpr const char * k_gen_n_embd    = "clip.gen.audio.embedding_length";
inline constexpr const char * k_gen_n_ff      = "clip.gen.audio.feed_forward_length";
inline constexpr const char * k_gen_n_block   = "clip.gen.audio.block_count";
inline constexpr const char * k_gen_proj_dim  = "clip.gen.audio.projection_dim";
inline constexpr const char * k_gen_n_head    = "clip.gen.audio.attention.head_count";
inline constexpr const char * k_gen_n_head_kv = "clip.gen.audio.attention.head_count_kv";
inline constexpr const char * k_gen_eps       = "clip.gen.audio.attention.layer_norm_epsilon";
inline constexpr const char * k_a_n_block     = "clip.audio.block_count";
inline constexpr const char * k_a_num_mel     = "clip.audio.num_mel_bins";

inline constexpr const char * k_gen_type = "qwen3tts_gen";
inline constexpr const char * k_spk_type = "qwen3tts_spkenc";

inline constexpr int k_res2net_scale    = 8;
inline constexpr int k_spk_dilations[3] = {2, 3, 4};
inline constexpr int k_dac_dilations[3] = {1, 3, 9};

inline std::string cat(const std::string & a, const std::string & b) {
    return a + b;
}

// code predictor
inline std::string code_blk(int il, const char * part) {
    return "a.gen.code.blk." + std::to_string(il) + "." + part + ".weight";
}

// code2wav pre-transformer
inline std::string tfm_blk(int il, const char * part) {
    return "a.gen.wav.tfm.blk." + std::to_string(il) + "." + part + ".weight";
}

inline std::string up_blk(int il, const char * part, const char * suffix) {
    return "a.gen.wav.up.blk." + std::to_string(il) + "." + part + (suffix[0] ? "." : "") + suffix;
}

inline std::string dac_blk(int il, const char * part, const char * suffix) {
    return "a.gen.wav.dac.blk." + std::to_string(il) + "." + part + "." + suffix;
}

inline std::string dac_res(int il, int ir, const char * part, const char * suffix) {
    return "a.gen.wav.dac.blk." + std::to_string(il) + ".res." + std::to_string(ir) + "." + part + "." + suffix;
}

// speaker encoder
inline std::string spk_blk(int bid, const char * part, const char * suffix) {
    return "a.blk." + std::to_string(bid) + "." + part + "." + suffix;
}

inline std::string spk_res2(int bid, int x, const char * suffix) {
    return "a.blk." + std::to_string(bid) + ".res2." + std::to_string(x) + "." + suffix;
}

// libmtmd's list_c2w_state_slots, from the checked shapes.
std::vector<qwen3tts_state_slot> state_slots(const qwen3tts_hparams & hp, const gguf_file & f);

// One graph kept with its named inputs and outputs.
struct cached_graph {
    std::unique_ptr<graph_holder>                      holder;
    std::map<std::string, ggml_tensor *>               in;
    std::map<std::string, ggml_tensor *>               out;
    std::vector<std::pair<std::string, ggml_tensor *>> state_out;  // code2wav, in slot order
};

}  // namespace mm::qwen3tts

namespace mm {

struct qwen3tts_gen::stage {
    std::unique_ptr<runtime>                                       rt;
    bool                                                           flash_attn = true;
    std::map<std::string, std::unique_ptr<qwen3tts::cached_graph>> graphs;

    // Drops every cached graph (when the cache is full).
    void clear() {
        for (auto & g : graphs) {
            rt->forget(g.second->holder->gf());
        }
        graphs.clear();
    }
};

}  // namespace mm
