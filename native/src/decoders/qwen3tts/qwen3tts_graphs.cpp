// The three Qwen3-TTS graphs. Op for op what libmtmd's clip_graph_qwen3tts_gen (code_gen, code2wav)
// and clip_graph_qwen3tts_spkenc compute, so that the values agree to the last bit where ggml's
// kernels allow (conv inputs rounded to f16 by im2col, K/V rounded to f16 by flash attention, the
// same reductions in the same order). Only the plumbing differs: positions, masks and the uniform
// draws are graph inputs set from the host, the KV cache of the code predictor is assembled from the
// rows computed so far (zero rows after them, as libmtmd's zero-filled cache), and every stage is a
// graph of its own, built once per shape.
#include <cmath>
#include <string>

#include "common/error.h"
#include "decoders/qwen3tts/qwen3tts_internal.h"
#include "graph/runtime.h"

namespace mm {

using qwen3tts::cached_graph;

namespace {

ggml_tensor * input(cached_graph & g, ggml_tensor * t, const char * name) {
    ggml_set_name(t, name);
    ggml_set_input(t);
    g.in[name] = t;
    return t;
}

// clip_graph::build_attn (without biases on o), flash attention or not as libmtmd runs it.
ggml_tensor * attention(ggml_context * ctx, ggml_tensor * o_w, ggml_tensor * q_cur, ggml_tensor * k_cur,
                        ggml_tensor * v_cur, ggml_tensor * mask, float scale, bool flash_attn) {
    ggml_tensor * q = ggml_permute(ctx, q_cur, 0, 2, 1, 3);
    ggml_tensor * k = ggml_permute(ctx, k_cur, 0, 2, 1, 3);
    ggml_tensor * cur;
    if (flash_attn) {
        ggml_tensor * v = ggml_permute(ctx, v_cur, 0, 2, 1, 3);
        k               = ggml_cast(ctx, k, GGML_TYPE_F16);
        v               = ggml_cast(ctx, v, GGML_TYPE_F16);
        ggml_tensor * m = mask != nullptr ? ggml_cast(ctx, mask, GGML_TYPE_F16) : nullptr;
        cur             = ggml_flash_attn_ext(ctx, q, k, v, m, scale, 0.0f, 0.0f);
        ggml_flash_attn_ext_set_prec(cur, GGML_PREC_F32);
        cur = ggml_reshape_2d(ctx, cur, cur->ne[0] * cur->ne[1], cur->ne[2] * cur->ne[3]);
    } else {
        ggml_tensor * v   = ggml_cont(ctx, ggml_permute(ctx, v_cur, 1, 2, 0, 3));
        ggml_tensor * kq  = ggml_mul_mat(ctx, k, q);
        kq                = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);
        ggml_tensor * kqv = ggml_mul_mat(ctx, v, kq);
        cur               = ggml_permute(ctx, kqv, 0, 2, 1, 3);
        cur               = ggml_cont_2d(ctx, cur, cur->ne[0] * cur->ne[1], cur->ne[2] * cur->ne[3]);
    }
    return ggml_mul_mat(ctx, o_w, cur);
}

// code_gen::do_sampling: top-k, top-p, then the index where the CDF crosses `rand`.
ggml_tensor * sample(ggml_context * ctx, ggml_tensor * logits, ggml_tensor * rand, int32_t top_k, float top_p) {
    logits                = ggml_reshape_1d(ctx, logits, ggml_nelements(logits));
    const int64_t n_vocab = logits->ne[0];
    auto          sort_by = [ctx](ggml_tensor * a, ggml_tensor * idx) {
        ggml_tensor * a2d = ggml_reshape_2d(ctx, a, 1, a->ne[0]);
        return ggml_reshape_1d(ctx, ggml_get_rows(ctx, a2d, idx), idx->ne[0]);
    };
    ggml_tensor * cur        = logits;
    ggml_tensor * candidates = nullptr;
    if (top_k > 0 && top_k < n_vocab) {
        ggml_tensor * idx = ggml_top_k(ctx, cur, top_k);
        candidates        = idx;
        cur               = sort_by(cur, idx);
    }
    if (top_p < 1.0f) {
        ggml_tensor * sorted_idx    = ggml_argsort(ctx, cur, GGML_SORT_ORDER_DESC);
        ggml_tensor * sorted_logits = sort_by(cur, sorted_idx);
        candidates                  = candidates != nullptr ? sort_by(candidates, sorted_idx) : sorted_idx;
        ggml_tensor * probs         = ggml_soft_max(ctx, sorted_logits);
        ggml_tensor * cdf           = ggml_cumsum(ctx, probs);
        ggml_tensor * keep          = ggml_step(ctx, ggml_scale_bias(ctx, cdf, -1.0f, top_p));
        ggml_tensor * idxf          = ggml_sum(ctx, keep);
        idxf                        = ggml_clamp(ctx, idxf, 0.0f, static_cast<float>(keep->ne[0] - 1));
        ggml_tensor * ones          = ggml_scale_bias(ctx, idxf, 0.0f, 1.0f);
        ggml_tensor * keep_2d       = ggml_reshape_2d(ctx, keep, 1, keep->ne[0]);
        keep_2d                     = ggml_set_rows(ctx, keep_2d, ones, ggml_cast(ctx, idxf, GGML_TYPE_I32));
        keep                        = ggml_reshape_1d(ctx, keep_2d, keep->ne[0]);
        cur                         = ggml_add(ctx, sorted_logits, ggml_log(ctx, keep));
    }
    ggml_tensor * probs = ggml_soft_max(ctx, cur);
    ggml_tensor * cdf   = ggml_cumsum(ctx, probs);
    ggml_tensor * cross = ggml_step(ctx, ggml_sub(ctx, cdf, rand));
    ggml_tensor * idxf  = ggml_sum(ctx, cross);
    ggml_tensor * idx =
        ggml_cast(ctx, ggml_scale_bias(ctx, idxf, -1.0f, static_cast<float>(cross->ne[0])), GGML_TYPE_I32);
    if (candidates != nullptr) {
        idx = ggml_get_rows(ctx, ggml_reshape_2d(ctx, candidates, 1, candidates->ne[0]), idx);
    }
    return ggml_reshape_1d(ctx, idx, 1);
}

}  // namespace

