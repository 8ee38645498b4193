// Test-only reference: what libmtmd (llama.cpp's own multimodal library, from the same vendored tree)
// computes for (mmproj, media), with nothing of mm in between. Never linked into mm.node.
//
// Per-image mode:
//   mm-ref-mtmd-embed --mmproj mmproj.gguf [--text-model llm.gguf] [-t threads] [--fa auto|on|off]
//                     [--out-dir DIR] [--features-tensor NAME] IMAGE...
//
// IMAGE is a file libmtmd decodes itself (mtmd_helper_bitmap_init_from_file), or raw:WxH:path for
// raw 8-bit RGB. For each image it writes DIR/img<i>.embd.f32 (the projector output, [n_tokens][n_embd]),
// DIR/img<i>.features.f32 (the vision tower output fed to the projector, [n_patches][n_embd_v]) and
// DIR/img<i>.pixels.f32 (the preprocessed input, [3][H][W]), captured with a ggml eval callback, and
// prints one JSON object with the shapes. It assumes one image gives one chunk.
// An audio file (WAV/MP3/FLAC, decoded by mtmd_helper_bitmap_init_from_file at the model's rate) gives
// one entry of type "audio" with every audio chunk libmtmd cuts it into (30 s of mel frames each): per
// chunk DIR/aud<i>.<c>.embd.f32 ([n_tokens][n_embd]), DIR/aud<i>.<c>.mel.f32 (the log-mel fed to the
// encoder, [n_mel][n_frames]) and DIR/aud<i>.<c>.features.f32 (the encoder output before the projector:
// the graph tensor "after_transformer", or the --features-tensor one).
//
// Layout mode (--prompt):
//   mm-ref-mtmd-embed --mmproj mmproj.gguf --text-model llm.gguf --prompt "A <__media__> B" [-t threads]
//                     [--fa auto|on|off] [--out-dir DIR] [--features-tensor NAME] MEDIA...
//
// Runs mtmd_tokenize on the prompt (add_special and parse_special true, markers are
// mtmd_default_marker()) with one MEDIA (image or audio file, or raw:WxH:path) per marker, and prints
// the whole layout, chunk by chunk, in libmtmd's order: text chunks with their tokens, media chunks with
// their token count, KV positions (n_pos), grid (nx, ny), id, attention (non-causal or not) and the
// position of every row exactly as mtmd_helper_eval_chunks would put it in the batch (n_past starts at
// 0 and advances by each chunk's n_pos). Each media chunk is encoded (mtmd_encode_chunk) and its
// embeddings, [n_tokens][llama_model_n_embd_inp], are written to DIR/chunk<i>.embd.f32 (i = the chunk's
// index among all chunks), with DIR/chunk<i>.features.f32 and DIR/chunk<i>.pixels.f32 when captured
// (audio chunks: DIR/chunk<i>.mel.f32, [n_mel][n_frames], instead of pixels, and "after_transformer" as
// the default features).
//
// --features-tensor NAME captures the first graph tensor named NAME in each encode as the features,
// instead of the rows gathered by `patches` (useful where libmtmd fuses encoder and projector, e.g.
// Qwen2-VL's post-layernorm output "norm_b-<n_layer>" before the merger; Qwen2.5-VL's RMS norm has no
// bias: "norm_w-<n_layer>").
//
// Exit codes: 0 ok, 2 usage, 3 load failed (message on stderr), 4 tokenize/encode/capture failed.
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

// The encoder output of libmtmd's Whisper graph (models/whisper-enc.cpp), right before the projector.
constexpr const char * k_audio_features = "after_transformer";

struct capture {
    // what to capture as the features: the named tensor (first match), or else the `patches` rows
    // (audio chunks: k_audio_features)
    std::string        features_tensor;
    bool               audio = false;  // the chunk being encoded is audio
    std::vector<float> pixels;
    int64_t            pixels_ne[3] = {0, 0, 0};
    std::vector<float> features;
    int64_t            features_ne[4] = {0, 0, 0, 0};
    bool               features_done  = false;
    std::string        error;
    int64_t            last_ne[2] = {0, 0};

