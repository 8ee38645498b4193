// Test-only reference: libmtmd's speech generation (mtmd_gen_audio_process) and speaker encoder for a
// talker + gen mmproj, with nothing of mm in between. Never linked into mm.node. Generic over the
// pipelines libmtmd has (Qwen3-TTS, Pocket TTS): the calls are made exactly as mtmd-helper-gen.cpp
// makes them.
//
//   mm-ref-mtmd-gen --model talker.gguf --mmproj gen.gguf --script SCRIPT --out DIR [--threads N]
//
// SCRIPT holds one operation per line, run in order in one mtmd context (so the sampler's
// std::mt19937 and its reseed-on-new-seed rule carry over from call to call):
//
//   info
//   code HIDDEN.f32 CODE0 TOP_K TOP_P TEMP SEED      GEN_CODE: hidden state [n_embd] (+ codebook-0 code)
//   wav codes|feats FRAMES STATE SEED                GEN_WAV: int32 codes / f32 latents, frame-major;
//                                                    STATE: cold (no state), carry (the state the last
//                                                    wav op returned) or a file of state bytes
//   speaker PCM.f32                                  mono f32 PCM at the audio encoder's rate, through
//                                                    mtmd_bitmap_init_from_audio, mtmd_tokenize (one
//                                                    marker), mtmd_encode_chunk, mtmd_get_output_embd
//                                                    (as mtmd-helper-gen.cpp's encode_speaker)
//
// Operation i writes DIR/<i>.codes.i32, <i>.feats.f32, <i>.embd.f32 (code), <i>.pcm.f32,
// <i>.state.bin (wav), <i>.spk.f32 (speaker), and stdout gets one JSON object:
//   { "nEmbd": N, "info": { "type": T, "sampleRate": R, "variant": V }, "ops": [ { "ok": true|false, ... } ] }
// A call libmtmd refuses (non-zero return) is reported as { "ok": false } and the script goes on.
// A GEN_WAV call of more frames than a window would abort inside libmtmd: the runner never sends one.
//
// Exit codes: 0 ok, 2 usage or a bad script, 3 load failed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "mtmd-helper.h"
#include "mtmd.h"

namespace {

int usage() {
    std::fprintf(stderr,
                 "usage: mm-ref-mtmd-gen --model talker.gguf --mmproj gen.gguf --script SCRIPT --out DIR "
                 "[--threads N]\n");
    return 2;
}

bool read_file(const std::string & path, std::vector<char> & out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
}

void write_file(const std::string & path, const void * data, size_t n) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char *>(data), static_cast<std::streamsize>(n));
}