// ---- code predictor ---------------------------------------------------------------------------

std::unique_ptr<cached_graph> qwen3tts_gen::build_code_graph(int32_t top_k, float top_p, bool flash_attn) const {
    auto g                     = std::make_unique<cached_graph>();
    g->holder                  = std::make_unique<graph_holder>();
    ggml_context *     ctx     = g->holder->ctx();
    ggml_cgraph *      gf      = g->holder->gf();
    const weight_set & w       = *weights_;
    const auto &       hp      = hp_;
    const int          n_codes = hp.n_codes();
    const int64_t      dh      = hp.d_pred_head;
    const int64_t      dkv     = dh * hp.n_pred_headkv;
    const float        scale   = 1.0f / std::sqrt(static_cast<float>(dh));

    ggml_tensor * h_state = input(*g, ggml_new_tensor_1d(ctx, GGML_TYPE_F32, hp.n_embd), "inp_hidden");
    ggml_tensor * code0   = input(*g, ggml_new_tensor_1d(ctx, GGML_TYPE_I32, 1), "inp_code0");
    ggml_tensor * rand    = input(*g, ggml_new_tensor_1d(ctx, GGML_TYPE_F32, hp.n_acoustic), "inp_rand");
    ggml_tensor * pos     = input(*g, ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_codes), "inp_pos");
    ggml_tensor * mask    = input(*g, ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_codes, n_codes), "inp_mask");

    ggml_tensor * out_embd_w = w.get("a.gen.code.out_embd.weight");
    ggml_tensor * embd_w     = w.get("a.gen.code.embd.weight");
    ggml_tensor * head_w     = w.get("a.gen.code.head.weight");
    ggml_tensor * proj_w     = w.find("a.gen.code.proj_in.weight");
    ggml_tensor * proj_b     = w.find("a.gen.code.proj_in.bias");
    ggml_tensor * norm_w     = w.get("a.gen.code.output_norm.weight");

    ggml_tensor * code0_embd = ggml_get_rows(ctx, out_embd_w, code0);
    code0_embd               = ggml_reshape_1d(ctx, code0_embd, code0_embd->ne[0]);

    auto project_in = [&](ggml_tensor * cur) {
        if (proj_w == nullptr) {
            return cur;
        }
        cur = ggml_mul_mat(ctx, proj_w, cur);
        return proj_b != nullptr ? ggml_add(ctx, cur, proj_b) : cur;
    };
    // the K / V rows written so far, per layer ([dkv, p + 1])
    std::vector<ggml_tensor *> k_rows(hp.n_pred_layer, nullptr), v_rows(hp.n_pred_layer, nullptr);

    auto layer = [&](ggml_tensor * cur, int il, int p) {
        const float   eps      = hp.pred_eps;
        ggml_tensor * residual = cur;
        ggml_tensor * h        = ggml_mul(ctx, ggml_rms_norm(ctx, cur, eps), w.get(qwen3tts::code_blk(il, "ln1")));
        ggml_tensor * q        = ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "attn_q")), h);
        ggml_tensor * k        = ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "attn_k")), h);
        ggml_tensor * v        = ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "attn_v")), h);
        q                      = ggml_reshape_3d(ctx, q, dh, hp.n_pred_head, 1);
        k                      = ggml_reshape_3d(ctx, k, dh, hp.n_pred_headkv, 1);
        q                 = ggml_mul(ctx, ggml_rms_norm(ctx, q, eps), w.get(qwen3tts::code_blk(il, "attn_q_norm")));
        k                 = ggml_mul(ctx, ggml_rms_norm(ctx, k, eps), w.get(qwen3tts::code_blk(il, "attn_k_norm")));
        ggml_tensor * p_t = ggml_view_1d(ctx, pos, 1, static_cast<size_t>(p) * pos->nb[0]);
        q = ggml_rope_ext(ctx, q, p_t, nullptr, static_cast<int>(dh), GGML_ROPE_TYPE_NEOX, 0, hp.pred_theta, 1.0f, 0.0f,
                          1.0f, 0.0f, 0.0f);
        k = ggml_rope_ext(ctx, k, p_t, nullptr, static_cast<int>(dh), GGML_ROPE_TYPE_NEOX, 0, hp.pred_theta, 1.0f, 0.0f,
                          1.0f, 0.0f, 0.0f);
        ggml_tensor * k_row = ggml_reshape_2d(ctx, k, dkv, 1);
        ggml_tensor * v_row = ggml_reshape_2d(ctx, v, dkv, 1);
        k_rows[il]          = k_rows[il] == nullptr ? k_row : ggml_concat(ctx, k_rows[il], k_row, 1);
        v_rows[il]          = v_rows[il] == nullptr ? v_row : ggml_concat(ctx, v_rows[il], v_row, 1);
        // the 16-row cache: rows after p are libmtmd's zero fill
        ggml_tensor * k_cache = k_rows[il];
        ggml_tensor * v_cache = v_rows[il];
        if (p + 1 < n_codes) {
            k_cache = ggml_pad(ctx, k_cache, 0, n_codes - (p + 1), 0, 0);
            v_cache = ggml_pad(ctx, v_cache, 0, n_codes - (p + 1), 0, 0);
        }
        ggml_tensor * q_cur = ggml_reshape_4d(ctx, q, dh, hp.n_pred_head, 1, 1);
        ggml_tensor * k_cur = ggml_reshape_4d(ctx, k_cache, dh, hp.n_pred_headkv, n_codes, 1);
        ggml_tensor * v_cur = ggml_reshape_4d(ctx, v_cache, dh, hp.n_pred_headkv, n_codes, 1);
        ggml_tensor * m_row = ggml_view_2d(ctx, mask, n_codes, 1, mask->nb[1], static_cast<size_t>(p) * mask->nb[1]);
        m_row               = ggml_reshape_4d(ctx, m_row, n_codes, 1, 1, 1);
        ggml_tensor * attn =
            attention(ctx, w.get(qwen3tts::code_blk(il, "attn_out")), q_cur, k_cur, v_cur, m_row, scale, flash_attn);
        cur                = ggml_add(ctx, residual, attn);
        ggml_tensor * h2   = ggml_mul(ctx, ggml_rms_norm(ctx, cur, eps), w.get(qwen3tts::code_blk(il, "ln2")));
        ggml_tensor * gate = ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "ffn_gate")), h2);
        ggml_tensor * up   = ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "ffn_up")), h2);
        ggml_tensor * down =
            ggml_mul_mat(ctx, w.get(qwen3tts::code_blk(il, "ffn_down")), ggml_swiglu_split(ctx, gate, up));
        return ggml_add(ctx, cur, down);
    };
    auto table = [&](ggml_tensor * t, int64_t i) {
        return ggml_view_2d(ctx, t, t->ne[0], t->ne[1], t->nb[1], static_cast<size_t>(i) * t->nb[2]);
    };

    // position 0: the hidden state seeds the cache
    {
        ggml_tensor * cur = project_in(h_state);
        for (int il = 0; il < hp.n_pred_layer; ++il) {
            cur = layer(cur, il, 0);
        }
    }
    // positions 1..15: the previous code in, this position's code out (head p - 1, draw p - 1)
    std::vector<ggml_tensor *> codes(n_codes, nullptr);
    codes[0] = code0;
    for (int p = 1; p < n_codes; ++p) {
        ggml_tensor * in_embd = code0_embd;
        if (p >= 2) {
            in_embd = ggml_get_rows(ctx, table(embd_w, p - 2), codes[p - 1]);
            in_embd = ggml_reshape_1d(ctx, in_embd, in_embd->ne[0]);
        }
        ggml_tensor * cur = project_in(in_embd);
        for (int il = 0; il < hp.n_pred_layer; ++il) {
            cur = layer(cur, il, p);
        }
        cur                   = ggml_mul(ctx, ggml_rms_norm(ctx, cur, hp.pred_eps), norm_w);
        ggml_tensor * logits  = ggml_mul_mat(ctx, table(head_w, p - 1), cur);
        ggml_tensor * r       = ggml_view_1d(ctx, rand, 1, static_cast<size_t>(p - 1) * rand->nb[0]);
        codes[p]              = sample(ctx, logits, r, top_k, top_p);
        const std::string key = "code_" + std::to_string(p);
        ggml_set_name(codes[p], key.c_str());
        ggml_set_output(codes[p]);
        g->out[key] = codes[p];
    }
    // the embedding fed back: the 16 codebook embeddings summed in codebook order
    ggml_tensor * out_embd = code0_embd;
    for (int p = 1; p < n_codes; ++p) {
        ggml_tensor * e = ggml_get_rows(ctx, table(embd_w, p - 1), codes[p]);
        out_embd        = ggml_add(ctx, out_embd, ggml_reshape_1d(ctx, e, e->ne[0]));
    }
    ggml_set_name(out_embd, "out_embd");
    ggml_set_output(out_embd);
    g->out["embd"] = out_embd;
    for (int p = 1; p < n_codes; ++p) {
        ggml_build_forward_expand(gf, codes[p]);
    }
    ggml_build_forward_expand(gf, out_embd);
    return g;
}

