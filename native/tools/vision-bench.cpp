// Side-by-side benchmark: mm's vision encoder + projector against libmtmd's encode of the same image,
// in one process, same threads and backend, interleaved (A B B A ...) after one warm-up each (see
// BENCH.md). Test-only: links mm_core and libmtmd (one static ggml), never shipped.
//
//   mm-bench-vision --mmproj mmproj.gguf --image img.png [--text-model llm.gguf] [-t threads] [-n reps]
//                   [--fa auto|on|off] [--json] [--only ours|mtmd]
//
// One picture may give several chunks, each of its own size (Qwen-VL's graph follows the picture's
// size): both sides encode every chunk of the picture, and the times are for all of them. Families whose
// chunks libmtmd wraps in marker tokens (Qwen-VL, Gemma 3) need the text model's vocabulary for
// mtmd_tokenize: --text-model (only its vocabulary is loaded).
//
// --only ours|mtmd runs one side alone (one warm-up, then the reps) and prints its times, for a profiler
// (perf record, valgrind) to see that side only.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "common/error.h"
#include "common/system_info.h"
#include "encoders/image.h"
#include "encoders/vision_encoder.h"
#include "llama.h"
#include "mtmd-helper.h"
#include "mtmd.h"
#include "projectors/projector.h"

namespace {

using mm::bench::clock_type;
using mm::bench::ms;
using mm::bench::read_file;
using mm::bench::series;

}  // namespace

