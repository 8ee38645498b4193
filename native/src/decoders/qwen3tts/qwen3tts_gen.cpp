#include "decoders/qwen3tts/qwen3tts_gen.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/error.h"
#include "decoders/qwen3tts/qwen3tts_internal.h"
#include "encoders/audio/mel.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

using qwen3tts::cached_graph;

namespace {

constexpr int64_t k_max_dim        = 1 << 16;
constexpr int64_t k_max_layers     = 256;
constexpr size_t  k_max_graphs     = 8;
constexpr double  k_max_spk_second = 600.0;

void check_range(const gguf_file & f, const char * what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
        f.invalid(std::string(what) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
}

bool is_float_type(ggml_type t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16;
}

// A conv kernel [K, IC, OC] read through im2col / conv_1d: f32 or f16 (ggml's im2col type).
const ggml_tensor * check_kernel(const gguf_file & f, const std::string & name, std::vector<int64_t> ne) {
    const ggml_tensor * t = check_tensor(f, name, tensor_use::rows, std::move(ne));
    return t;
}

// The projector type of a part: the common key, else the modality's own key.
std::string part_type(const gguf_file & f, const char * modality_key) {
    std::string type;
    if (!f.find_string(qwen3tts::k_proj_type, type) || type.empty()) {
        f.find_string(modality_key, type);
    }
    return type;
}

}  // namespace

namespace qwen3tts {

std::vector<qwen3tts_state_slot> state_slots(const qwen3tts_hparams & hp, const gguf_file & f) {
    std::vector<qwen3tts_state_slot> s;
    s.push_back({"tfm_pos", 1, 1});
    const int64_t kv_ch  = static_cast<int64_t>(hp.d_wav_head) * hp.wav_heads;
    const int64_t prefix = hp.window - 1;
    for (int il = 0; il < hp.wav_layers; ++il) {
        s.push_back({"tfm_k_" + std::to_string(il), kv_ch, prefix});
        s.push_back({"tfm_v_" + std::to_string(il), kv_ch, prefix});
    }
    const ggml_tensor * pre = f.tensor("a.gen.wav.pre_conv.weight");
    s.push_back({"pre_conv", pre->ne[0] - 1, pre->ne[1]});
    for (int il = 0; il < 2; ++il) {
        const ggml_tensor * dw = f.tensor(up_blk(il, "dwconv", "weight"));
        s.push_back({"up" + std::to_string(il) + "_dwconv", dw->ne[0] - 1, dw->ne[2]});
    }
    const ggml_tensor * entry = f.tensor("a.gen.wav.dac.entry.weight");
    s.push_back({"dac_entry", entry->ne[0] - 1, entry->ne[1]});
    for (int il = 0; il < 4; ++il) {
        const ggml_tensor * cw  = f.tensor(dac_blk(il, "conv", "weight"));
        const std::string   blk = "dac" + std::to_string(il);
        s.push_back({blk + "_tail", cw->ne[0] / 2, cw->ne[1]});
        for (int ir = 0; ir < 3; ++ir) {
            const ggml_tensor * c1 = f.tensor(dac_res(il, ir, "conv1", "weight"));
            s.push_back({blk + "_res" + std::to_string(ir), (c1->ne[0] - 1) * k_dac_dilations[ir], c1->ne[1]});
        }
    }
    const ggml_tensor * post = f.tensor("a.gen.wav.dac.post_conv.weight");
    s.push_back({"dac_post_conv", post->ne[0] - 1, post->ne[1]});
    return s;
}

}  // namespace qwen3tts

// ---- header ------------------------------------------------------------------------------------

namespace {

void read_code_predictor(const gguf_file & f, qwen3tts_hparams & hp, std::vector<std::string> * load) {
    auto keep = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne, bool required = true) {
        const ggml_tensor * t = check_tensor(f, name, use, std::move(ne), required);
        if (t != nullptr && load != nullptr) {
            load->push_back(name);
        }
        return t;
    };
    const uint32_t n_pred  = f.require_u32(qwen3tts::k_gen_n_embd);
    const uint32_t n_layer = f.require_u32(qwen3tts::k_gen_n_block);
    const uint32_t n_head  = f.require_u32(qwen3tts::k_gen_n_head);
    const uint32_t n_ff    = f.require_u32(qwen3tts::k_gen_n_ff);
    uint32_t       n_hkv   = n_head;
    f.find_u32(qwen3tts::k_gen_n_head_kv, n_hkv);
    const float eps = f.require_f32(qwen3tts::k_gen_eps);
    check_range(f, qwen3tts::k_gen_n_embd, n_pred, 1, k_max_dim);
    check_range(f, qwen3tts::k_gen_n_block, n_layer, 1, k_max_layers);
    check_range(f, qwen3tts::k_gen_n_head, n_head, 1, n_pred);
    check_range(f, qwen3tts::k_gen_n_head_kv, n_hkv, 1, n_head);
    check_range(f, qwen3tts::k_gen_n_ff, n_ff, 1, 1 << 20);
    if (!std::isfinite(eps) || eps <= 0) {
        f.invalid(std::string(qwen3tts::k_gen_eps) + " is not a finite value > 0");
    }
    if (n_head % n_hkv != 0) {
        f.invalid("the code predictor's KV heads (" + std::to_string(n_hkv) + ") do not divide its heads (" +
                  std::to_string(n_head) + ")");
    }
    const ggml_tensor * out_embd = keep("a.gen.code.out_embd.weight", tensor_use::rows, {-1, -1});
    const int64_t       E        = out_embd->ne[0];
    check_range(f, "the talker width (a.gen.code.out_embd ne[0])", E, 1, k_max_dim);
    uint32_t proj_dim = 0;
    if (f.find_u32(qwen3tts::k_gen_proj_dim, proj_dim) && proj_dim != E) {
        f.invalid(std::string(qwen3tts::k_gen_proj_dim) + " = " + std::to_string(proj_dim) +
                  " is not the width of a.gen.code.out_embd (" + std::to_string(E) + ")");
    }
    const ggml_tensor * head = keep("a.gen.code.head.weight", tensor_use::matrix, {n_pred, -1, -1});
    const int64_t       V    = head->ne[1];
    const int64_t       n_ac = head->ne[2];
    check_range(f, "the code predictor's codebooks (a.gen.code.head ne[2])", n_ac, 1, 64);
    keep("a.gen.code.embd.weight", tensor_use::rows, {E, V, n_ac});
    keep("a.gen.code.output_norm.weight", tensor_use::vector, {n_pred});
    const ggml_tensor * proj = keep("a.gen.code.proj_in.weight", tensor_use::matrix, {E, n_pred}, false);
    keep("a.gen.code.proj_in.bias", tensor_use::vector, {n_pred}, false);
    if (proj == nullptr && E != n_pred) {
        f.invalid("a.gen.code.proj_in.weight is missing: the talker width " + std::to_string(E) +
                  " differs from the code predictor's " + std::to_string(n_pred));
    }
    const ggml_tensor * q0 = f.tensor(qwen3tts::code_blk(0, "attn_q"));
    if (q0 == nullptr || q0->ne[1] % n_head != 0 || (q0->ne[1] / n_head) % 2 != 0) {
        f.invalid(qwen3tts::code_blk(0, "attn_q") + " is missing or its width is not heads x an even head size");
    }
    const int64_t dh = q0->ne[1] / n_head;
    for (uint32_t il = 0; il < n_layer; ++il) {
        const int i = static_cast<int>(il);
        keep(qwen3tts::code_blk(i, "ln1"), tensor_use::vector, {n_pred});
        keep(qwen3tts::code_blk(i, "ln2"), tensor_use::vector, {n_pred});
        keep(qwen3tts::code_blk(i, "attn_q"), tensor_use::matrix, {n_pred, dh * n_head});
        keep(qwen3tts::code_blk(i, "attn_k"), tensor_use::matrix, {n_pred, dh * n_hkv});
        keep(qwen3tts::code_blk(i, "attn_v"), tensor_use::matrix, {n_pred, dh * n_hkv});
        keep(qwen3tts::code_blk(i, "attn_q_norm"), tensor_use::vector, {dh});
        keep(qwen3tts::code_blk(i, "attn_k_norm"), tensor_use::vector, {dh});
        keep(qwen3tts::code_blk(i, "attn_out"), tensor_use::matrix, {dh * n_head, n_pred});
        const ggml_tensor * up = keep(qwen3tts::code_blk(i, "ffn_up"), tensor_use::matrix, {n_pred, -1});
        keep(qwen3tts::code_blk(i, "ffn_gate"), tensor_use::matrix, {n_pred, up->ne[1]});
        keep(qwen3tts::code_blk(i, "ffn_down"), tensor_use::matrix, {up->ne[1], n_pred});
        for (const char * part : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
            if (f.tensor("a.gen.code.blk." + std::to_string(i) + "." + part + ".bias") != nullptr) {
                f.invalid(std::string("the code predictor's ") + part + " has a bias libmtmd does not apply");
            }
        }
    }
    hp.n_embd        = static_cast<int32_t>(E);
    hp.n_pred        = static_cast<int32_t>(n_pred);
    hp.n_pred_layer  = static_cast<int32_t>(n_layer);
    hp.n_pred_head   = static_cast<int32_t>(n_head);
    hp.n_pred_headkv = static_cast<int32_t>(n_hkv);
    hp.d_pred_head   = static_cast<int32_t>(dh);
    hp.pred_eps      = eps;
    hp.n_acoustic    = static_cast<int32_t>(n_ac);
    hp.code_vocab    = static_cast<int32_t>(V);
    hp.code0_vocab   = static_cast<int32_t>(out_embd->ne[1]);
}

void read_code2wav(const gguf_file & f, qwen3tts_hparams & hp, std::vector<std::string> * load) {
    auto keep = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne) {
        const ggml_tensor * t = use == tensor_use::rows ? check_kernel(f, name, ne) : check_tensor(f, name, use, ne);
        if (load != nullptr) {
            load->push_back(name);
        }
        return t;
    };
    // libmtmd loads the RVQ input projections (unused when decoding): they must be there
    check_tensor(f, "a.gen.wav.quant.first.in_proj.weight", tensor_use::matrix, {-1, -1});
    check_tensor(f, "a.gen.wav.quant.rest.in_proj.weight", tensor_use::matrix, {-1, -1});
    const ggml_tensor * first = keep("a.gen.wav.quant.first.codebook.weight", tensor_use::rows, {-1, -1});
    const int64_t       Dq    = first->ne[0];
    const ggml_tensor * rest  = keep("a.gen.wav.quant.rest.codebook.weight", tensor_use::rows, {Dq, -1, -1});
    if (hp.n_acoustic != 0 && rest->ne[2] != hp.n_acoustic) {
        f.invalid("a.gen.wav.quant.rest.codebook has " + std::to_string(rest->ne[2]) +
                  " codebooks, the code predictor " + std::to_string(hp.n_acoustic));
    }
    hp.n_acoustic             = static_cast<int32_t>(rest->ne[2]);
    const ggml_tensor * f_out = keep("a.gen.wav.quant.first.out_proj.weight", tensor_use::matrix, {Dq, -1});
    const int64_t       L     = f_out->ne[1];
    keep("a.gen.wav.quant.rest.out_proj.weight", tensor_use::matrix, {Dq, L});
    const ggml_tensor * pre = keep("a.gen.wav.pre_conv.weight", tensor_use::rows, {-1, L, -1});
    const int64_t       C1  = pre->ne[2];
    keep("a.gen.wav.pre_conv.bias", tensor_use::vector, {C1});
    const ggml_tensor * in_proj = keep("a.gen.wav.tfm.in_proj.weight", tensor_use::matrix, {C1, -1});
    const int64_t       T       = in_proj->ne[1];
    keep("a.gen.wav.tfm.in_proj.bias", tensor_use::vector, {T});
    keep("a.gen.wav.tfm.out_proj.weight", tensor_use::matrix, {T, C1});
    keep("a.gen.wav.tfm.out_proj.bias", tensor_use::vector, {C1});
    keep("a.gen.wav.tfm.output_norm.weight", tensor_use::vector, {T});
    const ggml_tensor * q0 = f.tensor(qwen3tts::tfm_blk(0, "attn_q"));
    if (q0 == nullptr || q0->ne[1] % hp.wav_heads != 0 || (q0->ne[1] / hp.wav_heads) % 2 != 0) {
        f.invalid(qwen3tts::tfm_blk(0, "attn_q") + " is missing or its width is not 16 heads x an even head size");
    }
    const int64_t q = q0->ne[1];
    for (int il = 0; il < hp.wav_layers; ++il) {
        for (const char * n : {"ln1", "ln2", "ls1", "ls2"}) {
            keep(qwen3tts::tfm_blk(il, n), tensor_use::vector, {T});
        }
        for (const char * n : {"attn_q", "attn_k", "attn_v"}) {
            keep(qwen3tts::tfm_blk(il, n), tensor_use::matrix, {T, q});
        }
        keep(qwen3tts::tfm_blk(il, "attn_out"), tensor_use::matrix, {q, T});
        const ggml_tensor * up = keep(qwen3tts::tfm_blk(il, "ffn_up"), tensor_use::matrix, {T, -1});
        keep(qwen3tts::tfm_blk(il, "ffn_gate"), tensor_use::matrix, {T, up->ne[1]});
        keep(qwen3tts::tfm_blk(il, "ffn_down"), tensor_use::matrix, {up->ne[1], T});
    }
    for (int il = 0; il < 2; ++il) {
        // kernel == stride (2): no overlap tail (libmtmd keeps none for these)
        keep(qwen3tts::up_blk(il, "conv", "weight"), tensor_use::rows, {2, C1, C1});
        keep(qwen3tts::up_blk(il, "conv", "bias"), tensor_use::vector, {C1});
        keep(qwen3tts::up_blk(il, "dwconv", "weight"), tensor_use::rows, {-1, 1, C1});
        keep(qwen3tts::up_blk(il, "dwconv", "bias"), tensor_use::vector, {C1});
        keep(qwen3tts::up_blk(il, "norm", "weight"), tensor_use::vector, {C1});
        keep(qwen3tts::up_blk(il, "norm", "bias"), tensor_use::vector, {C1});
        const ggml_tensor * pw1 = keep(qwen3tts::up_blk(il, "pw1", "weight"), tensor_use::matrix, {C1, -1});
        keep(qwen3tts::up_blk(il, "pw1", "bias"), tensor_use::vector, {pw1->ne[1]});
        keep(qwen3tts::up_blk(il, "pw2", "weight"), tensor_use::matrix, {pw1->ne[1], C1});
        keep(qwen3tts::up_blk(il, "pw2", "bias"), tensor_use::vector, {C1});
        keep(qwen3tts::up_blk(il, "gamma", ""), tensor_use::vector, {C1});
    }
    const ggml_tensor * entry = keep("a.gen.wav.dac.entry.weight", tensor_use::rows, {-1, C1, -1});
    int64_t             ch    = entry->ne[2];
    keep("a.gen.wav.dac.entry.bias", tensor_use::vector, {ch});
    hp.dac_strides.clear();
    int64_t spf = 4;
    for (int il = 0; il < 4; ++il) {
        keep(qwen3tts::dac_blk(il, "snake", "alpha"), tensor_use::vector, {ch});
        keep(qwen3tts::dac_blk(il, "snake", "beta"), tensor_use::vector, {ch});
        const ggml_tensor * cw = keep(qwen3tts::dac_blk(il, "conv", "weight"), tensor_use::rows, {-1, -1, ch});
        if (cw->ne[0] % 2 != 0 || cw->ne[0] > 64) {
            f.invalid(qwen3tts::dac_blk(il, "conv", "weight") + ": kernel " + std::to_string(cw->ne[0]) +
                      " is not 2 x a stride of at most 32");
        }
        const int64_t oc = cw->ne[1];
        keep(qwen3tts::dac_blk(il, "conv", "bias"), tensor_use::vector, {oc});
        for (int ir = 0; ir < 3; ++ir) {
            for (const char * a : {"act1", "act2"}) {
                keep(qwen3tts::dac_res(il, ir, a, "alpha"), tensor_use::vector, {oc});
                keep(qwen3tts::dac_res(il, ir, a, "beta"), tensor_use::vector, {oc});
            }
            keep(qwen3tts::dac_res(il, ir, "conv1", "weight"), tensor_use::rows, {-1, oc, oc});
            keep(qwen3tts::dac_res(il, ir, "conv1", "bias"), tensor_use::vector, {oc});
            keep(qwen3tts::dac_res(il, ir, "conv2", "weight"), tensor_use::rows, {1, oc, oc});
            keep(qwen3tts::dac_res(il, ir, "conv2", "bias"), tensor_use::vector, {oc});
        }
        hp.dac_strides.push_back(static_cast<int32_t>(cw->ne[0] / 2));
        spf *= cw->ne[0] / 2;
        ch = oc;
    }
    keep("a.gen.wav.dac.post_snake.alpha", tensor_use::vector, {ch});
    keep("a.gen.wav.dac.post_snake.beta", tensor_use::vector, {ch});
    keep("a.gen.wav.dac.post_conv.weight", tensor_use::rows, {-1, ch, 1});
    keep("a.gen.wav.dac.post_conv.bias", tensor_use::vector, {1});
    for (const char * n :
         {"a.gen.wav.pre_conv.weight", "a.gen.wav.dac.entry.weight", "a.gen.wav.dac.post_conv.weight"}) {
        check_range(f, n, f.tensor(n)->ne[0], 1, 64);
    }
    for (int il = 0; il < 2; ++il) {
        check_range(f, "the upsample depthwise kernel", f.tensor(qwen3tts::up_blk(il, "dwconv", "weight"))->ne[0], 1,
                    64);
    }
    for (int il = 0; il < 4; ++il) {
        for (int ir = 0; ir < 3; ++ir) {
            check_range(f, "the DAC residual kernel", f.tensor(qwen3tts::dac_res(il, ir, "conv1", "weight"))->ne[0], 1,
                        64);
        }
    }
    hp.d_wav_head        = static_cast<int32_t>(q / hp.wav_heads);
    hp.sem_vocab         = static_cast<int32_t>(first->ne[1]);
    hp.rest_vocab        = static_cast<int32_t>(rest->ne[1]);
    hp.samples_per_frame = static_cast<int32_t>(spf);
}