// ---- code2wav ----------------------------------------------------------------------------------

namespace {

struct c2w_builder {
    ggml_context *                                     ctx;
    ggml_cgraph *                                      gf;
    const weight_set &                                 w;
    const qwen3tts_hparams &                           hp;
    std::map<std::string, ggml_tensor *>               state_in;
    std::vector<std::pair<std::string, ggml_tensor *>> state_out;

    ggml_tensor * left_context(ggml_tensor * x, int pad, const std::string & name, ggml_tensor *& x_full) {
        x_full = x;
        if (pad > 0) {
            x_full = ggml_concat(ctx, state_in.at(name), x, 0);
        }
        return x_full;
    }

    void keep_tail(ggml_tensor * x_full, int pad, const std::string & name) {
        ggml_tensor * tail = ggml_view_2d(ctx, x_full, pad, x_full->ne[1], x_full->nb[1],
                                          static_cast<size_t>(x_full->ne[0] - pad) * x_full->nb[0]);
        state_out.emplace_back(name, ggml_cont(ctx, tail));
    }

    // causal conv1d, stride 1: x [T, IC], w [K, IC, OC] -> [T, OC]
    ggml_tensor * causal_conv1d(ggml_tensor * x, ggml_tensor * wt, ggml_tensor * b, int dilation,
                                const std::string & name) {
        const int     pad = static_cast<int>(wt->ne[0] - 1) * dilation;
        ggml_tensor * x_full;
        left_context(x, pad, name, x_full);
        ggml_tensor * y = ggml_conv_1d(ctx, wt, x_full, 1, 0, dilation);
        y               = ggml_reshape_2d(ctx, y, y->ne[0], y->ne[1]);
        if (b != nullptr) {
            y = ggml_add(ctx, y, ggml_reshape_2d(ctx, b, 1, b->ne[0]));
        }
        if (pad > 0) {
            keep_tail(x_full, pad, name);
        }
        return y;
    }

