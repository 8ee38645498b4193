// Test-only reference: the image embeddings libmtmd (llama.cpp's own multimodal library, from the
// same vendored tree) computes for (mmproj, image), with nothing of mm in between. Never linked into
// mm.node.
//
//   mm-ref-mtmd-embed --mmproj mmproj.gguf [--text-model llm.gguf] [-t threads] [--fa auto|on|off]
//                     [--out-dir DIR] IMAGE...
//
// IMAGE is a file libmtmd decodes itself (mtmd_helper_bitmap_init_from_file), or raw:WxH:path for
// raw 8-bit RGB. For each image it writes DIR/img<i>.embd.f32 (the projector output, [n_tokens][n_embd]),
// DIR/img<i>.features.f32 (the vision tower output fed to the projector, [n_patches][n_embd_v]) and
// DIR/img<i>.pixels.f32 (the preprocessed input, [3][H][W]), captured with a ggml eval callback, and
// prints one JSON object with the shapes. Exit codes: 0 ok, 2 usage, 3 load failed (message on stderr),
// 4 tokenize/encode failed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "mtmd-helper.h"
#include "mtmd.h"

namespace {

struct capture {
    std::vector<float> pixels;
    int64_t            pixels_ne[3] = {0, 0, 0};
    std::vector<float> features;
    int64_t            features_ne[2] = {0, 0};
    int64_t            last_ne[2]     = {0, 0};

    void reset() {
        pixels.clear();
        features.clear();
    }
};

bool is_named(const ggml_tensor * t, const char * name) {
    return t != nullptr && std::strcmp(t->name, name) == 0;
}

void read_f32(const ggml_tensor * t, std::vector<float> & out) {
    out.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, out.data(), 0, ggml_nbytes(t));
}

// ggml eval callback: the pixels are the input of the patch convolution's im2col, the features are
// the rows gathered by the `patches` index right before the projector.
bool observe(ggml_tensor * t, bool ask, void * user) {
    auto * c           = static_cast<capture *>(user);
    bool   want_pixels = t->op == GGML_OP_IM2COL && is_named(t->src[1], "inp_raw");
    bool   want_feats  = t->op == GGML_OP_GET_ROWS && is_named(t->src[1], "patches");
    if (ask) {
        c->last_ne[0] = t->ne[0];
        c->last_ne[1] = t->ne[1];
        return want_pixels || want_feats;
    }
    if (want_pixels && c->pixels.empty()) {
        read_f32(t->src[1], c->pixels);
        c->pixels_ne[0] = t->src[1]->ne[0];
        c->pixels_ne[1] = t->src[1]->ne[1];
        c->pixels_ne[2] = t->src[1]->ne[2];
    }
    if (want_feats && t->type == GGML_TYPE_F32) {
        read_f32(t, c->features);
        c->features_ne[0] = t->ne[0];
        c->features_ne[1] = t->ne[1];
    }
    return true;
}

bool write_f32(const std::string & path, const float * data, size_t n) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char *>(data), static_cast<std::streamsize>(n * sizeof(float)));
    return out.good();
}

std::string json_escape(const std::string & s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out;
}

