#include "decoders/pockettts/pockettts_model.h"

#include <cmath>
#include <unordered_map>

#include "common/error.h"
#include "decoders/pockettts/pockettts_names.h"
#include "graph/gguf_file.h"

namespace mm::pockettts {

namespace {

namespace n = names;

constexpr int64_t k_max_width  = 1 << 16;
constexpr int64_t k_max_layers = 256;
constexpr int64_t k_max_kernel = 4096;

void check_range(const gguf_file & f, const char * key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(key) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

// check_tensor, then the name kept for loading.
const ggml_tensor * keep(const gguf_file & f, std::vector<std::string> & load, const std::string & name, tensor_use use,
                         std::vector<int64_t> ne) {
    const ggml_tensor * t = check_tensor(f, name, use, std::move(ne));
    load.push_back(name);
    return t;
}

// A convolution kernel [K, IC, OC] (f16 as the converter writes it, or f32) with a bias [OC].
const ggml_tensor * keep_conv(const gguf_file & f, std::vector<std::string> & load, const std::string & w,
                              const std::string * b, int64_t ic, int64_t oc) {
    const ggml_tensor * t = keep(f, load, w, tensor_use::patch_kernel, {-1, ic, oc});
    if (t->ne[0] > k_max_kernel) {
        f.invalid("tensor '" + w + "' has a kernel of " + std::to_string(t->ne[0]) + " taps (at most " +
                  std::to_string(k_max_kernel) + ")");
    }
    if (b != nullptr) {
        keep(f, load, *b, tensor_use::vector, {oc});
    }
    return t;
}

void min_kernel(const gguf_file & f, const std::string & name, int64_t k, int64_t min, const char * why) {
    if (k < min) {
        f.invalid("tensor '" + name + "' has a kernel of " + std::to_string(k) + " taps; " + why + " needs at least " +
                  std::to_string(min));
    }
}

std::string read_type(const gguf_file & f, const char * modality_key) {
    // libmtmd: clip.projector_type first (one type for every modality), then the modality's own key
    std::string type;
    f.find_string(n::k_projector_type, type);
    if (type.empty()) {
        f.find_string(modality_key, type);
    }
    return type;
}

tfm_hparams read_tfm(const gguf_file & f, const char * k_embd, const char * k_head, const char * k_block,
                     const char * k_ff, const char * k_eps) {
    tfm_hparams    t;
    const uint32_t e = f.require_u32(k_embd);
    const uint32_t h = f.require_u32(k_head);
    const uint32_t l = f.require_u32(k_block);
    f.require_u32(k_ff);  // required by libmtmd; the FFN width comes from the tensors
    const float eps = f.require_f32(k_eps);
    check_range(f, k_embd, e, 2, k_max_width);
    check_range(f, k_head, h, 1, e);
    check_range(f, k_block, l, 1, k_max_layers);
    if (!std::isfinite(eps) || eps < 0) {
        f.invalid(std::string(k_eps) + " = " + std::to_string(eps) + " is not a finite value >= 0");
    }
    if (e % h != 0 || (e / h) % 2 != 0) {
        f.invalid(std::string(k_head) + " = " + std::to_string(h) + " does not split " + k_embd + " = " +
                  std::to_string(e) + " into heads of an even width (RoPE)");
    }
    t.n_embd  = static_cast<int32_t>(e);
    t.n_head  = static_cast<int32_t>(h);
    t.d_head  = t.n_embd / t.n_head;
    t.n_layer = static_cast<int32_t>(l);
    t.eps     = eps;
    return t;
}

// The blocks of a Mimi transformer (libmtmd requires every tensor its graph uses, layer scales
// included; attention biases, if a file had them, are not used by its graph and are not loaded).
void check_tfm(const gguf_file & f, const char * prefix, const tfm_hparams & t, std::vector<std::string> & load) {
    const int64_t D = t.n_embd;
    for (int il = 0; il < t.n_layer; ++il) {
        for (const char * part : {"ln1", "ln2"}) {
            keep(f, load, n::blk(prefix, il, part, "weight"), tensor_use::vector, {D});
            keep(f, load, n::blk(prefix, il, part, "bias"), tensor_use::vector, {D});
        }
        for (const char * part : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
            keep(f, load, n::blk(prefix, il, part, "weight"), tensor_use::matrix, {D, D});
        }
        for (const char * part : {"ls1", "ls2"}) {
            keep(f, load, n::blk(prefix, il, part, "weight"), tensor_use::vector, {D});
        }
        const ggml_tensor * up = keep(f, load, n::blk(prefix, il, "ffn_up", "weight"), tensor_use::matrix, {D, -1});
        keep(f, load, n::blk(prefix, il, "ffn_down", "weight"), tensor_use::matrix, {up->ne[1], D});
    }
}

// The Mimi decoder's SEANet: conv_in, 3 x [transposed stride conv, residual unit], conv_out to one
// channel. Every streamed convolution keeps a left context (kernel - stride > 0): libmtmd aborts on
// a state slot of width 0.
seanet_shape check_dec_seanet(const gguf_file & f, int64_t D, std::vector<std::string> & load) {
    const char * p = n::p_dec_seanet;
    seanet_shape s;
    s.in_ch                  = D;
    const std::string   in_w = n::seanet(p, "conv_in", "weight");
    const std::string   in_b = n::seanet(p, "conv_in", "bias");
    const ggml_tensor * ci   = keep_conv(f, load, in_w, &in_b, D, -1);
    s.conv_in_k              = ci->ne[0];
    s.ch[0]                  = ci->ne[2];
    min_kernel(f, in_w, s.conv_in_k, 2, "the streamed convolution");
    for (int i = 0; i < 3; ++i) {
        const int64_t     stride = k_ratios[2 - i];
        const std::string sw     = n::seanet_blk(p, i, "scale_conv", "weight");
        const std::string sb     = n::seanet_blk(p, i, "scale_conv", "bias");
        // a transposed conv kernel [K, OC, IC]
        const ggml_tensor * sc = keep(f, load, sw, tensor_use::patch_kernel, {-1, -1, s.ch[i]});
        if (sc->ne[0] > k_max_kernel || sc->ne[1] > k_max_width) {
            f.invalid("tensor '" + sw + "' has shape " + shape_string(sc) + " (too large)");
        }
        keep(f, load, sb, tensor_use::vector, {sc->ne[1]});
        s.scale_k[i] = sc->ne[0];
        s.ch[i + 1]  = sc->ne[1];
        min_kernel(f, sw, s.scale_k[i], stride + 1, "the streamed transposed convolution of this stride");
        const std::string   r1w = n::seanet_blk(p, i, "res_conv1", "weight");
        const std::string   r1b = n::seanet_blk(p, i, "res_conv1", "bias");
        const ggml_tensor * r1  = keep_conv(f, load, r1w, &r1b, s.ch[i + 1], -1);
        s.res1_k[i]             = r1->ne[0];
        s.hidden[i]             = r1->ne[2];
        min_kernel(f, r1w, s.res1_k[i], 2, "the streamed convolution");
        const std::string   r2w = n::seanet_blk(p, i, "res_conv2", "weight");
        const std::string   r2b = n::seanet_blk(p, i, "res_conv2", "bias");
        const ggml_tensor * r2  = keep_conv(f, load, r2w, &r2b, s.hidden[i], s.ch[i + 1]);
        s.res2_k[i]             = r2->ne[0];
    }
    const std::string   out_w = n::seanet(p, "conv_out", "weight");
    const std::string   out_b = n::seanet(p, "conv_out", "bias");
    const ggml_tensor * co    = keep_conv(f, load, out_w, &out_b, s.ch[3], 1);
    s.conv_out_k              = co->ne[0];
    s.out_ch                  = 1;
    min_kernel(f, out_w, s.conv_out_k, 2, "the streamed convolution");
    return s;
}

// The voice encoder's SEANet: conv_in from one channel, 3 x [residual unit, stride conv], conv_out.
seanet_shape check_enc_seanet(const gguf_file & f, int64_t D, std::vector<std::string> & load) {
    const char * p = n::p_enc_seanet;
    seanet_shape s;
    s.in_ch                  = 1;
    const std::string   in_w = n::seanet(p, "conv_in", "weight");
    const std::string   in_b = n::seanet(p, "conv_in", "bias");
    const ggml_tensor * ci   = keep_conv(f, load, in_w, &in_b, 1, -1);
    s.conv_in_k              = ci->ne[0];
    s.ch[0]                  = ci->ne[2];
    for (int i = 0; i < 3; ++i) {
        const std::string   r1w = n::seanet_blk(p, i, "res_conv1", "weight");
        const std::string   r1b = n::seanet_blk(p, i, "res_conv1", "bias");
        const ggml_tensor * r1  = keep_conv(f, load, r1w, &r1b, s.ch[i], -1);
        s.res1_k[i]             = r1->ne[0];
        s.hidden[i]             = r1->ne[2];
        const std::string   r2w = n::seanet_blk(p, i, "res_conv2", "weight");
        const std::string   r2b = n::seanet_blk(p, i, "res_conv2", "bias");
        const ggml_tensor * r2  = keep_conv(f, load, r2w, &r2b, s.hidden[i], s.ch[i]);
        s.res2_k[i]             = r2->ne[0];
        const std::string   sw  = n::seanet_blk(p, i, "scale_conv", "weight");
        const std::string   sb  = n::seanet_blk(p, i, "scale_conv", "bias");
        const ggml_tensor * sc  = keep_conv(f, load, sw, &sb, s.ch[i], -1);
        s.scale_k[i]            = sc->ne[0];
        s.ch[i + 1]             = sc->ne[2];
        min_kernel(f, sw, s.scale_k[i], k_ratios[i], "a convolution of this stride");
    }
    const std::string   out_w = n::seanet(p, "conv_out", "weight");
    const std::string   out_b = n::seanet(p, "conv_out", "bias");
    const ggml_tensor * co    = keep_conv(f, load, out_w, &out_b, s.ch[3], D);
    s.conv_out_k              = co->ne[0];
    s.out_ch                  = D;
    return s;
}

void check_code(const gguf_file & f, hparams & hp, std::vector<std::string> & load) {
    const int64_t       E  = hp.n_embd;
    const ggml_tensor * il = keep(f, load, n::t_input_linear_w, tensor_use::matrix, {-1, E});
    hp.latent_dim          = static_cast<int32_t>(il->ne[0]);
    const int64_t       L  = hp.latent_dim;
    const ggml_tensor * ip = keep(f, load, n::flow("input_proj", "weight"), tensor_use::matrix, {L, -1});
    const int64_t       M  = ip->ne[1];
    if (M < 2 || M > k_max_width) {
        f.invalid("the flow net's width " + std::to_string(M) + " (a.gen.flow.input_proj) is out of range [2, " +
                  std::to_string(k_max_width) + "]");
    }
    keep(f, load, n::flow("input_proj", "bias"), tensor_use::vector, {M});
    keep(f, load, n::flow("cond_embd", "weight"), tensor_use::matrix, {E, M});
    keep(f, load, n::flow("cond_embd", "bias"), tensor_use::vector, {M});
    int64_t F = 0;
    for (int i = 0; i < 2; ++i) {
        const ggml_tensor * fr = keep(f, load, n::flow_time(i, "freqs"), tensor_use::vector, {F > 0 ? F : -1});
        F                      = fr->ne[0];
        keep(f, load, n::flow_time(i, "up", "weight"), tensor_use::matrix, {2 * F, M});
        keep(f, load, n::flow_time(i, "up", "bias"), tensor_use::vector, {M});
        keep(f, load, n::flow_time(i, "down", "weight"), tensor_use::matrix, {M, M});
        keep(f, load, n::flow_time(i, "down", "bias"), tensor_use::vector, {M});
        keep(f, load, n::flow_time(i, "norm"), tensor_use::vector, {M});
    }
    // libmtmd counts the AdaLN blocks by probing their norms
    int nb = 0;
    while (f.tensor(n::flow_blk(nb, "norm", "weight")) != nullptr) {
        if (nb >= k_max_layers) {
            f.invalid("more than " + std::to_string(k_max_layers) + " flow blocks");
        }
        keep(f, load, n::flow_blk(nb, "norm", "weight"), tensor_use::vector, {M});
        keep(f, load, n::flow_blk(nb, "norm", "bias"), tensor_use::vector, {M});
        const ggml_tensor * up = keep(f, load, n::flow_blk(nb, "up", "weight"), tensor_use::matrix, {M, -1});
        keep(f, load, n::flow_blk(nb, "up", "bias"), tensor_use::vector, {up->ne[1]});
        keep(f, load, n::flow_blk(nb, "down", "weight"), tensor_use::matrix, {up->ne[1], M});
        keep(f, load, n::flow_blk(nb, "down", "bias"), tensor_use::vector, {M});
        keep(f, load, n::flow_blk(nb, "ada", "weight"), tensor_use::matrix, {M, 3 * M});
        keep(f, load, n::flow_blk(nb, "ada", "bias"), tensor_use::vector, {3 * M});
        ++nb;
    }
    if (nb == 0) {
        f.invalid("the flow net has no AdaLN block (a.gen.flow.blk.0.norm.weight is missing)");
    }
    keep(f, load, n::flow("final.ada", "weight"), tensor_use::matrix, {M, 2 * M});
    keep(f, load, n::flow("final.ada", "bias"), tensor_use::vector, {2 * M});
    keep(f, load, n::flow("final.proj", "weight"), tensor_use::matrix, {M, L});
    keep(f, load, n::flow("final.proj", "bias"), tensor_use::vector, {L});
    keep(f, load, n::t_out_eos_w, tensor_use::matrix, {E, 1});
    keep(f, load, n::t_out_eos_b, tensor_use::vector, {1});
    hp.flow_dim    = static_cast<int32_t>(M);
    hp.flow_blocks = nb;
    hp.flow_freqs  = static_cast<int32_t>(F);
}

void check_wav(const gguf_file & f, hparams & hp, std::vector<std::string> & load) {
    hp.dec                = read_tfm(f, n::k_g_n_embd, n::k_g_n_head, n::k_g_n_block, n::k_g_n_ff, n::k_g_eps);
    const int64_t       D = hp.dec.n_embd;
    const ggml_tensor * q = keep(f, load, n::t_quant_out_w, tensor_use::matrix, {-1, D});
    if (hp.latent_dim != 0 && q->ne[0] != hp.latent_dim) {
        f.invalid("tensor '" + std::string(n::t_quant_out_w) + "' takes latents of " + std::to_string(q->ne[0]) +
                  " values, a.gen.input_linear gives " + std::to_string(hp.latent_dim));
    }
    hp.latent_dim   = static_cast<int32_t>(q->ne[0]);
    const int64_t L = hp.latent_dim;
    keep(f, load, n::t_emb_mean, tensor_use::vector, {L});
    keep(f, load, n::t_emb_std, tensor_use::vector, {L});
    // depthwise transposed conv [K, 1, D]
    const ggml_tensor * up = keep(f, load, n::t_upsample_w, tensor_use::patch_kernel, {-1, 1, D});
    hp.upsample_k          = up->ne[0];
    if (hp.upsample_k > k_max_kernel) {
        f.invalid("tensor '" + std::string(n::t_upsample_w) + "' has shape " + shape_string(up) + " (too large)");
    }
    min_kernel(f, n::t_upsample_w, hp.upsample_k, k_downsample + 1, "the streamed stride-16 upsample");
    check_tfm(f, n::p_dec_tfm, hp.dec, load);
    hp.dec_seanet = check_dec_seanet(f, D, load);
}

void check_speaker(const gguf_file & f, hparams & hp, std::vector<std::string> & load) {
    hp.enc              = read_tfm(f, n::k_a_n_embd, n::k_a_n_head, n::k_a_n_block, n::k_a_n_ff, n::k_a_eps);
    const int64_t  D    = hp.enc.n_embd;
    const uint32_t proj = f.require_u32(n::k_a_proj_dim);
    if (hp.n_embd != 0 && static_cast<int64_t>(proj) != hp.n_embd) {
        f.invalid(std::string(n::k_a_proj_dim) + " = " + std::to_string(proj) + " differs from " + n::k_g_proj_dim +
                  " = " + std::to_string(hp.n_embd));
    }
    check_range(f, n::k_a_proj_dim, proj, 1, k_max_width);
    hp.n_embd     = static_cast<int32_t>(proj);
    hp.enc_seanet = check_enc_seanet(f, D, load);
    check_tfm(f, n::p_enc_tfm, hp.enc, load);
    const ggml_tensor * ds = keep(f, load, n::t_downsample_w, tensor_use::patch_kernel, {-1, D, -1});
    hp.downsample_k        = ds->ne[0];
    hp.downsample_ch       = ds->ne[2];
    if (hp.downsample_k > k_max_kernel || hp.downsample_ch > k_max_width) {
        f.invalid("tensor '" + std::string(n::t_downsample_w) + "' has shape " + shape_string(ds) + " (too large)");
    }
    min_kernel(f, n::t_downsample_w, hp.downsample_k, k_downsample, "the stride-16 downsample");
    keep(f, load, n::t_spk_proj_w, tensor_use::matrix, {hp.downsample_ch, hp.n_embd});
}

}  // namespace

pack_settings pack_for(const std::string & variant) {
    // mtmd-helper-gen.cpp pockettts_pack(): the packs' yaml settings
    static const std::unordered_map<std::string, pack_settings> packs = {
        {"english", {true, 0.3f, 0, false}},
        {"english_2026-01", {true, 0.7f, 0, true}},
        {"english_2026-04", {true, 0.3f, 0, false}},
        {"french_24l", {true, 0.7f, 8, false}},
    };
    auto it = packs.find(variant);
    return it == packs.end() ? pack_settings{} : it->second;
}

std::vector<state_slot> decoder_state_slots(const hparams & hp) {
    std::vector<state_slot> slots;
    if ((hp.parts & part_wav) == 0) {
        return slots;
    }
    const int64_t prefix = k_tfm_context - 1;
    slots.push_back({"tfm_pos", 1, 1});
    for (int il = 0; il < hp.dec.n_layer; ++il) {
        slots.push_back({"tfm_k_" + std::to_string(il), hp.dec.n_embd, prefix});
        slots.push_back({"tfm_v_" + std::to_string(il), hp.dec.n_embd, prefix});
    }
    slots.push_back({"up", hp.upsample_k - k_downsample, hp.dec.n_embd});
    const seanet_shape & s = hp.dec_seanet;
    slots.push_back({"dec_in", s.conv_in_k - 1, s.in_ch});
    for (int i = 0; i < 3; ++i) {
        const std::string id = std::to_string(i);
        slots.push_back({"dec_up_" + id, s.scale_k[i] - k_ratios[2 - i], s.ch[i + 1]});
        slots.push_back({"dec_res_" + id, s.res1_k[i] - 1, s.ch[i + 1]});
    }
    slots.push_back({"dec_out", s.conv_out_k - 1, s.ch[3]});
    return slots;
}

size_t state_bytes(const std::vector<state_slot> & slots) {
    size_t total = 0;
    for (const state_slot & s : slots) {
        total += static_cast<size_t>(s.ne0 * s.ne1) * sizeof(float);
    }
    return total;
}

validated_file read_pockettts(const gguf_file & f, unsigned parts) {
    std::string arch;
    if (!f.find_string(n::k_architecture, arch) || arch != "clip") {
        fail(error_code::model_load,
             "'" + f.path() + "' is not an mmproj (general.architecture is '" + arch + "', expected 'clip')");
    }
    bool has_gen = false, has_audio = false;
    f.find_bool(n::k_has_gen_audio, has_gen);
    f.find_bool(n::k_has_audio, has_audio);
    const std::string gen_type   = has_gen ? read_type(f, n::k_gen_proj_type) : "";
    const std::string audio_type = has_audio ? read_type(f, n::k_audio_proj_type) : "";
    const bool        file_gen   = gen_type == n::type_gen;
    const bool        file_spk   = audio_type == n::type_spkenc;

    if (!file_gen && (parts == 0 || (parts & (part_code | part_wav)) != 0)) {
        if (!has_gen) {
            fail(error_code::modality_unsupported, "'" + f.path() +
                                                       "' has no speech generator (clip.has_gen_audio_encoder is not "
                                                       "true): not a Pocket TTS mmproj");
        }
        fail(error_code::unsupported_family,
             "'" + f.path() + "': the speech generator is '" + gen_type + "', not Pocket TTS's '" + n::type_gen + "'");
    }
    if ((parts & part_speaker) != 0 && !file_spk) {
        fail(error_code::modality_unsupported, "'" + f.path() +
                                                   "' has no Pocket TTS voice encoder (clip.audio.projector_type '" +
                                                   audio_type + "', expected '" + n::type_spkenc + "')");
    }
    if (parts == 0) {
        parts = part_code | part_wav | (file_spk ? part_speaker : 0u);
    }

    validated_file out;
    hparams &      hp = out.hp;
    hp.parts          = parts;
    hp.has_speaker    = file_spk;
    if (file_gen) {
        f.find_string(n::k_g_variant, hp.variant);
        const uint32_t proj = f.require_u32(n::k_g_proj_dim);
        check_range(f, n::k_g_proj_dim, proj, 1, k_max_width);
        hp.n_embd = static_cast<int32_t>(proj);
    }
    if ((parts & part_code) != 0) {
        check_code(f, hp, out.code);
    }
    if ((parts & part_wav) != 0) {
        check_wav(f, hp, out.wav);
    }
    if ((parts & part_speaker) != 0) {
        check_speaker(f, hp, out.speaker);
    }
    return out;
}

}  // namespace mm::pockettts