void read_speaker(const gguf_file & f, qwen3tts_hparams & hp, std::vector<std::string> * load) {
    auto keep = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne) {
        const ggml_tensor * t = check_tensor(f, name, use, std::move(ne));
        if (load != nullptr) {
            load->push_back(name);
        }
        return t;
    };
    const uint32_t n_mel   = f.require_u32(qwen3tts::k_a_num_mel);
    const uint32_t n_block = f.require_u32(qwen3tts::k_a_n_block);
    check_range(f, qwen3tts::k_a_num_mel, n_mel, 1, 256);
    if (n_block != 3) {
        f.invalid(std::string(qwen3tts::k_a_n_block) + " = " + std::to_string(n_block) +
                  ": the ECAPA-TDNN speaker encoder has 3 SE-Res2Net blocks");
    }
    int32_t max_pad = 0;
    auto    pad_of  = [&](const ggml_tensor * t, int d) {
        max_pad = std::max<int32_t>(max_pad, static_cast<int32_t>(((t->ne[0] - 1) * d) / 2));
    };
    const ggml_tensor * stem = keep("a.conv1d.0.weight", tensor_use::matrix, {-1, n_mel, -1});
    const int64_t       C    = stem->ne[2];
    check_range(f, "a.conv1d.0 kernel", stem->ne[0], 1, 64);
    pad_of(stem, 1);
    keep("a.conv1d.0.bias", tensor_use::vector, {C});
    if (C % qwen3tts::k_res2net_scale != 0) {
        f.invalid("the speaker encoder's width " + std::to_string(C) + " is not a multiple of 8 (Res2Net)");
    }
    const int64_t Cs = C / qwen3tts::k_res2net_scale;
    int64_t       se = -1;
    for (int bid = 1; bid <= 3; ++bid) {
        keep(qwen3tts::spk_blk(bid, "conv_pw1", "weight"), tensor_use::matrix, {1, C, C});
        keep(qwen3tts::spk_blk(bid, "conv_pw1", "bias"), tensor_use::vector, {C});
        keep(qwen3tts::spk_blk(bid, "conv_pw2", "weight"), tensor_use::matrix, {1, C, C});
        keep(qwen3tts::spk_blk(bid, "conv_pw2", "bias"), tensor_use::vector, {C});
        const ggml_tensor * s1 = keep(qwen3tts::spk_blk(bid, "se_conv1", "weight"), tensor_use::matrix, {1, C, se});
        se                     = s1->ne[2];
        keep(qwen3tts::spk_blk(bid, "se_conv1", "bias"), tensor_use::vector, {se});
        keep(qwen3tts::spk_blk(bid, "se_conv2", "weight"), tensor_use::matrix, {1, se, C});
        keep(qwen3tts::spk_blk(bid, "se_conv2", "bias"), tensor_use::vector, {C});
        for (int x = 0; x < qwen3tts::k_res2net_scale - 1; ++x) {
            const ggml_tensor * r = keep(qwen3tts::spk_res2(bid, x, "weight"), tensor_use::matrix, {-1, Cs, Cs});
            check_range(f, "the Res2Net kernel", r->ne[0], 1, 64);
            pad_of(r, qwen3tts::k_spk_dilations[bid - 1]);
            keep(qwen3tts::spk_res2(bid, x, "bias"), tensor_use::vector, {Cs});
        }
    }
    const ggml_tensor * mfa = keep("a.conv_out.weight", tensor_use::matrix, {1, 3 * C, -1});
    const int64_t       Cm  = mfa->ne[2];
    keep("a.conv_out.bias", tensor_use::vector, {Cm});
    const ggml_tensor * tdnn = keep("a.asp_tdnn.weight", tensor_use::matrix, {1, 3 * Cm, -1});
    keep("a.asp_tdnn.bias", tensor_use::vector, {tdnn->ne[2]});
    keep("a.asp_attn.weight", tensor_use::matrix, {1, tdnn->ne[2], Cm});
    keep("a.asp_attn.bias", tensor_use::vector, {Cm});
    const ggml_tensor * fc = keep("mm.a.fc.weight", tensor_use::matrix, {1, 2 * Cm, -1});
    keep("mm.a.fc.bias", tensor_use::vector, {fc->ne[2]});
    hp.has_speaker = true;
    hp.spk_mels    = static_cast<int32_t>(n_mel);
    hp.spk_max_pad = max_pad;
    hp.spk_n_embd  = static_cast<int32_t>(fc->ne[2]);
}

