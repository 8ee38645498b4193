#include "encoders/vision_encoder.h"

#include <chrono>

#include "common/error.h"
#include "encoders/registry.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"

namespace mm {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Graphs kept per encoder: a conversation rarely mixes more picture sizes than this.
constexpr size_t k_max_graphs = 4;

}  // namespace

struct vision_encoder::shaped_graph {
    int32_t                       width  = 0;
    int32_t                       height = 0;
    std::unique_ptr<graph_holder> holder;
    vision_graph                  vg;
};

std::shared_ptr<vision_encoder> vision_encoder::load(const std::string & path, const vision_encoder_params & params) {
    auto                            f   = gguf_file::open(path);
    const encoder_family &          fam = find_encoder_family(*f);
    std::shared_ptr<vision_encoder> enc(new vision_encoder());
    enc->family_                   = fam.name;
    enc->fam_                      = &fam;
    enc->hp_                       = read_vision_hparams(*f);
    std::vector<std::string> names = fam.validate(*f, enc->hp_);

    enc->rt_      = std::make_unique<runtime>(runtime_params{params.n_threads, params.use_gpu, params.rpc});
    enc->weights_ = std::make_unique<weight_set>(*f, names, enc->rt_->weights_buffer_type(), params.cancel);

    // Flash attention when the backend has it (libmtmd's CLIP_FLASH_ATTN_TYPE_AUTO): probe a graph
    // of the typical size built with it, and build without when the main backend cannot run it.
    // the typical input: the fixed size, or the dynamic families' typical square (hp.grid)
    int32_t w0 = 0, h0 = 0;
    target_size(enc->hp_.preprocess, enc->hp_.image_size, enc->hp_.image_size, w0, h0);
    if (enc->hp_.dynamic) {
        w0 = h0 = enc->hp_.grid * enc->hp_.patch_size;
    }
    enc->flash_attn_ = params.flash_attn != 0;
    if (params.flash_attn < 0) {
        shaped_graph & probe = enc->graph_for(w0, h0);
        // libmtmd decides for its encoder + projector graph at once: with MiniCPM-V's resampler
        // (heads of 128 over the patches) it counts too
        bool                partner = true;
        const ggml_tensor * query   = f->tensor(clip::t_resampler_query);
        if (query != nullptr && query->ne[0] >= 128 && query->ne[0] % 128 == 0) {
            partner = enc->rt_->supports_flash_attn(128, query->ne[0] / 128, query->ne[1], probe.vg.out->ne[1]);
        }
        if (!partner || !enc->rt_->supports_flash_attn(probe.holder->gf())) {
            enc->flash_attn_ = false;
            enc->rt_->forget(probe.holder->gf());
            enc->graphs_.clear();
        }
    }
    enc->rt_->allocate(enc->graph_for(w0, h0).holder->gf());
    return enc;
}

vision_encoder::~vision_encoder() = default;

std::string vision_encoder::backend_name() const {
    return rt_->backend_name();
}

int vision_encoder::n_threads() const {
    return rt_->n_threads();
}

int vision_encoder::graph_threads() const {
    return rt_->graph_threads();
}

size_t vision_encoder::weights_bytes() const {
    return weights_->bytes();
}

vision_encoder::shaped_graph & vision_encoder::graph_for(int32_t width, int32_t height) {
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it) {
        if ((*it)->width == width && (*it)->height == height) {
            graphs_.splice(graphs_.begin(), graphs_, it);
            return *graphs_.front();
        }
    }
    auto sg    = std::make_unique<shaped_graph>();
    sg->width  = width;
    sg->height = height;
    sg->holder = std::make_unique<graph_holder>();
    blocks::graph_ctx g{sg->holder->ctx(), sg->holder->gf(), flash_attn_};
    sg->vg = fam_->build(g, *weights_, hp_, width, height);
    graphs_.push_front(std::move(sg));
    while (graphs_.size() > k_max_graphs) {
        rt_->forget(graphs_.back()->holder->gf());
        graphs_.pop_back();
    }
    return *graphs_.front();
}