    void reset() {
        pixels.clear();
        features.clear();
        features_done = false;
        for (auto & n : features_ne) {
            n = 0;
        }
        error.clear();
    }
};

bool is_named(const ggml_tensor * t, const char * name) {
    return t != nullptr && std::strcmp(t->name, name) == 0;
}

void read_f32(const ggml_tensor * t, std::vector<float> & out) {
    out.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, out.data(), 0, ggml_nbytes(t));
}

// A named tensor may be f16 or f32; views that are not contiguous cannot be read in one go.
bool read_any(const ggml_tensor * t, std::vector<float> & out, std::string & error) {
    if (!ggml_is_contiguous(t)) {
        error = std::string("tensor ") + t->name + " is not contiguous";
        return false;
    }
    if (t->type == GGML_TYPE_F32) {
        read_f32(t, out);
        return true;
    }
    if (t->type == GGML_TYPE_F16) {
        std::vector<ggml_fp16_t> h(ggml_nelements(t));
        ggml_backend_tensor_get(t, h.data(), 0, ggml_nbytes(t));
        out.resize(h.size());
        ggml_fp16_to_fp32_row(h.data(), out.data(), static_cast<int64_t>(h.size()));
        return true;
    }
    error = std::string("tensor ") + t->name + " has type " + ggml_type_name(t->type) + ", not f32 or f16";
    return false;
}

// ggml eval callback: the pixels are the input of the patch convolution's im2col, the features are
// the rows gathered by the `patches` index right before the projector (or the tensor named with
// --features-tensor, first match).
bool observe(ggml_tensor * t, bool ask, void * user) {
    auto *            c           = static_cast<capture *>(user);
    const std::string name        = !c->features_tensor.empty() ? c->features_tensor
                                    : c->audio                  ? std::string(k_audio_features)
                                                                : std::string();
    const bool        named       = !name.empty();
    bool              want_pixels = t->op == GGML_OP_IM2COL && is_named(t->src[1], "inp_raw");
    bool              want_feats  = named ? !c->features_done && is_named(t, name.c_str())
                                          : t->op == GGML_OP_GET_ROWS && is_named(t->src[1], "patches");
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
    if (want_feats && named) {
        c->features_done = true;
        if (read_any(t, c->features, c->error)) {
            for (int i = 0; i < 4; ++i) {
                c->features_ne[i] = t->ne[i];
            }
        }
    } else if (want_feats && t->type == GGML_TYPE_F32) {
        read_f32(t, c->features);
        c->features_ne[0] = t->ne[0];
        c->features_ne[1] = t->ne[1];
        c->features_ne[2] = 1;
        c->features_ne[3] = 1;
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
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
        } else {
            out += ch;
        }
    }
    return out;
}

std::string json_str(const std::string & s) {
    return "\"" + json_escape(s) + "\"";
}

// The captured features as a [rows][ne0] matrix, rows = every other dimension.
int64_t feature_rows(const capture & c) {
    return c.features_ne[0] == 0 ? 0 : static_cast<int64_t>(c.features.size()) / c.features_ne[0];
}

int usage() {
    std::fprintf(stderr,
                 "usage: mm-ref-mtmd-embed --mmproj F [--text-model F] [-t N] [--fa auto|on|off] [--out-dir D] "
                 "[--features-tensor NAME] IMAGE|raw:WxH:path...\n"
                 "       mm-ref-mtmd-embed --mmproj F --text-model F --prompt TEXT [-t N] [--fa auto|on|off] "
                 "[--out-dir D] [--features-tensor NAME] MEDIA|raw:WxH:path...\n");
    return 2;
}

