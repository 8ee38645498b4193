#include "projectors/fused_media.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "backbone/model.h"
#include "common/abort_guard.h"
#include "common/error.h"
#include "common/log.h"
#include "encoders/registry.h"
#include "gguf.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "llama.h"
#include "mtmd.h"
#include "projectors/registry.h"

namespace mm {

namespace {

// ---- which types ---------------------------------------------------------------------------------

// clip.projector_type strings (clip-impl.h's PROJECTOR_TYPE_NAMES) of every projector type libmtmd's
// init_vision sets up, pinned 80fb11ac. `mlp_norm` has no string of its own (a file says `mlp`);
// `qwen2.5o` is the legacy omni name libmtmd reads as qwen2.5vl_merger for vision.
const std::vector<std::string> k_fused_types = {
    "mlp",
    "ldp",
    "ldpv2",
    "adapter",
    "cogvlm",
    "janus_pro",
    "resampler",
    "minicpmv4_6",
    "qwen2vl_merger",
    "qwen2.5vl_merger",
    "qwen2.5o",
    "qwen3vl_merger",
    "mimovl",
    "minimax_m3",
    "muse-glimmer",
    "youtuvl",
    "yasa2",
    "gemma3",
    "gemma3nv",
    "idefics3",
    "pixtral",
    "phi4",
    "llama4",
    "step3vl",
    "internvl",
    "kimivl",
    "kimik25",
    "lightonocr",
    "dots_ocr",
    "dots3note_v",
    "nemotron_v2_vl",
    "lfm2",
    "glm4v",
    "paddleocr",
    "gemma4v",
    "gemma4uv",
    "deepseekocr",
    "deepseekocr2",
    "exaone4_5",
    "granite4_vision",
};

// clip.projector_type strings of the audio projector types libmtmd's init_audio sets up for
// understanding, pinned 80fb11ac (not qwen3tts_spkenc / pockettts_spkenc: the speaker encoders of
// speech generation). `qwen2.5o` is read as qwen2a for audio.
const std::vector<std::string> k_fused_audio_types = {
    "ultravox", "qwen2a",         "qwen2.5o", "qwen3a",   "glma",     "voxtral",     "meralion",   "musicflamingo",
    "lfm2a",    "granite_speech", "gemma4a",  "gemma4ua", "parakeet", "dots3note_a", "mimo_audio",
};

// The Whisper-style encoders (clip_graph_whisper_enc): conv stem, learned positions, ViT blocks, then
// each type's projector; 30 s chunks of 3000 mel frames.
bool is_whisper_type(const std::string & t) {
    return t == "ultravox" || t == "qwen2a" || t == "voxtral" || t == "musicflamingo" || t == "meralion" || t == "glma";
}

// libmtmd runs these for images too, but their layout cannot come from the marker alone.
const char * refused_reason(const std::string & type) {
    if (type == "deepseek4v") {
        return "libmtmd pads its image to the count of the prompt tokens before it";
    }
    if (type == "hunyuanvl") {
        return "its image positions (XD-RoPE) number the pictures of the whole prompt";
    }
    return nullptr;
}

std::string join(const std::vector<std::string> & v) {
    std::string out;
    for (const auto & s : v) {
        out += (out.empty() ? "" : ", ") + s;
    }
    return out;
}

// ---- the header, as libmtmd reads it ----------------------------------------------------------------

enum class key_kind { u32, i32, f32, boolean, string };

struct key_rule {
    std::string key;
    key_kind    kind;
};

// Every scalar key libmtmd's clip_model_loader reads (get_u32 / get_i32 / get_f32 / get_bool /
// get_string in clip.cpp): ggml's gguf_get_val_* GGML_ASSERT the type, so a key of another type would
// abort the process inside libmtmd. (Arrays it checks itself.)
const std::vector<key_rule> & key_rules() {
    static const std::vector<key_rule> rules = [] {
        std::vector<key_rule> r = {
            {"general.name", key_kind::string},
            {"general.description", key_kind::string},
            {"clip.projector_type", key_kind::string},
            {"clip.vision.projector_type", key_kind::string},
            {"clip.audio.projector_type", key_kind::string},
            {"clip.gen.audio.projector_type", key_kind::string},
            {"clip.gen.audio.model_variant", key_kind::string},
            {"clip.vision.mm_patch_merge_type", key_kind::string},
            {"clip.has_vision_encoder", key_kind::boolean},
            {"clip.has_audio_encoder", key_kind::boolean},
            {"clip.has_gen_audio_encoder", key_kind::boolean},
            {"clip.use_gelu", key_kind::boolean},
            {"clip.use_silu", key_kind::boolean},
            {"clip.minicpmv_version", key_kind::i32},
            {"clip.minicpmv_query_num", key_kind::u32},
        };
        for (const char * m : {"vision", "audio", "gen.audio"}) {
            const std::string p = std::string("clip.") + m + ".";
            for (const char * k : {"embedding_length", "feed_forward_length", "block_count", "projection_dim",
                                   "attention.head_count", "attention.head_count_kv", "attention.head_dim"}) {
                r.push_back({p + k, key_kind::u32});
            }
            r.push_back({p + "attention.layer_norm_epsilon", key_kind::f32});
        }
        for (const char * k :
             {"image_size", "image_min_pixels", "image_max_pixels", "preproc_min_tiles", "preproc_max_tiles",
              "preproc_image_size", "patch_size", "projector.scale_factor", "projector.query_side",
              "projector.window_side", "spatial_merge_size", "n_wa_pattern", "window_size", "sam.head_count",
              "sam.block_count", "sam.embedding_length", "expert_used_count"}) {
            r.push_back({std::string("clip.vision.") + k, key_kind::u32});
        }
        for (const char * k :
             {"num_mel_bins", "projector.stack_factor", "chunk_size", "conv_kernel_size", "max_pos_emb",
              "projector.window_size", "projector.downsample_rate", "projector.head_count", "rvq.num_quantizers",
              "window_size", "local_block_count", "local_group_size", "subsampling_factor"}) {
            r.push_back({std::string("clip.audio.") + k, key_kind::u32});
        }
        return r;
    }();
    return rules;
}

const char * kind_gguf_name(key_kind k) {
    switch (k) {
        case key_kind::u32:
            return gguf_type_name(GGUF_TYPE_UINT32);
        case key_kind::i32:
            return gguf_type_name(GGUF_TYPE_INT32);
        case key_kind::f32:
            return gguf_type_name(GGUF_TYPE_FLOAT32);
        case key_kind::boolean:
            return gguf_type_name(GGUF_TYPE_BOOL);
        case key_kind::string:
            return gguf_type_name(GGUF_TYPE_STRING);
    }
    return "?";
}

void check_key_types(const gguf_file & f) {
    for (const key_rule & r : key_rules()) {
        const std::string have = f.key_type_name(r.key.c_str());
        if (have != "absent" && have != kind_gguf_name(r.kind)) {
            f.invalid(r.key + " has type " + have + ", expected " + kind_gguf_name(r.kind));
        }
    }
}

uint32_t u32_or(const gguf_file & f, const char * key, uint32_t fallback) {
    uint32_t v = fallback;
    f.find_u32(key, v);
    return v;
}

void check_range(const gguf_file & f, const char * key, uint32_t v, uint32_t lo, uint32_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(key) + " is " + std::to_string(v) + ", outside [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

// ---- tensors -------------------------------------------------------------------------------------------

bool is_vector(const ggml_tensor * t) {
    return t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1;
}

// Converters write every 1-D tensor (norms, biases, class and marker embeddings) in f32, and ggml's
// CPU kernels abort on some other types there; the patch kernels go through im2col (f32 / f16).
void check_tensor_types(const gguf_file & f) {
    for (int64_t i = 0; i < f.n_tensors(); ++i) {
        const std::string   name = f.tensor_name(i);
        const ggml_tensor * t    = f.tensor(name);
        if (t == nullptr) {
            continue;
        }
        if (is_vector(t) && t->type != GGML_TYPE_F32) {
            f.invalid("tensor '" + name + "' is a vector of type " + ggml_type_name(t->type) + ", expected f32");
        }
        const bool kernel = name.rfind("v.patch_embd.weight", 0) == 0 || name.rfind("a.conv1d.", 0) == 0 ||
                            name.rfind("a.conv2d.", 0) == 0;
        if (kernel && name.find(".weight") != std::string::npos && t->type != GGML_TYPE_F32 &&
            t->type != GGML_TYPE_F16) {
            f.invalid("tensor '" + name + "' has type " + ggml_type_name(t->type) + ", expected f32 or f16");
        }
    }
}

// A tensor of exactly this shape (-1: any), present or (optional) absent; returns it.
const ggml_tensor * shaped(const gguf_file & f, const std::string & name, std::vector<int64_t> ne,
                           bool required = true) {
    const ggml_tensor * t = f.tensor(name);
    if (t == nullptr) {
        if (required) {
            f.invalid("tensor '" + name + "' is missing");
        }
        return nullptr;
    }
    ne.resize(4, 1);
    for (int d = 0; d < 4; ++d) {
        if (ne[d] >= 0 && t->ne[d] != ne[d]) {
            std::string want;
            for (int k = 0; k < 4; ++k) {
                want += (k ? ", " : "") + (ne[k] < 0 ? std::string("*") : std::to_string(ne[k]));
            }
            f.invalid("tensor '" + name + "' has shape " + shape_string(t) + ", expected [" + want + "]");
        }
    }
    return t;
}

struct vit_shape {
    int64_t E       = 0;  // width
    int64_t F       = 0;  // feed-forward width
    int64_t n_layer = 0;
};

// The blocks build_vit runs (clip.cpp): norms, attention (separate or fused q/k/v: libmtmd
// dereferences them unchecked) and the FFN. Optional tensors are checked when present.
void check_vit_blocks(const gguf_file & f, const vit_shape & s, const char * prefix = "v") {
    const int64_t E = s.E;
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = std::string(prefix) + ".blk." + std::to_string(il) + ".";
        for (const char * ln : {"ln1", "ln2", "ls1", "ls2"}) {
            shaped(f, p + ln + ".weight", {E}, false);
            shaped(f, p + ln + ".bias", {E}, false);
        }
        if (f.tensor(p + "attn_qkv.weight") != nullptr) {
            shaped(f, p + "attn_qkv.weight", {E, 3 * E});
            shaped(f, p + "attn_qkv.bias", {3 * E}, false);
        } else {
            for (const char * a : {"attn_q", "attn_k", "attn_v"}) {
                shaped(f, p + a + ".weight", {E, E});
                shaped(f, p + a + ".bias", {E}, false);
            }
        }
        shaped(f, p + "attn_out.weight", {E, E});
        shaped(f, p + "attn_out.bias", {E}, false);
        shaped(f, p + "ffn_up.weight", {E, s.F});
        shaped(f, p + "ffn_up.bias", {s.F}, false);
        shaped(f, p + "ffn_gate.weight", {E, s.F}, false);
        shaped(f, p + "ffn_gate.bias", {s.F}, false);
        shaped(f, p + "ffn_down.weight", {s.F, E});
        shaped(f, p + "ffn_down.bias", {E}, false);
    }
}

int64_t perfect_square_side(int64_t n) {
    auto r = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    return r * r == n ? r : -1;
}

// The families mm's tests generate files for: every tensor libmtmd's graph reads, with its shape.
void check_family_tensors(const gguf_file & f, const std::string & type, int64_t E, int64_t F, int64_t n_layer,
                          int64_t patch, int64_t image_size) {
    if (type == "pixtral") {
        check_vit_blocks(f, {E, F, n_layer});
        shaped(f, "v.patch_embd.weight", {patch, patch, 3, E});
        shaped(f, "v.pre_ln.weight", {E}, false);
        const uint32_t merge = u32_or(f, "clip.vision.spatial_merge_size", 1);
        // the [IMG_BREAK] rows are laid out on the merged grid: a merge needs the merger (Mistral Small 3.1)
        const ggml_tensor * merger = shaped(f, "mm.patch_merger.weight", {E * merge * merge, E}, merge != 1);
        if (merger != nullptr) {
            shaped(f, "mm.input_norm.weight", {E});
        }
        const ggml_tensor * fc1 = shaped(f, "mm.1.weight", {E, -1});
        shaped(f, "mm.1.bias", {fc1->ne[1]}, false);
        const ggml_tensor * fc2 = shaped(f, "mm.2.weight", {fc1->ne[1], -1});
        shaped(f, "mm.2.bias", {fc2->ne[1]}, false);
        shaped(f, "v.token_embd.img_break", {fc2->ne[1]});
    } else if (type == "internvl") {
        check_vit_blocks(f, {E, F, n_layer});
        shaped(f, "v.patch_embd.weight", {patch, patch, 3, E});
        shaped(f, "v.patch_embd.bias", {E}, false);
        shaped(f, "v.class_embd", {E});
        const int64_t n_side = image_size / patch;
        shaped(f, "v.position_embd.weight", {E, n_side * n_side + 1});
        // libmtmd asserts min <= max at load, and an empty candidate list (min 0) at the first picture
        const uint32_t min_tiles = u32_or(f, "clip.vision.preproc_min_tiles", 1);
        const uint32_t max_tiles = u32_or(f, "clip.vision.preproc_max_tiles", 12);
        if (min_tiles < 1 || min_tiles > max_tiles) {
            f.invalid("clip.vision.preproc_min_tiles (" + std::to_string(min_tiles) +
                      ") must be at least 1 and at most preproc_max_tiles (" + std::to_string(max_tiles) + ")");
        }
        const uint32_t scale = u32_or(f, "clip.vision.projector.scale_factor", 0);
        if (scale == 0 || n_side % scale != 0) {
            f.invalid("clip.vision.projector.scale_factor must divide the " + std::to_string(n_side) +
                      " patches per side (libmtmd's pixel shuffle)");
        }
        const int64_t W = E * scale * scale;
        shaped(f, "mm.model.mlp.0.weight", {W});
        shaped(f, "mm.model.mlp.0.bias", {W});
        const ggml_tensor * fc1 = shaped(f, "mm.model.mlp.1.weight", {W, -1});
        shaped(f, "mm.model.mlp.1.bias", {fc1->ne[1]});
        const ggml_tensor * fc2 = shaped(f, "mm.model.mlp.3.weight", {fc1->ne[1], -1});
        shaped(f, "mm.model.mlp.3.bias", {fc2->ne[1]});
    } else if (type == "qwen3vl_merger") {
        check_vit_blocks(f, {E, F, n_layer});
        for (int64_t il = 0; il < n_layer; ++il) {  // its graph adds the fused q/k/v and bias unchecked
            const std::string p = "v.blk." + std::to_string(il) + ".attn_qkv.";
            shaped(f, p + "weight", {E, 3 * E});
            shaped(f, p + "bias", {3 * E});
        }
        shaped(f, "v.patch_embd.weight", {patch, patch, 3, E});
        shaped(f, "v.patch_embd.weight.1", {patch, patch, 3, E});  // both frames' kernels run on a still image
        shaped(f, "v.patch_embd.bias", {E});
        if (f.tensor("v.class_embd") != nullptr) {
            f.invalid("tensor 'v.class_embd' is not expected in a qwen3vl_merger file");
        }
        const ggml_tensor * pos = shaped(f, "v.position_embd.weight", {E, -1});
        if (perfect_square_side(pos->ne[1]) < 1) {
            f.invalid("tensor 'v.position_embd.weight' must hold a square grid of positions, has " +
                      std::to_string(pos->ne[1]));
        }
        const int64_t n_head = u32_or(f, "clip.vision.attention.head_count", 0);
        if (n_head == 0 || E % n_head != 0 || (E / n_head) % 4 != 0) {
            f.invalid("the head dimension must be a multiple of 4 (M-RoPE sections)");
        }
        if (u32_or(f, "clip.vision.spatial_merge_size", 2) != 2) {
            f.invalid("clip.vision.spatial_merge_size must be 2 for qwen3vl_merger (libmtmd's merger is 2x2)");
        }
        shaped(f, "v.post_ln.weight", {E}, false);
        shaped(f, "v.post_ln.bias", {E}, false);
        const ggml_tensor * fc1 = shaped(f, "mm.0.weight", {4 * E, -1});
        shaped(f, "mm.0.bias", {fc1->ne[1]});
        const ggml_tensor * fc2 = shaped(f, "mm.2.weight", {fc1->ne[1], -1});
        shaped(f, "mm.2.bias", {fc2->ne[1]});
        const int64_t D = fc2->ne[1];
        for (int64_t il = 0; il < n_layer; ++il) {
            const std::string   p    = "v.deepstack." + std::to_string(il) + ".";
            const ggml_tensor * norm = shaped(f, p + "norm.weight", {4 * E}, false);
            if (norm == nullptr) {
                continue;
            }
            shaped(f, p + "norm.bias", {4 * E});
            const ggml_tensor * d1 = shaped(f, p + "fc1.weight", {4 * E, -1});
            shaped(f, p + "fc1.bias", {d1->ne[1]});
            shaped(f, p + "fc2.weight", {d1->ne[1], D});
            shaped(f, p + "fc2.bias", {D});
        }
    }
}

// The projector type libmtmd reads for one modality (clip.cpp load_hparams): clip.projector_type,
// else clip.vision.projector_type / clip.audio.projector_type; the legacy `qwen2.5o` names both halves.
std::string modality_projector_type(const gguf_file & f, const char * modality_key) {
    std::string type;
    f.find_string(clip::k_projector_type, type);
    if (type.empty()) {
        f.find_string(modality_key, type);
    }
    return type;
}

void validate_vision(const gguf_file & f, const std::string & type, fused_info & info);
void validate_audio(const gguf_file & f, const std::string & type, fused_info & info);

fused_info read_fused_info(const gguf_file & f) {
    fused_info  info;
    std::string arch;
    if (!f.find_string(clip::k_architecture, arch) || arch != "clip") {
        fail(error_code::model_load,
             "'" + f.path() + "' is not an mmproj (general.architecture is '" + arch + "', expected 'clip')");
    }
    check_key_types(f);
    f.find_bool(clip::k_has_vision, info.has_vision);
    f.find_bool(clip::k_has_audio, info.has_audio);
    if (info.has_vision) {
        info.vision_projector_type = modality_projector_type(f, clip::k_vision_proj_type);
    }
    if (info.has_audio) {
        info.audio_projector_type = modality_projector_type(f, "clip.audio.projector_type");
    }
    info.projector_type = modality_projector_type(f, clip::k_vision_proj_type);
    if (info.projector_type.empty()) {
        info.projector_type = modality_projector_type(f, "clip.audio.projector_type");
    }
    if (info.projector_type.empty()) {
        f.invalid("clip.projector_type is missing");
    }
    if (!info.has_vision && !info.has_audio) {
        fail(error_code::modality_unsupported, "'" + f.path() +
                                                   "' has neither a vision nor an audio encoder "
                                                   "(clip.has_vision_encoder and clip.has_audio_encoder are not true)");
    }
    if (info.has_vision) {
        const std::string & type = info.vision_projector_type;
        if (type.empty()) {
            f.invalid("the vision encoder has no projector type (clip.vision.projector_type)");
        }
        if (const char * why = refused_reason(type)) {
            fail(error_code::unsupported_family,
                 "'" + f.path() + "': projector type '" + type + "' is not supported through libmtmd here: " + why);
        }
        if (!fused_supports(type)) {
            fail(error_code::unsupported_family,
                 "'" + f.path() + "': projector type '" + type + "' is not supported; own graphs: " +
                     supported_projector_families() + "; through libmtmd (fused): " + join(fused_projector_types()));
        }
    }
    if (info.has_audio) {
        const std::string & type = info.audio_projector_type;
        if (type.empty()) {
            f.invalid("the audio encoder has no projector type (clip.audio.projector_type)");
        }
        if (!fused_supports_audio(type)) {
            fail(error_code::unsupported_family,
                 "'" + f.path() + "': audio projector type '" + type +
                     "' is not supported; through libmtmd (fused): " + join(fused_audio_projector_types()));
        }
    }
    check_tensor_types(f);
    if (info.has_vision) {
        validate_vision(f, info.vision_projector_type, info);
    }
    if (info.has_audio) {
        validate_audio(f, info.audio_projector_type, info);
    }
    return info;
}

void validate_vision(const gguf_file & f, const std::string & type, fused_info & info) {
    // The vision tower's hyperparameters, bounded so that nothing libmtmd sizes from them wraps or
    // asks for absurd memory (libmtmd checks image_size <= 8192 and patch_size < 65536 itself).
    const uint32_t E          = f.require_u32(clip::k_n_embd);
    const uint32_t n_head     = f.require_u32(clip::k_n_head);
    const uint32_t n_ff       = f.require_u32(clip::k_n_ff);
    const uint32_t n_layer    = f.require_u32(clip::k_n_block);
    const uint32_t proj_dim   = f.require_u32(clip::k_proj_dim);
    const uint32_t image_size = f.require_u32(clip::k_image_size);
    const uint32_t patch      = f.require_u32(clip::k_patch_size);
    const float    eps        = f.require_f32(clip::k_layer_norm_eps);
    check_range(f, clip::k_n_embd, E, 1, 1 << 16);
    check_range(f, clip::k_n_head, n_head, 1, 1024);
    check_range(f, clip::k_n_ff, n_ff, 0, 1 << 20);
    check_range(f, clip::k_n_block, n_layer, 1, 1024);
    check_range(f, clip::k_proj_dim, proj_dim, 0, 1 << 20);
    check_range(f, clip::k_image_size, image_size, 0, 8192);
    check_range(f, clip::k_patch_size, patch, 1, 1024);
    if (f.has_key(clip::k_n_embd_head)) {
        check_range(f, clip::k_n_embd_head, f.require_u32(clip::k_n_embd_head), 1, 1 << 16);
    } else if (E % n_head != 0) {
        f.invalid("clip.vision.embedding_length " + std::to_string(E) + " is not a multiple of the " +
                  std::to_string(n_head) + " heads");
    }
    const uint32_t n_head_kv = u32_or(f, clip::k_n_head_kv, n_head);
    if (n_head_kv == 0 || n_head % n_head_kv != 0) {
        f.invalid("clip.vision.attention.head_count_kv must divide the head count");
    }
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid("clip.vision.attention.layer_norm_epsilon must be a finite number >= 0");
    }
    for (const char * k : {"clip.vision.projector.scale_factor", "clip.vision.spatial_merge_size"}) {
        if (f.has_key(k)) {
            check_range(f, k, f.require_u32(k), 1, 64);
        }
    }
    for (const char * k : {"clip.vision.image_min_pixels", "clip.vision.image_max_pixels"}) {
        if (f.has_key(k)) {
            check_range(f, k, f.require_u32(k), 0, 1u << 26);
        }
    }
    for (const char * k : {"clip.vision.preproc_min_tiles", "clip.vision.preproc_max_tiles"}) {
        if (f.has_key(k)) {
            check_range(f, k, f.require_u32(k), 0, 256);
        }
    }
    if (f.has_key("clip.vision.preproc_image_size")) {
        check_range(f, "clip.vision.preproc_image_size", f.require_u32("clip.vision.preproc_image_size"), 0, 16384);
    }
    std::vector<float> mean, stdev;
    if (!f.find_f32_array(clip::k_image_mean, mean) || !f.find_f32_array(clip::k_image_std, stdev) || mean.size() < 3 ||
        stdev.size() < 3) {
        f.invalid("clip.vision.image_mean and clip.vision.image_std must be float32 arrays of 3");
    }
    for (int c = 0; c < 3; ++c) {
        if (!std::isfinite(mean[c]) || !std::isfinite(stdev[c]) || stdev[c] == 0.0f) {
            f.invalid("clip.vision.image_mean / image_std must be finite, with a non-zero std");
        }
    }
    check_family_tensors(f, type, E, n_ff, n_layer, patch, image_size);

