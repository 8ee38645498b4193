// Port of libmtmd's Whisper log-mel (tools/mtmd/mtmd-audio.cpp). The arithmetic is kept in the
// same order and precision as the original (f32 sin/cos table and FFT, f32 products summed in
// groups of four and accumulated in f64, log10 in f64) so that the result matches libmtmd's.
#include "encoders/audio/mel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "common/error.h"

namespace mm {

namespace {

constexpr double k_pi        = 3.14159265358979323846;
constexpr float  k_mel_floor = 5.960464477539063e-08f;

struct fft_tables {
    std::vector<float> sin_vals;
    std::vector<float> cos_vals;
};

// mtmd_audio_cache::fill_sin_cos_table
fft_tables make_tables(uint32_t n) {
    fft_tables t;
    t.sin_vals.resize(n);
    t.cos_vals.resize(n);
    for (uint32_t i = 0; i < n; i++) {
        const double theta = (2 * k_pi * i) / n;
        t.sin_vals[i]      = sinf(static_cast<float>(theta));
        t.cos_vals[i]      = cosf(static_cast<float>(theta));
    }
    return t;
}

// mtmd_audio_cache::fill_hann_window(length, periodic = true)
std::vector<float> hann_window(uint32_t length) {
    std::vector<float> w(length);
    for (uint32_t i = 0; i < length; i++) {
        w[i] = static_cast<float>(0.5 * (1.0 - cosf(static_cast<float>((2.0 * k_pi * i) / length))));
    }
    return w;
}

// dft_impl<false, true>: forward DFT of a real input (odd sizes).
void dft_real(const fft_tables & t, const float * in, int n, float * out) {
    const int n_vals = static_cast<int>(t.sin_vals.size());
    const int step   = n_vals / n;
    for (int k = 0; k < n; k++) {
        float re = 0;
        float im = 0;
        for (int j = 0; j < n; j++) {
            const int   idx   = (k * j * step) % n_vals;
            const float in_re = in[j];
            re += in_re * t.cos_vals[idx];
            im += -1.0f * in_re * t.sin_vals[idx];
        }
        out[k * 2 + 0] = re;
        out[k * 2 + 1] = im;
    }
}

// fft_impl<false, true>: radix-2 splits down to an odd size. `in` needs 2n floats (the upper half
// is scratch), `out` 8n floats (interleaved re/im, the rest scratch).
void fft_real(const fft_tables & t, float * in, int n, float * out) {
    if (n == 1) {
        out[0] = in[0];
        out[1] = 0.0f;
        return;
    }
    const int half = n / 2;
    if (n - half * 2 == 1) {
        dft_real(t, in, n, out);
        return;
    }
    float * even = in + n;
    for (int i = 0; i < half; ++i) {
        even[i] = in[2 * i];
    }
    float * even_fft = out + 2 * n;
    fft_real(t, even, half, even_fft);

    float * odd = even;
    for (int i = 0; i < half; ++i) {
        odd[i] = in[2 * i + 1];
    }
    float * odd_fft = even_fft + n;
    fft_real(t, odd, half, odd_fft);

    const int step = static_cast<int>(t.sin_vals.size()) / n;
    for (int k = 0; k < half; k++) {
        const int   idx    = k * step;
        const float re     = t.cos_vals[idx];
        const float im     = -1.0f * t.sin_vals[idx];
        const float re_odd = odd_fft[2 * k + 0];
        const float im_odd = odd_fft[2 * k + 1];

        out[2 * k + 0] = 1.0f * (even_fft[2 * k + 0] + re * re_odd - im * im_odd);
        out[2 * k + 1] = 1.0f * (even_fft[2 * k + 1] + re * im_odd + im * re_odd);

        out[2 * (k + half) + 0] = 1.0f * (even_fft[2 * k + 0] - re * re_odd + im * im_odd);
        out[2 * (k + half) + 1] = 1.0f * (even_fft[2 * k + 1] - re * im_odd - im * re_odd);
    }
}

void check_params(const mel_params & p) {
    auto bad = [](const std::string & what) { fail(error_code::invalid_argument, "log-mel: " + what); };
    if (p.n_mel < 1 || p.n_mel > 1024) {
        bad("n_mel must be in [1, 1024]");
    }
    if (p.n_fft < 2 || p.n_fft > 16384 || p.n_fft % 2 != 0) {
        bad("n_fft must be even and in [2, 16384]");
    }
    if (p.window_len < 1 || p.window_len > p.n_fft) {
        bad("window_len must be in [1, n_fft]");
    }
    if (p.hop_len < 1 || p.hop_len > p.n_fft) {
        bad("hop_len must be in [1, n_fft]");
    }
    if (p.sample_rate < 1000 || p.sample_rate > 384000) {
        bad("sample_rate must be in [1000, 384000]");
    }
    if (p.frames_per_chunk < 1) {
        bad("frames_per_chunk must be >= 1");
    }
}

}  // namespace

// mtmd_audio_cache::fill_mel_filterbank_matrix(n_mel, n_fft, sample_rate) with its defaults:
// fmin 0, fmax sr / 2, Slaney scale and area normalisation, scale 1.
std::vector<float> mel_filterbank(const mel_params & p) {
    check_params(p);
    const int64_t n_mel = p.n_mel;
    const int64_t n_fft = p.n_fft;
    const float   fmin  = 0.0f;
    const float   fmax  = 0.5f * p.sample_rate;

    const double min_log_hz  = 1000.0;
    const double lin_slope   = 3 / 200.;
    const double min_log_mel = min_log_hz * lin_slope;
    const double log_step    = log(6.4) / 27.0;
    auto         hz_to_mel   = [&](double f_hz) {
        return (f_hz < min_log_hz) ? f_hz * lin_slope : min_log_mel + log(f_hz / min_log_hz) / log_step;
    };
    auto mel_to_hz = [&](double m) {
        return (m < min_log_mel) ? m / lin_slope : min_log_hz * exp((m - min_log_mel) * log_step);
    };

    const double        bin_hz_step = double(p.sample_rate) / double(n_fft);
    const double        m_lo        = hz_to_mel(fmin);
    const double        m_hi        = hz_to_mel(fmax);
    std::vector<double> hz_pts(n_mel + 2);
    for (int64_t i = 0; i < n_mel + 2; ++i) {
        hz_pts[i] = mel_to_hz(m_lo + (m_hi - m_lo) * (double(i) / (n_mel + 1)));
    }

    const int64_t      n_bins = n_fft / 2 + 1;
    std::vector<float> out(size_t(n_mel) * size_t(n_bins), 0.0f);
    for (int64_t m = 0; m < n_mel; ++m) {
        const double f_left   = hz_pts[m];
        const double f_center = hz_pts[m + 1];
        const double f_right  = hz_pts[m + 2];
        const double denom_l  = std::max(1e-30, f_center - f_left);
        const double denom_r  = std::max(1e-30, f_right - f_center);
        const double enorm    = 2.0 / std::max(1e-30, f_right - f_left);
        for (int64_t k = 0; k < n_bins; ++k) {
            const double f = k * bin_hz_step;
            double       w = 0.0;
            if (f >= f_left && f <= f_center) {
                w = (f - f_left) / denom_l;
            } else if (f > f_center && f <= f_right) {
                w = (f_right - f) / denom_r;
            }
            out[size_t(m) * size_t(n_bins) + size_t(k)] = float(w * enorm * 1.0f);
        }
    }
    return out;
}

std::vector<mel_chunk> log_mel_spectrogram(const float * samples_in, size_t n_samples_in, const mel_params & p,
                                           const std::atomic<bool> * cancel) {
    check_params(p);
    if (n_samples_in == 0 || samples_in == nullptr) {
        fail(error_code::invalid_argument, "log-mel: no samples");
    }
    const int64_t n_bins     = p.n_fft / 2 + 1;
    const int     frame_size = static_cast<int>((n_bins - 1) * 2);
    const int     frame_step = p.hop_len;
    const int64_t pad_end    = int64_t(p.sample_rate) * 30;  // libmtmd: always 30 s of zeros
    const int64_t pad_side   = frame_size / 2;
    if (n_samples_in > size_t(std::numeric_limits<int>::max()) - size_t(pad_end + 2 * pad_side + 1)) {
        fail(error_code::invalid_argument, "log-mel: too many samples");
    }

    // Whisper preprocess: shorter input is zero-padded so that the reflection has its samples.
    const size_t min_samples = size_t(p.n_fft) / 2 + 1;
    const size_t n_signal    = std::max(n_samples_in, min_samples);
    // Padded signal: reflection of samples[1..pad_side] | signal | zeros (pad_end + pad_side).
    std::vector<float> padded(n_signal + pad_end + 2 * pad_side, 0.0f);
    std::copy(samples_in, samples_in + n_samples_in, padded.begin() + pad_side);
    std::reverse_copy(padded.begin() + pad_side + 1, padded.begin() + pad_side + 1 + pad_side, padded.begin());
    const int n_samples = static_cast<int>(padded.size());

    // Window, centred in the frame when shorter than it.
    std::vector<float> hann = hann_window(static_cast<uint32_t>(p.window_len));
    if (p.window_len < frame_size) {
        std::vector<float> w(frame_size, 0.0f);
        std::copy(hann.begin(), hann.end(), w.begin() + (frame_size - p.window_len) / 2);
        hann = std::move(w);
    }

    const fft_tables         tables  = make_tables(static_cast<uint32_t>(p.n_fft));
    const std::vector<float> filters = mel_filterbank(p);

    const int64_t n_mel = p.n_mel;
    const int64_t n_len = (n_samples - frame_size) / frame_step + 1;
    if (n_len <= p.frames_per_chunk) {
        fail(error_code::invalid_argument, "log-mel: the padded signal is shorter than one chunk");
    }
    std::vector<float> mel(size_t(n_mel) * size_t(n_len));

    auto worker = [&](int ith, int n_threads) {
        std::vector<float> fft_in(size_t(frame_size) * 2, 0.0f);
        std::vector<float> fft_out(size_t(frame_size) * 8);
        int64_t            i = ith;
        for (; i < std::min(int64_t(n_samples / frame_step + 1), n_len); i += n_threads) {
            if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
                return;
            }
            const int64_t offset    = i * frame_step;
            const int     valid_len = std::min(frame_size, std::max(0, n_samples - static_cast<int>(offset)));
            for (int j = 0; j < valid_len; j++) {
                fft_in[j] = hann[j] * padded[offset + j];
            }
            if (valid_len < frame_size) {
                std::fill(fft_in.begin() + valid_len, fft_in.end(), 0.0f);
            }
            fft_real(tables, fft_in.data(), frame_size, fft_out.data());
            for (int64_t j = 0; j < n_bins; j++) {
                fft_out[j] = fft_out[2 * j + 0] * fft_out[2 * j + 0] + fft_out[2 * j + 1] * fft_out[2 * j + 1];
            }
            for (int64_t j = 0; j < n_mel; j++) {
                double        sum = 0.0;
                int64_t       k   = 0;
                const float * f   = filters.data() + size_t(j) * size_t(n_bins);
                for (k = 0; k < n_bins - 3; k += 4) {
                    sum += fft_out[k + 0] * f[k + 0] + fft_out[k + 1] * f[k + 1] + fft_out[k + 2] * f[k + 2] +
                           fft_out[k + 3] * f[k + 3];
                }
                for (; k < n_bins; k++) {
                    sum += fft_out[k] * f[k];
                }
                sum                                = std::max(sum, double(k_mel_floor));
                mel[size_t(j) * size_t(n_len) + i] = static_cast<float>(log10(sum));
            }
        }
        const float silent = static_cast<float>(log10(1e-10));
        for (; i < n_len; i += n_threads) {
            for (int64_t j = 0; j < n_mel; j++) {
                mel[size_t(j) * size_t(n_len) + i] = silent;
            }
        }
    };

