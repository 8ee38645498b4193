#include "encoders/preprocess.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace mm {

namespace {

// Fixed-point precision of the resampler: 32 bits - 8 (pixel) - 2 (headroom), as in Pillow.
constexpr int k_precision_bits = 32 - 8 - 2;

double filter_support(resize_algo algo) {
    switch (algo) {
        case resize_algo::bilinear:
            return 1.0;
        case resize_algo::bicubic:
            return 2.0;
        case resize_algo::lanczos:
            return 3.0;
    }
    return 2.0;
}

// Filter weight at distance x from the pixel centre (Pillow's bicubic uses a = -0.5).
double resample_filter(resize_algo algo, double x) {
    if (algo == resize_algo::lanczos) {
        if (-3.0 <= x && x < 3.0) {
            auto sinc = [](double v) {
                if (v == 0.0) {
                    return 1.0;
                }
                const double pi_v = v * 3.141592653589793238462643383279502884;
                return std::sin(pi_v) / pi_v;
            };
            return sinc(x) * sinc(x / 3.0);
        }
        return 0.0;
    }
    if (x < 0.0) {
        x = -x;
    }
    if (algo == resize_algo::bilinear) {
        return x < 1.0 ? 1.0 - x : 0.0;
    }
    constexpr double a = -0.5;
    if (x < 1.0) {
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    }
    if (x < 2.0) {
        return (((x - 5) * x + 8) * x - 4) * a;
    }
    return 0.0;
}

uint8_t clip8(int val) {
    if (val < 0) {
        return 0;
    }
    if (val > 255) {
        return 255;
    }
    return static_cast<uint8_t>(val);
}

// Per output pixel: the first input pixel and the count (bounds), and fixed-point weights.
int precompute_weights(resize_algo algo, int in_size, int out_size, std::vector<int> & bounds,
                       std::vector<int32_t> & weights) {
    double support, scale, filterscale;
    double center, ww, ss;
    int    xx, x, ksize, xmin, xmax;

    filterscale = scale = static_cast<double>(in_size) / out_size;
    if (filterscale < 1.0) {
        filterscale = 1.0;
    }
    support = filter_support(algo) * filterscale;
    ksize   = static_cast<int>(std::ceil(support)) * 2 + 1;

    std::vector<double> pre_weights(static_cast<size_t>(out_size) * ksize);
    bounds.resize(static_cast<size_t>(out_size) * 2);

    for (xx = 0; xx < out_size; xx++) {
        center = (xx + 0.5) * scale;
        ww     = 0.0;
        ss     = 1.0 / filterscale;
        xmin   = static_cast<int>(center - support + 0.5);
        if (xmin < 0) {
            xmin = 0;
        }
        xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) {
            xmax = in_size;
        }
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            double w                                         = resample_filter(algo, (x + xmin - center + 0.5) * ss);
            pre_weights[static_cast<size_t>(xx) * ksize + x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) {
                pre_weights[static_cast<size_t>(xx) * ksize + x] /= ww;
            }
        }
        for (; x < ksize; x++) {
            pre_weights[static_cast<size_t>(xx) * ksize + x] = 0;
        }
        bounds[static_cast<size_t>(xx) * 2 + 0] = xmin;
        bounds[static_cast<size_t>(xx) * 2 + 1] = xmax;
    }

    weights.resize(static_cast<size_t>(out_size) * ksize);
    const double fxp_scale = std::ldexp(1.0, k_precision_bits);
    for (size_t i = 0; i < weights.size(); i++) {
        // Pillow adds +/- 0.5 then truncates toward zero
        const double rounded = pre_weights[i] * fxp_scale + (pre_weights[i] < 0 ? -0.5 : 0.5);
        weights[i]           = static_cast<int32_t>(rounded);
    }
    return ksize;
}

