#include "decoders/pockettts/pockettts_gen.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "decoders/pockettts/pockettts_names.h"
#include "decoders/pockettts/seanet.h"
#include "graph/gguf_file.h"
#include "graph/graph_blocks.h"
#include "graph/runtime.h"

namespace mm::pockettts {

namespace {

namespace n = names;

// Graphs kept per shape (the helper decodes 8-frame windows and one shorter last window).
constexpr size_t k_cached_graphs = 4;

// ---- flow head (models/pockettts-gen.cpp, GEN_CODE) ------------------------------------------

// x * (1 + scale) + shift
ggml_tensor * modulate(ggml_context * ctx, ggml_tensor * x, ggml_tensor * shift, ggml_tensor * scale) {
    ggml_tensor * cur = ggml_mul(ctx, x, ggml_scale_bias(ctx, scale, 1.0f, 1.0f));
    return ggml_add(ctx, cur, shift);
}

// TimestepEmbedder at a build-time constant t, with its "RMSNorm" that divides by the unbiased
// variance and rescales the uncentred input.
ggml_tensor * time_embed(ggml_context * ctx, const weight_set & w, int i, float t) {
    ggml_tensor * args = ggml_scale(ctx, w.get(n::flow_time(i, "freqs")), t);
    ggml_tensor * emb  = ggml_concat(ctx, ggml_cos(ctx, args), ggml_sin(ctx, args), 0);
    ggml_tensor * cur  = ggml_mul_mat(ctx, w.get(n::flow_time(i, "up", "weight")), emb);
    cur                = ggml_add(ctx, cur, w.get(n::flow_time(i, "up", "bias")));
    cur                = ggml_silu(ctx, cur);
    cur                = ggml_mul_mat(ctx, w.get(n::flow_time(i, "down", "weight")), cur);
    cur                = ggml_add(ctx, cur, w.get(n::flow_time(i, "down", "bias")));
    const int64_t m    = cur->ne[0];
    ggml_tensor * mean = ggml_mean(ctx, cur);
    ggml_tensor * dev  = ggml_sub(ctx, cur, mean);
    ggml_tensor * var  = ggml_mean(ctx, ggml_sqr(ctx, dev));
    var                = ggml_scale_bias(ctx, var, static_cast<float>(m) / static_cast<float>(m - 1), 1e-5f);
    cur                = ggml_div(ctx, cur, ggml_sqrt(ctx, var));
    return ggml_mul(ctx, cur, w.get(n::flow_time(i, "norm")));
}

// One velocity evaluation v(cond, s, t, x) of the AdaLN MLP.
ggml_tensor * flow_velocity(const blocks::graph_ctx & g, const weight_set & w, const hparams & hp, ggml_tensor * cond,
                            ggml_tensor * x, float s, float t) {
    ggml_context * ctx = g.ctx;
    ggml_tensor *  cur = ggml_mul_mat(ctx, w.get(n::flow("input_proj", "weight")), x);
    cur                = ggml_add(ctx, cur, w.get(n::flow("input_proj", "bias")));
    // the two time conditions averaged, plus the projected backbone state
    ggml_tensor * ts = ggml_add(ctx, time_embed(ctx, w, 0, s), time_embed(ctx, w, 1, t));
    ts               = ggml_scale(ctx, ts, 0.5f);
    ggml_tensor * c  = ggml_mul_mat(ctx, w.get(n::flow("cond_embd", "weight")), cond);
    c                = ggml_add(ctx, c, w.get(n::flow("cond_embd", "bias")));
    ggml_tensor * y  = ggml_add(ctx, ts, c);

    const int64_t M = hp.flow_dim;
    for (int il = 0; il < hp.flow_blocks; ++il) {
        ggml_tensor * mod   = ggml_mul_mat(ctx, w.get(n::flow_blk(il, "ada", "weight")), ggml_silu(ctx, y));
        mod                 = ggml_add(ctx, mod, w.get(n::flow_blk(il, "ada", "bias")));
        ggml_tensor * shift = ggml_view_1d(ctx, mod, M, 0);
        ggml_tensor * scale = ggml_view_1d(ctx, mod, M, static_cast<size_t>(M) * mod->nb[0]);
        ggml_tensor * gate  = ggml_view_1d(ctx, mod, M, static_cast<size_t>(2 * M) * mod->nb[0]);
        ggml_tensor * h     = blocks::norm(g, cur, w.get(n::flow_blk(il, "norm", "weight")),
                                           w.get(n::flow_blk(il, "norm", "bias")), 1e-6f);
        h                   = modulate(ctx, h, shift, scale);
        h                   = ggml_mul_mat(ctx, w.get(n::flow_blk(il, "up", "weight")), h);
        h                   = ggml_add(ctx, h, w.get(n::flow_blk(il, "up", "bias")));
        h                   = ggml_silu(ctx, h);
        h                   = ggml_mul_mat(ctx, w.get(n::flow_blk(il, "down", "weight")), h);
        h                   = ggml_add(ctx, h, w.get(n::flow_blk(il, "down", "bias")));
        cur                 = ggml_add(ctx, cur, ggml_mul(ctx, gate, h));
    }
    // final layer: a weightless LayerNorm with the AdaLN modulation
    ggml_tensor * mod   = ggml_mul_mat(ctx, w.get(n::flow("final.ada", "weight")), ggml_silu(ctx, y));
    mod                 = ggml_add(ctx, mod, w.get(n::flow("final.ada", "bias")));
    ggml_tensor * shift = ggml_view_1d(ctx, mod, M, 0);
    ggml_tensor * scale = ggml_view_1d(ctx, mod, M, static_cast<size_t>(M) * mod->nb[0]);
    cur                 = blocks::norm(g, cur, nullptr, nullptr, 1e-6f);
    cur                 = modulate(ctx, cur, shift, scale);
    cur                 = ggml_mul_mat(ctx, w.get(n::flow("final.proj", "weight")), cur);
    return ggml_add(ctx, cur, w.get(n::flow("final.proj", "bias")));
}

// ---- Mimi transformers ---------------------------------------------------------------------

struct layer_w {
    ggml_tensor *ln1_w, *ln1_b, *q, *k, *v, *o, *ls1, *ln2_w, *ln2_b, *up, *down, *ls2;
};

layer_w layer_weights(const weight_set & w, const char * prefix, int il) {
    auto t = [&](const char * part, const char * suffix) { return w.get(n::blk(prefix, il, part, suffix)); };
    return {t("ln1", "weight"),    t("ln1", "bias"),        t("attn_q", "weight"),   t("attn_k", "weight"),
            t("attn_v", "weight"), t("attn_out", "weight"), t("ls1", "weight"),      t("ln2", "weight"),
            t("ln2", "bias"),      t("ffn_up", "weight"),   t("ffn_down", "weight"), t("ls2", "weight")};
}

// the second half of a block: norm, GELU FFN, layer scale, residual
ggml_tensor * ffn_half(const blocks::graph_ctx & g, const layer_w & l, const tfm_hparams & t, ggml_tensor * cur) {
    ggml_tensor * inp = cur;
    cur               = blocks::norm(g, cur, l.ln2_w, l.ln2_b, t.eps);
    cur               = blocks::ffn(g, cur, l.up, nullptr, nullptr, nullptr, l.down, nullptr, blocks::ffn_op::gelu);
    cur               = ggml_mul(g.ctx, cur, l.ls2);
    return ggml_add(g.ctx, cur, inp);
}

ggml_tensor * rope(ggml_context * ctx, ggml_tensor * x, ggml_tensor * pos, int d_head) {
    return ggml_rope_ext(ctx, x, pos, nullptr, d_head, GGML_ROPE_TYPE_NORMAL, 0, k_rope_theta, 1.0f, 0.0f, 1.0f, 0.0f,
                         0.0f);
}

int64_t div_ceil(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

bool all_finite(const float * v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(v[i])) {
            return false;
        }
    }
    return true;
}

}  // namespace

