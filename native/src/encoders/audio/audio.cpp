#include "encoders/audio/audio.h"

#include <cstring>
#include <string>

#include "common/error.h"

// miniaudio exactly as mtmd-helper.cpp compiles it (all functions static, decoding only).
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

namespace mm {

namespace {

void check_rate(int32_t rate, const char * what) {
    if (rate < 1000 || rate > 384000) {
        fail(error_code::invalid_argument, std::string(what) + " must be in [1000, 384000]");
    }
}

struct decoder_guard {
    ma_decoder * d;

    ~decoder_guard() { ma_decoder_uninit(d); }
};

void put_u32(std::vector<uint8_t> & b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        b[at + i] = uint8_t(v >> (8 * i));
    }
}

void put_u16(std::vector<uint8_t> & b, size_t at, uint16_t v) {
    b[at]     = uint8_t(v);
    b[at + 1] = uint8_t(v >> 8);
}

}  // namespace

bool is_audio_bytes(const uint8_t * buf, size_t len) {
    if (len < 12) {
        return false;
    }
    const bool is_wav  = std::memcmp(buf, "RIFF", 4) == 0 && std::memcmp(buf + 8, "WAVE", 4) == 0;
    const bool is_mp3  = std::memcmp(buf, "ID3", 3) == 0 || (buf[0] == 0xFF && (buf[1] & 0xE0) == 0xE0);
    const bool is_flac = std::memcmp(buf, "fLaC", 4) == 0;
    return is_wav || is_mp3 || is_flac;
}

pcm_audio decode_audio(const uint8_t * bytes, size_t len, int32_t target_rate, uint64_t max_samples) {
    check_rate(target_rate, "sample rate");
    if (bytes == nullptr || !is_audio_bytes(bytes, len)) {
        fail(error_code::audio_decode, "not a WAV, MP3 or FLAC file");
    }
    // mtmd-helper.cpp decode_audio_from_buf
    ma_decoder_config config = ma_decoder_config_init(ma_format_f32, 1, ma_uint32(target_rate));
    ma_decoder        decoder;
    if (ma_decoder_init_memory(bytes, len, &config, &decoder) != MA_SUCCESS) {
        fail(error_code::audio_decode, "the audio could not be decoded (corrupt or unsupported)");
    }
    decoder_guard guard{&decoder};
    ma_uint64     frame_count = 0;
    if (ma_decoder_get_length_in_pcm_frames(&decoder, &frame_count) != MA_SUCCESS) {
        fail(error_code::audio_decode, "the audio's length could not be determined");
    }
    if (frame_count == 0) {
        fail(error_code::audio_decode, "the audio holds no samples");
    }
    if (frame_count > max_samples) {
        fail(error_code::audio_too_long, "the audio has " + std::to_string(frame_count) + " samples at " +
                                             std::to_string(target_rate) + " Hz, over the limit of " +
                                             std::to_string(max_samples));
    }
    pcm_audio out;
    out.sample_rate = target_rate;
    out.samples.resize(size_t(frame_count));
    ma_uint64 frames_read = 0;
    if (ma_decoder_read_pcm_frames(&decoder, out.samples.data(), frame_count, &frames_read) != MA_SUCCESS) {
        fail(error_code::audio_decode, "the audio could not be decoded (corrupt)");
    }
    if (frames_read == 0) {
        fail(error_code::audio_decode, "the audio could not be decoded (no samples read)");
    }
    // Like libmtmd, keep the announced length: the resampler often yields one frame less than
    // ma_decoder_get_length_in_pcm_frames announces, and libmtmd leaves that frame at zero.
    return out;
}

pcm_audio convert_pcm(const float * samples, size_t n_values, int32_t channels, int32_t sample_rate,
                      int32_t target_rate, uint64_t max_samples) {
    check_rate(sample_rate, "sampleRate");
    check_rate(target_rate, "target sample rate");
    if (channels < 1 || channels > 8) {
        fail(error_code::invalid_argument, "channels must be in [1, 8]");
    }
    if (samples == nullptr || n_values == 0 || n_values % size_t(channels) != 0) {
        fail(error_code::invalid_argument, "samples must hold a whole, non-zero number of frames");
    }
    const uint64_t data_bytes = uint64_t(n_values) * 4;
    if (data_bytes > 0xFFFFFFFFull - 36) {
        fail(error_code::audio_too_long, "too many samples for one buffer");
    }
    // An IEEE-float WAV (format tag 3) of the samples, decoded as a file would be.
    std::vector<uint8_t> wav(44 + size_t(data_bytes));
    std::memcpy(wav.data(), "RIFF", 4);
    put_u32(wav, 4, uint32_t(36 + data_bytes));
    std::memcpy(wav.data() + 8, "WAVEfmt ", 8);
    put_u32(wav, 16, 16);
    put_u16(wav, 20, 3);
    put_u16(wav, 22, uint16_t(channels));
    put_u32(wav, 24, uint32_t(sample_rate));
    put_u32(wav, 28, uint32_t(sample_rate) * uint32_t(channels) * 4);
    put_u16(wav, 32, uint16_t(channels * 4));
    put_u16(wav, 34, 32);
    std::memcpy(wav.data() + 36, "data", 4);
    put_u32(wav, 40, uint32_t(data_bytes));
    std::memcpy(wav.data() + 44, samples, size_t(data_bytes));
    return decode_audio(wav.data(), wav.size(), target_rate, max_samples);
}

}  // namespace mm
