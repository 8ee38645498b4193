// Side-by-side benchmark of mm's audio path against libmtmd's, for the same PCM, in one process, same
// threads and backend, interleaved (A B B A ...) after one warm-up each (see BENCH.md). The audio
// counterpart of vision-bench.cpp. Test-only: links mm_core and libmtmd (one static ggml), never
// shipped.
//
//   mm-bench-audio --mmproj mmproj.gguf --audio file.wav [--text-model llm.gguf] [-t threads] [-n reps]
//                  [--fa auto|on|off] [--json] [--only ours|mtmd]
//
// The file is decoded once, by mm's decoder (libmtmd's helper's, bit for bit) at the tower's rate; both
// sides get those samples. Two stages are timed for the whole file:
//   - mel: ours audio_encoder::mel; libmtmd mtmd_tokenize_from_parts of the audio bitmap (its audio
//     preprocessor: the log-mel and the 30 s chunking, plus the two marker tokens' tokenization);
//   - encode: encoder + projector of every 30 s chunk; ours audio_encoder::encode_mel then
//     projector::project, libmtmd mtmd_encode_chunk (clip_image_batch_encode: one graph for both).
// The encode ratio is the one that matters. Files whose audio chunks libmtmd wraps in marker tokens
// (qwen2a's <|audio_bos|>) need the text model's vocabulary for mtmd_tokenize: --text-model (only its
// vocabulary is loaded).
//
// --only ours|mtmd runs one side alone (one warm-up, then the reps) for a profiler.
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
#include "encoders/audio/audio.h"
#include "encoders/audio/audio_encoder.h"
#include "llama.h"
#include "mtmd.h"
#include "projectors/projector.h"

namespace {

using mm::bench::clock_type;
using mm::bench::json_series;
using mm::bench::ms;
using mm::bench::pair_ratio;
using mm::bench::read_file;
using mm::bench::series;

// An hour at the tower's rate, as @mm/encoders' Audio (DEFAULT_MAX_AUDIO_SECONDS).
constexpr uint64_t k_max_seconds = 3600;

}  // namespace