// ---- parts and graphs ---------------------------------------------------------------------------

struct generator::part_rt {
    std::unique_ptr<runtime>    rt;
    std::unique_ptr<weight_set> w;
    std::mutex                  mu;
    bool                        flash_attn = true;  // libmtmd's AUTO: on when the backend runs it
};

struct generator::code_graph {
    std::unique_ptr<graph_holder> holder;
    ggml_tensor *                 hidden = nullptr;  // [n_embd, 1]
    ggml_tensor *                 noise  = nullptr;  // [latent_dim, 1]
    ggml_tensor *                 eos    = nullptr;  // [1, 1]
    ggml_tensor *                 latent = nullptr;  // [latent_dim, 1]
    ggml_tensor *                 embd   = nullptr;  // [n_embd, 1]
};

struct generator::wav_graph {
    std::unique_ptr<graph_holder> holder;
    ggml_tensor *                 feats = nullptr;  // [latent_dim, n_frames]
    std::vector<ggml_tensor *>    state_in;         // in slot order
    std::vector<ggml_tensor *>    state_out;
    ggml_tensor *                 audio = nullptr;  // [n_frames * 1920]
};

struct generator::speaker_graph {
    std::unique_ptr<graph_holder> holder;
    int64_t                       n_pos = 0;
    ggml_tensor *                 raw   = nullptr;  // [n_samples, 1, 1]
    ggml_tensor *                 pos   = nullptr;  // i32 [n_pos]
    ggml_tensor *                 mask  = nullptr;  // f32 [n_pos, n_pos]
    ggml_tensor *                 out   = nullptr;  // [n_embd, n_pos / 16]
};