std::vector<uint8_t> resample_horizontal(const uint8_t * src, int in_nx, int in_ny, int out_nx, int ksize,
                                         const std::vector<int> & bounds, const std::vector<int32_t> & weights) {
    std::vector<uint8_t> out(static_cast<size_t>(out_nx) * in_ny * 3);
    for (int yy = 0; yy < in_ny; yy++) {
        const uint8_t * src_row = src + static_cast<size_t>(yy) * in_nx * 3;
        uint8_t *       dst_row = out.data() + static_cast<size_t>(yy) * out_nx * 3;
        for (int xx = 0; xx < out_nx; xx++) {
            const int       xmin = bounds[static_cast<size_t>(xx) * 2 + 0];
            const int       xcnt = bounds[static_cast<size_t>(xx) * 2 + 1];
            const int32_t * k    = &weights[static_cast<size_t>(xx) * ksize];
            const uint8_t * p    = src_row + static_cast<size_t>(xmin) * 3;
            int32_t         ss0  = 1 << (k_precision_bits - 1);
            int32_t         ss1  = 1 << (k_precision_bits - 1);
            int32_t         ss2  = 1 << (k_precision_bits - 1);
            for (int x = 0; x < xcnt; x++) {
                ss0 += p[0] * k[x];
                ss1 += p[1] * k[x];
                ss2 += p[2] * k[x];
                p += 3;
            }
            dst_row[xx * 3 + 0] = clip8(ss0 >> k_precision_bits);
            dst_row[xx * 3 + 1] = clip8(ss1 >> k_precision_bits);
            dst_row[xx * 3 + 2] = clip8(ss2 >> k_precision_bits);
        }
    }
    return out;
}

std::vector<uint8_t> resample_vertical(const uint8_t * src, int in_nx, int out_ny, int ksize,
                                       const std::vector<int> & bounds, const std::vector<int32_t> & weights) {
    const size_t         row_elems = static_cast<size_t>(in_nx) * 3;
    std::vector<uint8_t> out(row_elems * out_ny);
    std::vector<int32_t> acc(row_elems);
    for (int yy = 0; yy < out_ny; yy++) {
        const int       ymin = bounds[static_cast<size_t>(yy) * 2 + 0];
        const int       ycnt = bounds[static_cast<size_t>(yy) * 2 + 1];
        const int32_t * k    = &weights[static_cast<size_t>(yy) * ksize];
        std::fill(acc.begin(), acc.end(), 1 << (k_precision_bits - 1));
        for (int y = 0; y < ycnt; y++) {
            const uint8_t * src_row = src + static_cast<size_t>(ymin + y) * row_elems;
            const int32_t   w       = k[y];
            for (size_t i = 0; i < row_elems; i++) {
                acc[i] += src_row[i] * w;
            }
        }
        uint8_t * dst_row = out.data() + static_cast<size_t>(yy) * row_elems;
        for (size_t i = 0; i < row_elems; i++) {
            dst_row[i] = clip8(acc[i] >> k_precision_bits);
        }
    }
    return out;
}

void check_image(const rgb_image & img) {
    if (img.width <= 0 || img.height <= 0 ||
        img.data.size() != static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3) {
        fail(error_code::invalid_argument, "image must be a non-empty RGB image (width * height * 3 bytes)");
    }
}

}  // namespace

rgb_image resample(const rgb_image & src, int32_t target_w, int32_t target_h, resize_algo algo) {
    check_image(src);
    if (target_w <= 0 || target_h <= 0) {
        fail(error_code::invalid_argument, "resize target must be at least 1x1");
    }
    const bool need_h = target_w != src.width;
    const bool need_v = target_h != src.height;

    std::vector<int>     bounds_h, bounds_v;
    std::vector<int32_t> weights_h, weights_v;
    int                  ksize_h = 0, ksize_v = 0;
    if (need_h) {
        ksize_h = precompute_weights(algo, src.width, target_w, bounds_h, weights_h);
    }
    if (need_v) {
        ksize_v = precompute_weights(algo, src.height, target_h, bounds_v, weights_v);
    }

    rgb_image dst;
    dst.width  = target_w;
    dst.height = target_h;
    if (need_h && need_v) {
        auto tmp = resample_horizontal(src.data.data(), src.width, src.height, target_w, ksize_h, bounds_h, weights_h);
        dst.data = resample_vertical(tmp.data(), target_w, target_h, ksize_v, bounds_v, weights_v);
    } else if (need_h) {
        dst.data = resample_horizontal(src.data.data(), src.width, src.height, target_w, ksize_h, bounds_h, weights_h);
    } else if (need_v) {
        dst.data = resample_vertical(src.data.data(), src.width, target_h, ksize_v, bounds_v, weights_v);
    } else {
        dst.data = src.data;
    }
    return dst;
}

