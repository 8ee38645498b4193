// Test-only reference: libmtmd's audio decoding (tools/mtmd/mtmd-helper.cpp,
// audio_helpers::decode_audio_from_buf, copied verbatim below) with the vendored miniaudio
// compiled exactly as mtmd-helper.cpp compiles it, with nothing of mm in between. Never linked
// into mm.node.
//
//   mm-ref-mtmd-audio-decode --rate HZ IN OUT.f32
//
// Decodes IN to mono f32 at HZ and writes the samples libmtmd would hand to mtmd (the header's
// length, zero-filled past what was read, as libmtmd leaves it) to OUT.f32. Prints one JSON
// object: {is_audio, ok, frames, frames_read}. Exit codes: 0 ok (whatever the decode gave),
// 2 usage or I/O error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define MINIAUDIO_IMPLEMENTATION
#define MA_NO_ENCODING
#define MA_NO_DEVICE_IO
#define MA_NO_RESOURCE_MANAGER
#define MA_NO_NODE_GRAPH
#define MA_NO_ENGINE
#define MA_NO_GENERATION
#define MA_API static
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wcast-function-type"
#endif
#include "miniaudio/miniaudio.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// mtmd-helper.cpp audio_helpers::is_audio_file
static bool is_audio_file(const char * buf, size_t len) {
    if (len < 12) {
        return false;
    }
    bool is_wav  = memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WAVE", 4) == 0;
    bool is_mp3  = len >= 3 && (memcmp(buf, "ID3", 3) == 0 ||
                               ((unsigned char)buf[0] == 0xFF && ((unsigned char)buf[1] & 0xE0) == 0xE0));
    bool is_flac = memcmp(buf, "fLaC", 4) == 0;
    return is_wav || is_mp3 || is_flac;
}

// mtmd-helper.cpp audio_helpers::decode_audio_from_buf (frames_read reported in addition)
static bool decode_audio_from_buf(const unsigned char * buf_in, size_t len, int target_sampler_rate,
                                  std::vector<float> & pcmf32_mono, ma_uint64 & frames_read) {
    ma_result         result;
    const int         channels       = 1;
    ma_decoder_config decoder_config = ma_decoder_config_init(ma_format_f32, channels, target_sampler_rate);
    ma_decoder        decoder;

    result = ma_decoder_init_memory(buf_in, len, &decoder_config, &decoder);
    if (result != MA_SUCCESS) {
        return false;
    }

    ma_uint64 frame_count;
    result = ma_decoder_get_length_in_pcm_frames(&decoder, &frame_count);
    if (result != MA_SUCCESS) {
        ma_decoder_uninit(&decoder);
        return false;
    }

    pcmf32_mono.resize(frame_count);
    result = ma_decoder_read_pcm_frames(&decoder, pcmf32_mono.data(), frame_count, &frames_read);
    if (result != MA_SUCCESS) {
        ma_decoder_uninit(&decoder);
        return false;
    }

    ma_decoder_uninit(&decoder);
    return true;
}

int main(int argc, char ** argv) {
    if (argc != 5 || std::string(argv[1]) != "--rate") {
        std::fprintf(stderr, "usage: mm-ref-mtmd-audio-decode --rate HZ IN OUT.f32\n");
        return 2;
    }
    const int         rate = std::atoi(argv[2]);
    std::ifstream     in(argv[3], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
        std::fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    const bool         audio = is_audio_file(bytes.data(), bytes.size());
    std::vector<float> pcm;
    ma_uint64          frames_read = 0;
    const bool ok = audio && decode_audio_from_buf(reinterpret_cast<const unsigned char *>(bytes.data()), bytes.size(),
                                                   rate, pcm, frames_read);
    std::ofstream out(argv[4], std::ios::binary);
    out.write(reinterpret_cast<const char *>(pcm.data()), std::streamsize(pcm.size() * sizeof(float)));
    if (!out.good()) {
        std::fprintf(stderr, "cannot write %s\n", argv[4]);
        return 2;
    }
    std::printf("{\"is_audio\":%s,\"ok\":%s,\"frames\":%zu,\"frames_read\":%llu}\n", audio ? "true" : "false",
                ok ? "true" : "false", pcm.size(), (unsigned long long)frames_read);
    return 0;
}