std::shared_ptr<generator> generator::load(const std::string & path, const load_params & params) {
    auto                       f = gguf_file::open(path);
    validated_file             v = read_pockettts(*f, params.parts);
    std::shared_ptr<generator> g(new generator());
    g->hp_          = v.hp;
    g->slots_       = decoder_state_slots(g->hp_);
    g->state_bytes_ = state_bytes(g->slots_);
    auto make       = [&](const std::vector<std::string> & names) {
        auto p = std::make_unique<part_rt>();
        p->rt  = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu});
        p->w   = std::make_unique<weight_set>(*f, names, p->rt->weights_buffer_type(), params.cancel);
        return p;
    };
    if (g->has(part_code)) {
        g->code_ = make(v.code);
        g->build_code_graph();
    }
    if (g->has(part_wav)) {
        g->wav_ = make(v.wav);
    }
    if (g->has(part_speaker)) {
        g->speaker_ = make(v.speaker);
    }
    return g;
}

generator::~generator() = default;

std::string generator::backend_name() const {
    const part_rt * p = code_ ? code_.get() : wav_ ? wav_.get() : speaker_.get();
    return p != nullptr ? p->rt->backend_name() : "";
}

size_t generator::weights_bytes() const {
    size_t total = 0;
    for (const part_rt * p : {code_.get(), wav_.get(), speaker_.get()}) {
        total += p != nullptr ? p->w->bytes() : 0;
    }
    return total;
}

void generator::build_code_graph() {
    auto cg    = std::make_unique<code_graph>();
    cg->holder = std::make_unique<graph_holder>();
    const blocks::graph_ctx g{cg->holder->ctx(), cg->holder->gf(), false};
    ggml_context *          ctx = g.ctx;
    const weight_set &      w   = *code_->w;

    cg->hidden = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.n_embd, 1);
    ggml_set_name(cg->hidden, "inp_hidden");
    ggml_set_input(cg->hidden);
    // end-of-speech probe, thresholded on the host
    cg->eos = ggml_add(ctx, ggml_mul_mat(ctx, w.get(n::t_out_eos_w), cg->hidden), w.get(n::t_out_eos_b));
    ggml_set_name(cg->eos, "out_eos_score");
    ggml_set_output(cg->eos);
    ggml_build_forward_expand(g.gf, cg->eos);

    cg->noise = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.latent_dim, 1);
    ggml_set_name(cg->noise, "inp_noise");
    ggml_set_input(cg->noise);
    // lsd_decode: integrate the velocity field from the noise
    ggml_tensor * cur = cg->noise;
    for (int i = 0; i < k_flow_steps; ++i) {
        const float   s = static_cast<float>(i) / static_cast<float>(k_flow_steps);
        const float   t = static_cast<float>(i + 1) / static_cast<float>(k_flow_steps);
        ggml_tensor * v = flow_velocity(g, w, hp_, cg->hidden, cur, s, t);
        cur             = ggml_add(ctx, cur, ggml_scale(ctx, v, 1.0f / static_cast<float>(k_flow_steps)));
    }
    ggml_set_name(cur, "out_feats");
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    cg->latent = cur;
    // the latent in the backbone's input space, the next step's input
    cg->embd = ggml_mul_mat(ctx, w.get(n::t_input_linear_w), cur);
    ggml_set_name(cg->embd, "out_embd");
    ggml_set_output(cg->embd);
    ggml_build_forward_expand(g.gf, cg->embd);
    code_graph_ = std::move(cg);
    code_->rt->allocate(code_graph_->holder->gf());
}