int main(int argc, char ** argv) {
    std::string mmproj, image, text_model, only, fa = "auto";
    int         threads = 2, reps = 10;
    bool        json = false;
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
        } else if (a == "--image") {
            image = next();
        } else if (a == "--text-model") {
            text_model = next();
        } else if (a == "-t") {
            threads = std::atoi(next().c_str());
        } else if (a == "-n") {
            reps = std::max(1, std::atoi(next().c_str()));
        } else if (a == "--fa") {
            fa = next();
        } else if (a == "--json") {
            json = true;
        } else if (a == "--only") {
            only = next();
        } else {
            std::fprintf(
                stderr,
                "usage: mm-bench-vision --mmproj F --image F [--text-model F] [-t N] [-n reps] [--fa auto|on|off] "
                "[--json] [--only ours|mtmd]\n");
            return 2;
        }
    }
    if (!only.empty() && only != "ours" && only != "mtmd") {
        std::fprintf(stderr, "--only takes ours or mtmd\n");
        return 2;
    }
    if (mmproj.empty() || image.empty()) {
        std::fprintf(stderr, "--mmproj and --image are required\n");
        return 2;
    }
    const bool use_gpu = std::getenv("MM_BENCH_GPU") != nullptr;
    try {
        mm::ensure_backend_initialised();
        auto quiet = [](ggml_log_level level, const char * text, void *) {
            if (level == GGML_LOG_LEVEL_ERROR) {
                std::fputs(text, stderr);
            }
        };
        mtmd_log_set(quiet, nullptr);
        llama_log_set(quiet, nullptr);

        llama_model * vocab_model = nullptr;
        if (!text_model.empty()) {
            llama_model_params mp = llama_model_default_params();
            mp.vocab_only         = true;
            mp.n_gpu_layers       = 0;
            vocab_model           = llama_model_load_from_file(text_model.c_str(), mp);
            if (vocab_model == nullptr) {
                std::fprintf(stderr, "failed to load text model %s\n", text_model.c_str());
                return 3;
            }
        }

        // ours
        mm::vision_encoder_params ep;
        ep.n_threads                 = threads;
        ep.use_gpu                   = use_gpu;
        ep.flash_attn                = fa == "on" ? 1 : fa == "off" ? 0 : -1;
        auto                 encoder = mm::vision_encoder::load(mmproj, ep);
        mm::projector_params pp;
        pp.n_threads   = threads;
        pp.use_gpu     = use_gpu;
        auto projector = mm::projector::load(mmproj, pp);

        // reference
        mtmd_context_params cp = mtmd_context_params_default();
        cp.use_gpu             = use_gpu;
        cp.print_timings       = false;
        cp.n_threads           = threads;
        cp.flash_attn_type     = fa == "on"    ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                 : fa == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                               : LLAMA_FLASH_ATTN_TYPE_AUTO;
        mtmd_context * ref     = mtmd_init_from_file(mmproj.c_str(), vocab_model, cp);
        if (ref == nullptr) {
            std::fprintf(stderr, "libmtmd failed to load %s\n", mmproj.c_str());
            return 3;
        }

        std::vector<uint8_t> bytes = read_file(image);
        mm::rgb_image        img   = mm::decode_image(bytes.data(), bytes.size(), 1ull << 32);
        mtmd_bitmap *        bmp   = mtmd_bitmap_init(img.width, img.height, img.data.data());

        series ours_pre, ours_enc, ours_proj, ours_total, ref_pre, ref_enc, ref_total;
        double max_diff = 0;
        int    n_chunks = 0, n_rows = 0;
        auto   run_ours = [&](bool record) {
            auto                         t0 = clock_type::now();
            mm::slice_layout             layout;
            std::vector<mm::pixel_input> pix = encoder->preprocess(img, &layout);
            auto                         t1  = clock_type::now();
            double                       enc = 0, proj = 0;
            std::vector<float>           out;
            size_t                       first_len = 0;  // the first chunk's values
            for (const mm::pixel_input & p : pix) {
                auto             a = clock_type::now();
                mm::token_matrix f = encoder->encode_pixels(p, nullptr);
                auto             b = clock_type::now();
                mm::token_matrix e = projector->project(f, nullptr);
                auto             c = clock_type::now();
                enc += ms(a, b);
                proj += ms(b, c);
                if (!record) {
                    out.insert(out.end(), e.data.begin(), e.data.end());
                    first_len = first_len == 0 ? out.size() : first_len;
                }
            }
            auto t3 = clock_type::now();
            if (record) {
                ours_pre.v.push_back(ms(t0, t1));
                ours_enc.v.push_back(enc);
                ours_proj.v.push_back(proj);
                ours_total.v.push_back(ms(t1, t3));
            }
            n_chunks = static_cast<int>(pix.size());
            // the parity check compares in libmtmd's prompt order: a template that puts the overview
            // last (Idefics3, LLaVA-1.6) moves our first chunk (the overview) to the end
            const mm::projector_family & fam     = projector->family_def();
            const bool                   ov_last = layout.has_overview && pix.size() > 1 &&
                                 !(fam.slices != nullptr && fam.slices(projector->info().vision).ov_first);
            if (!record && ov_last) {
                std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(first_len), out.end());
            }
            return out;
        };
        auto run_ref = [&](bool record, std::vector<float> * out) {
            mtmd_input_part         part{nullptr, bmp};
            const mtmd_input_part * parts[] = {&part};
            mtmd_input_chunks *     chunks  = mtmd_input_chunks_init();
            auto                    t0      = clock_type::now();
            if (mtmd_tokenize_from_parts(ref, chunks, parts, 1, false) != 0) {
                std::fprintf(stderr, "mtmd_tokenize failed\n");
                std::exit(4);
            }
            std::vector<const mtmd_input_chunk *> media;
            for (size_t c = 0; c < mtmd_input_chunks_size(chunks); ++c) {
                if (mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks, c)) == MTMD_INPUT_CHUNK_TYPE_IMAGE) {
                    media.push_back(mtmd_input_chunks_get(chunks, c));
                }
            }
            auto t1 = clock_type::now();
            if (media.empty()) {
                std::fprintf(stderr, "mtmd_tokenize gave no image chunk\n");
                std::exit(4);
            }
            for (const mtmd_input_chunk * chunk : media) {
                if (mtmd_encode_chunk(ref, chunk) != 0) {
                    std::fprintf(stderr, "mtmd_encode_chunk failed\n");
                    std::exit(4);
                }
                if (out != nullptr) {
                    const float * p = mtmd_get_output_embd(ref);
                    out->insert(
                        out->end(), p,
                        p + static_cast<size_t>(projector->n_embd_out()) * mtmd_input_chunk_get_n_tokens(chunk));
                }
            }
            auto t2 = clock_type::now();
            if (record) {
                ref_pre.v.push_back(ms(t0, t1));
                ref_enc.v.push_back(ms(t1, t2));
                ref_total.v.push_back(ms(t1, t2));
            }
            mtmd_input_chunks_free(chunks);
        };

        if (!only.empty()) {
            series & total = only == "ours" ? ours_total : ref_total;
            for (int r = 0; r <= reps; ++r) {  // the first one is the warm-up
                if (only == "ours") {
                    run_ours(r > 0);
                } else {
                    run_ref(r > 0, nullptr);
                }
            }
            std::printf("%s alone: encoder + projector %.4f ms median, %.4f min, %.4f max, %d reps after 1 warm-up\n",
                        only.c_str(), total.median(), total.min(), total.max(), reps);
            mtmd_bitmap_free(bmp);
            mtmd_free(ref);
            if (vocab_model != nullptr) {
                llama_model_free(vocab_model);
            }
            return 0;
        }
        // warm-up (and a parity sanity check)
        std::vector<float> mine = run_ours(false);
        std::vector<float> theirs;
        run_ref(false, &theirs);
        if (theirs.size() != mine.size()) {
            std::fprintf(stderr, "output sizes differ: %zu vs %zu\n", mine.size(), theirs.size());
            return 5;
        }
        for (size_t i = 0; i < theirs.size(); ++i) {
            max_diff = std::max(max_diff, static_cast<double>(std::fabs(mine[i] - theirs[i])));
        }
        n_rows = static_cast<int>(mine.size() / std::max(1, projector->n_embd_out()));
        // A B B A ...: each side goes first in half of the pairs, so order effects cancel
        for (int r = 0; r < reps; ++r) {
            if (r % 2 == 0) {
                run_ours(true);
                run_ref(true, nullptr);
            } else {
                run_ref(true, nullptr);
                run_ours(true);
            }
        }
        series pair;  // ours / libmtmd of each interleaved pair: the ratio's spread
        for (size_t r = 0; r < ours_total.v.size() && r < ref_total.v.size(); ++r) {
            pair.v.push_back(ours_total.v[r] / ref_total.v[r]);
        }
        const double ratio     = ours_total.median() / ref_total.median();
        const double pre_ratio = ours_pre.median() / ref_pre.median();
        auto         si        = mm::get_system_info();
        if (json) {
            std::printf(
                "{\"mmproj\":\"%s\",\"image\":\"%s\",\"imageSize\":[%d,%d],\"threads\":%d,\"reps\":%d,"
                "\"backend\":\"%s\",\"flashAttn\":%s,\"llamaCommit\":\"%s\",\"cpu\":\"%s\",\"maxAbsDiff\":%.3g,"
                "\"ours\":{\"preprocessMs\":{\"median\":%.4f,\"min\":%.4f},\"encoderMs\":{\"median\":%.4f,\"min\":%.4f}"
                ","
                "\"projectorMs\":{\"median\":%.4f,\"min\":%.4f},\"encoderProjectorMs\":{\"median\":%.4f,\"min\":%.4f}},"
                "\"ref\":{\"preprocessMs\":{\"median\":%.4f,\"min\":%.4f},\"encoderProjectorMs\":{\"median\":%.4f,"
                "\"min\":%.4f}},\"ratio\":%.4f,\"preprocessRatio\":%.4f,",
                mmproj.c_str(), image.c_str(), img.width, img.height, threads, reps, encoder->backend_name().c_str(),
                encoder->flash_attn() ? "true" : "false", si.llama_commit.c_str(), si.cpu_model.c_str(), max_diff,
                ours_pre.median(), ours_pre.min(), ours_enc.median(), ours_enc.min(), ours_proj.median(),
                ours_proj.min(), ours_total.median(), ours_total.min(), ref_pre.median(), ref_pre.min(),
                ref_total.median(), ref_total.min(), ratio, pre_ratio);
            // What was encoded (chunks and rows vary with the picture for dynamic-resolution families), and the
            // spread: the slowest rep of each side and the ratio of each interleaved pair.
            std::printf(
                "\"projectorType\":\"%s\",\"causal\":%s,\"chunks\":%d,\"rows\":%d,\"nEmbd\":%d,"
                "\"oursMaxMs\":%.4f,\"refMaxMs\":%.4f,\"pairRatio\":{\"median\":%.4f,\"min\":%.4f,\"max\":%.4f}}\n",
                projector->info().projector_type.c_str(), projector->causal() ? "true" : "false", n_chunks, n_rows,
                projector->n_embd_out(), ours_total.max(), ref_total.max(), pair.median(), pair.min(), pair.max());
        } else {
            std::printf("mmproj %s, image %s (%dx%d)\n", mmproj.c_str(), image.c_str(), img.width, img.height);
            std::printf("threads %d, backend %s, flash attention %s, %d reps after 1 warm-up each, interleaved ABBA\n",
                        threads, encoder->backend_name().c_str(), encoder->flash_attn() ? "on" : "off", reps);
            std::printf("llama.cpp %s, CPU %s\n", si.llama_commit.c_str(), si.cpu_model.c_str());
            std::printf("max |ours - libmtmd| = %.3g\n\n", max_diff);
            std::printf("%-22s %12s %12s %12s %12s %8s\n", "ms", "ours med", "ours min", "mtmd med", "mtmd min",
                        "ratio");
            std::printf("%-22s %12.4f %12.4f %12.4f %12.4f %8.3f\n", "preprocess", ours_pre.median(), ours_pre.min(),
                        ref_pre.median(), ref_pre.min(), pre_ratio);
            std::printf("%-22s %12.4f %12.4f %12s %12s\n", "encoder", ours_enc.median(), ours_enc.min(), "-", "-");
            std::printf("%-22s %12.4f %12.4f %12s %12s\n", "projector", ours_proj.median(), ours_proj.min(), "-", "-");
            std::printf("%-22s %12.4f %12.4f %12.4f %12.4f %8.3f\n", "encoder + projector", ours_total.median(),
                        ours_total.min(), ref_total.median(), ref_total.min(), ratio);
            std::printf(
                "\n%s: %d chunk(s), %d x %d out; ours / libmtmd per interleaved pair: median %.3f (%.3f-%.3f)\n",
                projector->info().projector_type.c_str(), n_chunks, n_rows, projector->n_embd_out(), pair.median(),
                pair.min(), pair.max());
        }
        mtmd_bitmap_free(bmp);
        mtmd_free(ref);
        if (vocab_model != nullptr) {
            llama_model_free(vocab_model);
        }
    } catch (const mm::error & e) {
        std::fprintf(stderr, "%s: %s\n", mm::error_code_name(e.code()), e.what());
        return 3;
    }
    return 0;
}
