#include "projectors/projector.h"

#include "common/error.h"
#include "encoders/audio/audio_encoder.h"
#include "encoders/registry.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

// Validates the whole file (vision keys and tensors, projector tensors); returns the projector's
// tensor names.
std::vector<std::string> read_info(const gguf_file & f, mmproj_info & info, const projector_family *& fam, bool audio) {
    if (audio) {
        info.vision         = read_audio_hparams(f);
        info.projector_type = info.vision.projector_type;
        info.encoder_family = "whisper";
        validate_audio_tower(f, info.vision);
        fam         = &find_projector_family(f, tower_kind::audio);
        info.family = fam->name;
        return fam->validate(f, info.vision, info.out);
    }
    const encoder_family & enc = find_encoder_family(f);
    info.vision                = read_vision_hparams(f);
    info.projector_type        = info.vision.projector_type;
    info.encoder_family        = enc.name;
    enc.validate(f, info.vision);
    fam         = &find_projector_family(f);
    info.family = fam->name;
    return fam->validate(f, info.vision, info.out);
}

}  // namespace

mmproj_info inspect_mmproj(const std::string & path, const projector_family ** fam_out, bool audio) {
    auto                     f = gguf_file::open(path);
    mmproj_info              info;
    const projector_family * fam = nullptr;
    read_info(*f, info, fam, audio);
    if (fam_out != nullptr) {
        *fam_out = fam;
    }
    return info;
}

namespace {

constexpr size_t k_max_graphs = 4;

}  // namespace

struct projector::shaped_graph {
    int32_t                       nx = 0;
    int32_t                       ny = 0;
    std::unique_ptr<graph_holder> holder;
    projector_io                  io;
    ggml_tensor *                 out = nullptr;
};

std::shared_ptr<projector> projector::load(const std::string & path, const projector_params & params) {
    auto                       f = gguf_file::open(path);
    std::shared_ptr<projector> p(new projector());
    const projector_family *   fam   = nullptr;
    std::vector<std::string>   names = read_info(*f, p->info_, fam, params.audio);
    p->fam_                          = fam;

    p->rt_                    = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu, params.rpc});
    p->weights_               = std::make_unique<weight_set>(*f, names, p->rt_->weights_buffer_type(), params.cancel);
    const vision_hparams & hp = p->info_.vision;
    // Flash attention where the family attends (the resampler), as libmtmd's CLIP_FLASH_ATTN_TYPE_AUTO:
    // built with it, and rebuilt without when the main backend cannot run it.
    // the typical input grid: the fixed square; an audio chunk's rows as one line
    const int32_t nx0 = hp.audio ? hp.n_patches : hp.grid;
    const int32_t ny0 = hp.audio ? 1 : hp.grid;
    p->flash_attn_    = params.flash_attn != 0;
    // libmtmd decides for its encoder + projector graph at once: where the projector attends, the
    // encoder's attention (over the probe's patches) counts too
    auto encoder_attends_alike = [&](ggml_cgraph * gf) {
        for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
            if (ggml_graph_node(gf, i)->op == GGML_OP_FLASH_ATTN_EXT) {
                const int64_t n_pos = static_cast<int64_t>(nx0) * ny0;
                return hp.audio || hp.n_head <= 0 || p->rt_->supports_flash_attn(hp.d_head, hp.n_head, n_pos, n_pos);
            }
        }
        return true;
    };
    if (params.flash_attn < 0 && (!p->rt_->supports_flash_attn(p->graph_for(nx0, ny0).holder->gf()) ||
                                  !encoder_attends_alike(p->graph_for(nx0, ny0).holder->gf()))) {
        p->flash_attn_ = false;
        p->rt_->forget(p->graphs_.front()->holder->gf());
        p->graphs_.clear();
    }
    shaped_graph & sg = p->graph_for(nx0, ny0);
    if (sg.out->ne[0] != p->n_embd_out() || sg.out->ne[1] != p->n_tokens_out()) {
        fail(error_code::internal, "projector graph output shape differs from the validated shape");
    }
    p->rt_->allocate(sg.holder->gf());
    return p;
}

