// MiniCPM-V's resampler (projector type `resampler`; libmtmd's PROJECTOR_TYPE_MINICPMV,
// tools/mtmd/models/minicpmv.cpp): the survey's cross-attention projector class. A fixed set of
// learned queries attends to the patch features of one slice, so every slice (and the overview),
// whatever its patch grid, becomes the same number of tokens:
//   v = LN_kv(kv_proj . features)                 [E, n_patches]
//   k = v + sincos2d(patch grid)                  2-D sin/cos positions of the slice's own grid
//   q = LN_q(query)                               [E, n_queries]
//   out = proj . LN_post(MHA(q, k, v))            heads of 128, one attention, out projection
// E is the resampler's width (proj is E x E) and equals the LLM's n_embd. The sin/cos table has
// E/4 frequencies 10000^(-i / (E/4)); each patch's row is [sin(x w), cos(x w), sin(y w), cos(y w)]
// with x, y its column and row in the slice. libmtmd computes it with ggml_sin/ggml_cos (sinf and
// cosf on the CPU); it is computed here on the host with the same float operations.
//
// Versions (clip.minicpmv_version) share this graph; they differ in the default query count (96
// for 2 = MiniCPM-V 2.5, 64 for the others) and in the prompt layout of the slices (slices()).
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "graph/clip_names.h"
#include "graph/gguf_file.h"
#include "graph/runtime.h"
#include "projectors/registry.h"

namespace mm {

namespace {

constexpr int32_t  k_d_head      = 128;  // libmtmd hard-codes the resampler's head size
constexpr uint32_t k_max_queries = 1u << 14;

std::vector<std::string> validate(const gguf_file & f, const vision_hparams & hp, projector_shape & out) {
    const ggml_tensor * proj = check_tensor(f, clip::t_resampler_proj, tensor_use::matrix, {-1, -1});
    const int64_t       E    = proj->ne[0];  // libmtmd's clip_n_mmproj_embd
    if (proj->ne[1] != E) {
        f.invalid(std::string("tensor '") + clip::t_resampler_proj + "' has shape " + shape_string(proj) +
                  ", expected a square [E, E]");
    }
    if (E % k_d_head != 0 || E > (1 << 16)) {
        fail(error_code::gguf_unsupported, "'" + f.path() + "': the resampler width " + std::to_string(E) +
                                               " is not a multiple of its head size " + std::to_string(k_d_head) +
                                               " (at most 65536)");
    }
    uint32_t n_query = hp.minicpmv_version == 2 ? 96 : 64;  // libmtmd's defaults without the key
    uint32_t key     = 0;
    if (f.find_u32(clip::k_minicpmv_query, key) && key != 0) {
        n_query = key;
    }
    if (n_query > k_max_queries) {
        f.invalid(std::string(clip::k_minicpmv_query) + " = " + std::to_string(n_query) + " is more than " +
                  std::to_string(k_max_queries));
    }
    const ggml_tensor * query = check_tensor(f, clip::t_resampler_query, tensor_use::vector, {E, -1});
    if (query->ne[1] != static_cast<int64_t>(n_query)) {
        f.invalid(std::string("tensor '") + clip::t_resampler_query + "' holds " + std::to_string(query->ne[1]) +
                  " queries, the file says " + std::to_string(n_query) + " (" + clip::k_minicpmv_query + ")");
    }
    if (f.tensor(clip::t_resampler_pos_embdk) == nullptr) {
        f.invalid(std::string("tensor '") + clip::t_resampler_pos_embdk + "' is missing (libmtmd requires it)");
    }
    std::vector<std::string> names = {clip::t_resampler_query, clip::t_resampler_proj};
    auto                     t     = [&](const std::string & name, tensor_use use, std::vector<int64_t> ne) {
        check_tensor(f, name, use, std::move(ne));
        names.push_back(name);
    };
    t(clip::t_resampler_kv, tensor_use::matrix, {hp.n_embd_out, E});
    for (const char * part : {"q", "k", "v", "out"}) {
        t(clip::resampler_attn(part, "weight"), tensor_use::matrix, {E, E});
        t(clip::resampler_attn(part, "bias"), tensor_use::vector, {E});
    }
    for (const char * part : {"q", "kv", "post"}) {
        t(clip::resampler_ln(part, "weight"), tensor_use::vector, {E});
        t(clip::resampler_ln(part, "bias"), tensor_use::vector, {E});
    }
    out.n_embd_out   = static_cast<int32_t>(E);
    out.n_tokens_out = static_cast<int32_t>(n_query);
    return names;
}

// [E, nx * ny]: per patch (row-major in the grid) sin(x w_i), cos(x w_i), sin(y w_i), cos(y w_i)
// over the E/4 frequencies w_i, as libmtmd's graph computes it (float products, sinf / cosf).
std::vector<float> sincos_2d(int64_t E, int32_t nx, int32_t ny) {
    const int64_t      n_freq = E / 4;
    std::vector<float> omega(n_freq);
    for (int64_t i = 0; i < n_freq; ++i) {
        omega[i] = 1.0f / std::pow(10000.0f, static_cast<float>(i) / static_cast<float>(n_freq));
    }
    std::vector<float> out(static_cast<size_t>(E) * nx * ny);
    for (int32_t p = 0; p < nx * ny; ++p) {
        const float x   = static_cast<float>(p % nx);
        const float y   = static_cast<float>(p / nx);
        float *     row = out.data() + static_cast<size_t>(p) * E;
        for (int64_t i = 0; i < n_freq; ++i) {
            const float tx      = omega[i] * x;
            const float ty      = omega[i] * y;
            row[i]              = sinf(tx);
            row[n_freq + i]     = cosf(tx);
            row[2 * n_freq + i] = sinf(ty);
            row[3 * n_freq + i] = cosf(ty);
        }
    }
    return out;
}

ggml_tensor * build_grid(const blocks::graph_ctx & g, const weight_set & w, const vision_hparams & hp,
                         projector_io & io) {
    ggml_context * ctx     = g.ctx;
    ggml_tensor *  query   = w.get(clip::t_resampler_query);
    const int64_t  E       = query->ne[0];
    const int64_t  n_query = query->ne[1];
    const int64_t  n_pos   = static_cast<int64_t>(io.nx) * io.ny;
    auto           ln      = [&](ggml_tensor * x, const char * part) {
        return blocks::norm(g, x, w.get(clip::resampler_ln(part, "weight")), w.get(clip::resampler_ln(part, "bias")),
                                           hp.eps);
    };
    auto lin = [&](ggml_tensor * x, const char * part) {
        return ggml_add(ctx, blocks::mm(g, w.get(clip::resampler_attn(part, "weight")), x),
                        w.get(clip::resampler_attn(part, "bias")));
    };

    ggml_tensor * v = blocks::mm(g, w.get(clip::t_resampler_kv), io.features);
    ggml_tensor * q = ln(query, "q");
    v               = ln(v, "kv");

    ggml_tensor * pos = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, E, n_pos);
    ggml_set_name(pos, "sincos_pos");
    ggml_set_input(pos);
    io.inputs.f32.emplace_back(pos, sincos_2d(E, io.nx, io.ny));
    ggml_tensor * k = ggml_add(ctx, v, pos);

