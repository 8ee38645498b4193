// Test-only reference: libmtmd's own Whisper log-mel preprocessor (tools/mtmd/mtmd-audio.cpp,
// compiled unchanged into this tool) on raw PCM, with nothing of mm in between. Never linked into
// mm.node.
//
//   mm-ref-mtmd-mel --n-mel N IN.f32 OUT.f32
//
// IN.f32 holds mono f32 samples at 16 kHz. The hparams are the ones clip.cpp sets for the
// Whisper-style projectors (ultravox, qwen2a, voxtral, ...): 16 kHz, n_fft 400, window 400,
// hop 160; n_mel comes from the mmproj (clip.audio.num_mel_bins), here from the command line.
// mtmd_audio_preprocessor_whisper::initialize() builds its filters and tables, preprocess()
// yields the chunks, written back to back to OUT.f32 ([n_mel][n_len] f32 each). Prints one JSON
// object: {ok, chunks, n_mel, n_len}. Exit codes: 0 ok (ok false when preprocess() refused),
// 2 usage or I/O error.
//
// libmtmd's preprocessor reads its hparams through clip_get_hparams(ctx); this tool is not
// linked to the rest of libmtmd, so it supplies that function (returning the hparams above for
// any ctx) and the logger state clip.cpp defines.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mtmd-audio.h"

static clip_hparams g_hparams;

const clip_hparams * clip_get_hparams(const struct clip_ctx *) {
    return &g_hparams;
}

static void log_to_stderr(enum ggml_log_level, const char * text, void *) {
    std::fputs(text, stderr);
}

struct clip_logger_state g_logger_state = {log_to_stderr, nullptr};

int main(int argc, char ** argv) {
    if (argc != 5 || std::string(argv[1]) != "--n-mel") {
        std::fprintf(stderr, "usage: mm-ref-mtmd-mel --n-mel N IN.f32 OUT.f32\n");
        return 2;
    }
    const int n_mel = std::atoi(argv[2]);
    if (n_mel < 1 || n_mel > 1024) {
        std::fprintf(stderr, "bad --n-mel\n");
        return 2;
    }
    std::ifstream     in(argv[3], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
        std::fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    std::vector<float> pcm(bytes.size() / sizeof(float));
    std::copy(bytes.begin(), bytes.begin() + pcm.size() * sizeof(float), reinterpret_cast<char *>(pcm.data()));

    // clip.cpp, clip_model_loader::load_hparams, the Whisper-style audio projectors
    g_hparams.n_mel_bins        = n_mel;
    g_hparams.audio_sample_rate = 16000;
    g_hparams.audio_n_fft       = 400;
    g_hparams.audio_window_len  = 400;
    g_hparams.audio_hop_len     = 160;

    mtmd_audio_preprocessor_whisper pre(nullptr);
    pre.initialize();
    std::vector<mtmd_audio_mel> chunks;
    const bool                  ok = pre.preprocess(pcm.data(), pcm.size(), chunks);

    std::ofstream out(argv[4], std::ios::binary);
    for (const auto & c : chunks) {
        out.write(reinterpret_cast<const char *>(c.data.data()), std::streamsize(c.data.size() * sizeof(float)));
    }
    if (!out.good()) {
        std::fprintf(stderr, "cannot write %s\n", argv[4]);
        return 2;
    }
    std::printf("{\"ok\":%s,\"chunks\":%zu,\"n_mel\":%d,\"n_len\":%lld}\n", ok ? "true" : "false", chunks.size(), n_mel,
                chunks.empty() ? 0LL : (long long)chunks[0].n_len);
    return 0;
}
