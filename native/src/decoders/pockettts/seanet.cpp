#include "decoders/pockettts/seanet.h"

#include "decoders/pockettts/pockettts_names.h"
#include "graph/runtime.h"

namespace mm::pockettts {

namespace {

int64_t div_ceil(int64_t a, int64_t b) {
    return a / b + (a % b != 0 ? 1 : 0);
}

}  // namespace

ggml_tensor * seanet_builder::conv1d(ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, int stride, int dilation,
                                     bool pad_replicate, const std::string & state) {
    const int64_t k_size  = (w->ne[0] - 1) * dilation + 1;
    const int64_t p_total = k_size - stride;
    // trailing padding so the last frame is kept (pad_for_conv1d in the reference)
    const int64_t n_frames  = div_ceil(x->ne[0] - k_size + p_total, stride);
    const int64_t ideal_len = n_frames * stride + k_size - p_total;
    const int64_t p_extra   = ideal_len - x->ne[0];

    if (!state.empty() && p_total > 0) {
        x = ggml_concat(ctx_, state_in.at(state), x, 0);
        state_out.emplace_back(state,
                               ggml_cont(ctx_, ggml_view_2d(ctx_, x, p_total, x->ne[1], x->nb[1],
                                                            static_cast<size_t>(x->ne[0] - p_total) * x->nb[0])));
    } else if (pad_replicate && p_total > 0) {
        ggml_tensor * first = ggml_view_2d(ctx_, x, 1, x->ne[1], x->nb[1], 0);
        ggml_tensor * left  = ggml_repeat_4d(ctx_, first, p_total, x->ne[1], 1, 1);
        x                   = ggml_concat(ctx_, left, x, 0);
        x                   = ggml_pad_ext(ctx_, x, 0, static_cast<int>(p_extra), 0, 0, 0, 0, 0, 0);
    } else {
        x = ggml_pad_ext(ctx_, x, static_cast<int>(p_total), static_cast<int>(p_extra), 0, 0, 0, 0, 0, 0);
    }
    ggml_tensor * y = ggml_conv_1d(ctx_, w, x, stride, 0, dilation);
    y               = ggml_reshape_2d(ctx_, y, y->ne[0], y->ne[1]);
    if (b != nullptr) {
        y = ggml_add(ctx_, y, ggml_reshape_2d(ctx_, b, 1, b->ne[0]));
    }
    return y;
}

ggml_tensor * seanet_builder::conv_transpose1d(ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, int stride,
                                               const std::string & state) {
    const int64_t K         = w->ne[0];
    const int64_t T         = x->ne[0];
    const int64_t p_total   = K - stride;
    const bool    depthwise = w->ne[1] == 1 && w->ne[2] > 1;
    const int64_t OC        = depthwise ? w->ne[2] : w->ne[1];
    const int64_t emit_len  = T * stride;

    // one column per input step: the [K, OC] window col2im adds at t * stride
    ggml_tensor * col;
    if (depthwise) {
        ggml_tensor * krn = ggml_reshape_3d(ctx_, w, 1, K, OC);
        ggml_tensor * xs  = ggml_reshape_3d(ctx_, x, 1, T, OC);
        col               = ggml_mul_mat(ctx_, krn, xs);                           // [K, T, OC]
        col               = ggml_cont(ctx_, ggml_permute(ctx_, col, 0, 2, 1, 3));  // [K, OC, T]
        col               = ggml_reshape_2d(ctx_, col, K * OC, T);
    } else {
        ggml_tensor * w2 = ggml_reshape_2d(ctx_, w, K * OC, w->ne[2]);
        w2               = ggml_cont(ctx_, ggml_transpose(ctx_, w2));  // [IC, K * OC]
        ggml_tensor * xt = ggml_cont(ctx_, ggml_transpose(ctx_, x));   // [IC, T]
        col              = ggml_mul_mat(ctx_, w2, xt);
    }
    ggml_tensor * full = ggml_col2im_1d(ctx_, col, stride, static_cast<int>(OC), 0);  // [emit_len + p_total, OC]

    ggml_tensor * out;
    if (state.empty() || p_total == 0) {
        out = ggml_cont(ctx_, ggml_view_2d(ctx_, full, emit_len, full->ne[1], full->nb[1], 0));
    } else {
        // the previous call's overlap added to this call's head
        ggml_tensor * head =
            ggml_add(ctx_, ggml_view_2d(ctx_, full, p_total, full->ne[1], full->nb[1], 0), state_in.at(state));
        if (emit_len > p_total) {
            ggml_tensor * rest = ggml_view_2d(ctx_, full, emit_len - p_total, full->ne[1], full->nb[1],
                                              static_cast<size_t>(p_total) * full->nb[0]);
            out                = ggml_concat(ctx_, head, rest, 0);
        } else {
            out = head;
        }
        state_out.emplace_back(state, ggml_cont(ctx_, ggml_view_2d(ctx_, full, p_total, full->ne[1], full->nb[1],
                                                                   static_cast<size_t>(emit_len) * full->nb[0])));
    }
    if (b != nullptr) {
        out = ggml_add(ctx_, out, ggml_reshape_2d(ctx_, b, 1, b->ne[0]));
    }
    return out;
}

ggml_tensor * seanet_builder::res_unit(ggml_tensor * x, const char * prefix, int i, const std::string & state) {
    ggml_tensor * h = ggml_elu(ctx_, x);
    h               = conv1d(h, w_.get(names::seanet_blk(prefix, i, "res_conv1", "weight")),
                             w_.get(names::seanet_blk(prefix, i, "res_conv1", "bias")), 1, 1, false, state);
    h               = ggml_elu(ctx_, h);
    // pointwise: no left context to carry
    h = conv1d(h, w_.get(names::seanet_blk(prefix, i, "res_conv2", "weight")),
               w_.get(names::seanet_blk(prefix, i, "res_conv2", "bias")), 1, 1);
    return ggml_add(ctx_, x, h);
}

ggml_tensor * seanet_builder::encode(ggml_tensor * x) {
    const char *  p = names::p_enc_seanet;
    ggml_tensor * cur =
        conv1d(x, w_.get(names::seanet(p, "conv_in", "weight")), w_.get(names::seanet(p, "conv_in", "bias")), 1, 1);
    for (int i = 0; i < 3; ++i) {
        cur = res_unit(cur, p, i, "");
        cur = ggml_elu(ctx_, cur);
        cur = conv1d(cur, w_.get(names::seanet_blk(p, i, "scale_conv", "weight")),
                     w_.get(names::seanet_blk(p, i, "scale_conv", "bias")), k_ratios[i], 1);
    }
    cur = ggml_elu(ctx_, cur);
    return conv1d(cur, w_.get(names::seanet(p, "conv_out", "weight")), w_.get(names::seanet(p, "conv_out", "bias")), 1,
                  1);
}

ggml_tensor * seanet_builder::decode(ggml_tensor * x) {
    const char *  p      = names::p_dec_seanet;
    const bool    stream = !state_in.empty();
    ggml_tensor * cur    = conv1d(x, w_.get(names::seanet(p, "conv_in", "weight")),
                                  w_.get(names::seanet(p, "conv_in", "bias")), 1, 1, false, stream ? "dec_in" : "");
    for (int i = 0; i < 3; ++i) {
        const std::string id = std::to_string(i);
        cur                  = ggml_elu(ctx_, cur);
        cur                  = conv_transpose1d(cur, w_.get(names::seanet_blk(p, i, "scale_conv", "weight")),
                                                w_.get(names::seanet_blk(p, i, "scale_conv", "bias")), k_ratios[2 - i],
                               stream ? "dec_up_" + id : "");
        cur                  = res_unit(cur, p, i, stream ? "dec_res_" + id : "");
    }
    cur = ggml_elu(ctx_, cur);
    return conv1d(cur, w_.get(names::seanet(p, "conv_out", "weight")), w_.get(names::seanet(p, "conv_out", "bias")), 1,
                  1, false, stream ? "dec_out" : "");
}

}  // namespace mm::pockettts