    // causal depthwise conv1d: x [T, C], w [K, 1, C] -> [T, C]
    ggml_tensor * causal_conv1d_dw(ggml_tensor * x, ggml_tensor * wt, ggml_tensor * b, const std::string & name) {
        const int     pad = static_cast<int>(wt->ne[0] - 1);
        ggml_tensor * x_full;
        left_context(x, pad, name, x_full);
        ggml_tensor * y = ggml_conv_1d_dw(ctx, wt, x_full, 1, 0, 1);
        y               = ggml_reshape_2d(ctx, y, y->ne[0], y->ne[1]);
        if (b != nullptr) {
            y = ggml_add(ctx, y, ggml_reshape_2d(ctx, b, 1, b->ne[0]));
        }
        if (pad > 0) {
            keep_tail(x_full, pad, name);
        }
        return y;
    }

    // causal ConvTranspose1d: x [T, IC], w [K, OC, IC] -> [T * stride, OC]; the (K - stride) tail
    // is added to the next call's head
    ggml_tensor * conv_transpose(ggml_tensor * x, ggml_tensor * wt, ggml_tensor * b, int stride,
                                 const std::string & name) {
        const int     K        = static_cast<int>(wt->ne[0]);
        const int     OC       = static_cast<int>(wt->ne[1]);
        const int     trim     = K - stride;
        const int64_t emit_len = x->ne[0] * stride;
        ggml_tensor * w2       = ggml_reshape_2d(ctx, wt, static_cast<int64_t>(K) * OC, wt->ne[2]);
        w2                     = ggml_cont(ctx, ggml_transpose(ctx, w2));
        ggml_tensor * xt       = ggml_cont(ctx, ggml_transpose(ctx, x));
        ggml_tensor * col      = ggml_mul_mat(ctx, w2, xt);
        ggml_tensor * y        = ggml_col2im_1d(ctx, col, stride, OC, 0);
        ggml_tensor * out      = y;
        if (trim > 0) {
            ggml_tensor * tail = state_in.at(name);
            ggml_tensor * head = ggml_add(ctx, ggml_view_2d(ctx, y, trim, y->ne[1], y->nb[1], 0), tail);
            if (emit_len > trim) {
                ggml_tensor * middle =
                    ggml_view_2d(ctx, y, emit_len - trim, y->ne[1], y->nb[1], static_cast<size_t>(trim) * y->nb[0]);
                out = ggml_concat(ctx, head, middle, 0);
            } else {
                out = head;
            }
            ggml_tensor * new_tail = ggml_cont(
                ctx, ggml_view_2d(ctx, y, trim, y->ne[1], y->nb[1], static_cast<size_t>(emit_len) * y->nb[0]));
            state_out.emplace_back(name, new_tail);
        }
        if (b != nullptr) {
            out = ggml_add(ctx, out, ggml_reshape_2d(ctx, b, 1, b->ne[0]));
        }
        return out;
    }

    // SnakeBeta with the converter's folded alpha / inverse beta: x + sin(alpha x)^2 * beta
    ggml_tensor * snake(ggml_tensor * x, ggml_tensor * alpha, ggml_tensor * beta) {
        ggml_tensor * a = ggml_reshape_2d(ctx, alpha, 1, alpha->ne[0]);
        ggml_tensor * b = ggml_reshape_2d(ctx, beta, 1, beta->ne[0]);
        ggml_build_forward_expand(gf, a);
        ggml_build_forward_expand(gf, b);
        ggml_tensor * s = ggml_sin(ctx, ggml_mul(ctx, x, a));
        s               = ggml_sqr(ctx, s);
        s               = ggml_mul(ctx, s, b);
        return ggml_add(ctx, x, s);
    }

    ggml_tensor * quant_decode(ggml_tensor * codes) {
        const int64_t T     = codes->ne[0];
        auto          group = [&](int g) { return ggml_view_1d(ctx, codes, T, static_cast<size_t>(g) * codes->nb[1]); };
        ggml_tensor * sem   = ggml_get_rows(ctx, w.get("a.gen.wav.quant.first.codebook.weight"), group(0));
        ggml_tensor * sem_out = ggml_mul_mat(ctx, w.get("a.gen.wav.quant.first.out_proj.weight"), sem);
        ggml_tensor * rest    = w.get("a.gen.wav.quant.rest.codebook.weight");
        ggml_tensor * acc     = nullptr;
        for (int g = 1; g <= hp.n_acoustic; ++g) {
            ggml_tensor * cb_g = ggml_view_2d(ctx, rest, rest->ne[0], rest->ne[1], rest->nb[1],
                                              static_cast<size_t>(g - 1) * rest->nb[2]);
            ggml_tensor * e    = ggml_get_rows(ctx, cb_g, group(g));
            acc                = acc != nullptr ? ggml_add(ctx, acc, e) : e;
        }
        ggml_tensor * ac_out = ggml_mul_mat(ctx, w.get("a.gen.wav.quant.rest.out_proj.weight"), acc);
        return ggml_add(ctx, sem_out, ac_out);
    }