enum class gen_kind { none, qwen3tts, other };

gen_kind generator_kind(const gguf_file & f, std::string & type) {
    bool has_gen = false;
    f.find_bool(qwen3tts::k_has_gen, has_gen);
    if (!has_gen) {
        return gen_kind::none;
    }
    type = part_type(f, qwen3tts::k_gen_proj_type);
    return type == qwen3tts::k_gen_type ? gen_kind::qwen3tts : gen_kind::other;
}

bool file_has_speaker(const gguf_file & f) {
    bool has_audio = false;
    f.find_bool(qwen3tts::k_has_audio, has_audio);
    std::string type;
    if (has_audio) {
        f.find_string(qwen3tts::k_a_proj_type, type);
        if (type.empty()) {
            f.find_string(qwen3tts::k_proj_type, type);
        }
    }
    return has_audio && type == qwen3tts::k_spk_type;
}

qwen3tts_hparams read_all(const gguf_file & f, std::vector<std::string> * code, std::vector<std::string> * wav,
                          std::vector<std::string> * spk) {
    std::string type;
    switch (generator_kind(f, type)) {
        case gen_kind::none:
            fail(error_code::modality_unsupported,
                 "'" + f.path() + "' has no speech generator (clip.has_gen_audio_encoder is not true)");
        case gen_kind::other:
            if (type == "pockettts_gen") {
                fail(error_code::model_mismatch,
                     "'" + f.path() + "' is a Pocket TTS generator, not Qwen3-TTS (load it with loadPocketTtsGen)");
            }
            fail(error_code::unsupported_family, "'" + f.path() + "': speech generator type '" + type +
                                                     "' is not qwen3tts_gen (supported: qwen3tts_gen, pockettts_gen)");
        case gen_kind::qwen3tts:
            break;
    }
    qwen3tts_hparams hp;
    f.find_string(qwen3tts::k_variant, hp.variant);
    read_code_predictor(f, hp, code);
    read_code2wav(f, hp, wav);
    if (hp.sem_vocab > hp.code0_vocab) {
        f.invalid("the semantic codebook has more rows (" + std::to_string(hp.sem_vocab) +
                  ") than the talker's codec vocabulary (" + std::to_string(hp.code0_vocab) + ")");
    }
    if (file_has_speaker(f)) {
        read_speaker(f, hp, spk);
    }
    return hp;
}

}  // namespace

