#include "projectors/train/projector_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "graph/runtime.h"

namespace mm {

namespace {

struct ctx_deleter {
    void operator()(ggml_context * c) const { ggml_free(c); }
};

using ctx_ptr = std::unique_ptr<ggml_context, ctx_deleter>;

// GELU (tanh approximation, as libmtmd's ggml_gelu) built from ops that have a backward pass:
// x * sigmoid(2 * sqrt(2 / pi) * (x + 0.044715 x^3)), the sigmoid computed as
// (step(y) + (1 - step(y)) e) / (1 + e) with e = exp(-|y|), which never overflows.
ggml_tensor * gelu_differentiable(ggml_context * ctx, ggml_tensor * x) {
    constexpr float c     = 0.7978845608028654f;  // sqrt(2 / pi)
    ggml_tensor *   x3    = ggml_mul(ctx, ggml_sqr(ctx, x), x);
    ggml_tensor *   y     = ggml_scale(ctx, ggml_add(ctx, x, ggml_scale(ctx, x3, 0.044715f)), 2.0f * c);
    ggml_tensor *   e     = ggml_exp(ctx, ggml_neg(ctx, ggml_abs(ctx, y)));
    ggml_tensor *   s     = ggml_step(ctx, y);
    ggml_tensor *   num   = ggml_add(ctx, s, ggml_sub(ctx, e, ggml_mul(ctx, s, e)));
    ggml_tensor *   den   = ggml_scale_bias(ctx, e, 1.0f, 1.0f);
    ggml_tensor *   sigma = ggml_div(ctx, num, den);
    return ggml_mul(ctx, x, sigma);
}

// The runtime forgets a graph when it goes out of scope (a later graph may reuse its address).
struct forget_on_exit {
    runtime *     rt;
    ggml_cgraph * gf;
    ~forget_on_exit() { rt->forget(gf); }
};

// Positions 0..T-1 and the causal mask [T, T] (0 where a row may attend, -inf after it).
void causal_inputs(int T, std::vector<int32_t> & pos, std::vector<float> & mask) {
    pos.resize(static_cast<size_t>(T));
    mask.resize(static_cast<size_t>(T) * T);
    for (int t = 0; t < T; ++t) {
        pos[t] = t;
        for (int k = 0; k < T; ++k) {
            mask[static_cast<size_t>(t) * T + k] = k <= t ? 0.0f : -INFINITY;
        }
    }
}

constexpr size_t k_max_nodes_base = 8192;
constexpr int    k_ldpv2_grid     = 24;  // libmtmd's ldpv2 takes a 24x24 patch grid

}  // namespace

projector_trainer::~projector_trainer() {
    if (pbuf_ != nullptr) {
        ggml_backend_buffer_free(pbuf_);
    }
    if (pctx_ != nullptr) {
        ggml_free(pctx_);
    }
}

std::unique_ptr<projector_trainer> projector_trainer::create(const trainer_params & params) {
    if (params.projector != "mlp" && params.projector != "linear" && params.projector != "ldpv2") {
        fail(error_code::invalid_argument,
             "projector must be 'mlp', 'linear' or 'ldpv2' (got '" + params.projector + "')");
    }
    if (params.n_embd_v < 1 || params.n_embd_v > (1 << 16)) {
        fail(error_code::invalid_argument, "the encoder feature width must be in [1, 65536]");
    }
    std::unique_ptr<projector_trainer> t(new projector_trainer());
    t->params_ = params;
    runtime_params rp;
    rp.n_threads = std::max(1, params.n_threads);
    rp.use_gpu   = params.use_gpu;
    t->rt_       = std::make_unique<runtime>(rp);
    t->llm_      = train_llama::load(params.model_path, ggml_backend_cpu_buffer_type(), params.cancel);
    const int E  = t->llm_->hparams().n_embd;
    const int H  = params.projector == "mlp" ? params.n_hidden : E;
    if (H < 1 || H > (1 << 16)) {
        fail(error_code::invalid_argument, "the projector's hidden width must be in [1, 65536]");
    }
    t->params_.n_hidden = H;
    if (params.projector == "ldpv2") {
        // MobileVLM V2 (libmtmd's llava graph): MLP, 2x2 average pool of the 24x24 grid, then the
        // positional-encoding generator (3x3 depthwise conv + bias) added back
        t->infos_.push_back({"mm.model.mlp.0.weight", {params.n_embd_v, E}});
        t->infos_.push_back({"mm.model.mlp.0.bias", {E}});
        t->infos_.push_back({"mm.model.mlp.2.weight", {E, E}});
        t->infos_.push_back({"mm.model.mlp.2.bias", {E}});
        t->infos_.push_back({"mm.model.peg.0.weight", {3, 3, 1, E}});
        t->infos_.push_back({"mm.model.peg.0.bias", {E}});
    } else {
        t->infos_.push_back({"mm.0.weight", {params.n_embd_v, H}});
        t->infos_.push_back({"mm.0.bias", {H}});
        if (params.projector == "mlp") {
            t->infos_.push_back({"mm.2.weight", {H, E}});
            t->infos_.push_back({"mm.2.bias", {E}});
        }
    }
    const size_t     n = t->infos_.size();
    ggml_init_params ip{(3 * n + 2) * ggml_tensor_overhead(), nullptr, /*no_alloc =*/true};
    t->pctx_ = ggml_init(ip);
    if (t->pctx_ == nullptr) {
        fail(error_code::out_of_memory, "failed to create the parameter context");
    }
    for (const param_info & info : t->infos_) {
        auto make = [&](const std::string & name) {
            ggml_tensor * x =
                ggml_new_tensor(t->pctx_, GGML_TYPE_F32, static_cast<int>(info.ne.size()), info.ne.data());
            ggml_set_name(x, name.c_str());
            return x;
        };
        ggml_tensor * p = make(info.name);
        ggml_set_param(p);
        t->params_t_.push_back(p);
        t->m_t_.push_back(make(info.name + ".adam_m"));
        t->v_t_.push_back(make(info.name + ".adam_v"));
    }
    t->one_ = ggml_new_tensor_1d(t->pctx_, GGML_TYPE_F32, 1);
    ggml_set_name(t->one_, "loss_seed");
    t->pbuf_ = ggml_backend_alloc_ctx_tensors_from_buft(t->pctx_, ggml_backend_cpu_buffer_type());
    if (t->pbuf_ == nullptr) {
        fail(error_code::out_of_memory, "failed to allocate the projector parameters");
    }
    // the runtime keeps addresses of weight buffers across graph allocations
    ggml_backend_buffer_set_usage(t->pbuf_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_buffer_clear(t->pbuf_, 0);
    const float one = 1.0f;
    ggml_backend_tensor_set(t->one_, &one, 0, sizeof(one));
    return t;
}

void projector_trainer::set_data(std::vector<float> features, int n_images, int n_patches,
                                 std::vector<train_sample> samples) {
    std::lock_guard<std::mutex> lock(mu_);
    if (n_images < 0 || n_patches < 1 ||
        features.size() != static_cast<size_t>(n_images) * n_patches * params_.n_embd_v) {
        fail(error_code::invalid_argument, "features must hold n_images * n_patches * n_embd_v floats");
    }
    int out_rows = n_patches;
    if (params_.projector == "ldpv2") {
        if (n_patches != k_ldpv2_grid * k_ldpv2_grid) {
            fail(error_code::invalid_argument,
                 "ldpv2 needs a 24x24 patch grid (576 feature rows), the features have " + std::to_string(n_patches));
        }
        out_rows = n_patches / 4;
    }
    const int n_vocab = llm_->hparams().n_vocab;
    for (size_t i = 0; i < samples.size(); ++i) {
        const train_sample & s   = samples[i];
        const std::string    tag = "sample " + std::to_string(i) + ": ";
        if (s.image < 0 || s.image >= n_images) {
            fail(error_code::invalid_argument, tag + "image index out of range");
        }
        if (s.image_pos < 0 || s.image_pos > static_cast<int32_t>(s.tokens.size())) {
            fail(error_code::invalid_argument, tag + "image position out of range");
        }
        const int64_t len = static_cast<int64_t>(s.tokens.size()) + out_rows;
        if (len > llm_->hparams().n_ctx_train) {
            fail(error_code::out_of_context, tag + std::to_string(len) + " positions exceed the model's context of " +
                                                 std::to_string(llm_->hparams().n_ctx_train));
        }
        for (int32_t tok : s.tokens) {
            if (tok < 0 || tok >= n_vocab) {
                fail(error_code::invalid_argument,
                     tag + "token id " + std::to_string(tok) + " is out of the vocabulary");
            }
        }
        if (s.targets.empty()) {
            fail(error_code::invalid_argument, tag + "no answer tokens");
        }
        for (int32_t q : s.targets) {
            // a target is a text token after the picture, predicted from the row before it
            if (q < s.image_pos + out_rows || q >= len) {
                fail(error_code::invalid_argument, tag + "target position " + std::to_string(q) + " out of range");
            }
        }
    }
    features_  = std::move(features);
    n_images_  = n_images;
    n_patches_ = n_patches;
    n_out_     = out_rows;
    samples_   = std::move(samples);
}

void projector_trainer::set_param(int i, const float * data, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (i < 0 || i >= static_cast<int>(params_t_.size()) || n != static_cast<size_t>(ggml_nelements(params_t_[i]))) {
        fail(error_code::invalid_argument, "parameter index or size does not match");
    }
    ggml_backend_tensor_set(params_t_[i], data, 0, n * sizeof(float));
}

std::vector<float> projector_trainer::get_param(int i) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (i < 0 || i >= static_cast<int>(params_t_.size())) {
        fail(error_code::invalid_argument, "parameter index out of range");
    }
    std::vector<float> out(static_cast<size_t>(ggml_nelements(params_t_[i])));
    ggml_backend_tensor_get(params_t_[i], out.data(), 0, out.size() * sizeof(float));
    return out;
}

void projector_trainer::set_moments(int i, const float * m, const float * v, size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (i < 0 || i >= static_cast<int>(params_t_.size()) || n != static_cast<size_t>(ggml_nelements(params_t_[i]))) {
        fail(error_code::invalid_argument, "parameter index or size does not match");
    }
    ggml_backend_tensor_set(m_t_[i], m, 0, n * sizeof(float));
    ggml_backend_tensor_set(v_t_[i], v, 0, n * sizeof(float));
}

std::vector<float> projector_trainer::get_moment(int i, bool second) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (i < 0 || i >= static_cast<int>(params_t_.size())) {
        fail(error_code::invalid_argument, "parameter index out of range");
    }
    ggml_tensor *      t = second ? v_t_[i] : m_t_[i];
    std::vector<float> out(static_cast<size_t>(ggml_nelements(t)));
    ggml_backend_tensor_get(t, out.data(), 0, out.size() * sizeof(float));
    return out;
}