    ggml_tensor * tfm_layer(ggml_tensor * cur, int il, bool flash_attn) {
        const int64_t H        = hp.wav_heads;
        const int64_t dh       = hp.d_wav_head;
        const float   scale    = 1.0f / std::sqrt(static_cast<float>(dh));
        const int64_t W        = hp.window;
        const int64_t N        = cur->ne[1];
        const int64_t prefix   = W - 1;
        const int64_t total_kv = prefix + N;
        const float   eps      = hp.wav_eps;

        ggml_tensor * residual = cur;
        ggml_tensor * h        = ggml_mul(ctx, ggml_rms_norm(ctx, cur, eps), w.get(qwen3tts::tfm_blk(il, "ln1")));
        ggml_tensor * q        = ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "attn_q")), h);
        ggml_tensor * k        = ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "attn_k")), h);
        ggml_tensor * v        = ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "attn_v")), h);
        q                      = ggml_reshape_3d(ctx, q, dh, H, N);
        k                      = ggml_reshape_3d(ctx, k, dh, H, N);

        ggml_tensor * base   = ggml_reshape_1d(ctx, state_in.at("tfm_pos"), 1);
        ggml_tensor * offset = ggml_arange(ctx, 0.0f, static_cast<float>(N), 1.0f);
        ggml_tensor * pos    = ggml_cast(ctx, ggml_add(ctx, offset, base), GGML_TYPE_I32);
        q = ggml_rope_ext(ctx, q, pos, nullptr, static_cast<int>(dh), GGML_ROPE_TYPE_NEOX, 0, hp.wav_theta, 1.0f, 0.0f,
                          1.0f, 0.0f, 0.0f);
        k = ggml_rope_ext(ctx, k, pos, nullptr, static_cast<int>(dh), GGML_ROPE_TYPE_NEOX, 0, hp.wav_theta, 1.0f, 0.0f,
                          1.0f, 0.0f, 0.0f);
        if (il == 0) {
            state_out.emplace_back("tfm_pos",
                                   ggml_scale_bias(ctx, state_in.at("tfm_pos"), 1.0f, static_cast<float>(N)));
        }
        ggml_tensor *     k_new  = ggml_reshape_2d(ctx, k, dh * H, N);
        ggml_tensor *     v_new  = ggml_reshape_2d(ctx, v, dh * H, N);
        const std::string kn     = "tfm_k_" + std::to_string(il);
        const std::string vn     = "tfm_v_" + std::to_string(il);
        ggml_tensor *     k_full = ggml_concat(ctx, state_in.at(kn), k_new, 1);
        ggml_tensor *     v_full = ggml_concat(ctx, state_in.at(vn), v_new, 1);
        state_out.emplace_back(kn, ggml_cont(ctx, ggml_view_2d(ctx, k_full, k_full->ne[0], prefix, k_full->nb[1],
                                                               static_cast<size_t>(N) * k_full->nb[1])));
        state_out.emplace_back(vn, ggml_cont(ctx, ggml_view_2d(ctx, v_full, v_full->ne[0], prefix, v_full->nb[1],
                                                               static_cast<size_t>(N) * v_full->nb[1])));

        // banded causal mask, keys before a cold start masked (libmtmd's tfm_layer_forward)
        ggml_tensor * pos_k =
            ggml_reshape_2d(ctx, ggml_arange(ctx, 0.0f, static_cast<float>(total_kv), 1.0f), total_kv, 1);
        ggml_tensor * pos_q = ggml_reshape_2d(
            ctx, ggml_arange(ctx, static_cast<float>(prefix), static_cast<float>(prefix + N), 1.0f), 1, N);
        ggml_tensor * grid   = ggml_repeat_4d(ctx, pos_q, total_kv, N, 1, 1);
        ggml_tensor * diff   = ggml_sub(ctx, grid, pos_k);
        ggml_tensor * causal = ggml_step(ctx, ggml_scale_bias(ctx, diff, 1.0f, 0.5f));
        ggml_tensor * in_win = ggml_step(ctx, ggml_scale_bias(ctx, diff, -1.0f, static_cast<float>(W) - 0.5f));
        ggml_tensor * keep   = ggml_mul(ctx, causal, in_win);
        ggml_tensor * warm =
            ggml_step(ctx, ggml_scale_bias(ctx, ggml_add(ctx, pos_k, base), 1.0f, 0.5f - static_cast<float>(prefix)));
        keep              = ggml_mul(ctx, keep, warm);
        ggml_tensor * msk = ggml_reshape_4d(ctx, ggml_log(ctx, keep), total_kv, N, 1, 1);

        ggml_tensor * q_cur = ggml_reshape_4d(ctx, q, dh, H, N, 1);
        ggml_tensor * k_cur = ggml_reshape_4d(ctx, k_full, dh, H, total_kv, 1);
        ggml_tensor * v_cur = ggml_reshape_4d(ctx, v_full, dh, H, total_kv, 1);
        ggml_tensor * attn =
            attention(ctx, w.get(qwen3tts::tfm_blk(il, "attn_out")), q_cur, k_cur, v_cur, msk, scale, flash_attn);
        attn = ggml_mul(ctx, attn, w.get(qwen3tts::tfm_blk(il, "ls1")));
        cur  = ggml_add(ctx, residual, attn);

        ggml_tensor * residual2 = cur;
        ggml_tensor * h2        = ggml_mul(ctx, ggml_rms_norm(ctx, cur, eps), w.get(qwen3tts::tfm_blk(il, "ln2")));
        ggml_tensor * gate      = ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "ffn_gate")), h2);
        ggml_tensor * up        = ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "ffn_up")), h2);
        ggml_tensor * down =
            ggml_mul_mat(ctx, w.get(qwen3tts::tfm_blk(il, "ffn_down")), ggml_swiglu_split(ctx, gate, up));
        down = ggml_mul(ctx, down, w.get(qwen3tts::tfm_blk(il, "ls2")));
        return ggml_add(ctx, residual2, down);
    }

    // dwconv -> LayerNorm -> pw1 -> GELU -> pw2 -> gamma, residual; x [T, C]
    ggml_tensor * convnext(ggml_tensor * x, int il) {
        ggml_tensor * residual = x;
        ggml_tensor * h =
            causal_conv1d_dw(x, w.get(qwen3tts::up_blk(il, "dwconv", "weight")),
                             w.get(qwen3tts::up_blk(il, "dwconv", "bias")), "up" + std::to_string(il) + "_dwconv");
        ggml_tensor * hc = ggml_cont(ctx, ggml_transpose(ctx, h));
        hc               = ggml_norm(ctx, hc, 1e-6f);
        hc               = ggml_mul(ctx, hc, w.get(qwen3tts::up_blk(il, "norm", "weight")));
        hc               = ggml_add(ctx, hc, w.get(qwen3tts::up_blk(il, "norm", "bias")));
        ggml_tensor * g  = ggml_mul_mat(ctx, w.get(qwen3tts::up_blk(il, "pw1", "weight")), hc);
        g                = ggml_add(ctx, g, w.get(qwen3tts::up_blk(il, "pw1", "bias")));
        g                = ggml_gelu(ctx, g);
        g                = ggml_mul_mat(ctx, w.get(qwen3tts::up_blk(il, "pw2", "weight")), g);
        g                = ggml_add(ctx, g, w.get(qwen3tts::up_blk(il, "pw2", "bias")));
        g                = ggml_mul(ctx, g, w.get(qwen3tts::up_blk(il, "gamma", "")));
        return ggml_add(ctx, residual, ggml_cont(ctx, ggml_transpose(ctx, g)));
    }

    ggml_tensor * decode(ggml_tensor * codes, bool flash_attn) {
        ggml_tensor * hidden = quant_decode(codes);
        ggml_tensor * x      = ggml_cont(ctx, ggml_transpose(ctx, hidden));
        x = causal_conv1d(x, w.get("a.gen.wav.pre_conv.weight"), w.get("a.gen.wav.pre_conv.bias"), 1, "pre_conv");
        ggml_tensor * cur = ggml_cont(ctx, ggml_transpose(ctx, x));
        cur               = ggml_mul_mat(ctx, w.get("a.gen.wav.tfm.in_proj.weight"), cur);
        cur               = ggml_add(ctx, cur, w.get("a.gen.wav.tfm.in_proj.bias"));
        for (int il = 0; il < hp.wav_layers; ++il) {
            cur = tfm_layer(cur, il, flash_attn);
        }
        cur = ggml_rms_norm(ctx, cur, hp.wav_eps);
        cur = ggml_mul(ctx, cur, w.get("a.gen.wav.tfm.output_norm.weight"));
        cur = ggml_mul_mat(ctx, w.get("a.gen.wav.tfm.out_proj.weight"), cur);
        cur = ggml_add(ctx, cur, w.get("a.gen.wav.tfm.out_proj.bias"));

        x = ggml_cont(ctx, ggml_transpose(ctx, cur));
        for (int il = 0; il < 2; ++il) {
            x = conv_transpose(x, w.get(qwen3tts::up_blk(il, "conv", "weight")),
                               w.get(qwen3tts::up_blk(il, "conv", "bias")), 2, "");
            x = convnext(x, il);
        }
        x = causal_conv1d(x, w.get("a.gen.wav.dac.entry.weight"), w.get("a.gen.wav.dac.entry.bias"), 1, "dac_entry");
        for (int il = 0; il < 4; ++il) {
            const std::string blk    = "dac" + std::to_string(il);
            const int         stride = hp.dac_strides[il];
            x = snake(x, w.get(qwen3tts::dac_blk(il, "snake", "alpha")), w.get(qwen3tts::dac_blk(il, "snake", "beta")));
            x = conv_transpose(x, w.get(qwen3tts::dac_blk(il, "conv", "weight")),
                               w.get(qwen3tts::dac_blk(il, "conv", "bias")), stride, blk + "_tail");
            for (int ir = 0; ir < 3; ++ir) {
                ggml_tensor * residual = x;
                ggml_tensor * h        = snake(x, w.get(qwen3tts::dac_res(il, ir, "act1", "alpha")),
                                               w.get(qwen3tts::dac_res(il, ir, "act1", "beta")));
                h                      = causal_conv1d(h, w.get(qwen3tts::dac_res(il, ir, "conv1", "weight")),
                                                       w.get(qwen3tts::dac_res(il, ir, "conv1", "bias")), qwen3tts::k_dac_dilations[ir],
                                                       blk + "_res" + std::to_string(ir));
                h                      = snake(h, w.get(qwen3tts::dac_res(il, ir, "act2", "alpha")),
                                               w.get(qwen3tts::dac_res(il, ir, "act2", "beta")));
                h                      = causal_conv1d(h, w.get(qwen3tts::dac_res(il, ir, "conv2", "weight")),
                                                       w.get(qwen3tts::dac_res(il, ir, "conv2", "bias")), 1, "");
                x                      = ggml_add(ctx, residual, h);
            }
        }
        x = snake(x, w.get("a.gen.wav.dac.post_snake.alpha"), w.get("a.gen.wav.dac.post_snake.beta"));
        x = causal_conv1d(x, w.get("a.gen.wav.dac.post_conv.weight"), w.get("a.gen.wav.dac.post_conv.bias"), 1,
                          "dac_post_conv");
        x = ggml_clamp(ctx, x, -1.0f, 1.0f);
        return ggml_reshape_1d(ctx, x, x->ne[0]);
    }
};

}  // namespace

