// Side-by-side benchmark of @mm/decoders' speech generation (mm's own graphs: output projector,
// modality decoder, speaker encoder) against libmtmd's mtmd_gen_audio_process and speaker encoder,
// in one process with one static ggml, same inputs, seeds, threads and backend, interleaved
// (A B B A ...) after one warm-up each (see BENCH.md). The generation counterpart of audio-bench.cpp.
// Test-only: links mm_core and libmtmd, never shipped.
//
//   mm-bench-gen --model talker.gguf --mmproj gen.gguf [-t threads] [-n reps] [--frames F]
//                [--stages code,wav,speaker] [--speaker-seconds S] [--seed S] [--json] [--only ours|mtmd]
//
// The pipeline (Qwen3-TTS or Pocket TTS) comes from the mmproj. Stages:
//   - code: GEN_CODE, F calls per rep (one per frame) on F fixed random hidden states, each side with
//     its own sampler seeded with the same seed (the first call reseeds, the rest draw on), so every
//     call of ours must give libmtmd's codes / latents and embedding: checked on every call. Qwen3-TTS
//     samples top-k 40 / top-p 0.95 (what llama-tts passes), Pocket TTS draws noise at temperature 0.3.
//   - wav: GEN_WAV of one window per rep (72 frames of codes for Qwen3-TTS, 8 latent frames for Pocket
//     TTS, as mtmd-helper-gen.cpp calls it), each side carrying its own state from rep to rep; PCM
//     checked on every call.
//   - speaker: the speaker encoder on S seconds (default 3) of synthesised 24 kHz audio.
// The talker is loaded (libmtmd's context wants it, and its width) but never run.
//
// Threads: libmtmd runs every gen graph on mtmd_context_params.n_threads (clip_encode sets the CPU
// backend's thread count per call; llama-tts leaves it at the default 4); both sides get -t here.
// --only ours|mtmd runs one side alone (one warm-up, then the reps) for a profiler.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "common/error.h"
#include "common/system_info.h"
#include "decoders/pockettts/pockettts_gen.h"
#include "decoders/qwen3tts/qwen3tts_gen.h"
#include "llama.h"
#include "mtmd.h"

namespace {

using mm::bench::clock_type;
using mm::bench::json_series;
using mm::bench::ms;
using mm::bench::pair_ratio;
using mm::bench::series;

constexpr int   k_sample_rate = 24000;
constexpr int   k_qwen_window = 72;  // frames per libmtmd GEN_WAV call (Qwen3-TTS)
constexpr int   k_pocket_wav  = 8;   // latent frames per GEN_WAV call (mtmd-helper-gen.cpp)
constexpr int   k_top_k       = 40;
constexpr float k_top_p       = 0.95f;
constexpr float k_pocket_temp = 0.3f;

// What one call gave, for the parity check.
struct result {
    std::vector<int32_t> codes;
    std::vector<float>   values;  // latent / PCM / speaker rows
    std::vector<float>   embd;
};

// One side of the comparison: a call per stage.
struct side {
    std::function<result(int frame)> code;  // GEN_CODE on hidden state `frame`
    std::function<result()>          wav;   // GEN_WAV of the next window, state carried
    std::function<result()>          speaker;
};

double max_abs_diff(const std::vector<float> & a, const std::vector<float> & b) {
    if (a.size() != b.size()) {
        return INFINITY;
    }
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
    }
    return m;
}

struct stage_stats {
    std::string name;
    series      ours, ref;  // ms per call (code: per frame)
    double      max_diff = 0;
    double      max_embd = 0;
    bool        codes_eq = true;
    int         calls    = 0;
    bool        ran      = false;
};