ggml_tensor * projector_trainer::build_projector(ggml_context * ctx, ggml_tensor * feats) const {
    // feats: [n_embd_v, n_patches, n_images]
    ggml_tensor * x = ggml_add(ctx, ggml_mul_mat(ctx, params_t_[0], feats), params_t_[1]);
    if (params_.projector == "linear") {
        return ggml_reshape_2d(ctx, x, x->ne[0], x->ne[1] * x->ne[2]);
    }
    x = ggml_mul_mat(ctx, params_t_[2], gelu_differentiable(ctx, x));
    if (params_.projector == "mlp") {
        x = ggml_add(ctx, x, params_t_[3]);
        return ggml_reshape_2d(ctx, x, x->ne[0], x->ne[1] * x->ne[2]);
    }
    // ldpv2, as libmtmd's graph computes it (the depthwise conv as ggml_conv_2d_dw does: im2col and
    // a per-channel product), laid out with the pictures inside the channels ([.., B * D], picture
    // fastest) so that the kernel [9, 1, D] broadcasts over the pictures and its gradient is summed
    // over them.
    const int64_t D = x->ne[0], B = x->ne[2], G = k_ldpv2_grid, g = G / 2;
    // mlp.2's bias is added after the permute: ggml's backward of a broadcast add needs a
    // contiguous gradient, and the permute's is not
    ggml_tensor * rows = ggml_add(ctx, ggml_cont(ctx, ggml_permute(ctx, x, 2, 0, 1, 3)),
                                  ggml_reshape_3d(ctx, params_t_[3], 1, 1, D));  // [G * G, B, D]
    ggml_tensor * grid = ggml_reshape_4d(ctx, rows, G, G, B, D);
    ggml_tensor * pool = ggml_pool_2d(ctx, grid, GGML_OP_POOL_AVG, 2, 2, 2, 2, 0, 0);  // [g, g, B, D]
    // im2col reads only its kernel's shape: give it a stand-in, so that the kernel's gradient comes
    // from the product below alone (ggml's im2col backward gives none to its first operand)
    ggml_tensor * shape = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, 3, 3, 1, D);
    ggml_tensor * cols  = ggml_im2col(ctx, shape, ggml_reshape_4d(ctx, pool, g, g, 1, B * D), 1, 1, 1, 1, 1, 1, true,
                                      GGML_TYPE_F32);  // [9, g, g, B * D]
    ggml_tensor * conv  = ggml_mul_mat(ctx, ggml_reshape_3d(ctx, params_t_[4], 9, 1, D),
                                       ggml_reshape_3d(ctx, cols, 9, g * g, B * D));  // [1, g * g, B * D]
    auto          channels_first = [&](ggml_tensor * t) {                             // [g * g, B, D] -> [D, g * g, B]
        return ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, t, g * g, B, D), 1, 2, 0, 3));
    };
    ggml_tensor * y = ggml_add(ctx, ggml_add(ctx, channels_first(conv), params_t_[5]), channels_first(pool));
    return ggml_reshape_2d(ctx, y, D, g * g * B);
}