std::unique_ptr<cached_graph> qwen3tts_gen::build_wav_graph(bool flash_attn) const {
    auto g             = std::make_unique<cached_graph>();
    g->holder          = std::make_unique<graph_holder>();
    ggml_context * ctx = g->holder->ctx();
    c2w_builder    b{ctx, g->holder->gf(), *weights_, hp_, {}, {}};
    ggml_tensor *  codes = input(*g, ggml_new_tensor_2d(ctx, GGML_TYPE_I32, hp_.window, hp_.n_codes()), "inp_codes");
    for (const auto & slot : slots_) {
        const std::string name = "state_in_" + slot.name;
        b.state_in[slot.name]  = input(*g, ggml_new_tensor_2d(ctx, GGML_TYPE_F32, slot.ne0, slot.ne1), name.c_str());
    }
    ggml_tensor * audio = b.decode(codes, flash_attn);
    ggml_set_name(audio, "out_audio");
    ggml_set_output(audio);
    g->out["audio"] = audio;
    ggml_build_forward_expand(g->holder->gf(), audio);
    // state outputs in slot order (libmtmd's byte layout)
    for (const auto & slot : slots_) {
        ggml_tensor * t = nullptr;
        for (auto & so : b.state_out) {
            if (so.first == slot.name) {
                t = so.second;
            }
        }
        if (t == nullptr || t->ne[0] != slot.ne0 || t->ne[1] != slot.ne1) {
            fail(error_code::internal, "code2wav state slot '" + slot.name + "' has no output of its shape");
        }
        ggml_set_name(t, ("state_out_" + slot.name).c_str());
        ggml_set_output(t);
        ggml_build_forward_expand(g->holder->gf(), t);
        g->state_out.emplace_back(slot.name, t);
    }
    if (audio->ne[0] != static_cast<int64_t>(hp_.window) * hp_.samples_per_frame) {
        fail(error_code::internal, "code2wav graph output length differs from the validated shape");
    }
    return g;
}

