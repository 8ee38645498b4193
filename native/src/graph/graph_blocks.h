// Reusable ggml graph blocks shared by every encoder and projector family. Each block builds
// exactly the ops llama.cpp's clip_graph builds (tools/mtmd/clip.cpp: build_norm, build_ffn,
// build_attn), in the same order and types, so our outputs match libmtmd's to the last bits.
#pragma once

#include "ggml.h"

namespace mm::blocks {

enum class ffn_op { gelu, gelu_quick, silu, gelu_erf };
enum class norm_op { layer, rms };

struct graph_ctx {
    ggml_context * ctx        = nullptr;
    ggml_cgraph *  gf         = nullptr;
    bool           flash_attn = false;
};

inline ggml_tensor * mm(const graph_ctx & g, ggml_tensor * w, ggml_tensor * x) {
    return ggml_mul_mat(g.ctx, w, x);
}

inline ggml_tensor * add_opt(const graph_ctx & g, ggml_tensor * x, ggml_tensor * b) {
    return b != nullptr ? ggml_add(g.ctx, x, b) : x;
}

// LayerNorm (ggml_norm) or RMSNorm with optional affine weight and bias (clip_graph::build_norm).
inline ggml_tensor * norm(const graph_ctx & g, ggml_tensor * cur, ggml_tensor * w, ggml_tensor * b, float eps,
                          norm_op op = norm_op::layer) {
    cur = op == norm_op::rms ? ggml_rms_norm(g.ctx, cur, eps) : ggml_norm(g.ctx, cur, eps);
    if (w != nullptr) {
        cur = ggml_mul(g.ctx, cur, w);
    }
    if (b != nullptr) {
        cur = ggml_add(g.ctx, cur, b);
    }
    return cur;
}

// up (+ gate) → activation → down, each with optional bias (clip_graph::build_ffn).
inline ggml_tensor * ffn(const graph_ctx & g, ggml_tensor * cur, ggml_tensor * up, ggml_tensor * up_b,
                         ggml_tensor * gate, ggml_tensor * gate_b, ggml_tensor * down, ggml_tensor * down_b,
                         ffn_op op) {
    ggml_tensor * tmp = add_opt(g, mm(g, up, cur), up_b);
    if (gate != nullptr) {
        cur = add_opt(g, mm(g, gate, cur), gate_b);
    } else {
        cur = tmp;
    }
    switch (op) {
        case ffn_op::silu:
            cur = gate != nullptr ? ggml_swiglu_split(g.ctx, cur, tmp) : ggml_silu(g.ctx, cur);
            break;
        case ffn_op::gelu:
            cur = gate != nullptr ? ggml_geglu_split(g.ctx, cur, tmp) : ggml_gelu(g.ctx, cur);
            break;
        case ffn_op::gelu_quick:
            cur = gate != nullptr ? ggml_geglu_quick_split(g.ctx, cur, tmp) : ggml_gelu_quick(g.ctx, cur);
            break;
        case ffn_op::gelu_erf:
            cur = gate != nullptr ? ggml_geglu_erf_split(g.ctx, cur, tmp) : ggml_gelu_erf(g.ctx, cur);
            break;
    }
    cur = mm(g, down, cur);
    return add_opt(g, cur, down_b);
}

// Multi-head self-attention over q/k/v of shape [d_head, n_head, n_pos], then the output
// projection (clip_graph::build_attn). With flash attention K, V and the mask are cast to f16, as
// libmtmd does. `mask` is [n_pos, n_pos] f32 (0 or -inf), or nullptr; a mask several blocks share
// can be cast to f16 once by the caller, and is then used as it is (libmtmd copies it per block).
inline ggml_tensor * attn(const graph_ctx & g, ggml_tensor * wo, ggml_tensor * wo_b, ggml_tensor * q_cur,
                          ggml_tensor * k_cur, ggml_tensor * v_cur, float kq_scale, ggml_tensor * mask = nullptr) {
    // keep q, k, v together in the graph (fewer splits), like clip_graph
    ggml_build_forward_order(g.gf, q_cur);
    ggml_build_forward_order(g.gf, k_cur);
    ggml_build_forward_order(g.gf, v_cur);

    ggml_tensor * q = ggml_permute(g.ctx, q_cur, 0, 2, 1, 3);
    ggml_tensor * k = ggml_permute(g.ctx, k_cur, 0, 2, 1, 3);
    ggml_tensor * cur;
    if (g.flash_attn) {
        ggml_tensor * v = ggml_permute(g.ctx, v_cur, 0, 2, 1, 3);
        k               = ggml_cast(g.ctx, k, GGML_TYPE_F16);
        v               = ggml_cast(g.ctx, v, GGML_TYPE_F16);
        if (mask != nullptr && mask->type != GGML_TYPE_F16) {
            mask = ggml_cast(g.ctx, mask, GGML_TYPE_F16);
        }
        cur = ggml_flash_attn_ext(g.ctx, q, k, v, mask, kq_scale, 0.0f, 0.0f);
        ggml_flash_attn_ext_set_prec(cur, GGML_PREC_F32);
        cur = ggml_reshape_2d(g.ctx, cur, cur->ne[0] * cur->ne[1], cur->ne[2] * cur->ne[3]);
    } else {
        ggml_tensor * v   = ggml_cont(g.ctx, ggml_permute(g.ctx, v_cur, 1, 2, 0, 3));
        ggml_tensor * kq  = ggml_mul_mat(g.ctx, k, q);
        kq                = ggml_soft_max_ext(g.ctx, kq, mask, kq_scale, 0.0f);
        ggml_tensor * kqv = ggml_mul_mat(g.ctx, v, kq);
        cur               = ggml_permute(g.ctx, kqv, 0, 2, 1, 3);
        cur               = ggml_cont_2d(g.ctx, cur, cur->ne[0] * cur->ne[1], cur->ne[2] * cur->ne[3]);
    }
    if (wo != nullptr) {
        cur = mm(g, wo, cur);
    }
    return add_opt(g, cur, wo_b);
}

}  // namespace mm::blocks