void vision_encoder::check_input_size(int32_t width, int32_t height) const {
    bool ok;
    if (fam_->accepts_size != nullptr) {
        ok = fam_->accepts_size(hp_, width, height);
    } else if (hp_.dynamic) {
        const int32_t a = hp_.preprocess.align;
        const int64_t n = static_cast<int64_t>(width) * height;
        ok = width >= a && height >= a && width % a == 0 && height % a == 0 && n <= hp_.preprocess.max_pixels;
    } else {
        ok = width == hp_.image_size && height == hp_.image_size;
    }
    if (!ok) {
        fail(error_code::invalid_argument,
             "this encoder does not take a " + std::to_string(width) + "x" + std::to_string(height) + " input " +
                 (fam_->accepts_size != nullptr ? std::string("(not a size the " + family_ + " preprocessing gives)")
                  : hp_.dynamic
                      ? "(sides must be multiples of " + std::to_string(hp_.preprocess.align) + ", at most " +
                            std::to_string(hp_.preprocess.max_pixels) + " pixels)"
                      : "(it takes " + std::to_string(hp_.image_size) + "x" + std::to_string(hp_.image_size) + ")"));
    }
}

std::vector<pixel_input> vision_encoder::preprocess(const rgb_image & img, slice_layout * layout) const {
    slice_layout             l;
    std::vector<pixel_input> out;
    if (fam_->preprocess != nullptr) {
        out            = fam_->preprocess(hp_, img, l);
        const size_t n = static_cast<size_t>(l.grid_x) * l.grid_y + (l.has_overview ? 1 : 0);
        if (out.empty() || (n > 0 && out.size() != n)) {
            fail(error_code::internal, "the " + family_ + " preprocessor gave " + std::to_string(out.size()) +
                                           " inputs for a " + std::to_string(l.grid_x) + "x" +
                                           std::to_string(l.grid_y) + " layout");
        }
    } else {
        out.push_back(preprocess_image(img, hp_.preprocess));
    }
    if (layout != nullptr) {
        *layout = l;
    }
    return out;
}

std::vector<token_matrix> vision_encoder::encode(const rgb_image & img, const std::atomic<bool> * cancel,
                                                 encode_timings * t, slice_layout * layout) {
    auto                     t0     = std::chrono::steady_clock::now();
    std::vector<pixel_input> inputs = preprocess(img, layout);
    if (t != nullptr) {
        t->preprocess_ms = ms_since(t0);
    }
    auto                      t1 = std::chrono::steady_clock::now();
    std::vector<token_matrix> out;
    out.reserve(inputs.size());
    for (const pixel_input & in : inputs) {
        out.push_back(encode_pixels(in, cancel));
    }
    if (t != nullptr) {
        t->encode_ms = ms_since(t1);
    }
    return out;
}

token_matrix vision_encoder::encode_pixels(const pixel_input & pixels, const std::atomic<bool> * cancel) {
    check_input_size(pixels.width, pixels.height);
    if (pixels.data.size() != static_cast<size_t>(pixels.width) * pixels.height * 3) {
        fail(error_code::invalid_argument, "expected 3 x " + std::to_string(pixels.width) + " x " +
                                               std::to_string(pixels.height) + " preprocessed values, got " +
                                               std::to_string(pixels.data.size()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    shaped_graph &              sg = graph_for(pixels.width, pixels.height);
    rt_->use(sg.holder->gf());
    ggml_backend_tensor_set(sg.vg.pixels, pixels.data.data(), 0, ggml_nbytes(sg.vg.pixels));
    for (const auto & [tensor, values] : sg.vg.inputs.i32) {
        ggml_backend_tensor_set(tensor, values.data(), 0, ggml_nbytes(tensor));
    }
    for (const auto & [tensor, values] : sg.vg.inputs.f32) {
        ggml_backend_tensor_set(tensor, values.data(), 0, ggml_nbytes(tensor));
    }
    for (const auto & fill : sg.vg.inputs.deferred) {
        fill();
    }
    rt_->compute(sg.holder->gf(), cancel);
    token_matrix out;
    out.n_embd   = static_cast<int32_t>(sg.vg.out->ne[0]);
    out.n_tokens = static_cast<int32_t>(sg.vg.out->ne[1]);
    out.nx       = sg.vg.nx;
    out.ny       = sg.vg.ny;
    out.data.resize(static_cast<size_t>(out.n_embd) * out.n_tokens);
    ggml_backend_tensor_get(sg.vg.out, out.data.data(), 0, ggml_nbytes(sg.vg.out));
    return out;
}

}  // namespace mm