qwen3tts_hparams read_qwen3tts_hparams(const gguf_file & f) {
    return read_all(f, nullptr, nullptr, nullptr);
}

// ---- loading -----------------------------------------------------------------------------------

std::shared_ptr<qwen3tts_gen> qwen3tts_gen::load(const std::string & path, const qwen3tts_params & params) {
    auto                          f = gguf_file::open(path);
    std::vector<std::string>      code, wav, spk;
    std::shared_ptr<qwen3tts_gen> g(new qwen3tts_gen());
    g->hp_         = read_all(*f, &code, &wav, &spk);
    g->slots_      = qwen3tts::state_slots(g->hp_, *f);
    bool want_code = params.code, want_wav = params.wav, want_spk = params.speaker;
    if (!params.parts_set) {
        want_code = want_wav = true;
        want_spk             = g->hp_.has_speaker;
    }
    if (want_spk && !g->hp_.has_speaker) {
        fail(error_code::modality_unsupported, "'" + path + "' has no Qwen3-TTS speaker encoder (qwen3tts_spkenc)");
    }
    if (!want_code && !want_wav && !want_spk) {
        fail(error_code::invalid_argument, "no part to load (parts is empty)");
    }
    std::vector<std::string> names;
    if (want_code) {
        names.insert(names.end(), code.begin(), code.end());
    }
    if (want_wav) {
        names.insert(names.end(), wav.begin(), wav.end());
    }
    if (want_spk) {
        names.insert(names.end(), spk.begin(), spk.end());
    }
    const runtime_params rp{params.n_threads, params.use_gpu};
    auto                 make_stage = [&]() {
        auto s = std::make_unique<stage>();
        s->rt  = std::make_unique<runtime>(rp);
        return s;
    };
    if (want_code) {
        g->code_ = make_stage();
    }
    if (want_wav) {
        g->wav_ = make_stage();
    }
    if (want_spk) {
        g->spk_ = make_stage();
    }
    runtime & first = *(g->code_ ? g->code_ : g->wav_ ? g->wav_ : g->spk_)->rt;
    g->weights_     = std::make_unique<weight_set>(*f, names, first.weights_buffer_type(), params.cancel);
    if (want_spk) {
        const int  n_fft = g->hp_.spk_n_fft;
        mel_params mp;
        mp.n_mel              = g->hp_.spk_mels;
        mp.n_fft              = n_fft;
        mp.window_len         = n_fft;
        mp.hop_len            = g->hp_.spk_hop;
        mp.sample_rate        = g->hp_.spk_sample_rate;
        g->mel_filters_       = mel_filterbank(mp);
        constexpr double k_pi = 3.14159265358979323846;
        g->sin_.resize(n_fft);
        g->cos_.resize(n_fft);
        g->hann_.resize(n_fft);
        for (int i = 0; i < n_fft; ++i) {
            const double theta = (2 * k_pi * i) / n_fft;
            g->sin_[i]         = sinf(static_cast<float>(theta));
            g->cos_[i]         = cosf(static_cast<float>(theta));
            g->hann_[i]        = static_cast<float>(0.5 * (1.0 - cosf(static_cast<float>((2.0 * k_pi * i) / n_fft))));
        }
    }
    // the graphs that do not depend on the call: built and allocated now
    if (g->wav_) {
        g->wav_->flash_attn = true;
        auto gr             = g->build_wav_graph(true);
        if (!g->wav_->rt->supports_flash_attn(gr->holder->gf())) {
            g->wav_->flash_attn = false;
            gr                  = g->build_wav_graph(false);
        }
        g->wav_->rt->allocate(gr->holder->gf());
        g->wav_->graphs["wav"] = std::move(gr);
    }
    return g;
}