    const int64_t n_head = E / k_d_head;
    ggml_tensor * Q      = ggml_reshape_3d(ctx, lin(q, "q"), k_d_head, n_head, n_query);
    ggml_tensor * K      = ggml_reshape_3d(ctx, lin(k, "k"), k_d_head, n_head, n_pos);
    ggml_tensor * V      = ggml_reshape_3d(ctx, lin(v, "v"), k_d_head, n_head, n_pos);
    ggml_tensor * cur =
        blocks::attn(g, w.get(clip::resampler_attn("out", "weight")), w.get(clip::resampler_attn("out", "bias")), Q, K,
                     V, 1.0f / sqrtf(static_cast<float>(k_d_head)));
    cur       = ln(cur, "post");
    cur       = blocks::mm(g, w.get(clip::t_resampler_proj), cur);
    io.out_nx = static_cast<int32_t>(n_query);  // libmtmd: n_tokens x 1
    io.out_ny = 1;
    return cur;
}

// mtmd.cpp's MiniCPM-V slice templates; the overview comes first.
//  2.5 (version 2): <image>ov</image><slice><image>s</image><image>s</image>\n...</slice>
//  2.6 and later:   <image>ov</image><slice>s</slice><slice>s</slice>\n...
slice_template slices(const vision_hparams & hp) {
    slice_template t;
    t.ov_start      = {"<image>"};
    t.ov_end        = {"</image>"};
    t.row_end       = {"\n"};
    t.row_end_trail = false;
    t.ov_first      = true;
    if (hp.minicpmv_version == 2) {
        t.slices_start = {"<slice>"};
        t.slices_end   = {"</slice>"};
        t.sli_start    = {"<image>"};
        t.sli_end      = {"</image>"};
    } else {
        t.sli_start = {"<slice>"};
        t.sli_end   = {"</slice>"};
    }
    return t;
}

}  // namespace

extern const projector_family resampler_family = {
    /*name =*/"resampler", validate,
    /*build =*/nullptr,    build_grid,
    /*causal =*/true,
    /*image_begin =*/"",
    /*image_end =*/"",     slices,
};

}  // namespace mm
