// Log-mel spectrogram of Whisper-style audio encoders, ported from libmtmd
// (tools/mtmd/mtmd-audio.cpp: mtmd_audio_cache, fft_impl, log_mel_spectrogram and
// mtmd_audio_preprocessor_whisper::preprocess) so that the frames fed to the encoder match
// libmtmd's. The mel filters are not read from the mmproj: libmtmd computes them at load time
// (Slaney mel scale, Slaney area normalisation, fmin 0, fmax sample_rate / 2), and so do we.
//
// What libmtmd does, step by step:
//   - input shorter than n_fft / 2 + 1 samples is zero-padded to that length;
//   - the signal is padded with a reflection of samples[1..n_fft/2] at the front and, at the
//     end, 30 s of zeros plus n_fft / 2 more zeros (not a reflection);
//   - periodic Hann window of window_len samples, FFT of n_fft points (radix-2 splits down to
//     an odd size, then a plain DFT, on an f32 sin/cos table), power spectrum, mel filters,
//     max(., 5.96e-8), log10;
//   - clamp at (max - 8) where max is taken over the whole padded signal, then (x + 4) / 4;
//   - split into chunks of 3000 frames; the last, incomplete chunk (always padding) is dropped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mm {

struct mel_params {
    int32_t n_mel            = 80;
    int32_t n_fft            = 400;
    int32_t window_len       = 400;
    int32_t hop_len          = 160;
    int32_t sample_rate      = 16000;
    int32_t frames_per_chunk = 3000;
};

// One chunk: [n_mel][n_frames] row-major f32.
struct mel_chunk {
    int32_t            n_mel    = 0;
    int32_t            n_frames = 0;
    std::vector<float> data;
};

// Throws mm::error(invalid_argument) on empty input or out-of-range parameters. The optional
// cancel flag is polled once per frame; when it is set the call throws aborted.
std::vector<mel_chunk> log_mel_spectrogram(const float * samples, size_t n_samples, const mel_params & params,
                                           const std::atomic<bool> * cancel = nullptr);

// The mel filterbank libmtmd builds: [n_mel][n_fft / 2 + 1] row-major.
std::vector<float> mel_filterbank(const mel_params & params);

}  // namespace mm