code_result generator::gen_code(const float * hidden, size_t n, const code_params & p,
                                const std::atomic<bool> * cancel) {
    if (!code_) {
        fail(error_code::modality_unsupported, "the flow head ('code' part) is not loaded");
    }
    if (n != static_cast<size_t>(hp_.n_embd)) {
        fail(error_code::invalid_argument,
             "the hidden state has " + std::to_string(n) + " values, the model takes " + std::to_string(hp_.n_embd));
    }
    if (!all_finite(hidden, n)) {
        fail(error_code::invalid_argument, "the hidden state holds a NaN or infinite value");
    }
    if (!std::isfinite(p.temp)) {
        fail(error_code::invalid_argument, "temp must be a finite number");
    }
    std::lock_guard<std::mutex> lock(code_->mu);
    if (cancel != nullptr && cancel->load()) {
        fail(error_code::aborted, "aborted");
    }
    // clip_encode: reseed only when the seed differs from the last one
    const std::mt19937 rng_before  = rng_;
    const uint32_t     seed_before = rng_seed_;
    if (p.seed != rng_seed_) {
        rng_seed_ = p.seed;
        rng_.seed(p.seed == UINT32_MAX ? std::random_device{}() : p.seed);
    }
    // flow matching starts from gaussian noise, std = sqrt(temp) (0.7 when the caller sets none)
    const float                     temp = p.temp > 0.0f ? p.temp : k_default_temp;
    std::normal_distribution<float> dist(0.0f, std::sqrt(temp));
    std::vector<float>              noise(static_cast<size_t>(hp_.latent_dim));
    for (float & v : noise) {
        v = dist(rng_);
    }
    code_graph & cg = *code_graph_;
    try {
        code_->rt->use(cg.holder->gf());
        ggml_backend_tensor_set(cg.hidden, hidden, 0, ggml_nbytes(cg.hidden));
        ggml_backend_tensor_set(cg.noise, noise.data(), 0, ggml_nbytes(cg.noise));
        code_->rt->compute(cg.holder->gf(), cancel);
    } catch (...) {
        // an aborted or failed call draws nothing
        rng_      = rng_before;
        rng_seed_ = seed_before;
        throw;
    }
    code_result r;
    r.latent.resize(static_cast<size_t>(hp_.latent_dim));
    r.embd.resize(static_cast<size_t>(hp_.n_embd));
    ggml_backend_tensor_get(cg.latent, r.latent.data(), 0, ggml_nbytes(cg.latent));
    ggml_backend_tensor_get(cg.embd, r.embd.data(), 0, ggml_nbytes(cg.embd));
    ggml_backend_tensor_get(cg.eos, &r.eos_score, 0, sizeof(float));
    r.is_eos = r.eos_score > k_eos_threshold;
    return r;
}