rgb_image resize_image(const rgb_image & src, int32_t target_w, int32_t target_h, resize_algo algo, pad_style pad,
                       const std::array<uint8_t, 3> & pad_color) {
    check_image(src);
    if (target_w <= 0 || target_h <= 0) {
        fail(error_code::invalid_argument, "resize target must be at least 1x1");
    }
    if (target_w == src.width && target_h == src.height) {
        return src;
    }
    if (pad == pad_style::none) {
        return resample(src, target_w, target_h, algo);
    }
    // float arithmetic exactly as libmtmd's img_tool::resize
    float scale_w = static_cast<float>(target_w) / src.width;
    float scale_h = static_cast<float>(target_h) / src.height;
    float scale   = std::min(scale_w, scale_h);
    int   new_w, new_h;
    if (pad == pad_style::nearest) {
        new_w = std::min(static_cast<int>(std::round(src.width * scale)), target_w);
        new_h = std::min(static_cast<int>(std::round(src.height * scale)), target_h);
    } else {
        new_w = std::min(static_cast<int>(std::ceil(src.width * scale)), target_w);
        new_h = std::min(static_cast<int>(std::ceil(src.height * scale)), target_h);
    }
    // libmtmd asserts here on a 0-pixel side (possible with nearest rounding); keep one pixel
    new_w             = std::max(new_w, 1);
    new_h             = std::max(new_h, 1);
    rgb_image resized = resample(src, new_w, new_h, algo);

    rgb_image dst;
    dst.width  = target_w;
    dst.height = target_h;
    dst.data.resize(static_cast<size_t>(target_w) * target_h * 3);
    for (size_t i = 0; i < dst.data.size(); i += 3) {
        dst.data[i + 0] = pad_color[0];
        dst.data[i + 1] = pad_color[1];
        dst.data[i + 2] = pad_color[2];
    }
    int offset_x, offset_y;
    if (pad == pad_style::nearest) {
        offset_x = static_cast<int>(std::round((target_w - new_w) / 2.0f));
        offset_y = static_cast<int>(std::round((target_h - new_h) / 2.0f));
    } else {
        offset_x = (target_w - new_w) / 2;
        offset_y = (target_h - new_h) / 2;
    }
    for (int y = 0; y < resized.height; ++y) {
        for (int x = 0; x < resized.width; ++x) {
            const int dx = x + offset_x;
            const int dy = y + offset_y;
            if (dx < 0 || dy < 0 || dx >= target_w || dy >= target_h) {
                continue;
            }
            const size_t s  = (static_cast<size_t>(y) * resized.width + x) * 3;
            const size_t d  = (static_cast<size_t>(dy) * target_w + dx) * 3;
            dst.data[d + 0] = resized.data[s + 0];
            dst.data[d + 1] = resized.data[s + 1];
            dst.data[d + 2] = resized.data[s + 2];
        }
    }
    return dst;
}

