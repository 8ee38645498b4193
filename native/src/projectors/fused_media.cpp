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
        if (name.rfind("v.patch_embd.weight", 0) == 0 && t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) {
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
void check_vit_blocks(const gguf_file & f, const vit_shape & s) {
    const int64_t E = s.E;
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "v.blk." + std::to_string(il) + ".";
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

fused_info read_fused_info(const gguf_file & f) {
    fused_info  info;
    std::string arch;
    if (!f.find_string(clip::k_architecture, arch) || arch != "clip") {
        fail(error_code::model_load,
             "'" + f.path() + "' is not an mmproj (general.architecture is '" + arch + "', expected 'clip')");
    }
    check_key_types(f);
    info.projector_type = read_projector_type(f);
    bool has_vision     = false;
    f.find_bool(clip::k_has_vision, has_vision);
    f.find_bool(clip::k_has_audio, info.has_audio);
    const std::string & type = info.projector_type;
    if (const char * why = refused_reason(type)) {
        fail(error_code::unsupported_family,
             "'" + f.path() + "': projector type '" + type + "' is not supported through libmtmd here: " + why);
    }
    if (!fused_supports(type)) {
        fail(error_code::unsupported_family, "'" + f.path() + "': projector type '" + type +
                                                 "' is not supported; own graphs: " + supported_projector_families() +
                                                 "; through libmtmd (fused): " + join(fused_projector_types()));
    }
    if (!has_vision) {
        fail(error_code::modality_unsupported,
             "'" + f.path() + "' has no vision encoder (clip.has_vision_encoder is not true)");
    }
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
    check_tensor_types(f);
    check_family_tensors(f, type, E, n_ff, n_layer, patch, image_size);

    info.image_size     = static_cast<int32_t>(image_size);
    info.patch_size     = static_cast<int32_t>(patch);
    info.n_embd_vision  = static_cast<int32_t>(E);
    info.n_layer        = static_cast<int32_t>(n_layer);
    info.projection_dim = static_cast<int32_t>(proj_dim);
    return info;
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
    if (!mtmd_support_vision(fm->ctx_)) {
        fail(error_code::modality_unsupported, "'" + path + "' has no vision encoder libmtmd can run");
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

std::vector<fused_item> fused_media::embed(const rgb_image & img, const std::atomic<bool> * cancel,
                                           double * encode_ms) {
    if (img.width < 1 || img.height < 1 ||
        img.data.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
        fail(error_code::invalid_argument, "the picture must be width * height * 3 bytes of RGB");
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (ctx_ == nullptr) {
        fail(error_code::internal, "libmtmd failed on an earlier picture; load the model again");
    }
    auto check_cancel = [&] {
        if (cancel != nullptr && cancel->load()) {
            fail(error_code::aborted, "embedding the picture was aborted");
        }
    };
    check_cancel();
    abort_guard guard;
    clear_thread_log_errors();

    struct bitmap_del {
        void operator()(mtmd_bitmap * b) const { mtmd_bitmap_free(b); }
    };
    struct chunks_del {
        void operator()(mtmd_input_chunks * c) const { mtmd_input_chunks_free(c); }
    };
    std::unique_ptr<mtmd_bitmap, bitmap_del> bmp(
        mtmd_bitmap_init(static_cast<uint32_t>(img.width), static_cast<uint32_t>(img.height), img.data.data()));
    std::unique_ptr<mtmd_input_chunks, chunks_del> chunks(mtmd_input_chunks_init());
    if (!bmp || !chunks) {
        fail(error_code::out_of_memory, "libmtmd could not hold the picture");
    }
    const char *        marker = mtmd_default_marker();
    mtmd_input_text     text{marker, std::strlen(marker), /*add_special=*/false, /*parse_special=*/true};
    const mtmd_bitmap * bitmaps[] = {bmp.get()};
    const int32_t       res       = mtmd_tokenize(ctx_, chunks.get(), &text, bitmaps, 1);
    if (res != 0) {
        fail_with_log(error_code::internal,
                      "libmtmd could not lay out the picture (mtmd_tokenize returned " + std::to_string(res) + ")");
    }

    std::vector<fused_item> out;
    double                  ms = 0;
    const size_t            n  = mtmd_input_chunks_size(chunks.get());
    for (size_t i = 0; i < n; ++i) {
        const mtmd_input_chunk * c = mtmd_input_chunks_get(chunks.get(), i);
        fused_item               item;
        switch (mtmd_input_chunk_get_type(c)) {
            case MTMD_INPUT_CHUNK_TYPE_TEXT: {
                size_t              nt = 0;
                const llama_token * t  = mtmd_input_chunk_get_tokens_text(c, &nt);
                item.tokens.assign(t, t + nt);
                out.push_back(std::move(item));
                continue;
            }
            case MTMD_INPUT_CHUNK_TYPE_IMAGE:
                break;
            default:
                fail(error_code::internal, "libmtmd made a non-image chunk of a picture");
        }
        check_cancel();
        const mtmd_image_tokens * it       = mtmd_input_chunk_get_tokens_image(c);
        const size_t              n_tokens = mtmd_input_chunk_get_n_tokens(c);
        const size_t              nx       = mtmd_image_tokens_get_nx(it);
        const size_t              ny       = mtmd_image_tokens_get_ny(it);
        const llama_pos           n_pos    = mtmd_input_chunk_get_n_pos(c);
        if (n_tokens == 0 || nx * ny != n_tokens || n_tokens > (1u << 24)) {
            fail(error_code::internal, "libmtmd made an image chunk of " + std::to_string(n_tokens) + " rows (" +
                                           std::to_string(nx) + "x" + std::to_string(ny) + ")");
        }
        // The backbone places the rows as mm does for every family: linear positions, or M-RoPE (t, y, x)
        // from the grid. Only chunks libmtmd places the same way are taken.
        const llama_pos want_pos = mrope_ ? static_cast<llama_pos>(std::max(nx, ny)) : static_cast<llama_pos>(n_tokens);
        bool            same     = n_pos == want_pos;
        for (size_t r = 0; same && r < n_tokens; ++r) {
            const mtmd_decoder_pos p = mtmd_image_tokens_get_decoder_pos(it, 7, r);
            same                     = mrope_ ? (p.t == 7 && p.y == 7 + r / nx && p.x == 7 + r % nx && p.z == 0)
                                              : (p.t == 7 + r && p.x == 7 + r && p.y == 7 + r);
        }
        if (!same) {
            fail(error_code::unsupported_family,
                 "projector type '" + info_.projector_type + "': libmtmd places its image rows in a way mm does not");
        }
        auto t0 = std::chrono::steady_clock::now();
        if (mtmd_encode_chunk(ctx_, c) != 0) {
            // libmtmd may be left half-way (an abort unwound through it): do not use it again.
            mtmd_free(ctx_);
            ctx_ = nullptr;
            fail_with_log(error_code::internal, "libmtmd failed to encode the picture");
        }
        ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const float * e    = mtmd_get_output_embd(ctx_);
        item.media         = true;
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