// models/pockettts-gen.cpp GEN_WAV, op for op: denormalise, quantizer output projection, depthwise
// stride-16 upsample, the decoder transformer over [cached window | this call] with the banded
// causal mask and positions that continue from the state, then the SEANet decoder.
std::unique_ptr<generator::wav_graph> generator::build_wav_graph(int64_t n_frames, bool flash_attn) {
    auto wg    = std::make_unique<wav_graph>();
    wg->holder = std::make_unique<graph_holder>();
    const blocks::graph_ctx g{wg->holder->ctx(), wg->holder->gf(), flash_attn};
    ggml_context *          ctx = g.ctx;
    const weight_set &      w   = *wav_->w;
    const tfm_hparams &     t   = hp_.dec;

    wg->feats = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.latent_dim, n_frames);
    ggml_set_name(wg->feats, "inp_feats");
    ggml_set_input(wg->feats);
    ggml_tensor * cur = ggml_add(ctx, ggml_mul(ctx, wg->feats, w.get(n::t_emb_std)), w.get(n::t_emb_mean));
    cur               = ggml_mul_mat(ctx, w.get(n::t_quant_out_w), cur);

    seanet_builder sb(ctx, w);
    for (const state_slot & s : slots_) {
        ggml_tensor * in = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s.ne0, s.ne1);
        ggml_set_name(in, ("state_in_" + s.name).c_str());
        ggml_set_input(in);
        sb.state_in[s.name] = in;
        wg->state_in.push_back(in);
    }

    cur = ggml_cont(ctx, ggml_transpose(ctx, cur));
    cur = sb.conv_transpose1d(cur, w.get(n::t_upsample_w), nullptr, k_downsample, "up");
    cur = ggml_cont(ctx, ggml_transpose(ctx, cur));

    const int64_t n_pos  = cur->ne[1];
    const int64_t prefix = k_tfm_context - 1;
    const int64_t n_kv   = prefix + n_pos;
    ggml_tensor * base   = ggml_reshape_1d(ctx, sb.state_in.at("tfm_pos"), 1);
    ggml_tensor * inp_pos =
        ggml_cast(ctx, ggml_add(ctx, ggml_arange(ctx, 0.0f, static_cast<float>(n_pos), 1.0f), base), GGML_TYPE_I32);
    sb.state_out.emplace_back("tfm_pos",
                              ggml_scale_bias(ctx, sb.state_in.at("tfm_pos"), 1.0f, static_cast<float>(n_pos)));

    // banded causal mask over [cached window | this call]; cache rows that hold no frame yet are out
    ggml_tensor * pos_k = ggml_reshape_2d(ctx, ggml_arange(ctx, 0.0f, static_cast<float>(n_kv), 1.0f), n_kv, 1);
    ggml_tensor * pos_q = ggml_reshape_2d(
        ctx, ggml_arange(ctx, static_cast<float>(prefix), static_cast<float>(prefix + n_pos), 1.0f), 1, n_pos);
    ggml_tensor * diff = ggml_sub(ctx, ggml_repeat_4d(ctx, pos_q, n_kv, n_pos, 1, 1), pos_k);
    ggml_tensor * keep =
        ggml_mul(ctx, ggml_step(ctx, ggml_scale_bias(ctx, diff, 1.0f, 0.5f)),
                 ggml_step(ctx, ggml_scale_bias(ctx, diff, -1.0f, static_cast<float>(k_tfm_context) - 0.5f)));
    keep = ggml_mul(
        ctx, keep,
        ggml_step(ctx, ggml_scale_bias(ctx, ggml_add(ctx, pos_k, base), 1.0f, 0.5f - static_cast<float>(prefix))));
    ggml_tensor * kq_mask  = ggml_reshape_4d(ctx, ggml_log(ctx, keep), n_kv, n_pos, 1, 1);
    const float   kq_scale = 1.0f / std::sqrt(static_cast<float>(t.d_head));

    for (int il = 0; il < t.n_layer; ++il) {
        const layer_w l   = layer_weights(w, n::p_dec_tfm, il);
        ggml_tensor * inp = cur;
        cur               = blocks::norm(g, cur, l.ln1_w, l.ln1_b, t.eps);
        ggml_tensor * q   = ggml_mul_mat(ctx, l.q, cur);
        ggml_tensor * k   = ggml_mul_mat(ctx, l.k, cur);
        ggml_tensor * v   = ggml_mul_mat(ctx, l.v, cur);
        q                 = ggml_reshape_3d(ctx, q, t.d_head, t.n_head, n_pos);
        k                 = ggml_reshape_3d(ctx, k, t.d_head, t.n_head, n_pos);
        q                 = rope(ctx, q, inp_pos, t.d_head);
        k                 = rope(ctx, k, inp_pos, t.d_head);
        // the cached window first; this call's tail stays for the next
        const std::string k_name = "tfm_k_" + std::to_string(il);
        const std::string v_name = "tfm_v_" + std::to_string(il);
        ggml_tensor *     k_full =
            ggml_concat(ctx, sb.state_in.at(k_name), ggml_reshape_2d(ctx, k, static_cast<int64_t>(t.n_embd), n_pos), 1);
        ggml_tensor * v_full = ggml_concat(ctx, sb.state_in.at(v_name), v, 1);
        sb.state_out.emplace_back(k_name, ggml_cont(ctx, ggml_view_2d(ctx, k_full, k_full->ne[0], prefix, k_full->nb[1],
                                                                      static_cast<size_t>(n_pos) * k_full->nb[1])));
        sb.state_out.emplace_back(v_name, ggml_cont(ctx, ggml_view_2d(ctx, v_full, v_full->ne[0], prefix, v_full->nb[1],
                                                                      static_cast<size_t>(n_pos) * v_full->nb[1])));
        ggml_tensor * q4 = ggml_reshape_4d(ctx, q, t.d_head, t.n_head, n_pos, 1);
        ggml_tensor * k4 = ggml_reshape_4d(ctx, k_full, t.d_head, t.n_head, n_kv, 1);
        ggml_tensor * v4 = ggml_reshape_4d(ctx, v_full, t.d_head, t.n_head, n_kv, 1);
        cur              = blocks::attn(g, l.o, nullptr, q4, k4, v4, kq_scale, kq_mask);
        cur              = ggml_mul(ctx, cur, l.ls1);
        cur              = ggml_add(ctx, cur, inp);
        cur              = ffn_half(g, l, t, cur);
    }

    cur = ggml_cont(ctx, ggml_transpose(ctx, cur));
    cur = sb.decode(cur);

    for (const state_slot & s : slots_) {
        ggml_tensor * out = nullptr;
        for (auto & [name, tensor] : sb.state_out) {
            if (name == s.name) {
                out = tensor;
            }
        }
        if (out == nullptr || out->ne[0] != s.ne0 || out->ne[1] != s.ne1) {
            fail(error_code::internal, "the decoder graph's state slot '" + s.name + "' differs from its layout");
        }
        ggml_set_name(out, ("state_out_" + s.name).c_str());
        ggml_set_output(out);
        ggml_build_forward_expand(g.gf, out);
        wg->state_out.push_back(out);
    }
    cur = ggml_reshape_1d(ctx, cur, cur->ne[0]);
    cur = ggml_clamp(ctx, cur, -1.0f, 1.0f);
    ggml_set_name(cur, "out_audio");
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    wg->audio = cur;
    if (cur->ne[0] != n_frames * k_samples_per_frame) {
        fail(error_code::internal, "the decoder graph gives " + std::to_string(cur->ne[0]) + " samples for " +
                                       std::to_string(n_frames) + " frames");
    }
    return wg;
}