int main(int argc, char ** argv) {
    std::string mmproj, audio, text_model, only, fa = "auto";
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
        } else if (a == "--audio") {
            audio = next();
        } else if (a == "--text-model") {
            text_model = next();
        } else if (a == "-t") {
            threads = std::max(1, std::atoi(next().c_str()));
        } else if (a == "-n") {
            reps = std::max(1, std::atoi(next().c_str()));
        } else if (a == "--fa") {
            fa = next();
        } else if (a == "--json") {
            json = true;
        } else if (a == "--only") {
            only = next();
        } else {
            std::fprintf(stderr,
                         "usage: mm-bench-audio --mmproj F --audio F [--text-model F] [-t N] [-n reps] "
                         "[--fa auto|on|off] [--json] [--only ours|mtmd]\n");
            return 2;
        }
    }
    if (!only.empty() && only != "ours" && only != "mtmd") {
        std::fprintf(stderr, "--only takes ours or mtmd\n");
        return 2;
    }
    if (fa != "auto" && fa != "on" && fa != "off") {
        std::fprintf(stderr, "--fa takes auto, on or off\n");
        return 2;
    }
    if (mmproj.empty() || audio.empty()) {
        std::fprintf(stderr, "--mmproj and --audio are required\n");
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

        // ours (first: a file with no audio tower or of a type mm has no own graph for is a typed error
        // here, before libmtmd loads anything)
        mm::audio_encoder_params ep;
        ep.n_threads                 = threads;
        ep.use_gpu                   = use_gpu;
        ep.flash_attn                = fa == "on" ? 1 : fa == "off" ? 0 : -1;
        auto                 encoder = mm::audio_encoder::load(mmproj, ep);
        mm::projector_params pp;
        pp.n_threads   = threads;
        pp.use_gpu     = use_gpu;
        pp.audio       = true;
        auto projector = mm::projector::load(mmproj, pp);

        const mm::vision_hparams & hp    = encoder->hparams();
        std::vector<uint8_t>       bytes = read_file(audio);
        mm::pcm_audio              pcm   = mm::decode_audio(bytes.data(), bytes.size(), hp.sample_rate,
                                                            k_max_seconds * static_cast<uint64_t>(hp.sample_rate));

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
        if (!mtmd_support_audio(ref) || mtmd_get_audio_sample_rate(ref) != hp.sample_rate) {
            std::fprintf(stderr, "libmtmd reads no audio encoder at %d Hz from %s\n", hp.sample_rate, mmproj.c_str());
            return 3;
        }
        mtmd_bitmap * bmp = mtmd_bitmap_init_from_audio(pcm.samples.size(), pcm.samples.data());

        series ours_mel, ours_enc, ours_proj, ours_total, ref_mel, ref_total;
        int    n_chunks = 0, n_rows = 0;
        auto   run_ours = [&](bool record, std::vector<float> * out) {
            auto                       t0     = clock_type::now();
            std::vector<mm::mel_chunk> chunks = encoder->mel(pcm.samples.data(), pcm.samples.size(), nullptr);
            auto                       t1     = clock_type::now();
            double                     enc = 0, proj = 0;
            for (const mm::mel_chunk & c : chunks) {
                auto             a = clock_type::now();
                mm::token_matrix f = encoder->encode_mel(c, nullptr);
                auto             b = clock_type::now();
                mm::token_matrix e = projector->project(f, nullptr);
                auto             d = clock_type::now();
                enc += ms(a, b);
                proj += ms(b, d);
                if (out != nullptr) {
                    out->insert(out->end(), e.data.begin(), e.data.end());
                }
            }
            auto t2 = clock_type::now();
            if (record) {
                ours_mel.v.push_back(ms(t0, t1));
                ours_enc.v.push_back(enc);
                ours_proj.v.push_back(proj);
                ours_total.v.push_back(ms(t1, t2));
            }
            n_chunks = static_cast<int>(chunks.size());
        };
        int  ref_chunks = 0;
        auto run_ref    = [&](bool record, std::vector<float> * out) {
            mtmd_input_part         part{nullptr, bmp};
            const mtmd_input_part * parts[] = {&part};
            mtmd_input_chunks *     chunks  = mtmd_input_chunks_init();
            auto                    t0      = clock_type::now();
            if (mtmd_tokenize_from_parts(ref, chunks, parts, 1, false) != 0) {
                std::fprintf(stderr, "mtmd_tokenize failed (a file whose markers need the text model: --text-model)\n");
                std::exit(4);
            }
            std::vector<const mtmd_input_chunk *> media;
            for (size_t c = 0; c < mtmd_input_chunks_size(chunks); ++c) {
                if (mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks, c)) == MTMD_INPUT_CHUNK_TYPE_AUDIO) {
                    media.push_back(mtmd_input_chunks_get(chunks, c));
                }
            }
            auto t1 = clock_type::now();
            if (media.empty()) {
                std::fprintf(stderr, "mtmd_tokenize gave no audio chunk\n");
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
                ref_mel.v.push_back(ms(t0, t1));
                ref_total.v.push_back(ms(t1, t2));
            }
            ref_chunks = static_cast<int>(media.size());
            mtmd_input_chunks_free(chunks);
        };
        auto cleanup = [&]() {
            mtmd_bitmap_free(bmp);
            mtmd_free(ref);
            if (vocab_model != nullptr) {
                llama_model_free(vocab_model);
            }
        };

        if (!only.empty()) {
            series & mel   = only == "ours" ? ours_mel : ref_mel;
            series & total = only == "ours" ? ours_total : ref_total;
            for (int r = 0; r <= reps; ++r) {  // the first one is the warm-up
                if (only == "ours") {
                    run_ours(r > 0, nullptr);
                } else {
                    run_ref(r > 0, nullptr);
                }
            }
            std::printf(
                "%s alone: mel %.4f ms median (%.4f-%.4f), encoder + projector %.4f ms median (%.4f-%.4f), %d reps "
                "after 1 warm-up\n",
                only.c_str(), mel.median(), mel.min(), mel.max(), total.median(), total.min(), total.max(), reps);
            cleanup();
            return 0;
        }

        // warm-up, and the parity check
        std::vector<float> mine, theirs;
        run_ours(false, &mine);
        run_ref(false, &theirs);
        if (ref_chunks != n_chunks || theirs.size() != mine.size()) {
            std::fprintf(stderr, "outputs differ in shape: ours %d chunk(s), %zu values; libmtmd %d, %zu\n", n_chunks,
                         mine.size(), ref_chunks, theirs.size());
            cleanup();
            return 5;
        }
        double max_diff = 0, dot = 0, nm = 0, nt = 0;
        for (size_t i = 0; i < theirs.size(); ++i) {
            const double a = mine[i], b = theirs[i];
            max_diff = std::max(max_diff, std::fabs(a - b));
            dot += a * b;
            nm += a * a;
            nt += b * b;
        }
        const double cosine = nm > 0 && nt > 0 ? dot / std::sqrt(nm * nt) : (nm == nt ? 1.0 : 0.0);
        n_rows              = static_cast<int>(mine.size() / std::max(1, projector->n_embd_out()));

        // A B B A ...: each side goes first in half of the pairs, so order effects cancel
        for (int r = 0; r < reps; ++r) {
            if (r % 2 == 0) {
                run_ours(true, nullptr);
                run_ref(true, nullptr);
            } else {
                run_ref(true, nullptr);
                run_ours(true, nullptr);
            }
        }
        const series        mel_pair  = pair_ratio(ours_mel, ref_mel);
        const series        enc_pair  = pair_ratio(ours_total, ref_total);
        const double        mel_ratio = ours_mel.median() / ref_mel.median();
        const double        ratio     = ours_total.median() / ref_total.median();
        const double        seconds   = static_cast<double>(pcm.samples.size()) / hp.sample_rate;
        auto                si        = mm::get_system_info();
        const std::string & type      = projector->info().projector_type;
        if (json) {
            std::printf(
                "{\"mmproj\":\"%s\",\"audio\":\"%s\",\"seconds\":%.3f,\"samples\":%zu,\"sampleRate\":%d,"
                "\"threads\":%d,\"reps\":%d,\"backend\":\"%s\",\"flashAttn\":%s,\"llamaCommit\":\"%s\","
                "\"cpu\":\"%s\",\"projectorType\":\"%s\",\"chunks\":%d,\"rows\":%d,\"nEmbd\":%d,"
                "\"encoderWidth\":%d,\"encoderHeads\":%d,\"encoderBlocks\":%d,\"nMel\":%d,"
                "\"maxAbsDiff\":%.3g,\"cosine\":%.9f,",
                mmproj.c_str(), audio.c_str(), seconds, pcm.samples.size(), hp.sample_rate, threads, reps,
                encoder->backend_name().c_str(), encoder->flash_attn() ? "true" : "false", si.llama_commit.c_str(),
                si.cpu_model.c_str(), type.c_str(), n_chunks, n_rows, projector->n_embd_out(), hp.n_embd, hp.n_head,
                hp.n_layer, hp.n_mel, max_diff, cosine);
            std::printf(
                "\"ours\":{\"melMs\":%s,\"encoderMs\":%s,\"projectorMs\":%s,\"encoderProjectorMs\":%s},"
                "\"ref\":{\"melMs\":%s,\"encoderProjectorMs\":%s},"
                "\"melRatio\":%.4f,\"ratio\":%.4f,\"melPairRatio\":%s,\"pairRatio\":%s}\n",
                json_series(ours_mel).c_str(), json_series(ours_enc).c_str(), json_series(ours_proj).c_str(),
                json_series(ours_total).c_str(), json_series(ref_mel).c_str(), json_series(ref_total).c_str(),
                mel_ratio, ratio, json_series(mel_pair).c_str(), json_series(enc_pair).c_str());
        } else {
            std::printf("mmproj %s (%s: width %d, %d heads, %d blocks, %d mel bins)\n", mmproj.c_str(), type.c_str(),
                        hp.n_embd, hp.n_head, hp.n_layer, hp.n_mel);
            std::printf("audio %s: %.2f s at %d Hz, %d chunk(s), %d x %d out\n", audio.c_str(), seconds, hp.sample_rate,
                        n_chunks, n_rows, projector->n_embd_out());
            std::printf("threads %d, backend %s, flash attention %s, %d reps after 1 warm-up each, interleaved ABBA\n",
                        threads, encoder->backend_name().c_str(), encoder->flash_attn() ? "on" : "off", reps);
            std::printf("llama.cpp %s, CPU %s\n", si.llama_commit.c_str(), si.cpu_model.c_str());
            std::printf("embeddings max |ours - libmtmd| = %.3g, cosine %.9f\n\n", max_diff, cosine);
            std::printf("%-22s %22s %22s %8s %23s\n", "ms: median (min-max)", "ours", "libmtmd", "ratio",
                        "per-pair ratio");
            auto cell = [](const series & s, int digits = 2) {
                char buf[96];
                std::snprintf(buf, sizeof(buf), "%.*f (%.*f-%.*f)", digits, s.median(), digits, s.min(), digits,
                              s.max());
                return std::string(buf);
            };
            std::printf("%-22s %22s %22s %8.3f %23s\n", "mel", cell(ours_mel).c_str(), cell(ref_mel).c_str(), mel_ratio,
                        cell(mel_pair, 3).c_str());
            std::printf("%-22s %22s %22s\n", "  encoder", cell(ours_enc).c_str(), "-");
            std::printf("%-22s %22s %22s\n", "  projector", cell(ours_proj).c_str(), "-");
            std::printf("%-22s %22s %22s %8.3f %23s\n", "encoder + projector", cell(ours_total).c_str(),
                        cell(ref_total).c_str(), ratio, cell(enc_pair, 3).c_str());
        }
        cleanup();
    } catch (const mm::error & e) {
        std::fprintf(stderr, "%s: %s\n", mm::error_code_name(e.code()), e.what());
        return 3;
    }
    return 0;
}