qwen3tts_gen::~qwen3tts_gen() = default;

std::vector<std::string> qwen3tts_gen::parts() const {
    std::vector<std::string> p;
    if (code_) {
        p.push_back("code");
    }
    if (wav_) {
        p.push_back("wav");
    }
    if (spk_) {
        p.push_back("speaker");
    }
    return p;
}

size_t qwen3tts_gen::state_bytes() const {
    size_t n = 0;
    for (const auto & s : slots_) {
        n += static_cast<size_t>(s.ne0 * s.ne1) * sizeof(float);
    }
    return n;
}

// ---- GEN_CODE ----------------------------------------------------------------------------------

qwen3tts_frame qwen3tts_gen::gen_code(const float * hidden, size_t n_hidden, int32_t code0, int32_t top_k, float top_p,
                                      float temp, uint32_t seed, const std::atomic<bool> * cancel) {
    (void)temp;  // libmtmd leaves the temperature to the backbone ("TODO: handle this on graph")
    if (!code_) {
        fail(error_code::invalid_argument, "genCode: the code predictor was not loaded (parts)");
    }
    if (hidden == nullptr || n_hidden != static_cast<size_t>(hp_.n_embd)) {
        fail(error_code::invalid_argument, "genCode: the hidden state has " + std::to_string(n_hidden) +
                                               " values, the talker width is " + std::to_string(hp_.n_embd));
    }
    if (!std::isfinite(top_p)) {
        fail(error_code::invalid_argument, "genCode: topP must be a finite number");
    }
    std::lock_guard<std::mutex> lock(mu_);
    // libmtmd reseeds before it checks code0 (clip_encode, then the input switch)
    if (seed != rng_seed_) {
        rng_seed_ = seed;
        rng_.seed(seed == UINT32_MAX ? std::random_device{}() : seed);
    }
    if (code0 < 0 || code0 >= hp_.code0_vocab) {
        fail(error_code::invalid_argument,
             "genCode: code0 " + std::to_string(code0) + " is outside [0, " + std::to_string(hp_.code0_vocab) + ")");
    }
    std::uniform_real_distribution<float> dist(0.0f, 1.0f);
    std::vector<float>                    rand(hp_.n_acoustic);
    for (float & r : rand) {
        r = dist(rng_);
    }

    uint32_t top_p_bits = 0;
    std::memcpy(&top_p_bits, &top_p, sizeof top_p_bits);
    const std::string key = std::to_string(top_k) + "/" + std::to_string(top_p_bits);
    auto              it  = code_->graphs.find(key);
    if (it == code_->graphs.end()) {
        if (code_->graphs.size() >= k_max_graphs) {
            code_->clear();
        }
        auto gr = build_code_graph(top_k, top_p, code_->flash_attn);
        if (code_->flash_attn && !code_->rt->supports_flash_attn(gr->holder->gf())) {
            code_->flash_attn = false;
            gr                = build_code_graph(top_k, top_p, false);
        }
        it = code_->graphs.emplace(key, std::move(gr)).first;
    }
    cached_graph & g = *it->second;
    code_->rt->use(g.holder->gf());
    const int            n = hp_.n_codes();
    std::vector<int32_t> pos(n);
    std::vector<float>   mask(static_cast<size_t>(n) * n);
    for (int p = 0; p < n; ++p) {
        pos[p] = p;
        for (int j = 0; j < n; ++j) {
            mask[static_cast<size_t>(p) * n + j] = j <= p ? 0.0f : -INFINITY;
        }
    }
    ggml_backend_tensor_set(g.in.at("inp_hidden"), hidden, 0, n_hidden * sizeof(float));
    ggml_backend_tensor_set(g.in.at("inp_code0"), &code0, 0, sizeof code0);
    ggml_backend_tensor_set(g.in.at("inp_rand"), rand.data(), 0, rand.size() * sizeof(float));
    ggml_backend_tensor_set(g.in.at("inp_pos"), pos.data(), 0, pos.size() * sizeof(int32_t));
    ggml_backend_tensor_set(g.in.at("inp_mask"), mask.data(), 0, mask.size() * sizeof(float));
    code_->rt->compute(g.holder->gf(), cancel);
    qwen3tts_frame out;
    out.codes.resize(n);
    out.codes[0] = code0;
    for (int p = 1; p < n; ++p) {
        ggml_backend_tensor_get(g.out.at("code_" + std::to_string(p)), &out.codes[p], 0, sizeof(int32_t));
    }
    out.embd.resize(hp_.n_embd);
    ggml_backend_tensor_get(g.out.at("embd"), out.embd.data(), 0, out.embd.size() * sizeof(float));
    return out;
}