    info.image_size     = static_cast<int32_t>(image_size);
    info.patch_size     = static_cast<int32_t>(patch);
    info.n_embd_vision  = static_cast<int32_t>(E);
    info.n_layer        = static_cast<int32_t>(n_layer);
    info.projection_dim = static_cast<int32_t>(proj_dim);
}

// ---- the audio encoder -----------------------------------------------------------------------------------

// A tensor of type f32 (ggml_add / ggml_mul operands of the audio graphs).
void require_f32(const gguf_file & f, const ggml_tensor * t) {
    if (t != nullptr && t->type != GGML_TYPE_F32) {
        f.invalid("tensor '" + std::string(t->name) + "' has type " + ggml_type_name(t->type) + ", expected f32");
    }
}

// clip_graph_whisper_enc (models/whisper-enc.cpp) and each type's projector in it: every tensor the
// graph reads, with the shape that makes its ggml ops valid. A wrong one would abort inside ggml (a
// GGML_ASSERT at graph build, or on a compute thread during libmtmd's warmup), or dereference a
// tensor libmtmd does not check.
void check_whisper_tensors(const gguf_file & f, const std::string & type, int64_t E, int64_t F, int64_t n_layer,
                           int64_t n_mel, uint32_t stack) {
    // conv stem: [K, IC, OC] kernels, K = 3 (padding K/2 keeps the 3000 frames, stride 2 halves them)
    shaped(f, "a.conv1d.1.weight", {3, n_mel, E});
    require_f32(f, shaped(f, "a.conv1d.1.bias", {1, E}));
    shaped(f, "a.conv1d.2.weight", {3, E, E});
    require_f32(f, shaped(f, "a.conv1d.2.bias", {1, E}));
    // learned positions: a 30 s chunk is 1500 rows after the stem
    const ggml_tensor * pos = shaped(f, "a.position_embd.weight", {E, -1});
    if (pos->ne[1] < 1500) {
        f.invalid("tensor 'a.position_embd.weight' has " + std::to_string(pos->ne[1]) +
                  " rows; a 30 s chunk needs 1500");
    }
    if (pos->type != GGML_TYPE_F32 && pos->type != GGML_TYPE_F16) {
        f.invalid("tensor 'a.position_embd.weight' must be f32 or f16");
    }
    check_vit_blocks(f, {E, F, n_layer}, "a");
    // libmtmd's own sanity checks on block 0 (GGML_ASSERT): both norms with biases, q and v biases, no k bias
    for (const char * t : {"a.blk.0.ln1.weight", "a.blk.0.ln1.bias", "a.blk.0.ln2.weight", "a.blk.0.ln2.bias",
                           "a.blk.0.attn_q.bias", "a.blk.0.attn_v.bias"}) {
        shaped(f, t, {E});
    }
    if (f.tensor("a.blk.0.attn_k.bias") != nullptr) {
        f.invalid("tensor 'a.blk.0.attn_k.bias' is not expected (Whisper's k projection has no bias)");
    }
    if (f.tensor("a.blk.0.attn_qkv.weight") != nullptr) {
        f.invalid("tensor 'a.blk.0.attn_qkv.weight' is not expected in a Whisper-style encoder");
    }
    shaped(f, "a.post_ln.weight", {E}, false);
    shaped(f, "a.post_ln.bias", {E}, false);

    const bool    stacked = type == "ultravox" || type == "voxtral" || type == "meralion";
    const int64_t W       = stacked ? E * stack : E;  // the projector's input width
    if (type == "ultravox") {
        shaped(f, "mm.a.norm_pre.weight", {W});
        const ggml_tensor * fc1 = shaped(f, "mm.a.mlp.1.weight", {W, -1});
        if (fc1->ne[1] % 2 != 0) {
            f.invalid("tensor 'mm.a.mlp.1.weight' must have an even output width (SwiGLU halves it)");
        }
        const int64_t H = fc1->ne[1] / 2;
        shaped(f, "mm.a.norm_mid.weight", {H});
        shaped(f, "mm.a.mlp.2.weight", {H, -1});
    } else if (type == "qwen2a") {
        const ggml_tensor * fc = shaped(f, "mm.a.fc.weight", {E, -1});
        shaped(f, "mm.a.fc.bias", {fc->ne[1]});
    } else if (type == "voxtral") {
        const ggml_tensor * fc1 = shaped(f, "mm.a.mlp.1.weight", {W, -1});
        shaped(f, "mm.a.mlp.2.weight", {fc1->ne[1], -1});
    } else if (type == "musicflamingo") {
        const ggml_tensor * fc1 = shaped(f, "mm.a.mlp.1.weight", {W, -1});
        shaped(f, "mm.a.mlp.1.bias", {fc1->ne[1]});
        const ggml_tensor * fc2 = shaped(f, "mm.a.mlp.2.weight", {fc1->ne[1], -1});
        shaped(f, "mm.a.mlp.2.bias", {fc2->ne[1]});
    } else if (type == "meralion") {
        shaped(f, "mm.a.norm_pre.weight", {W});
        shaped(f, "mm.a.norm_pre.bias", {W});
        const ggml_tensor * l0 = shaped(f, "mm.a.mlp.0.weight", {W, -1});
        shaped(f, "mm.a.mlp.0.bias", {l0->ne[1]});
        const ggml_tensor * l1 = shaped(f, "mm.a.mlp.1.weight", {l0->ne[1], -1});
        shaped(f, "mm.a.mlp.1.bias", {l1->ne[1]});
        shaped(f, "mm.a.mlp.2.weight", {l0->ne[1], l1->ne[1]});
        shaped(f, "mm.a.mlp.2.bias", {l1->ne[1]});
        const ggml_tensor * l3 = shaped(f, "mm.a.mlp.3.weight", {l1->ne[1], -1});
        shaped(f, "mm.a.mlp.3.bias", {l3->ne[1]});
    } else if (type == "glma") {
        // norm before stacking, then the MLP on stacked rows, between learned begin / end rows
        shaped(f, "mm.a.norm_pre.weight", {E});
        shaped(f, "mm.a.norm_pre.bias", {E});
        const ggml_tensor * fc1 = shaped(f, "mm.a.mlp.1.weight", {E * stack, -1});
        shaped(f, "mm.a.mlp.1.bias", {fc1->ne[1]});
        const ggml_tensor * fc2 = shaped(f, "mm.a.mlp.2.weight", {fc1->ne[1], -1});
        shaped(f, "mm.a.mlp.2.bias", {fc2->ne[1]});
        shaped(f, "v.boi", {fc2->ne[1]});
        shaped(f, "v.eoi", {fc2->ne[1]});
    }
}

// libmtmd checks, after each encode, that the graph gave the rows clip_n_output_tokens promised, and
// aborts the process when not. For one 3000-frame chunk: the stem halves the frames, qwen2a /
// voxtral / musicflamingo pool by 2, and the stacking projectors reshape by ggml's GGML_PAD (a bit
// mask, exact only for power-of-two strides) where the count uses a true round-up; glma adds its
// begin / end rows. Refuse the widths where the two differ.
void check_whisper_rows(const gguf_file & f, const std::string & type, int64_t E, int64_t stack) {
    const bool pool         = type == "qwen2a" || type == "voxtral" || type == "musicflamingo";
    const bool stack_frames = type == "ultravox" || type == "voxtral" || type == "meralion";
    int64_t    expected     = 3000;
    if (stack_frames) {
        expected = (expected + stack - 1) / stack;  // CLIP_ALIGN(n, s) / s
    }
    expected /= 2;
    if (pool) {
        expected /= 2;
    }
    int64_t rows = pool ? 750 : 1500;
    if ((stack_frames || type == "glma") && stack > 1) {
        const int64_t total  = rows * E;
        const int64_t stride = E * stack;
        const int64_t padded = (total + stride - 1) & ~(stride - 1);  // GGML_PAD
        rows                 = padded / stride;
    }
    if (type == "glma") {
        expected = 3000 / 2 / stack + 2;
        rows += 2;
    }
    if (rows != expected) {
        f.invalid("libmtmd cannot run this " + type + " encoder: with width " + std::to_string(E) +
                  " and stack factor " + std::to_string(stack) + " its graph gives " + std::to_string(rows) +
                  " rows per 30 s chunk where it expects " + std::to_string(expected) +
                  " (ggml's GGML_PAD rounds only power-of-two strides exactly), and it would abort");
    }
}

uint32_t audio_u32(const gguf_file & f, const std::string & key, uint32_t lo, uint32_t hi, bool required,
                   uint32_t fallback = 0) {
    uint32_t v = fallback;
    if (!f.find_u32(key.c_str(), v)) {
        if (required) {
            f.invalid(key + " is missing");
        }
        return fallback;
    }
    check_range(f, key.c_str(), v, lo, hi);
    return v;
}

// What libmtmd's load_hparams reads for an audio encoder, with the bounds its asserts need (and
// sizes that cannot ask for absurd memory), then the tensors of the Whisper-style encoders.
void validate_audio(const gguf_file & f, const std::string & type, fused_info & info) {
    const std::string a        = "clip.audio.";
    const bool        whisper  = is_whisper_type(type) || type == "qwen2.5o";
    const std::string resolved = type == "qwen2.5o" ? "qwen2a" : type;
    const uint32_t    E        = audio_u32(f, a + "embedding_length", 1, 1 << 16, true);
    const uint32_t    n_head   = audio_u32(f, a + "attention.head_count", 1, 1024, true);
    const uint32_t    n_ff     = audio_u32(f, a + "feed_forward_length", 0, 1 << 20, true);
    const uint32_t    n_layer  = audio_u32(f, a + "block_count", whisper ? 1 : 0, 1024, true);
    audio_u32(f, a + "projection_dim", 0, 1 << 20, true);
    const float eps = f.require_f32((a + "attention.layer_norm_epsilon").c_str());
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid("clip.audio.attention.layer_norm_epsilon must be a finite number >= 0");
    }
    if (f.has_key((a + "attention.head_dim").c_str())) {
        audio_u32(f, a + "attention.head_dim", 1, 1 << 16, true);
    } else if (E % n_head != 0) {
        f.invalid("clip.audio.embedding_length " + std::to_string(E) + " is not a multiple of the " +
                  std::to_string(n_head) + " heads");
    }
    const uint32_t n_head_kv = audio_u32(f, a + "attention.head_count_kv", 1, 1024, false, n_head);
    if (n_head % n_head_kv != 0) {
        f.invalid("clip.audio.attention.head_count_kv must divide the head count");
    }
    // gemma4ua reads raw 640-sample frames (its n_mel_bins is overwritten); the others' filter banks
    // take at most 256 bands
    const uint32_t n_mel = audio_u32(f, a + "num_mel_bins", 1, type == "gemma4ua" ? 1 << 16 : 256, true);
    const bool     needs_stack =
        resolved == "ultravox" || resolved == "voxtral" || resolved == "meralion" || resolved == "glma";
    const uint32_t stack = audio_u32(f, a + "projector.stack_factor", 1, 64, needs_stack, 1);
    if (type == "parakeet") {
        if (audio_u32(f, a + "subsampling_factor", 0, 1 << 16, true) != 8) {
            f.invalid("clip.audio.subsampling_factor must be 8 for parakeet (libmtmd's conv strides)");
        }
        const uint32_t k = audio_u32(f, a + "conv_kernel_size", 1, 1023, true);
        if (k % 2 == 0) {
            f.invalid("clip.audio.conv_kernel_size must be odd");
        }
    } else if (type == "granite_speech") {
        audio_u32(f, a + "chunk_size", 1, 8192, true);
        audio_u32(f, a + "conv_kernel_size", 1, 1023, true);
        audio_u32(f, a + "max_pos_emb", 1, 1 << 16, true);
        audio_u32(f, a + "projector.window_size", 1, 1 << 16, true);
        audio_u32(f, a + "projector.downsample_rate", 1, 1 << 16, true);
        audio_u32(f, a + "projector.head_count", 1, 1024, true);
    } else if (type == "mimo_audio") {
        audio_u32(f, a + "rvq.num_quantizers", 1, 64, true);
        audio_u32(f, a + "window_size", 0, 1 << 16, true);
        audio_u32(f, a + "local_block_count", 0, 1024, true);
        audio_u32(f, a + "local_group_size", 1, 1 << 16, true);
    }
    if (whisper) {
        check_whisper_tensors(f, resolved, E, n_ff, n_layer, n_mel, stack);
        check_whisper_rows(f, resolved, E, stack);
    }
    info.audio_sample_rate = type == "mimo_audio" ? 24000 : 16000;
    info.n_mel_bins        = static_cast<int32_t>(n_mel);
    info.n_embd_audio      = static_cast<int32_t>(E);
    info.n_layer_audio     = static_cast<int32_t>(n_layer);
}