void dynamic_target_size(int32_t w, int32_t h, int32_t align, int32_t min_pixels, int32_t max_pixels, int32_t & out_w,
                         int32_t & out_h) {
    // float arithmetic exactly as libmtmd's (tools/mtmd/mtmd-image.cpp), so sizes agree at the edges
    const float f        = static_cast<float>(align);
    auto        round_by = [f, align](float x) { return static_cast<int>(std::round(x / f)) * align; };
    auto        ceil_by  = [f, align](float x) { return static_cast<int>(std::ceil(x / f)) * align; };
    auto        floor_by = [f, align](float x) { return static_cast<int>(std::floor(x / f)) * align; };
    int         w_bar    = std::max(align, round_by(static_cast<float>(w)));
    int         h_bar    = std::max(align, round_by(static_cast<float>(h)));
    if (max_pixels > 0 && static_cast<int64_t>(h_bar) * w_bar > max_pixels) {
        const float beta = std::sqrt(static_cast<float>(h) * static_cast<float>(w) / static_cast<float>(max_pixels));
        h_bar            = std::max(align, floor_by(static_cast<float>(h) / beta));
        w_bar            = std::max(align, floor_by(static_cast<float>(w) / beta));
    } else if (min_pixels > 0 && static_cast<int64_t>(h_bar) * w_bar < min_pixels) {
        const float beta = std::sqrt(static_cast<float>(min_pixels) / (static_cast<float>(h) * static_cast<float>(w)));
        h_bar            = ceil_by(static_cast<float>(h) * beta);
        w_bar            = ceil_by(static_cast<float>(w) * beta);
    }
    out_w = w_bar;
    out_h = h_bar;
}

void target_size(const preprocess_params & p, int32_t w, int32_t h, int32_t & out_w, int32_t & out_h) {
    if (p.align > 0) {
        dynamic_target_size(w, h, p.align, p.min_pixels, p.max_pixels, out_w, out_h);
    } else {
        out_w = p.image_size;
        out_h = p.image_size;
    }
}

pixel_input preprocess_image(const rgb_image & src, const preprocess_params & p) {
    int32_t tw = 0, th = 0;
    target_size(p, src.width, src.height, tw, th);
    if (p.align > 0 && p.max_pixels > 0 && static_cast<int64_t>(tw) * th > p.max_pixels) {
        // libmtmd's smart resize scales the long side to fit max_pixels, then rounds the short side
        // back UP to one alignment unit: past an aspect ratio of about max_pixels / align^2 : 1 (4096:1
        // for Qwen-VL) the result overshoots the token limit many times over (libmtmd then encodes
        // tens of thousands of tokens, or fails to allocate Qwen2.5-VL's window mask and crashes).
        const int64_t unit = static_cast<int64_t>(p.align) * p.align;
        fail(error_code::image_too_large,
             "a " + std::to_string(src.width) + "x" + std::to_string(src.height) + " picture resizes to " +
                 std::to_string(tw) + "x" + std::to_string(th) + " (" +
                 std::to_string(static_cast<int64_t>(tw) * th / unit) + " tokens), more than the model's limit of " +
                 std::to_string(p.max_pixels / unit) + ": its aspect ratio is too extreme");
    }
    if (tw < 1 || th < 1 || tw > k_max_image_side || th > k_max_image_side) {
        fail(error_code::invalid_argument, "the picture resizes to " + std::to_string(tw) + "x" + std::to_string(th) +
                                               ", outside what the encoder takes");
    }
    return normalize_planar(resize_image(src, tw, th, p.algo, p.pad, p.pad_color), p.mean, p.std);
}

pixel_input normalize_planar(const rgb_image & img, const std::array<float, 3> & mean,
                             const std::array<float, 3> & std) {
    const size_t n = static_cast<size_t>(img.width) * img.height;
    pixel_input  out;
    out.width  = img.width;
    out.height = img.height;
    out.data.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
        for (int c = 0; c < 3; ++c) {
            const float v                            = static_cast<float>(img.data[i * 3 + c]) / 255.0f;
            out.data[static_cast<size_t>(c) * n + i] = (v - mean[c]) / std[c];
        }
    }
    return out;
}

rgb_image crop_image(const rgb_image & src, int32_t x, int32_t y, int32_t w, int32_t h) {
    if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > src.width || y + h > src.height) {
        fail(error_code::internal, "a crop lies outside the picture");
    }
    rgb_image dst;
    dst.width  = w;
    dst.height = h;
    dst.data.resize(static_cast<size_t>(w) * h * 3);
    const size_t row = static_cast<size_t>(w) * 3;
    for (int32_t r = 0; r < h; ++r) {
        const uint8_t * from = src.data.data() + ((static_cast<size_t>(y) + r) * src.width + x) * 3;
        std::copy(from, from + row, dst.data.data() + static_cast<size_t>(r) * row);
    }
    return dst;
}

}  // namespace mm