// ---- GEN_WAV -----------------------------------------------------------------------------------

qwen3tts_pcm qwen3tts_gen::gen_wav(const int32_t * codes, size_t n_codes, const uint8_t * state, size_t n_state,
                                   const std::atomic<bool> * cancel) {
    if (!wav_) {
        fail(error_code::invalid_argument, "genWav: the decoder was not loaded (parts)");
    }
    const size_t per_frame = static_cast<size_t>(hp_.n_codes());
    if (codes == nullptr || n_codes == 0) {
        fail(error_code::invalid_argument, "genWav: no frames");
    }
    if (n_codes % per_frame != 0) {
        fail(error_code::invalid_argument,
             "genWav: " + std::to_string(n_codes) + " codes are not whole frames of " + std::to_string(per_frame));
    }
    const size_t n_frames = n_codes / per_frame;
    for (size_t fi = 0; fi < n_frames; ++fi) {
        for (size_t g = 0; g < per_frame; ++g) {
            const int32_t c     = codes[fi * per_frame + g];
            const int32_t vocab = g == 0 ? hp_.sem_vocab : hp_.rest_vocab;
            if (c < 0 || c >= vocab) {
                fail(error_code::invalid_argument, "genWav: code " + std::to_string(c) + " of frame " +
                                                       std::to_string(fi) + ", codebook " + std::to_string(g) +
                                                       " is outside [0, " + std::to_string(vocab) + ")");
            }
        }
    }
    const size_t want_state = state_bytes();
    if (n_state != 0 && (state == nullptr || n_state != want_state)) {
        fail(error_code::invalid_argument, "genWav: the state has " + std::to_string(n_state) +
                                               " bytes, this decoder's has " + std::to_string(want_state));
    }
    std::lock_guard<std::mutex> lock(mu_);
    cached_graph &              g = *wav_->graphs.at("wav");
    const size_t                W = static_cast<size_t>(hp_.window);
    qwen3tts_pcm                out;
    out.state.assign(want_state, 0);
    if (n_state != 0) {
        std::memcpy(out.state.data(), state, n_state);
    }
    out.pcm.reserve(n_frames * hp_.samples_per_frame);
    std::vector<int32_t> win(W * per_frame);
    std::vector<float>   audio(W * hp_.samples_per_frame);
    for (size_t f0 = 0; f0 < n_frames; f0 += W) {
        const size_t nf = std::min(W, n_frames - f0);
        // frame-major in, codebook-major window, rear-padded with code 0 (libmtmd)
        std::fill(win.begin(), win.end(), 0);
        for (size_t fi = 0; fi < nf; ++fi) {
            for (size_t c = 0; c < per_frame; ++c) {
                win[c * W + fi] = codes[(f0 + fi) * per_frame + c];
            }
        }
        wav_->rt->use(g.holder->gf());
        ggml_backend_tensor_set(g.in.at("inp_codes"), win.data(), 0, win.size() * sizeof(int32_t));
        size_t off = 0;
        for (const auto & slot : slots_) {
            ggml_tensor * t  = g.in.at("state_in_" + slot.name);
            const size_t  nb = ggml_nbytes(t);
            ggml_backend_tensor_set(t, out.state.data() + off, 0, nb);
            off += nb;
        }
        wav_->rt->compute(g.holder->gf(), cancel);
        ggml_backend_tensor_get(g.out.at("audio"), audio.data(), 0, audio.size() * sizeof(float));
        out.pcm.insert(out.pcm.end(), audio.begin(),
                       audio.begin() + static_cast<ptrdiff_t>(nf * hp_.samples_per_frame));
        off = 0;
        for (const auto & so : g.state_out) {
            const size_t nb = ggml_nbytes(so.second);
            ggml_backend_tensor_get(so.second, out.state.data() + off, 0, nb);
            off += nb;
        }
    }
    return out;
}