    // Frames are independent: the thread count does not change the result.
    const int                n_threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
    std::vector<std::thread> threads;
    for (int t = 1; t < n_threads; ++t) {
        threads.emplace_back(worker, t, n_threads);
    }
    worker(0, n_threads);
    for (auto & t : threads) {
        t.join();
    }
    if (cancel != nullptr && cancel->load()) {
        fail(error_code::aborted, "log-mel: cancelled");
    }

    // Whisper clamping: (max - 8) over the whole padded signal, then (x + 4) / 4.
    double mmax = -1e20;
    for (float v : mel) {
        if (v > mmax) {
            mmax = v;
        }
    }
    mmax -= 8.0;
    for (float & v : mel) {
        if (v < mmax) {
            v = static_cast<float>(mmax);
        }
        v = static_cast<float>((v + 4.0) / 4.0);
    }

    // Chunks of frames_per_chunk frames; the incomplete tail (padding) is dropped, as in libmtmd.
    std::vector<mel_chunk> chunks;
    const int64_t          per = p.frames_per_chunk;
    for (int64_t off = 0; off + per <= n_len; off += per) {
        mel_chunk c;
        c.n_mel    = p.n_mel;
        c.n_frames = p.frames_per_chunk;
        c.data.reserve(size_t(n_mel) * size_t(per));
        for (int64_t j = 0; j < n_mel; j++) {
            const auto src = mel.begin() + size_t(j) * size_t(n_len) + off;
            c.data.insert(c.data.end(), src, src + per);
        }
        chunks.push_back(std::move(c));
    }
    return chunks;
}

}  // namespace mm