projector::shaped_graph & projector::graph_for(int32_t nx, int32_t ny) {
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it) {
        if ((*it)->nx == nx && (*it)->ny == ny) {
            graphs_.splice(graphs_.begin(), graphs_, it);
            return *graphs_.front();
        }
    }
    auto sg    = std::make_unique<shaped_graph>();
    sg->nx     = nx;
    sg->ny     = ny;
    sg->holder = std::make_unique<graph_holder>();
    blocks::graph_ctx g{sg->holder->ctx(), sg->holder->gf(), flash_attn_};
    sg->io.nx       = nx;
    sg->io.ny       = ny;
    sg->io.features = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, n_embd_in(), static_cast<int64_t>(nx) * ny);
    ggml_set_name(sg->io.features, "features");
    ggml_set_input(sg->io.features);
    if (fam_->build_grid != nullptr) {
        sg->out = fam_->build_grid(g, *weights_, info_.vision, sg->io);
    } else {
        sg->out       = fam_->build(g, *weights_, info_.vision, sg->io.features);
        sg->io.out_nx = static_cast<int32_t>(sg->out->ne[1]);  // libmtmd: n_tokens x 1 when not a grid
        sg->io.out_ny = 1;
    }
    ggml_set_name(sg->out, "embeddings");
    ggml_set_output(sg->out);
    ggml_build_forward_expand(g.gf, sg->out);
    graphs_.push_front(std::move(sg));
    while (graphs_.size() > k_max_graphs) {
        rt_->forget(graphs_.back()->holder->gf());
        graphs_.pop_back();
    }
    return *graphs_.front();
}

projector::~projector() = default;

std::string projector::backend_name() const {
    return rt_->backend_name();
}

int projector::n_threads() const {
    return rt_->n_threads();
}

int projector::graph_threads() const {
    return rt_->graph_threads();
}

size_t projector::weights_bytes() const {
    return weights_->bytes();
}

void projector::check_features(const token_matrix & features) const {
    const vision_hparams & hp = info_.vision;
    bool                   ok = features.n_embd == n_embd_in() &&
              features.data.size() == static_cast<size_t>(features.n_embd) * static_cast<size_t>(features.n_tokens);
    if (ok && hp.dynamic) {
        const int64_t max_patches = static_cast<int64_t>(hp.preprocess.max_pixels) / hp.patch_size / hp.patch_size;
        ok = features.nx > 0 && features.ny > 0 && features.nx % hp.n_merge == 0 && features.ny % hp.n_merge == 0 &&
             static_cast<int64_t>(features.nx) * features.ny == features.n_tokens && features.n_tokens <= max_patches;
    } else if (ok) {
        ok = features.n_tokens == n_tokens_in();
    }
    if (!ok) {
        std::string took = hp.dynamic ? "a patch grid with sides that are multiples of " + std::to_string(hp.n_merge) +
                                            " and width " + std::to_string(n_embd_in())
                                      : "[" + std::to_string(n_tokens_in()) + ", " + std::to_string(n_embd_in()) + "]";
        fail(error_code::model_mismatch, "features are [" + std::to_string(features.n_tokens) + ", " +
                                             std::to_string(features.n_embd) + "] (grid " +
                                             std::to_string(features.nx) + "x" + std::to_string(features.ny) +
                                             "), this projector takes " + took + ": they come from another " +
                                             (hp.audio ? "audio" : "vision") + " encoder");
    }
}

token_matrix projector::project(const token_matrix & features, const std::atomic<bool> * cancel) {
    check_features(features);
    const vision_hparams &      hp = info_.vision;
    const int32_t               nx = hp.dynamic ? features.nx : hp.audio ? hp.n_patches : hp.grid;
    const int32_t               ny = hp.dynamic ? features.ny : hp.audio ? 1 : hp.grid;
    std::lock_guard<std::mutex> lock(mu_);
    shaped_graph &              sg = graph_for(nx, ny);
    rt_->use(sg.holder->gf());
    ggml_backend_tensor_set(sg.io.features, features.data.data(), 0, ggml_nbytes(sg.io.features));
    for (const auto & [tensor, values] : sg.io.inputs.i32) {
        ggml_backend_tensor_set(tensor, values.data(), 0, ggml_nbytes(tensor));
    }
    for (const auto & [tensor, values] : sg.io.inputs.f32) {
        ggml_backend_tensor_set(tensor, values.data(), 0, ggml_nbytes(tensor));
    }
    for (const auto & fill : sg.io.inputs.deferred) {
        fill();
    }
    rt_->compute(sg.holder->gf(), cancel);
    token_matrix out;
    out.n_embd   = static_cast<int32_t>(sg.out->ne[0]);
    out.n_tokens = static_cast<int32_t>(sg.out->ne[1]);
    out.nx       = sg.io.out_nx;
    out.ny       = sg.io.out_ny;
    out.causal   = fam_->causal;
    out.data.resize(static_cast<size_t>(out.n_embd) * out.n_tokens);
    ggml_backend_tensor_get(sg.out, out.data.data(), 0, ggml_nbytes(sg.out));
    return out;
}

}  // namespace mm