// ---- speaker encoder ---------------------------------------------------------------------------

namespace {

struct spk_builder {
    ggml_context *     ctx;
    const weight_set & w;

    // conv1d with "same" reflect padding: x [C, T] -> [OC, T]
    ggml_tensor * conv_same(ggml_tensor * x, ggml_tensor * wt, ggml_tensor * b, int dilation) {
        const int     K   = static_cast<int>(wt->ne[0]);
        const int     IC  = static_cast<int>(wt->ne[1]);
        const int     OC  = static_cast<int>(wt->ne[2]);
        const int     pad = ((K - 1) * dilation) / 2;
        ggml_tensor * x_t = ggml_cont(ctx, ggml_transpose(ctx, x));
        if (pad > 0) {
            x_t = ggml_pad_reflect_1d(ctx, x_t, pad, pad);
        }
        ggml_tensor * x4d   = ggml_reshape_4d(ctx, x_t, x_t->ne[0], IC, 1, 1);
        ggml_tensor * dummy = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, K, IC, 1, 1);
        ggml_tensor * col   = ggml_im2col(ctx, dummy, x4d, 1, 1, 0, 0, dilation, 1, false, GGML_TYPE_F32);
        const int64_t T_out = col->ne[1];
        col                 = ggml_reshape_2d(ctx, col, static_cast<int64_t>(K) * IC, T_out);
        ggml_tensor * w2d   = ggml_reshape_2d(ctx, wt, static_cast<int64_t>(K) * IC, OC);
        ggml_tensor * y     = ggml_mul_mat(ctx, w2d, col);
        ggml_mul_mat_set_prec(y, GGML_PREC_F32);
        return ggml_add(ctx, y, ggml_reshape_2d(ctx, b, OC, 1));
    }

    ggml_tensor * conv(ggml_tensor * x, const std::string & prefix, int dilation) {
        return conv_same(x, w.get(prefix + ".weight"), w.get(prefix + ".bias"), dilation);
    }

    ggml_tensor * mean_t(ggml_tensor * x) {  // [C, T] -> [C, 1]
        ggml_tensor * m = ggml_mean(ctx, ggml_cont(ctx, ggml_transpose(ctx, x)));
        return ggml_cont(ctx, ggml_transpose(ctx, m));
    }