// Loads one image (or audio file) as libmtmd would; nullptr (message on stderr) on failure. Sets *exit_code.
mtmd_bitmap * load_bitmap(mtmd_context * ctx, const std::string & spec, int * exit_code) {
    if (spec.rfind("raw:", 0) == 0) {
        unsigned w = 0, h = 0;
        char     path[4096];
        if (std::sscanf(spec.c_str(), "raw:%ux%u:%4095s", &w, &h, path) != 3) {
            std::fprintf(stderr, "bad raw image spec %s\n", spec.c_str());
            *exit_code = 2;
            return nullptr;
        }
        std::ifstream        in(path, std::ios::binary);
        std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
        in.read(reinterpret_cast<char *>(rgb.data()), static_cast<std::streamsize>(rgb.size()));
        if (!in.good()) {
            std::fprintf(stderr, "cannot read %zu bytes from %s\n", rgb.size(), path);
            *exit_code = 4;
            return nullptr;
        }
        return mtmd_bitmap_init(w, h, rgb.data());
    }
    mtmd_bitmap * bitmap =
        mtmd_helper_bitmap_init_from_file(ctx, spec.c_str(), false, mtmd_helper_init_opt_default()).bitmap;
    if (bitmap == nullptr) {
        std::fprintf(stderr, "libmtmd cannot load media file %s\n", spec.c_str());
        *exit_code = 4;
    }
    return bitmap;
}

// After an encode: the named features tensor must have been found and read.
bool check_capture(const capture & cap, const std::string & what) {
    if (!cap.error.empty()) {
        std::fprintf(stderr, "%s: %s\n", what.c_str(), cap.error.c_str());
        return false;
    }
    if (!cap.features_tensor.empty() && !cap.features_done) {
        std::fprintf(stderr, "%s: no tensor named %s in the graph\n", what.c_str(), cap.features_tensor.c_str());
        return false;
    }
    return true;
}

struct media_pos {
    llama_pos t, y, x, z;
};