step_result projector_trainer::step(const std::vector<int32_t> & batch, const adamw_hyper & hyper,
                                    const std::atomic<bool> * cancel) {
    return run(batch, mode::train, &hyper, nullptr, cancel);
}

step_result projector_trainer::evaluate(const std::vector<int32_t> & batch, std::vector<std::vector<float>> * grads,
                                        const std::atomic<bool> * cancel) {
    return run(batch, grads != nullptr ? mode::grads : mode::forward, nullptr, grads, cancel);
}

step_result projector_trainer::run(const std::vector<int32_t> & batch, mode md, const adamw_hyper * hyper,
                                   std::vector<std::vector<float>> * grads, const std::atomic<bool> * cancel) {
    std::lock_guard<std::mutex> lock(mu_);
    if (batch.empty()) {
        fail(error_code::invalid_argument, "the batch is empty");
    }
    const train_llama_hparams & hp  = llm_->hparams();
    const int                   Pin = n_patches_;
    const int                   P   = n_out_;
    const int                   Dv  = params_.n_embd_v;
    const int                   V   = hp.n_vocab;
    int                         T   = 0;
    std::vector<int>            local(static_cast<size_t>(n_images_), -1);
    std::vector<int>            images;
    for (int32_t idx : batch) {
        if (idx < 0 || idx >= static_cast<int32_t>(samples_.size())) {
            fail(error_code::invalid_argument, "sample index " + std::to_string(idx) + " out of range");
        }
        const train_sample & s = samples_[idx];
        T                      = std::max(T, static_cast<int>(s.tokens.size()) + P);
        if (local[s.image] < 0) {
            local[s.image] = static_cast<int>(images.size());
            images.push_back(s.image);
        }
    }
    const int    B  = static_cast<int>(batch.size());
    const size_t TB = static_cast<size_t>(T) * B;

    // host inputs
    std::vector<float> feats(static_cast<size_t>(images.size()) * Pin * Dv);
    for (size_t j = 0; j < images.size(); ++j) {
        std::memcpy(feats.data() + j * Pin * Dv, features_.data() + static_cast<size_t>(images[j]) * Pin * Dv,
                    static_cast<size_t>(Pin) * Dv * sizeof(float));
    }
    std::vector<int32_t> img_idx(TB, 0), tok(TB, 0), pos(static_cast<size_t>(T)), ans_idx, label_ids;
    std::vector<float>   img_mask(TB, 0.0f), txt_mask(TB, 0.0f), kq_mask(static_cast<size_t>(T) * T);
    for (int b = 0; b < B; ++b) {
        const train_sample & s    = samples_[batch[b]];
        const int            L    = static_cast<int>(s.tokens.size()) + P;
        const size_t         base = static_cast<size_t>(b) * T;
        for (int t = 0; t < L; ++t) {
            if (t < s.image_pos) {
                tok[base + t]      = s.tokens[t];
                txt_mask[base + t] = 1.0f;
            } else if (t < s.image_pos + P) {
                img_idx[base + t]  = local[s.image] * P + (t - s.image_pos);
                img_mask[base + t] = 1.0f;
            } else {
                tok[base + t]      = s.tokens[t - P];
                txt_mask[base + t] = 1.0f;
            }
        }
        for (int32_t q : s.targets) {
            ans_idx.push_back(static_cast<int32_t>(base) + q - 1);
            label_ids.push_back(s.tokens[q - P]);
        }
    }
    causal_inputs(T, pos, kq_mask);
    const int          A = static_cast<int>(ans_idx.size());
    std::vector<float> labels(static_cast<size_t>(A) * V, 0.0f);
    for (int a = 0; a < A; ++a) {
        labels[static_cast<size_t>(a) * V + label_ids[a]] = 1.0f;
    }

    // the graph
    const size_t max_nodes = k_max_nodes_base + 256 * static_cast<size_t>(hp.n_layer);
    const bool   backward  = md != mode::forward;
    meta_.resize(max_nodes * ggml_tensor_overhead() * 2 + ggml_graph_overhead_custom(max_nodes, backward));
    ggml_init_params ip{meta_.size(), meta_.data(), /*no_alloc =*/true};
    ctx_ptr          owner(ggml_init(ip));
    ggml_context *   ctx = owner.get();
    if (ctx == nullptr) {
        fail(error_code::out_of_memory, "failed to create the training graph context");
    }
    ggml_cgraph * gf    = ggml_new_graph_custom(ctx, max_nodes, backward);
    auto          input = [&](ggml_type type, int64_t n0, int64_t n1 = 1) {
        ggml_tensor * x = ggml_new_tensor_2d(ctx, type, n0, n1);
        ggml_set_input(x);
        return x;
    };
    ggml_tensor * feats_t = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, Dv, Pin, static_cast<int64_t>(images.size()));
    ggml_set_input(feats_t);
    ggml_tensor * img_t    = input(GGML_TYPE_I32, static_cast<int64_t>(TB));
    ggml_tensor * imgm_t   = input(GGML_TYPE_F32, 1, static_cast<int64_t>(TB));
    ggml_tensor * tok_t    = input(GGML_TYPE_I32, static_cast<int64_t>(TB));
    ggml_tensor * txtm_t   = input(GGML_TYPE_F32, 1, static_cast<int64_t>(TB));
    ggml_tensor * pos_t    = input(GGML_TYPE_I32, T);
    ggml_tensor * mask_t   = input(GGML_TYPE_F32, T, T);
    ggml_tensor * ans_t    = input(GGML_TYPE_I32, A);
    ggml_tensor * labels_t = input(GGML_TYPE_F32, V, A);
    ggml_tensor * ids_t    = input(GGML_TYPE_I32, A);

    ggml_tensor * emb  = build_projector(ctx, feats_t);  // [n_embd, P * images]
    ggml_tensor * x    = ggml_add(ctx, ggml_mul(ctx, ggml_get_rows(ctx, emb, img_t), imgm_t),
                                  ggml_mul(ctx, ggml_get_rows(ctx, llm_->token_embd(), tok_t), txtm_t));
    ggml_tensor * h    = llm_->blocks(ctx, x, pos_t, mask_t, T, B);
    ggml_tensor * lg   = llm_->head(ctx, ggml_get_rows(ctx, h, ans_t));  // [n_vocab, A]
    ggml_tensor * loss = ggml_cross_entropy_loss(ctx, lg, labels_t);
    ggml_set_output(loss);
    ggml_set_loss(loss);
    ggml_tensor * ncorrect = ggml_count_equal(ctx, ggml_argmax(ctx, lg), ids_t);
    ggml_set_output(ncorrect);
    ggml_build_forward_expand(gf, loss);
    ggml_build_forward_expand(gf, ncorrect);

    ggml_tensor * hyper_t = nullptr;
    if (backward) {
        std::vector<ggml_tensor *> accs(static_cast<size_t>(ggml_graph_n_nodes(gf)), nullptr);
        for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
            if (ggml_graph_node(gf, i) == loss) {
                accs[i] = one_;  // d loss / d loss = 1
            }
        }
        ggml_build_backward_expand(ctx, gf, accs.data());
        if (md == mode::train) {
            hyper_t = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 7);
            ggml_set_input(hyper_t);
        }
        for (size_t i = 0; i < params_t_.size(); ++i) {
            ggml_tensor * g = ggml_graph_get_grad(gf, params_t_[i]);
            if (g == nullptr) {
                fail(error_code::internal, "no gradient reached " + infos_[i].name);
            }
            if (md == mode::train) {
                ggml_build_forward_expand(gf, ggml_opt_step_adamw(ctx, params_t_[i], g, m_t_[i], v_t_[i], hyper_t));
            } else {
                ggml_set_output(g);
            }
        }
    }

    const forget_on_exit forget{rt_.get(), gf};
    rt_->allocate(gf);
    ggml_backend_tensor_set(feats_t, feats.data(), 0, feats.size() * sizeof(float));
    ggml_backend_tensor_set(img_t, img_idx.data(), 0, img_idx.size() * sizeof(int32_t));
    ggml_backend_tensor_set(imgm_t, img_mask.data(), 0, img_mask.size() * sizeof(float));
    ggml_backend_tensor_set(tok_t, tok.data(), 0, tok.size() * sizeof(int32_t));
    ggml_backend_tensor_set(txtm_t, txt_mask.data(), 0, txt_mask.size() * sizeof(float));
    ggml_backend_tensor_set(pos_t, pos.data(), 0, pos.size() * sizeof(int32_t));
    ggml_backend_tensor_set(mask_t, kq_mask.data(), 0, kq_mask.size() * sizeof(float));
    ggml_backend_tensor_set(ans_t, ans_idx.data(), 0, ans_idx.size() * sizeof(int32_t));
    ggml_backend_tensor_set(labels_t, labels.data(), 0, labels.size() * sizeof(float));
    ggml_backend_tensor_set(ids_t, label_ids.data(), 0, label_ids.size() * sizeof(int32_t));

    // An abort can land between two optimiser nodes: keep the state to put back.
    std::vector<std::vector<uint8_t>> saved;
    if (md == mode::train) {
        const int64_t t      = steps_ + 1;
        const float   b1h    = 1.0f / (1.0f - std::pow(hyper->beta1, static_cast<float>(t)));
        const float   b2h    = 1.0f / (1.0f - std::pow(hyper->beta2, static_cast<float>(t)));
        const float   hyp[7] = {hyper->lr, hyper->beta1, hyper->beta2, hyper->eps, hyper->weight_decay, b1h, b2h};
        ggml_backend_tensor_set(hyper_t, hyp, 0, sizeof(hyp));
        for (size_t i = 0; i < params_t_.size(); ++i) {
            for (ggml_tensor * s : {params_t_[i], m_t_[i], v_t_[i]}) {
                saved.emplace_back(ggml_nbytes(s));
                ggml_backend_tensor_get(s, saved.back().data(), 0, saved.back().size());
            }
        }
    }
    try {
        rt_->compute(gf, cancel);
    } catch (...) {
        size_t k = 0;
        for (size_t i = 0; i < params_t_.size() && !saved.empty(); ++i) {
            for (ggml_tensor * s : {params_t_[i], m_t_[i], v_t_[i]}) {
                ggml_backend_tensor_set(s, saved[k].data(), 0, saved[k].size());
                ++k;
            }
        }
        throw;
    }

    step_result r;
    ggml_backend_tensor_get(loss, &r.loss, 0, sizeof(float));
    ggml_backend_tensor_get(ncorrect, &r.ncorrect, 0, sizeof(int64_t));
    r.ntargets = A;
    if (md == mode::grads) {
        grads->clear();
        for (ggml_tensor * p : params_t_) {
            ggml_tensor *      g = ggml_graph_get_grad(gf, p);
            std::vector<float> out(static_cast<size_t>(ggml_nelements(g)));
            ggml_backend_tensor_get(g, out.data(), 0, out.size() * sizeof(float));
            grads->push_back(std::move(out));
        }
    }
    if (md == mode::train) {
        ++steps_;
    }
    return r;
}