std::string cell(const series & s, int digits = 2) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%.*f (%.*f-%.*f)", digits, s.median(), digits, s.min(), digits, s.max());
    return buf;
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, mmproj, only, stages_arg = "code,wav,speaker";
    int         threads = 2, reps = 10, frames = 8;
    double      speaker_seconds = 3;
    uint32_t    seed            = 1234;
    bool        json            = false;
    for (int i = 1; i < argc; ++i) {
        std::string a    = argv[i];
        auto        next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "missing value for %s\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--model") {
            model_path = next();
        } else if (a == "--mmproj") {
            mmproj = next();
        } else if (a == "-t") {
            threads = std::max(1, std::atoi(next().c_str()));
        } else if (a == "-n") {
            reps = std::max(1, std::atoi(next().c_str()));
        } else if (a == "--frames") {
            frames = std::max(1, std::atoi(next().c_str()));
        } else if (a == "--stages") {
            stages_arg = next();
        } else if (a == "--speaker-seconds") {
            speaker_seconds = std::atof(next().c_str());
        } else if (a == "--seed") {
            seed = static_cast<uint32_t>(std::strtoul(next().c_str(), nullptr, 10));
        } else if (a == "--json") {
            json = true;
        } else if (a == "--only") {
            only = next();
        } else {
            std::fprintf(stderr,
                         "usage: mm-bench-gen --model F --mmproj F [-t N] [-n reps] [--frames F] "
                         "[--stages code,wav,speaker] [--speaker-seconds S] [--seed S] [--json] [--only ours|mtmd]\n");
            return 2;
        }
    }
    if (!only.empty() && only != "ours" && only != "mtmd") {
        std::fprintf(stderr, "--only takes ours or mtmd\n");
        return 2;
    }
    if (model_path.empty() || mmproj.empty()) {
        std::fprintf(stderr, "--model and --mmproj are required\n");
        return 2;
    }
    if (!(speaker_seconds > 0 && speaker_seconds <= 30) || seed == UINT32_MAX) {
        std::fprintf(stderr, "--speaker-seconds takes (0, 30]; --seed must not be 4294967295 (random)\n");
        return 2;
    }
    auto want = [&](const char * s) {
        std::stringstream ss(stages_arg);
        std::string       x;
        while (std::getline(ss, x, ',')) {
            if (x == s) {
                return true;
            }
        }
        return false;
    };
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

        // reference
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers       = 0;
        llama_model * model   = llama_model_load_from_file(model_path.c_str(), mp);
        if (model == nullptr) {
            std::fprintf(stderr, "failed to load the talker %s\n", model_path.c_str());
            return 3;
        }
        mtmd_context_params cp = mtmd_context_params_default();
        cp.use_gpu             = use_gpu;
        cp.print_timings       = false;
        cp.n_threads           = threads;
        mtmd_context * ref     = mtmd_init_from_file(mmproj.c_str(), model, cp);
        if (ref == nullptr) {
            std::fprintf(stderr, "libmtmd failed to load %s\n", mmproj.c_str());
            llama_model_free(model);
            return 3;
        }
        const mtmd_gen_audio_info info   = mtmd_gen_audio_get_info(ref);
        const bool                qwen   = info.type == MTMD_GEN_AUDIO_TYPE_QWEN3TTS;
        const bool                pocket = info.type == MTMD_GEN_AUDIO_TYPE_POCKETTTS;
        if (!qwen && !pocket) {
            std::fprintf(stderr, "%s is not a Qwen3-TTS or Pocket TTS gen mmproj\n", mmproj.c_str());
            return 3;
        }
        const int n_embd = llama_model_n_embd(model);

        // ours
        std::shared_ptr<mm::qwen3tts_gen>         q;
        std::shared_ptr<mm::pockettts::generator> p;
        std::string                               shape;
        int n_frames_wav = 0, samples_per_frame = 0, sem_vocab = 0, rest_vocab = 0, n_codes = 0, latent_dim = 0;
        if (qwen) {
            mm::qwen3tts_params qp;
            qp.n_threads      = threads;
            qp.use_gpu        = use_gpu;
            q                 = mm::qwen3tts_gen::load(mmproj, qp);
            const auto & h    = q->hparams();
            n_frames_wav      = k_qwen_window;
            samples_per_frame = h.samples_per_frame;
            sem_vocab         = h.sem_vocab;
            rest_vocab        = h.rest_vocab;
            n_codes           = h.n_codes();
            char buf[512];
            std::snprintf(buf, sizeof(buf),
                          "code predictor %d wide (talker %d), %d layers, %d/%d heads, %d codebooks of %d; "
                          "code2wav %d-head %d-wide transformer, %d samples/frame; speaker encoder %d mels -> %d",
                          h.n_pred, h.n_embd, h.n_pred_layer, h.n_pred_head, h.n_pred_headkv, h.n_acoustic,
                          h.code_vocab, h.wav_heads, h.wav_heads * h.d_wav_head, h.samples_per_frame, h.spk_mels,
                          h.spk_n_embd);
            shape = buf;
        } else {
            mm::pockettts::load_params lp;
            lp.n_threads      = threads;
            lp.use_gpu        = use_gpu;
            p                 = mm::pockettts::generator::load(mmproj, lp);
            const auto & h    = p->hp();
            n_frames_wav      = k_pocket_wav;
            samples_per_frame = 1920;
            latent_dim        = h.latent_dim;
            char buf[512];
            std::snprintf(buf, sizeof(buf),
                          "flow head %d wide, %d blocks, %d freqs, latents %d (backbone %d); Mimi decoder %d wide, "
                          "%d heads, %d layers",
                          h.flow_dim, h.flow_blocks, h.flow_freqs, h.latent_dim, h.n_embd, h.dec.n_embd, h.dec.n_head,
                          h.dec.n_layer);
            shape = buf;
        }

        // inputs (deterministic)
        std::mt19937                    gen(42);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<std::vector<float>> hidden(frames, std::vector<float>(n_embd));
        for (auto & h : hidden) {
            for (float & x : h) {
                x = normal(gen);
            }
        }
        std::vector<int32_t> wav_codes;
        std::vector<float>   wav_feats;
        if (qwen) {
            wav_codes.resize(static_cast<size_t>(n_frames_wav) * n_codes);
            for (int f = 0; f < n_frames_wav; ++f) {
                for (int c = 0; c < n_codes; ++c) {
                    wav_codes[static_cast<size_t>(f) * n_codes + c] =
                        static_cast<int32_t>(gen() % static_cast<uint32_t>(c == 0 ? sem_vocab : rest_vocab));
                }
            }
        } else {
            wav_feats.resize(static_cast<size_t>(n_frames_wav) * latent_dim);
            for (float & x : wav_feats) {
                x = normal(gen);
            }
        }
        std::vector<float> spk_pcm(static_cast<size_t>(speaker_seconds * k_sample_rate));
        for (size_t i = 0; i < spk_pcm.size(); ++i) {
            const double t = static_cast<double>(i) / k_sample_rate;
            spk_pcm[i]     = static_cast<float>(0.3 * std::sin(2 * M_PI * 220 * t) +
                                            0.2 * std::sin(2 * M_PI * (300 + 400 * t) * t) + 0.05 * normal(gen));
        }
        const bool has_speaker = qwen ? q->has_speaker() : p->has(mm::pockettts::part_speaker);

        // ours, as calls
        side                 mine;
        std::vector<uint8_t> my_state;
        if (qwen) {
            mine.code = [&](int f) {
                mm::qwen3tts_frame fr = q->gen_code(hidden[f].data(), hidden[f].size(), (f * 37) % sem_vocab, k_top_k,
                                                    k_top_p, 0.9f, seed, nullptr);
                return result{std::move(fr.codes), {}, std::move(fr.embd)};
            };
            mine.wav = [&]() {
                mm::qwen3tts_pcm r =
                    q->gen_wav(wav_codes.data(), wav_codes.size(), my_state.data(), my_state.size(), nullptr);
                my_state = std::move(r.state);
                return result{{}, std::move(r.pcm), {}};
            };
            mine.speaker = [&]() { return result{{}, q->encode_speaker(spk_pcm.data(), spk_pcm.size(), nullptr), {}}; };
        } else {
            mine.code = [&](int f) {
                mm::pockettts::code_params cpar;
                cpar.temp                    = k_pocket_temp;
                cpar.seed                    = seed;
                mm::pockettts::code_result r = p->gen_code(hidden[f].data(), hidden[f].size(), cpar, nullptr);
                return result{{r.is_eos ? 1 : 0}, std::move(r.latent), std::move(r.embd)};
            };
            mine.wav = [&]() {
                mm::pockettts::wav_result r =
                    p->gen_wav(wav_feats.data(), wav_feats.size(), my_state.empty() ? nullptr : my_state.data(),
                               my_state.size(), nullptr);
                my_state = std::move(r.state);
                return result{{}, std::move(r.pcm), {}};
            };
            mine.speaker = [&]() {
                mm::pockettts::speaker_result r = p->encode_speaker(spk_pcm.data(), spk_pcm.size(), nullptr);
                return result{{}, std::move(r.embd), {}};
            };
        }

        // libmtmd, as calls (exactly as mtmd-helper-gen.cpp makes them)
        side              theirs;
        std::vector<char> ref_state;
        auto              fail_ref = [](const char * what) {
            std::fprintf(stderr, "libmtmd %s failed\n", what);
            std::exit(4);
        };
        theirs.code = [&](int f) {
            mtmd_gen_inp inp = mtmd_gen_inp_default(ref);
            inp.type         = MTMD_GEN_PROCESS_TYPE_GEN_CODE;
            inp.embd         = hidden[f].data();
            inp.seed         = seed;
            if (qwen) {
                inp.code0 = (f * 37) % sem_vocab;
                inp.top_k = k_top_k;
                inp.top_p = k_top_p;
                inp.temp  = 0.9f;
            } else {
                inp.temp = k_pocket_temp;
            }
            mtmd_gen_out out{};
            if (mtmd_gen_audio_process(ref, &inp, &out) != 0) {
                fail_ref("GEN_CODE");
            }
            result r;
            if (qwen) {
                r.codes.assign(out.codes, out.codes + out.n_codes);
            } else {
                r.codes = {out.is_eos ? 1 : 0};
                r.values.assign(out.feats, out.feats + out.n_feats);
            }
            r.embd.assign(out.embd, out.embd + n_embd);
            return r;
        };
        theirs.wav = [&]() {
            mtmd_gen_inp inp = mtmd_gen_inp_default(ref);
            inp.type         = MTMD_GEN_PROCESS_TYPE_GEN_WAV;
            inp.seed         = seed;
            if (qwen) {
                inp.codes   = wav_codes.data();
                inp.n_codes = wav_codes.size();
            } else {
                inp.feats   = wav_feats.data();
                inp.n_feats = wav_feats.size();
            }
            if (!ref_state.empty()) {
                inp.state_data = ref_state.data();
                inp.state_size = ref_state.size();
            }
            mtmd_gen_out out{};
            if (mtmd_gen_audio_process(ref, &inp, &out) != 0) {
                fail_ref("GEN_WAV");
            }
            ref_state.assign(out.state_data, out.state_data + out.state_size);
            return result{{}, std::vector<float>(out.audio, out.audio + out.n_samples), {}};
        };
        theirs.speaker = [&]() {
            mtmd_bitmap *       bmp    = mtmd_bitmap_init_from_audio(spk_pcm.size(), spk_pcm.data());
            const std::string   marker = mtmd_default_marker();
            mtmd_input_text     text{marker.c_str(), marker.size(), false, true};
            mtmd_input_chunks * chunks = mtmd_input_chunks_init();
            const mtmd_bitmap * bptr   = bmp;
            if (mtmd_tokenize(ref, chunks, &text, &bptr, 1) != 0) {
                fail_ref("mtmd_tokenize (speaker)");
            }
            result r;
            for (size_t i = 0; i < mtmd_input_chunks_size(chunks); i++) {
                const mtmd_input_chunk * chunk = mtmd_input_chunks_get(chunks, i);
                if (mtmd_input_chunk_get_type(chunk) != MTMD_INPUT_CHUNK_TYPE_AUDIO) {
                    continue;
                }
                if (mtmd_encode_chunk(ref, chunk) != 0) {
                    fail_ref("mtmd_encode_chunk (speaker)");
                }
                const size_t  rows = mtmd_input_chunk_get_n_tokens(chunk);
                const float * e    = mtmd_get_output_embd(ref);
                r.values.assign(e, e + static_cast<size_t>(llama_model_n_embd_inp(model)) * rows);
                break;
            }
            mtmd_input_chunks_free(chunks);
            mtmd_bitmap_free(bmp);
            return r;
        };

        std::vector<stage_stats> stats(3);
        stats[0].name = "code";
        stats[1].name = "wav";
        stats[2].name = "speaker";
        // one timed call of a stage on one side; code: `frames` calls, the time per frame
        auto run = [&](int st, const side & s, std::vector<result> & out) -> double {
            out.clear();
            auto t0 = clock_type::now();
            if (st == 0) {
                for (int f = 0; f < frames; ++f) {
                    out.push_back(s.code(f));
                }
            } else if (st == 1) {
                out.push_back(s.wav());
            } else {
                out.push_back(s.speaker());
            }
            const double t = ms(t0, clock_type::now());
            return st == 0 ? t / frames : t;
        };
        auto compare = [&](stage_stats & ss, const std::vector<result> & a, const std::vector<result> & b) {
            for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
                ss.codes_eq = ss.codes_eq && a[i].codes == b[i].codes;
                ss.max_diff = std::max(ss.max_diff, max_abs_diff(a[i].values, b[i].values));
                ss.max_embd = std::max(ss.max_embd, max_abs_diff(a[i].embd, b[i].embd));
                ++ss.calls;
            }
        };

        // libmtmd warms its gen context up on the first call, with that call's input: a GEN_WAV first
        // aborts in ggml_reshape_2d (clip_graph_pockettts_gen::build) on some shapes. One GEN_CODE call
        // on each side first (the same draws on both, so the samplers stay in step).
        {
            std::vector<result> a, b;
            a.push_back(mine.code(0));
            b.push_back(theirs.code(0));
        }
        for (int st = 0; st < 3; ++st) {
            if (!want(stats[st].name.c_str()) || (st == 2 && !has_speaker)) {
                continue;
            }
            stage_stats &       ss = stats[st];
            std::vector<result> a, b;
            ss.ran = true;
            if (!only.empty()) {
                const side & s   = only == "ours" ? mine : theirs;
                series &     out = only == "ours" ? ss.ours : ss.ref;
                for (int r = 0; r <= reps; ++r) {
                    const double t = run(st, s, a);
                    if (r > 0) {
                        out.v.push_back(t);
                    }
                }
                continue;
            }
            // warm-up, checked too
            run(st, mine, a);
            run(st, theirs, b);
            compare(ss, a, b);
            for (int r = 0; r < reps; ++r) {
                if (r % 2 == 0) {
                    ss.ours.v.push_back(run(st, mine, a));
                    ss.ref.v.push_back(run(st, theirs, b));
                } else {
                    ss.ref.v.push_back(run(st, theirs, b));
                    ss.ours.v.push_back(run(st, mine, a));
                }
                compare(ss, a, b);
            }
        }

        const double window_s = static_cast<double>(n_frames_wav) * samples_per_frame / k_sample_rate;
        auto         si       = mm::get_system_info();
        if (json) {
            std::printf(
                "{\"pipeline\":\"%s\",\"variant\":\"%s\",\"mmproj\":\"%s\",\"model\":\"%s\",\"shape\":\"%s\","
                "\"threads\":%d,\"reps\":%d,\"framesPerRep\":%d,\"wavFrames\":%d,\"samplesPerFrame\":%d,"
                "\"windowSeconds\":%.4f,\"speakerSeconds\":%.3f,\"seed\":%u,\"only\":\"%s\",\"backend\":\"%s\","
                "\"llamaCommit\":\"%s\",\"cpu\":\"%s\",\"stages\":{",
                qwen ? "qwen3tts" : "pockettts", info.model_variant ? info.model_variant : "", mmproj.c_str(),
                model_path.c_str(), shape.c_str(), threads, reps, frames, n_frames_wav, samples_per_frame, window_s,
                speaker_seconds, seed, only.c_str(), use_gpu ? "gpu" : "CPU", si.llama_commit.c_str(),
                si.cpu_model.c_str());
            bool first = true;
            for (const stage_stats & ss : stats) {
                if (!ss.ran) {
                    continue;
                }
                const double ratio = ss.ref.median() > 0 ? ss.ours.median() / ss.ref.median() : 0;
                std::printf(
                    "%s\"%s\":{\"oursMs\":%s,\"refMs\":%s,\"ratio\":%.4f,\"pairRatio\":%s,\"calls\":%d,"
                    "\"codesEqual\":%s,\"maxAbsDiff\":%.6g,\"embdMaxAbsDiff\":%.6g}",
                    first ? "" : ",", ss.name.c_str(), json_series(ss.ours).c_str(), json_series(ss.ref).c_str(), ratio,
                    json_series(pair_ratio(ss.ours, ss.ref)).c_str(), ss.calls, ss.codes_eq ? "true" : "false",
                    ss.max_diff, ss.max_embd);
                first = false;
            }
            std::printf("}}\n");
        } else {
            std::printf("%s (%s) %s\n  %s\n", qwen ? "Qwen3-TTS" : "Pocket TTS",
                        info.model_variant ? info.model_variant : "", mmproj.c_str(), shape.c_str());
            std::printf("threads %d (both), backend %s, %d reps after 1 warm-up each, interleaved ABBA%s\n", threads,
                        use_gpu ? "gpu" : "CPU", reps, only.empty() ? "" : (", " + only + " alone").c_str());
            std::printf("llama.cpp %s, CPU %s\n\n", si.llama_commit.c_str(), si.cpu_model.c_str());
            std::printf("%-34s %26s %26s %7s %22s  %s\n", "ms: median (min-max)", "ours", "libmtmd", "ratio",
                        "per-pair ratio", "parity");
            for (const stage_stats & ss : stats) {
                if (!ss.ran) {
                    continue;
                }
                char label[64];
                if (ss.name == "code") {
                    std::snprintf(label, sizeof(label), "GEN_CODE per frame (%d/rep)", frames);
                } else if (ss.name == "wav") {
                    std::snprintf(label, sizeof(label), "GEN_WAV per %d-frame window", n_frames_wav);
                } else {
                    std::snprintf(label, sizeof(label), "speaker encode (%.1f s)", speaker_seconds);
                }
                char parity[160] = "";
                if (only.empty()) {
                    std::snprintf(parity, sizeof(parity), "%s%d calls, max |diff| %.3g%s",
                                  ss.name == "code" ? (ss.codes_eq ? "codes equal, " : "CODES DIFFER, ") : "", ss.calls,
                                  ss.max_diff,
                                  ss.name == "code" ? (", embd " + std::to_string(ss.max_embd)).c_str() : "");
                }
                std::printf("%-34s %26s %26s %7.3f %22s  %s\n", label, cell(ss.ours).c_str(), cell(ss.ref).c_str(),
                            ss.ref.median() > 0 ? ss.ours.median() / ss.ref.median() : 0.0,
                            cell(pair_ratio(ss.ours, ss.ref), 3).c_str(), parity);
            }
            if (stats[0].ran && stats[0].ours.median() > 0) {
                std::printf("\nGEN_CODE frames/s: ours %.1f, libmtmd %.1f\n", 1000 / stats[0].ours.median(),
                            stats[0].ref.median() > 0 ? 1000 / stats[0].ref.median() : 0.0);
            }
            if (stats[1].ran && stats[1].ours.median() > 0) {
                std::printf("GEN_WAV real-time factor (%.2f s of audio per window): ours %.2f, libmtmd %.2f\n",
                            window_s, window_s * 1000 / stats[1].ours.median(),
                            stats[1].ref.median() > 0 ? window_s * 1000 / stats[1].ref.median() : 0.0);
            }
        }
        q.reset();
        p.reset();
        mtmd_free(ref);
        llama_model_free(model);
    } catch (const mm::error & e) {
        std::fprintf(stderr, "%s: %s\n", mm::error_code_name(e.code()), e.what());
        return 3;
    }
    return 0;
}