// The positions mtmd_helper_decode_image_chunk puts in the batch for a media chunk starting at n_past:
// M-RoPE images take mtmd_helper_image_get_decoder_pos, M-RoPE audio is 1-D in every section, and
// without M-RoPE every row gets n_past + i.
std::vector<media_pos> chunk_positions(const mtmd_context * ctx, const mtmd_input_chunk * chunk, llama_pos n_past) {
    const size_t           n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
    std::vector<media_pos> out(n_tokens);
    const auto *           image = mtmd_input_chunk_get_tokens_image(chunk);
    if (mtmd_decode_use_mrope(ctx) && image != nullptr &&
        mtmd_input_chunk_get_type(chunk) == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
        std::vector<mtmd_decoder_pos> rel(n_tokens);
        mtmd_helper_image_get_decoder_pos(image, n_past, rel.data());
        for (size_t i = 0; i < n_tokens; ++i) {
            out[i] = {static_cast<llama_pos>(rel[i].t), static_cast<llama_pos>(rel[i].y),
                      static_cast<llama_pos>(rel[i].x), static_cast<llama_pos>(rel[i].z)};
        }
    } else {
        for (size_t i = 0; i < n_tokens; ++i) {
            const llama_pos p = n_past + static_cast<llama_pos>(i);
            out[i]            = {p, p, p, p};
        }
    }
    return out;
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
// The token grid libmtmd recorded (M-RoPE: the merged patch grid; otherwise n_tokens x 1).
void image_grid(const mtmd_image_tokens * image, size_t * nx, size_t * ny) {
    *nx = mtmd_image_tokens_get_nx(image);
    *ny = mtmd_image_tokens_get_ny(image);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// Layout mode: the whole prompt through mtmd_tokenize, every chunk reported, media chunks encoded.
int run_layout(mtmd_context * ctx, const llama_model * model, capture & cap, const std::string & prompt,
               const std::vector<std::string> & media, const std::string & out_dir, const std::string & mmproj,
               const std::string & text_model) {
    int                        exit_code = 0;
    std::vector<mtmd_bitmap *> bitmaps;
    auto                       free_bitmaps = [&]() {
        for (auto * b : bitmaps) {
            mtmd_bitmap_free(b);
        }
    };
    for (const auto & spec : media) {
        mtmd_bitmap * b = load_bitmap(ctx, spec, &exit_code);
        if (b == nullptr) {
            free_bitmaps();
            return exit_code;
        }
        bitmaps.push_back(b);
    }
    mtmd_input_text     text{prompt.c_str(), prompt.size(), true, true};
    mtmd_input_chunks * chunks = mtmd_input_chunks_init();
    const int32_t       res    = mtmd_tokenize(ctx, chunks, &text, bitmaps.data(), bitmaps.size());
    if (res != 0) {
        std::fprintf(stderr, "mtmd_tokenize failed with %d\n", res);
        mtmd_input_chunks_free(chunks);
        free_bitmaps();
        return 4;
    }

    const int64_t n_embd    = llama_model_n_embd_inp(model);
    const bool    use_mrope = mtmd_decode_use_mrope(ctx);
    llama_pos     n_past    = 0;  // advanced the way mtmd_helper_eval_chunks does
    std::string   items;
    char          buf[4096];
    for (size_t i = 0; i < mtmd_input_chunks_size(chunks); ++i) {
        const mtmd_input_chunk * chunk = mtmd_input_chunks_get(chunks, i);
        const auto               type  = mtmd_input_chunk_get_type(chunk);
        const llama_pos          pos0  = n_past;
        items += i ? "," : "";
        if (type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            size_t              n      = 0;
            const llama_token * tokens = mtmd_input_chunk_get_tokens_text(chunk, &n);
            items += "{\"type\":\"text\",\"tokens\":[";
            for (size_t k = 0; k < n; ++k) {
                items += (k ? "," : "") + std::to_string(tokens[k]);
            }
            std::snprintf(buf, sizeof(buf), "],\"nTokens\":%zu,\"nPos\":%zu,\"pos0\":%d}", n, n, pos0);
            items += buf;
            n_past += static_cast<llama_pos>(n);
            continue;
        }
        const bool                is_image = type == MTMD_INPUT_CHUNK_TYPE_IMAGE;
        const size_t              n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
        const llama_pos           n_pos    = mtmd_input_chunk_get_n_pos(chunk);
        const mtmd_image_tokens * image    = mtmd_input_chunk_get_tokens_image(chunk);
        const char *              id       = mtmd_input_chunk_get_id(chunk);
        std::string               grid     = "\"nx\":null,\"ny\":null";
        if (image != nullptr) {
            size_t nx = 0, ny = 0;
            image_grid(image, &nx, &ny);
            grid = "\"nx\":" + std::to_string(nx) + ",\"ny\":" + std::to_string(ny);
        }
        const std::string what = "chunk " + std::to_string(i);
        cap.reset();
        cap.audio = !is_image;
        auto t0   = std::chrono::steady_clock::now();
        if (mtmd_encode_chunk(ctx, chunk) != 0) {
            std::fprintf(stderr, "mtmd_encode_chunk failed for %s\n", what.c_str());
            exit_code = 4;
            break;
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (!check_capture(cap, what)) {
            exit_code = 4;
            break;
        }
        const std::string base  = out_dir + "/chunk" + std::to_string(i);
        const float *     embd  = mtmd_get_output_embd(ctx);
        bool              ok    = write_f32(base + ".embd.f32", embd, n_tokens * static_cast<size_t>(n_embd));
        std::string       extra = ",\"featuresFile\":null,\"featuresShape\":null,\"featuresNe\":null";
        if (!cap.features.empty()) {
            ok = ok && write_f32(base + ".features.f32", cap.features.data(), cap.features.size());
            std::snprintf(buf, sizeof(buf),
                          ",\"featuresFile\":\"%s.features.f32\",\"featuresShape\":[%lld,%lld],"
                          "\"featuresNe\":[%lld,%lld,%lld,%lld]",
                          json_escape(base).c_str(), static_cast<long long>(feature_rows(cap)),
                          static_cast<long long>(cap.features_ne[0]), static_cast<long long>(cap.features_ne[0]),
                          static_cast<long long>(cap.features_ne[1]), static_cast<long long>(cap.features_ne[2]),
                          static_cast<long long>(cap.features_ne[3]));
            extra = buf;
        }
        if (!cap.pixels.empty() && !is_image) {
            // the conv stem's input: the chunk's log-mel, [n_mel][n_frames]
            ok = ok && write_f32(base + ".mel.f32", cap.pixels.data(), cap.pixels.size());
            std::snprintf(
                buf, sizeof(buf),
                ",\"pixelsFile\":null,\"pixelsShape\":null,\"melFile\":\"%s.mel.f32\",\"melShape\":[%lld,%lld]",
                json_escape(base).c_str(), static_cast<long long>(cap.pixels_ne[1]),
                static_cast<long long>(cap.pixels_ne[0]));
            extra += buf;
        } else if (!cap.pixels.empty()) {
            ok = ok && write_f32(base + ".pixels.f32", cap.pixels.data(), cap.pixels.size());
            std::snprintf(buf, sizeof(buf),
                          ",\"pixelsFile\":\"%s.pixels.f32\",\"pixelsShape\":[%lld,%lld,%lld],\"melFile\":null,"
                          "\"melShape\":null",
                          json_escape(base).c_str(), static_cast<long long>(cap.pixels_ne[2]),
                          static_cast<long long>(cap.pixels_ne[1]), static_cast<long long>(cap.pixels_ne[0]));
            extra += buf;
        } else {
            extra += ",\"pixelsFile\":null,\"pixelsShape\":null,\"melFile\":null,\"melShape\":null";
        }
        if (!ok) {
            std::fprintf(stderr, "cannot write to %s\n", out_dir.c_str());
            exit_code = 4;
            break;
        }
        std::snprintf(buf, sizeof(buf),
                      "{\"type\":\"%s\",\"nTokens\":%zu,\"nPos\":%d,%s,\"id\":%s,\"nonCausal\":%s,\"pos0\":%d,"
                      "\"encodeMs\":%.3f,\"embdFile\":",
                      is_image ? "image" : "audio", n_tokens, n_pos, grid.c_str(),
                      json_str(id != nullptr ? id : "").c_str(),
                      mtmd_decode_use_non_causal(ctx, chunk) ? "true" : "false", pos0, ms);
        items += buf;
        items += json_str(base + ".embd.f32") + extra + ",\"positions\":[";
        const auto positions = chunk_positions(ctx, chunk, pos0);
        for (size_t k = 0; k < positions.size(); ++k) {
            const auto & p = positions[k];
            std::snprintf(buf, sizeof(buf), "%s{\"t\":%d,\"y\":%d,\"x\":%d,\"z\":%d}", k ? "," : "", p.t, p.y, p.x,
                          p.z);
            items += buf;
        }
        items += "]}";
        n_past += n_pos;
    }
    if (exit_code == 0) {
        std::string json = "{\"mmproj\":" + json_str(mmproj) + ",\"textModel\":" + json_str(text_model) +
                           ",\"prompt\":" + json_str(prompt) + ",\"marker\":" + json_str(mtmd_default_marker());
        std::snprintf(buf, sizeof(buf),
                      ",\"useMrope\":%s,\"nEmbd\":%lld,\"nTokensTotal\":%zu,\"nPosTotal\":%d,\"nPast\":%d,\"chunks\":[",
                      use_mrope ? "true" : "false", static_cast<long long>(n_embd), mtmd_helper_get_n_tokens(chunks),
                      mtmd_helper_get_n_pos(chunks), n_past);
        json += buf + items + "]}";
        std::printf("%s\n", json.c_str());
        std::fflush(stdout);
    }
    mtmd_input_chunks_free(chunks);
    free_bitmaps();
    return exit_code;
}

// Per-file mode, an audio file: every audio chunk of it (no text) encoded; appends one JSON entry of type
// "audio" to `json`. Returns an exit code.
int run_audio_file(mtmd_context * ctx, capture & cap, const std::string & spec, size_t index, mtmd_bitmap * bitmap,
                   const std::string & out_dir, std::string & json) {
    mtmd_input_part         part{nullptr, bitmap};
    const mtmd_input_part * parts[] = {&part};
    mtmd_input_chunks *     chunks  = mtmd_input_chunks_init();
    if (mtmd_tokenize_from_parts(ctx, chunks, parts, 1, false) != 0) {
        std::fprintf(stderr, "mtmd_tokenize failed for %s\n", spec.c_str());
        mtmd_input_chunks_free(chunks);
        return 4;
    }
    char buf[1024];
    std::snprintf(buf, sizeof(buf), "%s{\"type\":\"audio\",\"audio\":%s,\"nSamples\":%u,\"sampleRate\":%d,\"chunks\":[",
                  index ? "," : "", json_str(spec).c_str(), mtmd_bitmap_get_nx(bitmap),
                  mtmd_get_audio_sample_rate(ctx));
    json += buf;
    int exit_code = 0;
    int n_audio   = 0;
    for (size_t c = 0; c < mtmd_input_chunks_size(chunks) && exit_code == 0; ++c) {
        const mtmd_input_chunk * chunk = mtmd_input_chunks_get(chunks, c);
        if (mtmd_input_chunk_get_type(chunk) != MTMD_INPUT_CHUNK_TYPE_AUDIO) {
            continue;
        }
        const std::string what = spec + " chunk " + std::to_string(n_audio);
        cap.reset();
        cap.audio = true;
        auto t0   = std::chrono::steady_clock::now();
        if (mtmd_encode_chunk(ctx, chunk) != 0) {
            std::fprintf(stderr, "mtmd_encode_chunk failed for %s\n", what.c_str());
            exit_code = 4;
            break;
        }
        const double  ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const size_t  n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
        const int64_t n_embd   = cap.last_ne[0];
        if (cap.last_ne[1] != static_cast<int64_t>(n_tokens) || !check_capture(cap, what)) {
            std::fprintf(stderr, "%s: output [%lld, %lld] for %zu tokens\n", what.c_str(),
                         static_cast<long long>(cap.last_ne[0]), static_cast<long long>(cap.last_ne[1]), n_tokens);
            exit_code = 4;
            break;
        }
        const std::string base = out_dir + "/aud" + std::to_string(index) + "." + std::to_string(n_audio);
        const float *     embd = mtmd_get_output_embd(ctx);
        bool              ok   = write_f32(base + ".embd.f32", embd, n_tokens * static_cast<size_t>(n_embd)) &&
                  write_f32(base + ".mel.f32", cap.pixels.data(), cap.pixels.size());
        std::string feats = ",\"features\":null,\"featuresShape\":null,\"featuresNe\":null";
        if (!cap.features.empty()) {
            ok = ok && write_f32(base + ".features.f32", cap.features.data(), cap.features.size());
            std::snprintf(buf, sizeof(buf),
                          ",\"features\":\"%s.features.f32\",\"featuresShape\":[%lld,%lld],"
                          "\"featuresNe\":[%lld,%lld,%lld,%lld]",
                          json_escape(base).c_str(), static_cast<long long>(feature_rows(cap)),
                          static_cast<long long>(cap.features_ne[0]), static_cast<long long>(cap.features_ne[0]),
                          static_cast<long long>(cap.features_ne[1]), static_cast<long long>(cap.features_ne[2]),
                          static_cast<long long>(cap.features_ne[3]));
            feats = buf;
        }
        if (!ok) {
            std::fprintf(stderr, "cannot write to %s\n", out_dir.c_str());
            exit_code = 4;
            break;
        }
        std::snprintf(buf, sizeof(buf),
                      "%s{\"nTokens\":%zu,\"nPos\":%d,\"nEmbd\":%lld,\"melShape\":[%lld,%lld],\"encodeMs\":%.3f,",
                      n_audio ? "," : "", n_tokens, mtmd_input_chunk_get_n_pos(chunk), static_cast<long long>(n_embd),
                      static_cast<long long>(cap.pixels_ne[1]), static_cast<long long>(cap.pixels_ne[0]), ms);
        json += buf;
        json += "\"embd\":" + json_str(base + ".embd.f32") + ",\"mel\":" + json_str(base + ".mel.f32") + feats + "}";
        ++n_audio;
    }
    json += "]}";
    mtmd_input_chunks_free(chunks);
    if (exit_code == 0 && n_audio == 0) {
        std::fprintf(stderr, "no audio chunk for %s\n", spec.c_str());
        exit_code = 4;
    }
    return exit_code;
}

// Per-file mode: each image alone (no text), one chunk each; each audio file alone, all its chunks.
int run_images(mtmd_context * ctx, capture & cap, const std::vector<std::string> & images, const std::string & out_dir,
               const std::string & mmproj) {
    std::string json = "{\"mmproj\":" + json_str(mmproj) + ",\"images\":[";
    for (size_t i = 0; i < images.size(); ++i) {
        const std::string & spec      = images[i];
        int                 exit_code = 0;
        mtmd_bitmap *       bitmap    = load_bitmap(ctx, spec, &exit_code);
        if (bitmap == nullptr) {
            return exit_code;
        }
        if (mtmd_bitmap_is_audio(bitmap)) {
            exit_code = run_audio_file(ctx, cap, spec, i, bitmap, out_dir, json);
            mtmd_bitmap_free(bitmap);
            if (exit_code != 0) {
                return exit_code;
            }
            continue;
        }
        mtmd_input_part         part{nullptr, bitmap};
        const mtmd_input_part * parts[] = {&part};
        mtmd_input_chunks *     chunks  = mtmd_input_chunks_init();
        if (mtmd_tokenize_from_parts(ctx, chunks, parts, 1, false) != 0) {
            std::fprintf(stderr, "mtmd_tokenize failed for %s\n", spec.c_str());
            return 4;
        }
        cap.audio                      = false;
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
        if (!check_capture(cap, spec)) {
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
                      "%s{\"type\":\"image\",\"image\":%s,\"width\":%u,\"height\":%u,\"nTokens\":%zu,\"nEmbd\":%lld,"
                      "\"featuresShape\":[%lld,%lld],\"featuresNe\":[%lld,%lld,%lld,%lld],"
                      "\"pixelsShape\":[%lld,%lld,%lld],\"encodeMs\":%.3f,",
                      i ? "," : "", json_str(spec).c_str(), mtmd_bitmap_get_nx(bitmap), mtmd_bitmap_get_ny(bitmap),
                      n_tokens, static_cast<long long>(n_embd), static_cast<long long>(feature_rows(cap)),
                      static_cast<long long>(cap.features_ne[0]), static_cast<long long>(cap.features_ne[0]),
                      static_cast<long long>(cap.features_ne[1]), static_cast<long long>(cap.features_ne[2]),
                      static_cast<long long>(cap.features_ne[3]), static_cast<long long>(cap.pixels_ne[2]),
                      static_cast<long long>(cap.pixels_ne[1]), static_cast<long long>(cap.pixels_ne[0]), ms);
        json += buf;
        json += "\"embd\":" + json_str(base + ".embd.f32") + ",\"features\":" + json_str(base + ".features.f32") +
                ",\"pixels\":" + json_str(base + ".pixels.f32") + "}";
        mtmd_input_chunks_free(chunks);
        mtmd_bitmap_free(bitmap);
    }
    json += "]}";
    std::printf("%s\n", json.c_str());
    std::fflush(stdout);
    return 0;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string              mmproj, text_model, out_dir = ".", fa = "auto", prompt, features_tensor;
    bool                     layout  = false;
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
        } else if (a == "--prompt") {
            prompt = next();
            layout = true;
        } else if (a == "--features-tensor") {
            features_tensor = next();
        } else if (!a.empty() && a[0] == '-') {
            return usage();
        } else {
            images.push_back(a);
        }
    }
    if (mmproj.empty() || (fa != "auto" && fa != "on" && fa != "off") || (layout && text_model.empty())) {
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
    mtmd_helper_log_set(log_cb, &verbose_flag);  // also sets libmtmd's own logger
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

    capture cap;
    cap.features_tensor    = features_tensor;
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

    const int rc = layout ? run_layout(ctx, model, cap, prompt, images, out_dir, mmproj, text_model)
                          : run_images(ctx, cap, images, out_dir, mmproj);
    mtmd_free(ctx);
    if (model != nullptr) {
        llama_model_free(model);
    }
    llama_backend_free();
    return rc;
}