generator::wav_graph & generator::wav_graph_for(int64_t n_frames) {
    auto it = wav_graphs_.find(n_frames);
    if (it == wav_graphs_.end()) {
        std::unique_ptr<wav_graph> wg = build_wav_graph(n_frames, wav_->flash_attn);
        if (wav_->flash_attn && !wav_->rt->supports_flash_attn(wg->holder->gf())) {
            wav_->flash_attn = false;
            wg               = build_wav_graph(n_frames, false);
        }
        if (wav_graphs_.size() >= k_cached_graphs && !wav_lru_.empty()) {
            const int64_t old = wav_lru_.front();
            wav_lru_.erase(wav_lru_.begin());
            wav_->rt->forget(wav_graphs_.at(old)->holder->gf());
            wav_graphs_.erase(old);
        }
        it = wav_graphs_.emplace(n_frames, std::move(wg)).first;
    }
    wav_lru_.erase(std::remove(wav_lru_.begin(), wav_lru_.end(), n_frames), wav_lru_.end());
    wav_lru_.push_back(n_frames);
    return *it->second;
}

wav_result generator::gen_wav(const float * feats, size_t n, const uint8_t * state, size_t state_n,
                              const std::atomic<bool> * cancel) {
    if (!wav_) {
        fail(error_code::modality_unsupported, "the Mimi decoder ('wav' part) is not loaded");
    }
    const size_t L = static_cast<size_t>(hp_.latent_dim);
    if (n == 0 || n % L != 0) {
        fail(error_code::invalid_argument, "the latents hold " + std::to_string(n) +
                                               " values, not a whole, non-zero number of frames of " +
                                               std::to_string(L));
    }
    const int64_t n_frames = static_cast<int64_t>(n / L);
    if (n_frames > k_max_wav_frames) {
        fail(error_code::invalid_argument,
             std::to_string(n_frames) + " frames in one call (at most " + std::to_string(k_max_wav_frames) + ")");
    }
    if (!all_finite(feats, n)) {
        fail(error_code::invalid_argument, "the latents hold a NaN or infinite value");
    }
    if (state != nullptr && state_n != state_bytes_) {
        fail(error_code::invalid_argument, "the decoder state has " + std::to_string(state_n) + " bytes, expected " +
                                               std::to_string(state_bytes_) + " (a state a previous call returned)");
    }
    if (state != nullptr) {
        // the position counter (the first slot): a whole number of frames, exact in f32
        float pos = 0.0f;
        std::memcpy(&pos, state, sizeof(float));
        if (!(pos >= 0.0f && pos <= 16777216.0f) || pos != std::floor(pos) ||
            !all_finite(reinterpret_cast<const float *>(state), state_n / sizeof(float))) {
            fail(error_code::invalid_argument, "the decoder state is not one a previous call returned");
        }
    }
    std::lock_guard<std::mutex> lock(wav_->mu);
    if (cancel != nullptr && cancel->load()) {
        fail(error_code::aborted, "aborted");
    }
    wav_graph & wg = wav_graph_for(n_frames);
    wav_->rt->use(wg.holder->gf());
    ggml_backend_tensor_set(wg.feats, feats, 0, ggml_nbytes(wg.feats));
    size_t offset = 0;
    for (ggml_tensor * in : wg.state_in) {
        const size_t nb = ggml_nbytes(in);
        if (state != nullptr) {
            ggml_backend_tensor_set(in, state + offset, 0, nb);
        } else {
            std::vector<uint8_t> zeros(nb, 0);
            ggml_backend_tensor_set(in, zeros.data(), 0, nb);
        }
        offset += nb;
    }
    wav_->rt->compute(wg.holder->gf(), cancel);
    wav_result r;
    r.pcm.resize(static_cast<size_t>(ggml_nelements(wg.audio)));
    ggml_backend_tensor_get(wg.audio, r.pcm.data(), 0, ggml_nbytes(wg.audio));
    r.state.resize(state_bytes_);
    offset = 0;
    for (ggml_tensor * out : wg.state_out) {
        const size_t nb = ggml_nbytes(out);
        ggml_backend_tensor_get(out, r.state.data() + offset, 0, nb);
        offset += nb;
    }
    return r;
}