std::string json_str(const std::string & s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            o += buf;
        } else {
            o += c;
        }
    }
    return o + "\"";
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, mmproj, script, out_dir;
    int         threads = 2;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            return usage();
        }
        std::string v = argv[++i];
        if (a == "--model") {
            model_path = v;
        } else if (a == "--mmproj") {
            mmproj = v;
        } else if (a == "--script") {
            script = v;
        } else if (a == "--out") {
            out_dir = v;
        } else if (a == "--threads") {
            threads = std::atoi(v.c_str());
        } else {
            return usage();
        }
    }
    if (model_path.empty() || mmproj.empty() || script.empty() || out_dir.empty() || threads < 1) {
        return usage();
    }

    static bool verbose = std::getenv("MM_LOG_LEVEL") != nullptr;
    auto        log_cb  = [](ggml_log_level level, const char * text, void *) {
        if (level == GGML_LOG_LEVEL_ERROR || verbose) {
            std::fputs(text, stderr);
        }
    };
    llama_log_set(log_cb, nullptr);
    mtmd_helper_log_set(log_cb, nullptr);
    ggml_backend_load_all();
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers       = 0;
    llama_model * model   = llama_model_load_from_file(model_path.c_str(), mp);
    if (model == nullptr) {
        std::fprintf(stderr, "failed to load the talker %s\n", model_path.c_str());
        return 3;
    }
    mtmd_context_params cp = mtmd_context_params_default();
    cp.use_gpu             = std::getenv("MM_REF_GPU") != nullptr;  // mm's graphs on a GPU: the same device
    cp.n_threads           = threads;
    cp.print_timings       = false;
    mtmd_context * ctx     = mtmd_init_from_file(mmproj.c_str(), model, cp);
    if (ctx == nullptr) {
        std::fprintf(stderr, "failed to load the gen mmproj %s\n", mmproj.c_str());
        llama_model_free(model);
        return 3;
    }
    const int n_embd = llama_model_n_embd(model);

    std::ifstream in(script);
    if (!in) {
        std::fprintf(stderr, "cannot read the script %s\n", script.c_str());
        return 2;
    }
    std::vector<char> last_state;
    std::string       ops;
    std::string       info_json;
    std::string       line;
    int               idx = 0;
    int               rc  = 0;
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        std::istringstream ls(line);
        std::string        op;
        ls >> op;
        const std::string base = out_dir + "/" + std::to_string(idx);
        std::string       res;
        if (op == "info") {
            mtmd_gen_audio_info gi = mtmd_gen_audio_get_info(ctx);
            res                    = "{\"ok\":true,\"type\":" + std::to_string(static_cast<int>(gi.type)) +
                  ",\"sampleRate\":" + std::to_string(gi.sample_rate) +
                  ",\"variant\":" + json_str(gi.model_variant ? gi.model_variant : "") +
                  ",\"audioInput\":" + (mtmd_support_audio(ctx) ? "true" : "false") +
                  ",\"audioSampleRate\":" + std::to_string(mtmd_get_audio_sample_rate(ctx)) + "}";
            info_json = res;
        } else if (op == "code") {
            std::string hidden_path;
            int32_t     code0 = 0, top_k = 0;
            float       top_p = 0, temp = 0;
            uint64_t    seed = 0;
            ls >> hidden_path >> code0 >> top_k >> top_p >> temp >> seed;
            std::vector<char> hidden;
            if (!ls || !read_file(hidden_path, hidden) || hidden.size() != static_cast<size_t>(n_embd) * 4) {
                std::fprintf(stderr, "line %d: bad code operation\n", idx + 1);
                rc = 2;
                break;
            }
            mtmd_gen_inp inp = mtmd_gen_inp_default(ctx);
            inp.type         = MTMD_GEN_PROCESS_TYPE_GEN_CODE;
            inp.code0        = code0;
            inp.embd         = reinterpret_cast<float *>(hidden.data());
            inp.top_k        = top_k;
            inp.top_p        = top_p;
            inp.temp         = temp;
            inp.seed         = static_cast<uint32_t>(seed);
            mtmd_gen_out out{};
            if (mtmd_gen_audio_process(ctx, &inp, &out) != 0) {
                res = "{\"ok\":false}";
            } else {
                write_file(base + ".codes.i32", out.codes, out.n_codes * sizeof(int32_t));
                write_file(base + ".feats.f32", out.feats, out.n_feats * sizeof(float));
                write_file(base + ".embd.f32", out.embd, static_cast<size_t>(n_embd) * sizeof(float));
                res = "{\"ok\":true,\"nCodes\":" + std::to_string(out.n_codes) +
                      ",\"nFeats\":" + std::to_string(out.n_feats) + ",\"isEos\":" + (out.is_eos ? "true" : "false") +
                      "}";
            }
        } else if (op == "wav") {
            std::string kind, frames_path, state;
            uint64_t    seed = 0;
            ls >> kind >> frames_path >> state >> seed;
            std::vector<char> frames, state_bytes;
            if (!ls || (kind != "codes" && kind != "feats") || !read_file(frames_path, frames) ||
                frames.size() % 4 != 0) {
                std::fprintf(stderr, "line %d: bad wav operation\n", idx + 1);
                rc = 2;
                break;
            }
            bool has_state = true;
            if (state == "cold") {
                has_state = false;
            } else if (state == "carry") {
                state_bytes = last_state;
            } else if (!read_file(state, state_bytes)) {
                std::fprintf(stderr, "line %d: cannot read state %s\n", idx + 1, state.c_str());
                rc = 2;
                break;
            }
            mtmd_gen_inp inp = mtmd_gen_inp_default(ctx);
            inp.type         = MTMD_GEN_PROCESS_TYPE_GEN_WAV;
            inp.seed         = static_cast<uint32_t>(seed);
            if (kind == "codes") {
                inp.codes   = reinterpret_cast<int32_t *>(frames.data());
                inp.n_codes = frames.size() / 4;
            } else {
                inp.feats   = reinterpret_cast<const float *>(frames.data());
                inp.n_feats = frames.size() / 4;
            }
            if (has_state && !state_bytes.empty()) {
                inp.state_data = state_bytes.data();
                inp.state_size = state_bytes.size();
            }
            mtmd_gen_out out{};
            if (mtmd_gen_audio_process(ctx, &inp, &out) != 0) {
                res = "{\"ok\":false}";
            } else {
                write_file(base + ".pcm.f32", out.audio, out.n_samples * sizeof(float));
                write_file(base + ".state.bin", out.state_data, out.state_size);
                last_state.assign(out.state_data, out.state_data + out.state_size);
                res = "{\"ok\":true,\"nSamples\":" + std::to_string(out.n_samples) +
                      ",\"stateSize\":" + std::to_string(out.state_size) + "}";
            }
        } else if (op == "speaker") {
            std::string       pcm_path;
            std::vector<char> pcm;
            ls >> pcm_path;
            if (!ls || !read_file(pcm_path, pcm) || pcm.size() % 4 != 0) {
                std::fprintf(stderr, "line %d: bad speaker operation\n", idx + 1);
                rc = 2;
                break;
            }
            mtmd_bitmap * bmp =
                mtmd_bitmap_init_from_audio(pcm.size() / 4, reinterpret_cast<const float *>(pcm.data()));
            const std::string   marker = mtmd_default_marker();
            mtmd_input_text     text{marker.c_str(), marker.size(), false, true};
            mtmd_input_chunks * chunks = mtmd_input_chunks_init();
            const mtmd_bitmap * bptr   = bmp;
            bool                ok     = mtmd_tokenize(ctx, chunks, &text, &bptr, 1) == 0;
            size_t              rows   = 0;
            std::vector<float>  embd;
            if (ok) {
                ok = false;
                for (size_t i = 0; i < mtmd_input_chunks_size(chunks); i++) {
                    const mtmd_input_chunk * chunk = mtmd_input_chunks_get(chunks, i);
                    if (mtmd_input_chunk_get_type(chunk) != MTMD_INPUT_CHUNK_TYPE_AUDIO) {
                        continue;
                    }
                    if (mtmd_encode_chunk(ctx, chunk) != 0) {
                        break;
                    }
                    rows            = mtmd_input_chunk_get_n_tokens(chunk);
                    const float * e = mtmd_get_output_embd(ctx);
                    embd.assign(e, e + static_cast<size_t>(llama_model_n_embd_inp(model)) * rows);
                    ok = true;
                    break;
                }
            }
            mtmd_input_chunks_free(chunks);
            mtmd_bitmap_free(bmp);
            if (!ok) {
                res = "{\"ok\":false}";
            } else {
                write_file(base + ".spk.f32", embd.data(), embd.size() * sizeof(float));
                res = "{\"ok\":true,\"rows\":" + std::to_string(rows) + "}";
            }
        } else {
            std::fprintf(stderr, "line %d: unknown operation '%s'\n", idx + 1, op.c_str());
            rc = 2;
            break;
        }
        ops += (ops.empty() ? "" : ",") + res;
        ++idx;
    }
    if (rc == 0) {
        std::printf("{\"nEmbd\":%d,\"info\":%s,\"ops\":[%s]}\n", n_embd, info_json.empty() ? "null" : info_json.c_str(),
                    ops.c_str());
    }
    mtmd_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return rc;
}