// ---- libmtmd's logger ----------------------------------------------------------------------------------

void route_mtmd_log() {
    static std::once_flag once;
    std::call_once(
        once, [] { mtmd_log_set([](ggml_log_level l, const char * t, void * u) { log_callback(l, t, u); }, nullptr); });
}

[[noreturn]] void fail_with_log(error_code code, const std::string & what) {
    const std::string why = thread_log_errors();
    fail(code, what + (why.empty() ? std::string() : ": " + why));
}

}  // namespace

const std::vector<std::string> & fused_projector_types() {
    return k_fused_types;
}

bool fused_supports(const std::string & type) {
    return std::find(k_fused_types.begin(), k_fused_types.end(), type) != k_fused_types.end();
}

const std::vector<std::string> & fused_audio_projector_types() {
    return k_fused_audio_types;
}

bool fused_supports_audio(const std::string & type) {
    return std::find(k_fused_audio_types.begin(), k_fused_audio_types.end(), type) != k_fused_audio_types.end();
}

fused_info inspect_fused(const std::string & path) {
    auto f = gguf_file::open(path);
    return read_fused_info(*f);
}

std::shared_ptr<fused_media> fused_media::load(const std::string & path, std::shared_ptr<model> backbone,
                                               const fused_params & params) {
    if (!backbone) {
        fail(error_code::invalid_argument, "fused media needs a loaded text model");
    }
    if (params.n_threads < 1 || params.n_threads > 512) {
        fail(error_code::invalid_argument, "threads must be in [1, 512]");
    }
    route_mtmd_log();
    std::shared_ptr<fused_media> fm(new fused_media());
    {
        auto f    = gguf_file::open(path);
        fm->info_ = read_fused_info(*f);
    }
    abort_guard guard;
    clear_thread_log_errors();
    mtmd_context_params cp = mtmd_context_params_default();
    cp.use_gpu             = params.use_gpu;
    cp.print_timings       = false;
    cp.n_threads           = params.n_threads;
    cp.progress_callback   = [](float, void * cancel) {
        return !(cancel != nullptr && static_cast<const std::atomic<bool> *>(cancel)->load());
    };
    cp.progress_callback_user_data = const_cast<std::atomic<bool> *>(params.cancel);
    fm->ctx_                       = mtmd_init_from_file(path.c_str(), backbone->get(), cp);
    if (params.cancel != nullptr && params.cancel->load()) {
        fail(error_code::aborted, "loading the mmproj was aborted");
    }
    if (fm->ctx_ == nullptr) {
        const std::string why         = thread_log_errors();
        const bool        mismatch    = why.find("mismatch between text model") != std::string::npos;
        const bool        unsupported = why.find("unsupported decoder rope type") != std::string::npos;
        fail(mismatch      ? error_code::model_mismatch
             : unsupported ? error_code::unsupported_family
                           : error_code::gguf_invalid,
             "libmtmd could not load '" + path + "'" + (why.empty() ? std::string() : ": " + why));
    }
    fm->has_vision_ = mtmd_support_vision(fm->ctx_);
    fm->has_audio_  = mtmd_support_audio(fm->ctx_);
    if (fm->has_vision_ != fm->info_.has_vision || fm->has_audio_ != fm->info_.has_audio) {
        fail(error_code::internal, "libmtmd loaded other encoders from '" + path + "' than its header names");
    }
    if (fm->has_audio_) {
        fm->audio_sample_rate_ = mtmd_get_audio_sample_rate(fm->ctx_);
        if (fm->audio_sample_rate_ != fm->info_.audio_sample_rate) {
            fail(error_code::internal, "libmtmd takes audio at " + std::to_string(fm->audio_sample_rate_) +
                                           " Hz, mm expected " + std::to_string(fm->info_.audio_sample_rate));
        }
    }
    fm->backbone_  = std::move(backbone);
    fm->n_embd_    = llama_model_n_embd_inp(fm->backbone_->get());
    fm->mrope_     = mtmd_decode_use_mrope(fm->ctx_);
    fm->n_threads_ = params.n_threads;
    if (fm->mrope_ != (fm->backbone_->n_pos_per_embd() == 4)) {
        fail(error_code::model_mismatch, "libmtmd and the text model disagree on M-RoPE positions");
    }
    return fm;
}