// ---- speaker encoder ---------------------------------------------------------------------------

namespace {

// libmtmd's fft_impl for real input (radix-2 down to odd sizes, then a plain DFT).
void dft_real(const std::vector<float> & sn, const std::vector<float> & cs, const float * in, int N, float * out) {
    const int n_vals = static_cast<int>(sn.size());
    const int step   = n_vals / N;
    for (int k = 0; k < N; k++) {
        float re = 0, im = 0;
        for (int n = 0; n < N; n++) {
            const int idx = (k * n * step) % n_vals;
            re += in[n] * cs[idx];
            im += -1.0f * in[n] * sn[idx];
        }
        out[k * 2 + 0] = re;
        out[k * 2 + 1] = im;
    }
}

void fft_real(const std::vector<float> & sn, const std::vector<float> & cs, float * in, int N, float * out) {
    if (N == 1) {
        out[0] = in[0];
        out[1] = 0.0f;
        return;
    }
    const int half_N = N / 2;
    if (N - half_N * 2 == 1) {
        dft_real(sn, cs, in, N, out);
        return;
    }
    float * even = in + N;
    for (int i = 0; i < half_N; ++i) {
        even[i] = in[2 * i];
    }
    float * even_fft = out + 2 * N;
    fft_real(sn, cs, even, half_N, even_fft);
    float * odd = even;
    for (int i = 0; i < half_N; ++i) {
        odd[i] = in[2 * i + 1];
    }
    float * odd_fft = even_fft + N;
    fft_real(sn, cs, odd, half_N, odd_fft);
    const int step = static_cast<int>(sn.size()) / N;
    for (int k = 0; k < half_N; k++) {
        const int   idx           = k * step;
        const float re            = cs[idx];
        const float im            = -1.0f * sn[idx];
        const float re_odd        = odd_fft[2 * k + 0];
        const float im_odd        = odd_fft[2 * k + 1];
        out[2 * k + 0]            = even_fft[2 * k + 0] + re * re_odd - im * im_odd;
        out[2 * k + 1]            = even_fft[2 * k + 1] + re * im_odd + im * re_odd;
        out[2 * (k + half_N) + 0] = even_fft[2 * k + 0] - re * re_odd + im * im_odd;
        out[2 * (k + half_N) + 1] = even_fft[2 * k + 1] - re * im_odd - im * re_odd;
    }
}

}  // namespace