std::vector<float> projector_trainer::llm_logits(const float * embd, int T, const std::atomic<bool> * cancel) {
    std::lock_guard<std::mutex> lock(mu_);
    const train_llama_hparams & hp = llm_->hparams();
    if (T < 1 || T > hp.n_ctx_train) {
        fail(error_code::invalid_argument, "the row count must be in [1, n_ctx_train]");
    }
    const size_t max_nodes = k_max_nodes_base + 64 * static_cast<size_t>(hp.n_layer);
    meta_.resize(max_nodes * ggml_tensor_overhead() + ggml_graph_overhead_custom(max_nodes, false));
    ggml_init_params ip{meta_.size(), meta_.data(), /*no_alloc =*/true};
    ctx_ptr          owner(ggml_init(ip));
    ggml_context *   ctx = owner.get();
    ggml_cgraph *    gf  = ggml_new_graph_custom(ctx, max_nodes, false);
    ggml_tensor *    x   = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_embd, T);
    ggml_tensor *    p   = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    ggml_tensor *    mk  = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, T, T);
    for (ggml_tensor * in : {x, p, mk}) {
        ggml_set_input(in);
    }
    ggml_tensor * logits = llm_->head(ctx, llm_->blocks(ctx, x, p, mk, T, 1));
    ggml_set_output(logits);
    ggml_build_forward_expand(gf, logits);
    const forget_on_exit forget{rt_.get(), gf};
    rt_->allocate(gf);
    std::vector<int32_t> pos;
    std::vector<float>   mask;
    causal_inputs(T, pos, mask);
    ggml_backend_tensor_set(x, embd, 0, static_cast<size_t>(hp.n_embd) * T * sizeof(float));
    ggml_backend_tensor_set(p, pos.data(), 0, pos.size() * sizeof(int32_t));
    ggml_backend_tensor_set(mk, mask.data(), 0, mask.size() * sizeof(float));
    rt_->compute(gf, cancel);
    std::vector<float> out(static_cast<size_t>(hp.n_vocab) * T);
    ggml_backend_tensor_get(logits, out.data(), 0, out.size() * sizeof(float));
    return out;
}

}  // namespace mm