fused_media::~fused_media() {
    if (ctx_ != nullptr) {
        mtmd_free(ctx_);
    }
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

namespace {

struct bitmap_del {
    void operator()(mtmd_bitmap * b) const { mtmd_bitmap_free(b); }
};

using bitmap_ptr = std::unique_ptr<mtmd_bitmap, bitmap_del>;

}  // namespace

std::vector<fused_item> fused_media::embed(const rgb_image & img, const std::atomic<bool> * cancel,
                                           double * encode_ms) {
    if (img.width < 1 || img.height < 1 ||
        img.data.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
        fail(error_code::invalid_argument, "the picture must be width * height * 3 bytes of RGB");
    }
    if (!has_vision_) {
        fail(error_code::modality_unsupported,
             "'" + info_.projector_type + "' mmproj has no vision encoder: it takes audio, not pictures");
    }
    bitmap_ptr bmp(
        mtmd_bitmap_init(static_cast<uint32_t>(img.width), static_cast<uint32_t>(img.height), img.data.data()));
    if (!bmp) {
        fail(error_code::out_of_memory, "libmtmd could not hold the picture");
    }
    return run(bmp.get(), false, cancel, encode_ms);
}

std::vector<fused_item> fused_media::embed_audio(const float * pcm, size_t n_samples, const std::atomic<bool> * cancel,
                                                 double * encode_ms) {
    if (!has_audio_) {
        fail(error_code::modality_unsupported,
             "'" + info_.projector_type + "' mmproj has no audio encoder: it takes pictures, not audio");
    }
    // libmtmd asserts more than one sample (mtmd_tokenize), and sizes the mel from the count
    if (pcm == nullptr || n_samples < 2) {
        fail(error_code::audio_decode,
             "the audio holds " + std::to_string(n_samples) + " samples; libmtmd needs at least 2");
    }
    if (n_samples > static_cast<size_t>(INT32_MAX) / sizeof(float)) {
        fail(error_code::audio_too_long, "the audio holds " + std::to_string(n_samples) + " samples, too many");
    }
    for (size_t i = 0; i < n_samples; ++i) {
        if (!std::isfinite(pcm[i])) {
            fail(error_code::invalid_argument,
                 "the audio holds a sample that is not a finite number (at " + std::to_string(i) + ")");
        }
    }
    bitmap_ptr bmp(mtmd_bitmap_init_from_audio(n_samples, pcm));
    if (!bmp) {
        fail(error_code::out_of_memory, "libmtmd could not hold the audio");
    }
    return run(bmp.get(), true, cancel, encode_ms);
}

std::vector<fused_item> fused_media::run(const mtmd_bitmap * bitmap, bool audio, const std::atomic<bool> * cancel,
                                         double * encode_ms) {
    const char *                what = audio ? "the audio" : "the picture";
    std::lock_guard<std::mutex> lock(mu_);
    if (ctx_ == nullptr) {
        fail(error_code::internal, "libmtmd failed on an earlier input; load the model again");
    }
    auto check_cancel = [&] {
        if (cancel != nullptr && cancel->load()) {
            fail(error_code::aborted, std::string("embedding ") + what + " was aborted");
        }
    };
    check_cancel();
    abort_guard guard;
    clear_thread_log_errors();

    struct chunks_del {
        void operator()(mtmd_input_chunks * c) const { mtmd_input_chunks_free(c); }
    };
    std::unique_ptr<mtmd_input_chunks, chunks_del> chunks(mtmd_input_chunks_init());
    if (!chunks) {
        fail(error_code::out_of_memory, std::string("libmtmd could not hold ") + what);
    }
    const char *        marker = mtmd_default_marker();
    mtmd_input_text     text{marker, std::strlen(marker), /*add_special=*/false, /*parse_special=*/true};
    const mtmd_bitmap * bitmaps[] = {bitmap};
    const int32_t       res       = mtmd_tokenize(ctx_, chunks.get(), &text, bitmaps, 1);
    if (res != 0) {
        fail_with_log(
            audio ? error_code::audio_decode : error_code::internal,
            std::string("libmtmd could not lay out ") + what + " (mtmd_tokenize returned " + std::to_string(res) + ")");
    }

    const mtmd_input_chunk_type want = audio ? MTMD_INPUT_CHUNK_TYPE_AUDIO : MTMD_INPUT_CHUNK_TYPE_IMAGE;
    std::vector<fused_item>     out;
    double                      ms = 0;
    const size_t                n  = mtmd_input_chunks_size(chunks.get());
    for (size_t i = 0; i < n; ++i) {
        const mtmd_input_chunk * c = mtmd_input_chunks_get(chunks.get(), i);
        fused_item               item;
        const auto               type = mtmd_input_chunk_get_type(c);
        if (type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            size_t              nt = 0;
            const llama_token * t  = mtmd_input_chunk_get_tokens_text(c, &nt);
            item.tokens.assign(t, t + nt);
            out.push_back(std::move(item));
            continue;
        }
        if (type != want) {
            fail(error_code::internal, std::string("libmtmd made a chunk of another modality of ") + what);
        }
        check_cancel();
        const size_t    n_tokens = mtmd_input_chunk_get_n_tokens(c);
        const llama_pos n_pos    = mtmd_input_chunk_get_n_pos(c);
        size_t          nx       = n_tokens;
        size_t          ny       = 1;
        if (!audio) {
            const mtmd_image_tokens * it = mtmd_input_chunk_get_tokens_image(c);
            nx                           = mtmd_image_tokens_get_nx(it);
            ny                           = mtmd_image_tokens_get_ny(it);
        }
        if (n_tokens == 0 || nx * ny != n_tokens || n_tokens > (1u << 24)) {
            fail(error_code::internal, std::string("libmtmd made a chunk of ") + what + " of " +
                                           std::to_string(n_tokens) + " rows (" + std::to_string(nx) + "x" +
                                           std::to_string(ny) + ")");
        }
        // The backbone places the rows as mm does for every family: linear positions, or M-RoPE (t, y, x)
        // from the grid for pictures and 1-D (the same position in every section) for audio, as
        // mtmd-helper does. Only chunks libmtmd places the same way are taken.
        bool same = false;
        if (audio) {
            same = n_pos == static_cast<llama_pos>(n_tokens);
        } else {
            const mtmd_image_tokens * it = mtmd_input_chunk_get_tokens_image(c);
            const llama_pos           want_pos =
                mrope_ ? static_cast<llama_pos>(std::max(nx, ny)) : static_cast<llama_pos>(n_tokens);
            same = n_pos == want_pos;
            for (size_t r = 0; same && r < n_tokens; ++r) {
                const mtmd_decoder_pos p = mtmd_image_tokens_get_decoder_pos(it, 7, r);
                same                     = mrope_ ? (p.t == 7 && p.y == 7 + r / nx && p.x == 7 + r % nx && p.z == 0)
                                                  : (p.t == 7 + r && p.x == 7 + r && p.y == 7 + r);
            }
        }
        if (!same) {
            fail(error_code::unsupported_family, "projector type '" + info_.projector_type + "': libmtmd places its " +
                                                     (audio ? "audio" : "image") + " rows in a way mm does not");
        }
        auto t0 = std::chrono::steady_clock::now();
        if (mtmd_encode_chunk(ctx_, c) != 0) {
            // libmtmd may be left half-way (an abort unwound through it): do not use it again.
            mtmd_free(ctx_);
            ctx_ = nullptr;
            fail_with_log(error_code::internal, std::string("libmtmd failed to encode ") + what);
        }
        ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const float * e    = mtmd_get_output_embd(ctx_);
        item.media         = true;
        item.audio         = audio;
        item.n_pos         = n_pos;
        item.embd.n_tokens = static_cast<int32_t>(n_tokens);
        item.embd.n_embd   = n_embd_;
        item.embd.nx       = static_cast<int32_t>(nx);
        item.embd.ny       = static_cast<int32_t>(ny);
        item.embd.causal   = !mtmd_decode_use_non_causal(ctx_, c);
        item.embd.data.assign(e, e + n_tokens * static_cast<size_t>(n_embd_));
        out.push_back(std::move(item));
    }
    if (encode_ms != nullptr) {
        *encode_ms = ms;
    }
    return out;
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

}  // namespace mm