// models/pockettts-spkenc.cpp: SEANet encoder, the encoder transformer (causal, 250-frame window),
// the stride-16 downsample (first frame repeated as left padding), the speaker projection.
std::unique_ptr<generator::speaker_graph> generator::build_speaker_graph(int64_t n_samples, bool flash_attn) {
    auto sg    = std::make_unique<speaker_graph>();
    sg->holder = std::make_unique<graph_holder>();
    const blocks::graph_ctx g{sg->holder->ctx(), sg->holder->gf(), flash_attn};
    ggml_context *          ctx = g.ctx;
    const weight_set &      w   = *speaker_->w;
    const tfm_hparams &     t   = hp_.enc;

    sg->raw = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, n_samples, 1, 1);
    ggml_set_name(sg->raw, "inp_raw");
    ggml_set_input(sg->raw);
    ggml_tensor *  cur = ggml_reshape_2d(ctx, sg->raw, n_samples, 1);
    seanet_builder sb(ctx, w);
    cur = sb.encode(cur);
    cur = ggml_cont(ctx, ggml_transpose(ctx, cur));

    sg->n_pos = cur->ne[1];
    sg->pos   = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, sg->n_pos);
    ggml_set_name(sg->pos, "inp_pos");
    ggml_set_input(sg->pos);
    sg->mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, sg->n_pos, sg->n_pos);
    ggml_set_name(sg->mask, "kq_mask");
    ggml_set_input(sg->mask);
    const float kq_scale = 1.0f / std::sqrt(static_cast<float>(t.d_head));

    for (int il = 0; il < t.n_layer; ++il) {
        const layer_w l   = layer_weights(w, n::p_enc_tfm, il);
        ggml_tensor * inp = cur;
        cur               = blocks::norm(g, cur, l.ln1_w, l.ln1_b, t.eps);
        ggml_tensor * q   = ggml_mul_mat(ctx, l.q, cur);
        ggml_tensor * k   = ggml_mul_mat(ctx, l.k, cur);
        ggml_tensor * v   = ggml_mul_mat(ctx, l.v, cur);
        q                 = ggml_reshape_3d(ctx, q, t.d_head, t.n_head, sg->n_pos);
        k                 = ggml_reshape_3d(ctx, k, t.d_head, t.n_head, sg->n_pos);
        v                 = ggml_reshape_3d(ctx, v, t.d_head, t.n_head, sg->n_pos);
        q                 = rope(ctx, q, sg->pos, t.d_head);
        k                 = rope(ctx, k, sg->pos, t.d_head);
        // libmtmd casts the mask for each block
        cur = blocks::attn(g, l.o, nullptr, q, k, v, kq_scale, sg->mask);
        cur = ggml_mul(ctx, cur, l.ls1);
        cur = ggml_add(ctx, cur, inp);
        cur = ffn_half(g, l, t, cur);
    }

    cur     = ggml_cont(ctx, ggml_transpose(ctx, cur));
    cur     = sb.conv1d(cur, w.get(n::t_downsample_w), nullptr, k_downsample, 1, true);
    cur     = ggml_cont(ctx, ggml_transpose(ctx, cur));
    cur     = ggml_mul_mat(ctx, w.get(n::t_spk_proj_w), cur);
    sg->out = cur;
    ggml_set_name(cur, "out_speaker");
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    if (cur->ne[0] != hp_.n_embd || cur->ne[1] * k_samples_per_frame != n_samples) {
        fail(error_code::internal, "the voice encoder graph gives " + std::to_string(cur->ne[1]) + " rows for " +
                                       std::to_string(n_samples) + " samples");
    }
    return sg;
}

