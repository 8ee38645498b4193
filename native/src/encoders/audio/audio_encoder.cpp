#include "encoders/audio/audio_encoder.h"

#include <chrono>
#include <cmath>

#include "common/error.h"
#include "encoders/families/vit_common.h"
#include "encoders/registry.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

// The audio types whose tower is this Whisper encoder in mm's graphs.
const char * const k_audio_types[] = {"ultravox", "qwen2a"};

// libmtmd's whisper preprocessor: 3000 frames per chunk, 16 kHz, 400-point FFT, hop 160.
constexpr int32_t k_frames_per_chunk = 3000;
constexpr int32_t k_max_mel          = 1024;

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string supported_audio_projector_types() {
    std::string out;
    for (const char * t : k_audio_types) {
        out += (out.empty() ? "" : ", ") + std::string(t);
    }
    return out;
}

vision_hparams read_audio_hparams(const gguf_file & f) {
    bool has_audio = false;
    f.find_bool(clip::k_has_audio, has_audio);
    if (!has_audio) {
        fail(error_code::modality_unsupported,
             "'" + f.path() + "' has no audio encoder (clip.has_audio_encoder is not true)");
    }
    const std::string type  = read_projector_type(f, tower_kind::audio);
    bool              known = false;
    for (const char * t : k_audio_types) {
        known = known || type == t;
    }
    if (!known) {
        fail(error_code::unsupported_family,
             "'" + f.path() + "': audio projector type '" + type +
                 "' has no own graph in mm; own audio types: " + supported_audio_projector_types());
    }
    vision_hparams hp;
    hp.projector_type = type;
    hp.audio          = true;
    hp.tower          = "a";

    const uint32_t n_embd  = f.require_u32(clip::k_a_n_embd);
    const uint32_t n_head  = f.require_u32(clip::k_a_n_head);
    const uint32_t n_ff    = f.require_u32(clip::k_a_n_ff);
    const uint32_t n_layer = f.require_u32(clip::k_a_n_block);
    const uint32_t proj    = f.require_u32(clip::k_a_proj_dim);
    const float    eps     = f.require_f32(clip::k_a_layer_norm_eps);
    const uint32_t n_mel   = f.require_u32(clip::k_a_num_mel_bins);
    vit::check_range(f, clip::k_a_n_embd, n_embd, 1, vit::k_max_embd);
    vit::check_range(f, clip::k_a_n_head, n_head, 1, n_embd);
    vit::check_range(f, clip::k_a_n_block, n_layer, 1, vit::k_max_layers);
    vit::check_range(f, clip::k_a_n_ff, n_ff, 0, 1u << 20);
    vit::check_range(f, clip::k_a_proj_dim, proj, 0, vit::k_max_embd);
    vit::check_range(f, clip::k_a_num_mel_bins, n_mel, 1, k_max_mel);
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid(std::string(clip::k_a_layer_norm_eps) + " = " + std::to_string(eps) + " is not a finite value >= 0");
    }
    uint32_t head_dim = 0;
    if (f.find_u32(clip::k_a_n_embd_head, head_dim)) {
        vit::check_range(f, clip::k_a_n_embd_head, head_dim, 0, vit::k_max_embd);
    }
    uint32_t n_head_kv = n_head;
    if (f.find_u32(clip::k_a_n_head_kv, n_head_kv) && n_head_kv != n_head) {
        f.invalid(std::string(clip::k_a_n_head_kv) + " = " + std::to_string(n_head_kv) +
                  ": the Whisper tower has no grouped attention (head_count is " + std::to_string(n_head) + ")");
    }
    hp.n_embd         = static_cast<int32_t>(n_embd);
    hp.n_head         = static_cast<int32_t>(n_head);
    hp.d_head         = head_dim > 0 ? static_cast<int32_t>(head_dim) : hp.n_embd / hp.n_head;
    hp.n_layer        = static_cast<int32_t>(n_layer);
    hp.n_blocks_run   = hp.n_layer;
    hp.n_ff           = static_cast<int32_t>(n_ff);
    hp.projection_dim = static_cast<int32_t>(proj);
    hp.eps            = eps;
    hp.ffn            = blocks::ffn_op::gelu_erf;
    hp.norm           = blocks::norm_op::layer;
    hp.n_embd_out     = hp.n_embd;
    if (static_cast<int64_t>(hp.d_head) * hp.n_head != hp.n_embd) {
        f.invalid("audio heads x head width (" + std::to_string(hp.n_head) + " x " + std::to_string(hp.d_head) +
                  ") is not the width " + std::to_string(hp.n_embd));
    }

    // stack factor: required by ultravox (libmtmd), read when present otherwise
    uint32_t stack = 0;
    if (!f.find_u32(clip::k_a_proj_stack, stack) && type == "ultravox") {
        f.invalid(std::string(clip::k_a_proj_stack) + " is missing (required by ultravox)");
    }
    vit::check_range(f, clip::k_a_proj_stack, stack, 0, 64);
    hp.stack_factor = type == "ultravox" ? static_cast<int32_t>(stack) : 0;
    hp.avgpool      = type == "qwen2a";

    hp.n_mel       = static_cast<int32_t>(n_mel);
    hp.n_frames    = k_frames_per_chunk;
    hp.sample_rate = 16000;
    hp.n_fft       = 400;
    hp.window_len  = 400;
    hp.hop_len     = 160;
    // rows: the stride-2 stem halves the frames; qwen2a's pool halves them again
    const int32_t n_pos = hp.n_frames / 2;
    hp.n_patches        = hp.avgpool ? n_pos / 2 : n_pos;
    hp.grid             = 0;
    hp.image_size       = 0;
    hp.patch_size       = 1;
    hp.dynamic          = false;
    return hp;
}