// mtmd_audio_preprocessor_qwen3tts_spk::preprocess: [n_mel][n_frames] row-major.
std::vector<float> qwen3tts_gen::speaker_mel(const float * pcm, size_t n, int64_t & n_frames,
                                             const std::atomic<bool> * cancel) const {
    const int          pad = (hp_.spk_n_fft - hp_.spk_hop) / 2;
    std::vector<float> padded(n + 2 * static_cast<size_t>(pad), 0.0f);
    for (int i = 0; i < pad; i++) {
        padded[i] = pcm[pad - i];
    }
    std::copy(pcm, pcm + n, padded.begin() + pad);
    for (int i = 0; i < pad; i++) {
        padded[n + pad + i] = pcm[n - 2 - i];
    }
    const int     frame      = hp_.spk_n_fft;
    const int     hop        = hp_.spk_hop;
    const int64_t ns         = static_cast<int64_t>(padded.size());
    n_frames                 = (ns - frame) / hop + 1;
    const int64_t      n_mel = hp_.spk_mels;
    const int64_t      bins  = frame / 2 + 1;
    std::vector<float> out(static_cast<size_t>(n_mel * n_frames));
    std::vector<float> fft_in(static_cast<size_t>(frame) * 2, 0.0f);
    std::vector<float> fft_out(static_cast<size_t>(frame) * 8);
    for (int64_t i = 0; i < std::min<int64_t>(ns / hop + 1, n_frames); ++i) {
        if (cancel != nullptr && cancel->load()) {
            fail(error_code::aborted, "aborted");
        }
        const int64_t offset = i * hop;
        const int     valid  = static_cast<int>(std::min<int64_t>(frame, std::max<int64_t>(0, ns - offset)));
        for (int j = 0; j < valid; j++) {
            fft_in[j] = hann_[j] * padded[offset + j];
        }
        std::fill(fft_in.begin() + valid, fft_in.end(), 0.0f);
        fft_real(sin_, cos_, fft_in.data(), frame, fft_out.data());
        for (int64_t j = 0; j < bins; j++) {
            const float power = fft_out[2 * j + 0] * fft_out[2 * j + 0] + fft_out[2 * j + 1] * fft_out[2 * j + 1];
            fft_out[j]        = sqrtf(power);
        }
        for (int64_t j = 0; j < n_mel; j++) {
            double        sum = 0.0;
            int64_t       k   = 0;
            const float * flt = mel_filters_.data() + j * bins;
            for (k = 0; k < bins - 3; k += 4) {
                sum += fft_out[k + 0] * flt[k + 0] + fft_out[k + 1] * flt[k + 1] + fft_out[k + 2] * flt[k + 2] +
                       fft_out[k + 3] * flt[k + 3];
            }
            for (; k < bins; k++) {
                sum += fft_out[k] * flt[k];
            }
            sum                                        = std::max(sum, static_cast<double>(1e-5f));
            out[static_cast<size_t>(j * n_frames + i)] = static_cast<float>(log(sum));
        }
    }
    return out;
}

std::vector<float> qwen3tts_gen::encode_speaker(const float * pcm, size_t n, const std::atomic<bool> * cancel) {
    if (!spk_) {
        fail(error_code::invalid_argument, "encodeSpeaker: the speaker encoder was not loaded (parts)");
    }
    const size_t pad = static_cast<size_t>((hp_.spk_n_fft - hp_.spk_hop) / 2);
    if (pcm == nullptr || n < pad + 1) {
        fail(error_code::invalid_argument, "encodeSpeaker: the reference has " + std::to_string(n) +
                                               " samples, at least " + std::to_string(pad + 1) + " are needed");
    }
    if (static_cast<double>(n) > k_max_spk_second * hp_.spk_sample_rate) {
        fail(error_code::audio_too_long, "encodeSpeaker: the reference is longer than " +
                                             std::to_string(static_cast<int>(k_max_spk_second)) + " s");
    }
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(pcm[i])) {
            fail(error_code::invalid_argument, "encodeSpeaker: sample " + std::to_string(i) + " is not finite");
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    int64_t                     n_frames = 0;
    std::vector<float>          mel      = speaker_mel(pcm, n, n_frames, cancel);
    if (n_frames <= hp_.spk_max_pad) {
        fail(error_code::invalid_argument, "encodeSpeaker: the reference gives " + std::to_string(n_frames) +
                                               " mel frames, the encoder's convolutions need more than " +
                                               std::to_string(hp_.spk_max_pad));
    }
    const std::string key = std::to_string(n_frames);
    auto              it  = spk_->graphs.find(key);
    if (it == spk_->graphs.end()) {
        if (spk_->graphs.size() >= 4) {
            spk_->clear();
        }
        it = spk_->graphs.emplace(key, build_spk_graph(n_frames)).first;
    }
    cached_graph & g = *it->second;
    spk_->rt->use(g.holder->gf());
    ggml_backend_tensor_set(g.in.at("inp_raw"), mel.data(), 0, mel.size() * sizeof(float));
    spk_->rt->compute(g.holder->gf(), cancel);
    std::vector<float> out(hp_.spk_n_embd);
    ggml_backend_tensor_get(g.out.at("embd"), out.data(), 0, out.size() * sizeof(float));
    return out;
}

}  // namespace mm