generator::speaker_graph & generator::speaker_graph_for(int64_t n_samples) {
    auto it = speaker_graphs_.find(n_samples);
    if (it == speaker_graphs_.end()) {
        std::unique_ptr<speaker_graph> sg = build_speaker_graph(n_samples, speaker_->flash_attn);
        if (speaker_->flash_attn && !speaker_->rt->supports_flash_attn(sg->holder->gf())) {
            speaker_->flash_attn = false;
            sg                   = build_speaker_graph(n_samples, false);
        }
        if (speaker_graphs_.size() >= k_cached_graphs && !speaker_lru_.empty()) {
            const int64_t old = speaker_lru_.front();
            speaker_lru_.erase(speaker_lru_.begin());
            speaker_->rt->forget(speaker_graphs_.at(old)->holder->gf());
            speaker_graphs_.erase(old);
        }
        it = speaker_graphs_.emplace(n_samples, std::move(sg)).first;
    }
    speaker_lru_.erase(std::remove(speaker_lru_.begin(), speaker_lru_.end(), n_samples), speaker_lru_.end());
    speaker_lru_.push_back(n_samples);
    return *it->second;
}

speaker_result generator::encode_speaker(const float * pcm, size_t n, const std::atomic<bool> * cancel) {
    if (!speaker_) {
        fail(error_code::modality_unsupported, "the voice encoder ('speaker' part) is not loaded");
    }
    if (n == 0) {
        fail(error_code::invalid_argument, "the voice reference is empty (no samples)");
    }
    if (!all_finite(pcm, n)) {
        fail(error_code::invalid_argument, "the voice reference holds a NaN or infinite sample");
    }
    // mtmd_audio_preprocessor_pockettts: at most 30 s, zero-padded to whole 80 ms frames
    n                           = std::min(n, static_cast<size_t>(k_max_speaker_seconds) * k_sample_rate);
    const int64_t      n_padded = div_ceil(static_cast<int64_t>(n), k_samples_per_frame) * k_samples_per_frame;
    std::vector<float> data(static_cast<size_t>(n_padded), 0.0f);
    std::copy(pcm, pcm + n, data.begin());

    std::lock_guard<std::mutex> lock(speaker_->mu);
    if (cancel != nullptr && cancel->load()) {
        fail(error_code::aborted, "aborted");
    }
    speaker_graph & sg = speaker_graph_for(n_padded);
    speaker_->rt->use(sg.holder->gf());
    ggml_backend_tensor_set(sg.raw, data.data(), 0, ggml_nbytes(sg.raw));
    std::vector<int32_t> pos(static_cast<size_t>(sg.n_pos));
    for (int64_t i = 0; i < sg.n_pos; ++i) {
        pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    }
    ggml_backend_tensor_set(sg.pos, pos.data(), 0, ggml_nbytes(sg.pos));
    // causal with a sliding window (_build_attention_mask in the reference)
    std::vector<float> mask(static_cast<size_t>(sg.n_pos * sg.n_pos), -INFINITY);
    for (int64_t q = 0; q < sg.n_pos; ++q) {
        for (int64_t k = std::max<int64_t>(0, q - k_tfm_context + 1); k <= q; ++k) {
            mask[static_cast<size_t>(q * sg.n_pos + k)] = 0.0f;
        }
    }
    ggml_backend_tensor_set(sg.mask, mask.data(), 0, ggml_nbytes(sg.mask));
    speaker_->rt->compute(sg.holder->gf(), cancel);
    speaker_result r;
    r.rows = static_cast<int32_t>(sg.out->ne[1]);
    r.embd.resize(static_cast<size_t>(ggml_nelements(sg.out)));
    ggml_backend_tensor_get(sg.out, r.embd.data(), 0, ggml_nbytes(sg.out));
    return r;
}

}  // namespace mm::pockettts