std::vector<std::string> validate_audio_tower(const gguf_file & f, const vision_hparams & hp) {
    std::vector<std::string> load;
    const int64_t            E = hp.n_embd;
    // conv stem: [3, n_mel, E] then [3, E, E], biases [1, E]
    vit::check_and_keep(f, load, clip::a_conv1d(1, "weight"), tensor_use::patch_kernel, {3, hp.n_mel, E});
    vit::check_and_keep(f, load, clip::a_conv1d(1, "bias"), tensor_use::vector, {1, E});
    vit::check_and_keep(f, load, clip::a_conv1d(2, "weight"), tensor_use::patch_kernel, {3, E, E});
    vit::check_and_keep(f, load, clip::a_conv1d(2, "bias"), tensor_use::vector, {1, E});
    const ggml_tensor * pos = vit::check_and_keep(f, load, clip::t_a_pos_embd, tensor_use::vector, {E, -1});
    if (pos->ne[1] < hp.n_frames / 2) {
        f.invalid(std::string(clip::t_a_pos_embd) + " has " + std::to_string(pos->ne[1]) + " rows; a " +
                  std::to_string(hp.n_frames) + "-frame chunk needs " + std::to_string(hp.n_frames / 2));
    }
    for (const char * name : {clip::t_a_pre_ln_w, clip::t_a_pre_ln_b, clip::t_a_post_ln_w, clip::t_a_post_ln_b}) {
        vit::check_and_keep(f, load, name, tensor_use::vector, {E}, false);
    }
    for (int il = 0; il < hp.n_layer; ++il) {
        // libmtmd asserts layer norms with biases, q and v biases, and no k bias
        vit::check_block(f, il, E, E, false, load, hp.tower);
        for (const char * part : {"attn_q", "attn_v"}) {
            check_tensor(f, clip::blk(hp.tower, il, part, "bias"), tensor_use::vector, {E});
        }
        for (const char * part : {"ln1", "ln2"}) {
            check_tensor(f, clip::blk(hp.tower, il, part, "weight"), tensor_use::vector, {E});
            check_tensor(f, clip::blk(hp.tower, il, part, "bias"), tensor_use::vector, {E});
        }
        if (f.tensor(clip::blk(hp.tower, il, "attn_k", "bias")) != nullptr) {
            f.invalid(clip::blk(hp.tower, il, "attn_k", "bias") + ": the Whisper tower's k projection has no bias");
        }
        if (f.tensor(clip::blk(hp.tower, il, "ffn_gate", "weight")) != nullptr) {
            f.invalid(clip::blk(hp.tower, il, "ffn_gate", "weight") + ": the Whisper tower's FFN has no gate");
        }
    }
    return load;
}

mel_params audio_mel_params(const vision_hparams & hp) {
    mel_params p;
    p.n_mel            = hp.n_mel;
    p.n_fft            = hp.n_fft;
    p.window_len       = hp.window_len;
    p.hop_len          = hp.hop_len;
    p.sample_rate      = hp.sample_rate;
    p.frames_per_chunk = hp.n_frames;
    return p;
}

std::shared_ptr<audio_encoder> audio_encoder::load(const std::string & path, const audio_encoder_params & params) {
    auto                           f = gguf_file::open(path);
    std::shared_ptr<audio_encoder> enc(new audio_encoder());
    enc->hp_                       = read_audio_hparams(*f);
    std::vector<std::string> names = validate_audio_tower(*f, enc->hp_);
    enc->rt_      = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu, params.rpc});
    enc->weights_ = std::make_unique<weight_set>(*f, names, enc->rt_->weights_buffer_type(), params.cancel);
    // Flash attention when the backend has it (libmtmd's CLIP_FLASH_ATTN_TYPE_AUTO).
    enc->flash_attn_ = params.flash_attn != 0;
    enc->build_graph();
    if (params.flash_attn < 0 && !enc->rt_->supports_flash_attn(enc->holder_->gf())) {
        enc->flash_attn_ = false;
        enc->rt_->forget(enc->holder_->gf());
        enc->build_graph();
    }
    enc->rt_->allocate(enc->holder_->gf());
    return enc;
}

audio_encoder::~audio_encoder() = default;

std::string audio_encoder::backend_name() const {
    return rt_->backend_name();
}