int usage() {
    std::fprintf(stderr,
                 "usage: mm-ref-mtmd-embed --mmproj F [--text-model F] [-t N] [--fa auto|on|off] [--out-dir D] "
                 "IMAGE|raw:WxH:path...\n");
    return 2;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string              mmproj, text_model, out_dir = ".", fa = "auto";
    int                      threads = 2;
    std::vector<std::string> images;
    for (int i = 1; i < argc; ++i) {
        std::string a    = argv[i];
        auto        next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--mmproj") {
            mmproj = next();
        } else if (a == "--text-model") {
            text_model = next();
        } else if (a == "-t") {
            threads = std::atoi(next().c_str());
        } else if (a == "--fa") {
            fa = next();
        } else if (a == "--out-dir") {
            out_dir = next();
        } else if (!a.empty() && a[0] == '-') {
            return usage();
        } else {
            images.push_back(a);
        }
    }
    if (mmproj.empty() || (fa != "auto" && fa != "on" && fa != "off")) {
        return usage();
    }
    const bool verbose = std::getenv("MM_LOG_LEVEL") != nullptr;
    auto       log_cb  = [](ggml_log_level level, const char * text, void * v) {
        if (level == GGML_LOG_LEVEL_ERROR || *static_cast<bool *>(v)) {
            std::fputs(text, stderr);
        }
    };
    static bool verbose_flag = verbose;
    llama_log_set(log_cb, &verbose_flag);
    mtmd_log_set(log_cb, &verbose_flag);
    ggml_backend_load_all();  // backends are shared libraries beside the executable (GGML_BACKEND_DL)
    llama_backend_init();

    llama_model * model = nullptr;
    if (!text_model.empty()) {
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers       = 0;
        model                 = llama_model_load_from_file(text_model.c_str(), mp);
        if (model == nullptr) {
            std::fprintf(stderr, "failed to load text model %s\n", text_model.c_str());
            return 3;
        }
    }

    capture             cap;
    mtmd_context_params cp = mtmd_context_params_default();
    cp.use_gpu             = std::getenv("MM_REF_GPU") != nullptr;
    cp.print_timings       = false;
    cp.n_threads           = threads;
    cp.flash_attn_type     = fa == "on"    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                             : fa == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                           : LLAMA_FLASH_ATTN_TYPE_AUTO;
    cp.cb_eval             = observe;
    cp.cb_eval_user_data   = &cap;
    mtmd_context * ctx     = mtmd_init_from_file(mmproj.c_str(), model, cp);
    if (ctx == nullptr) {
        std::fprintf(stderr, "libmtmd failed to load %s\n", mmproj.c_str());
        return 3;
    }

    std::string json = "{\"mmproj\":\"" + json_escape(mmproj) + "\",\"images\":[";
    for (size_t i = 0; i < images.size(); ++i) {
        const std::string & spec   = images[i];
        mtmd_bitmap *       bitmap = nullptr;
        if (spec.rfind("raw:", 0) == 0) {
            unsigned w = 0, h = 0;
            char     path[4096];
            if (std::sscanf(spec.c_str(), "raw:%ux%u:%4095s", &w, &h, path) != 3) {
                std::fprintf(stderr, "bad raw image spec %s\n", spec.c_str());
                return 2;
            }
            std::ifstream        in(path, std::ios::binary);
            std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
            in.read(reinterpret_cast<char *>(rgb.data()), static_cast<std::streamsize>(rgb.size()));
            if (!in.good()) {
                std::fprintf(stderr, "cannot read %zu bytes from %s\n", rgb.size(), path);
                return 4;
            }
            bitmap = mtmd_bitmap_init(w, h, rgb.data());
        } else {
            bitmap = mtmd_helper_bitmap_init_from_file(ctx, spec.c_str(), false, mtmd_helper_init_opt_default()).bitmap;
        }
        if (bitmap == nullptr) {
            std::fprintf(stderr, "libmtmd cannot load image %s\n", spec.c_str());
            return 4;
        }
        mtmd_input_part         part{nullptr, bitmap};
        const mtmd_input_part * parts[] = {&part};
        mtmd_input_chunks *     chunks  = mtmd_input_chunks_init();
        if (mtmd_tokenize_from_parts(ctx, chunks, parts, 1, false) != 0) {
            std::fprintf(stderr, "mtmd_tokenize failed for %s\n", spec.c_str());
            return 4;
        }
        const mtmd_input_chunk * chunk = nullptr;
        for (size_t c = 0; c < mtmd_input_chunks_size(chunks); ++c) {
            if (mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks, c)) == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
                chunk = mtmd_input_chunks_get(chunks, c);
            }
        }
        if (chunk == nullptr) {
            std::fprintf(stderr, "no image chunk for %s\n", spec.c_str());
            return 4;
        }
        cap.reset();
        auto t0 = std::chrono::steady_clock::now();
        if (mtmd_encode_chunk(ctx, chunk) != 0) {
            std::fprintf(stderr, "mtmd_encode_chunk failed for %s\n", spec.c_str());
            return 4;
        }
        const double  ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const size_t  n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
        const int64_t n_embd   = cap.last_ne[0];
        if (cap.last_ne[1] != static_cast<int64_t>(n_tokens)) {
            std::fprintf(stderr, "unexpected output shape [%lld, %lld] for %zu tokens\n",
                         static_cast<long long>(cap.last_ne[0]), static_cast<long long>(cap.last_ne[1]), n_tokens);
            return 4;
        }
        const float *     embd = mtmd_get_output_embd(ctx);
        const std::string base = out_dir + "/img" + std::to_string(i);
        bool              ok   = write_f32(base + ".embd.f32", embd, n_tokens * static_cast<size_t>(n_embd)) &&
                  write_f32(base + ".features.f32", cap.features.data(), cap.features.size()) &&
                  write_f32(base + ".pixels.f32", cap.pixels.data(), cap.pixels.size());
        if (!ok) {
            std::fprintf(stderr, "cannot write to %s\n", out_dir.c_str());
            return 4;
        }
        char buf[1024];
        std::snprintf(buf, sizeof(buf),
                      "%s{\"image\":\"%s\",\"width\":%u,\"height\":%u,\"nTokens\":%zu,\"nEmbd\":%lld,"
                      "\"featuresShape\":[%lld,%lld],\"pixelsShape\":[%lld,%lld,%lld],\"encodeMs\":%.3f,"
                      "\"embd\":\"%s.embd.f32\",\"features\":\"%s.features.f32\",\"pixels\":\"%s.pixels.f32\"}",
                      i ? "," : "", json_escape(spec).c_str(), mtmd_bitmap_get_nx(bitmap), mtmd_bitmap_get_ny(bitmap),
                      n_tokens, static_cast<long long>(n_embd), static_cast<long long>(cap.features_ne[1]),
                      static_cast<long long>(cap.features_ne[0]), static_cast<long long>(cap.pixels_ne[2]),
                      static_cast<long long>(cap.pixels_ne[1]), static_cast<long long>(cap.pixels_ne[0]), ms,
                      base.c_str(), base.c_str(), base.c_str());
        json += buf;
        mtmd_input_chunks_free(chunks);
        mtmd_bitmap_free(bitmap);
    }
    json += "]}";
    std::printf("%s\n", json.c_str());
    std::fflush(stdout);
    mtmd_free(ctx);
    if (model != nullptr) {
        llama_model_free(model);
    }
    llama_backend_free();
    return 0;
}
