// Audio decoding as libmtmd's helper does it (tools/mtmd/mtmd-helper.cpp, audio_helpers): the
// vendored miniaudio, compiled with the same options, decodes WAV, MP3 and FLAC to mono f32 at
// the model's sample rate in one ma_decoder (channels mixed by miniaudio's default, (L + R) / 2
// for stereo; resampling linear after miniaudio's 4th-order low-pass).
//
// The samples are libmtmd's: the length announced by ma_decoder_get_length_in_pcm_frames, zero-
// filled past what was read (with resampling, often one frame). miniaudio's WAV reader clamps a
// data chunk that is cut short or announced too long to the bytes present. Where mm differs from
// libmtmd, on purpose: a file that decodes to no sample is MM_AUDIO_DECODE (libmtmd hands an empty
// or all-zero buffer on), and a file longer than `max_samples` at the target rate is
// MM_AUDIO_TOO_LONG, checked on the announced length before any sample is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mm {

struct pcm_audio {
    int32_t            sample_rate = 0;
    std::vector<float> samples;  // mono f32
};

// libmtmd's sniffing (mtmd-helper.cpp is_audio_file): RIFF/WAVE, ID3 or an MPEG sync word, fLaC.
bool is_audio_bytes(const uint8_t * bytes, size_t len);

// Decodes a WAV, MP3 or FLAC file to mono f32 at target_rate. Throws mm::error:
// MM_AUDIO_DECODE (not audio, corrupt, empty), MM_AUDIO_TOO_LONG (over max_samples),
// MM_INVALID_ARGUMENT (target_rate out of [1000, 384000]).
pcm_audio decode_audio(const uint8_t * bytes, size_t len, int32_t target_rate, uint64_t max_samples);

// Raw PCM (interleaved when channels > 1) at sample_rate to mono f32 at target_rate, through the
// same decoder: the result is what libmtmd decodes from an IEEE-float WAV holding these samples.
pcm_audio convert_pcm(const float * samples, size_t n_values, int32_t channels, int32_t sample_rate,
                      int32_t target_rate, uint64_t max_samples);

}  // namespace mm