int audio_encoder::n_threads() const {
    return rt_->n_threads();
}

size_t audio_encoder::weights_bytes() const {
    return weights_->bytes();
}

// clip_graph_whisper_enc::build up to the projector, op for op.
void audio_encoder::build_graph() {
    holder_ = std::make_unique<graph_holder>();
    const blocks::graph_ctx g{holder_->ctx(), holder_->gf(), flash_attn_};
    ggml_context *          ctx   = g.ctx;
    const weight_set &      w     = *weights_;
    const int64_t           n_pos = hp_.n_frames / 2;

    inp_ = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hp_.n_frames, hp_.n_mel, 1);
    ggml_set_name(inp_, "inp_raw");
    ggml_set_input(inp_);

    ggml_tensor * cur = ggml_conv_1d_ph(ctx, w.get(clip::a_conv1d(1, "weight")), inp_, 1, 1);
    cur               = ggml_add(ctx, cur, w.get(clip::a_conv1d(1, "bias")));
    cur               = ggml_gelu_erf(ctx, cur);
    cur               = ggml_conv_1d_ph(ctx, w.get(clip::a_conv1d(2, "weight")), cur, 2, 1);
    cur               = ggml_add(ctx, cur, w.get(clip::a_conv1d(2, "bias")));
    cur               = ggml_gelu_erf(ctx, cur);
    cur               = ggml_cont(ctx, ggml_transpose(ctx, cur));

    ggml_tensor * pos = w.get(clip::t_a_pos_embd);
    pos               = ggml_view_2d(ctx, pos, pos->ne[0], n_pos, pos->nb[1], 0);
    cur               = ggml_add(ctx, cur, pos);
    cur               = ggml_reshape_2d(ctx, cur, hp_.n_embd, n_pos);
    cur               = vit::build_outer_norm(g, w, hp_, cur, clip::t_a_pre_ln_w, clip::t_a_pre_ln_b);
    for (int il = 0; il < hp_.n_layer; ++il) {
        cur = vit::build_block(g, w, hp_, il, cur, n_pos);
    }
    if (hp_.avgpool) {
        cur = ggml_cont(ctx, ggml_transpose(ctx, cur));
        cur = ggml_pool_1d(ctx, cur, GGML_OP_POOL_AVG, 2, 2, 0);
        cur = ggml_cont(ctx, ggml_transpose(ctx, cur));
    }
    cur = vit::build_outer_norm(g, w, hp_, cur, clip::t_a_post_ln_w, clip::t_a_post_ln_b);
    ggml_set_name(cur, "features");
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    out_ = cur;
    if (out_->ne[0] != hp_.n_embd || out_->ne[1] != hp_.n_patches) {
        fail(error_code::internal, "audio encoder graph output shape differs from the validated shape");
    }
}

std::vector<mel_chunk> audio_encoder::mel(const float * pcm, size_t n, const std::atomic<bool> * cancel) const {
    return log_mel_spectrogram(pcm, n, audio_mel_params(hp_), cancel);
}

token_matrix audio_encoder::encode_mel(const mel_chunk & chunk, const std::atomic<bool> * cancel) {
    if (chunk.n_mel != hp_.n_mel || chunk.n_frames != hp_.n_frames ||
        chunk.data.size() != static_cast<size_t>(chunk.n_mel) * chunk.n_frames) {
        fail(error_code::invalid_argument, "this encoder takes " + std::to_string(hp_.n_mel) + " x " +
                                               std::to_string(hp_.n_frames) + " mel chunks, got " +
                                               std::to_string(chunk.n_mel) + " x " + std::to_string(chunk.n_frames));
    }
    std::lock_guard<std::mutex> lock(mu_);
    rt_->use(holder_->gf());
    ggml_backend_tensor_set(inp_, chunk.data.data(), 0, ggml_nbytes(inp_));
    rt_->compute(holder_->gf(), cancel);
    token_matrix out;
    out.n_embd   = static_cast<int32_t>(out_->ne[0]);
    out.n_tokens = static_cast<int32_t>(out_->ne[1]);
    out.nx       = out.n_tokens;
    out.ny       = 1;
    out.data.resize(static_cast<size_t>(out.n_embd) * out.n_tokens);
    ggml_backend_tensor_get(out_, out.data.data(), 0, ggml_nbytes(out_));
    return out;
}

std::vector<token_matrix> audio_encoder::encode(const float * pcm, size_t n, const std::atomic<bool> * cancel,
                                                audio_encode_timings * t) {
    auto                   t0     = std::chrono::steady_clock::now();
    std::vector<mel_chunk> chunks = mel(pcm, n, cancel);
    if (t != nullptr) {
        t->mel_ms = ms_since(t0);
    }
    auto                      t1 = std::chrono::steady_clock::now();
    std::vector<token_matrix> out;
    out.reserve(chunks.size());
    for (const mel_chunk & c : chunks) {
        out.push_back(encode_mel(c, cancel));
    }
    if (t != nullptr) {
        t->encode_ms = ms_since(t1);
    }
    return out;
}

}  // namespace mm