    ggml_tensor * res2net(ggml_tensor * x, int bid, int dilation) {
        const int64_t              C  = x->ne[0];
        const int64_t              T  = x->ne[1];
        const int64_t              Cs = C / qwen3tts::k_res2net_scale;
        std::vector<ggml_tensor *> outs;
        ggml_tensor *              prev = nullptr;
        for (int i = 0; i < qwen3tts::k_res2net_scale; ++i) {
            ggml_tensor * c =
                ggml_cont(ctx, ggml_view_2d(ctx, x, Cs, T, x->nb[1], static_cast<size_t>(i) * Cs * x->nb[0]));
            if (i == 0) {
                outs.push_back(c);
                continue;
            }
            ggml_tensor *     in   = i >= 2 ? ggml_add(ctx, c, prev) : c;
            const std::string name = "a.blk." + std::to_string(bid) + ".res2." + std::to_string(i - 1);
            ggml_tensor *     y    = ggml_relu(ctx, conv(in, name, dilation));
            outs.push_back(y);
            prev = y;
        }
        ggml_tensor * acc = outs[0];
        for (int i = 1; i < qwen3tts::k_res2net_scale; ++i) {
            acc = ggml_concat(ctx, acc, outs[i], 0);
        }
        return acc;
    }

    ggml_tensor * block(ggml_tensor * x, int bid, int dilation) {
        const std::string p = "a.blk." + std::to_string(bid) + ".";
        ggml_tensor *     h = ggml_relu(ctx, conv(x, p + "conv_pw1", 1));
        h                   = res2net(h, bid, dilation);
        h                   = ggml_relu(ctx, conv(h, p + "conv_pw2", 1));
        // squeeze-and-excitation
        ggml_tensor * s = ggml_relu(ctx, conv(mean_t(h), p + "se_conv1", 1));
        s               = ggml_sigmoid(ctx, conv(s, p + "se_conv2", 1));
        h               = ggml_mul(ctx, h, s);
        return ggml_add(ctx, h, x);
    }

    ggml_tensor * stats_pool(ggml_tensor * x) {
        const int64_t T        = x->ne[1];
        ggml_tensor * mean     = mean_t(x);
        ggml_tensor * mean_rep = ggml_repeat(ctx, mean, x);
        ggml_tensor * centered = ggml_sub(ctx, x, mean_rep);
        ggml_tensor * var      = mean_t(ggml_sqr(ctx, centered));
        var                    = ggml_scale_bias(ctx, var, 1.0f, 1e-12f);
        ggml_tensor * sd       = ggml_sqrt(ctx, var);
        ggml_tensor * sd_rep   = ggml_repeat(ctx, sd, x);
        ggml_tensor * c        = ggml_concat(ctx, ggml_concat(ctx, x, mean_rep, 0), sd_rep, 0);
        ggml_tensor * a        = ggml_tanh(ctx, ggml_relu(ctx, conv(c, "a.asp_tdnn", 1)));
        a                      = conv(a, "a.asp_attn", 1);
        ggml_tensor * wts =
            ggml_cont(ctx, ggml_transpose(ctx, ggml_soft_max(ctx, ggml_cont(ctx, ggml_transpose(ctx, a)))));
        ggml_tensor * w_mean = ggml_mean(ctx, ggml_cont(ctx, ggml_transpose(ctx, ggml_mul(ctx, wts, x))));
        w_mean               = ggml_scale(ctx, w_mean, static_cast<float>(T));
        w_mean               = ggml_cont(ctx, ggml_transpose(ctx, w_mean));
        ggml_tensor * dev    = ggml_sub(ctx, x, ggml_repeat(ctx, w_mean, x));
        ggml_tensor * w_var =
            ggml_mean(ctx, ggml_cont(ctx, ggml_transpose(ctx, ggml_mul(ctx, wts, ggml_sqr(ctx, dev)))));
        w_var = ggml_scale(ctx, w_var, static_cast<float>(T));
        w_var = ggml_cont(ctx, ggml_transpose(ctx, w_var));
        w_var = ggml_scale_bias(ctx, w_var, 1.0f, 1e-12f);
        return ggml_concat(ctx, w_mean, ggml_sqrt(ctx, w_var), 0);
    }
};

}  // namespace

std::unique_ptr<cached_graph> qwen3tts_gen::build_spk_graph(int64_t n_frames) const {
    auto g             = std::make_unique<cached_graph>();
    g->holder          = std::make_unique<graph_holder>();
    ggml_context * ctx = g->holder->ctx();
    spk_builder    b{ctx, *weights_};
    ggml_tensor *  inp = input(*g, ggml_new_tensor_3d(ctx, GGML_TYPE_F32, n_frames, hp_.spk_mels, 1), "inp_raw");
    ggml_tensor *  mel = ggml_reshape_2d(ctx, inp, inp->ne[0], inp->ne[1]);
    mel                = ggml_cont(ctx, ggml_transpose(ctx, mel));
    ggml_tensor *              cur = ggml_relu(ctx, b.conv(mel, "a.conv1d.0", 1));
    std::vector<ggml_tensor *> outs;
    for (int il = 0; il < 3; ++il) {
        cur = b.block(cur, il + 1, qwen3tts::k_spk_dilations[il]);
        outs.push_back(cur);
    }
    ggml_tensor * c   = ggml_concat(ctx, ggml_concat(ctx, outs[0], outs[1], 0), outs[2], 0);
    ggml_tensor * mfa = ggml_relu(ctx, b.conv(c, "a.conv_out", 1));
    ggml_tensor * emb = b.conv(b.stats_pool(mfa), "mm.a.fc", 1);
    emb               = ggml_cont(ctx, ggml_reshape_1d(ctx, emb, emb->ne[0]));
    ggml_set_name(emb, "spk_embedding");
    ggml_set_output(emb);
    g->out["embd"] = emb;
    ggml_build_forward_expand(g->holder->gf(), emb);
    return g;
}

}  // namespace mm
