#include "encoders/slicing.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace mm {

namespace {

// libmtmd's ensure_divide: the nearest positive multiple of `align` (float rounding, as there).
int32_t ensure_divide(int32_t length, int32_t align) {
    return std::max(static_cast<int32_t>(std::round(static_cast<float>(length) / align) * align), align);
}

// select_best_resolution: the candidate that keeps the most of the picture, then wastes the least.
// Areas in 64 bits (libmtmd's int arithmetic gives the same values wherever it does not overflow).
bool select_best_resolution(int32_t w, int32_t h, const std::vector<std::array<int32_t, 2>> & candidates,
                            int32_t & best_w, int32_t & best_h) {
    int64_t min_wasted    = std::numeric_limits<int32_t>::max();
    int64_t max_effective = 0;
    bool    found         = false;
    for (const auto & c : candidates) {
        // resize_maintain_aspect_ratio
        const float   scale_w   = static_cast<float>(c[0]) / w;
        const float   scale_h   = static_cast<float>(c[1]) / h;
        const float   scale     = std::min(scale_w, scale_h);
        const int64_t tw        = static_cast<int32_t>(w * scale);
        const int64_t th        = static_cast<int32_t>(h * scale);
        const int64_t effective = std::min(tw * th, static_cast<int64_t>(w) * h);
        const int64_t wasted    = static_cast<int64_t>(c[0]) * c[1] - effective;
        if (effective > max_effective || (effective == max_effective && wasted < min_wasted)) {
            max_effective = effective;
            min_wasted    = wasted;
            best_w        = c[0];
            best_h        = c[1];
            found         = true;
        }
    }
    return found;
}

// get_best_grid: among the grids of multiple - 1, multiple and multiple + 1 slices (not 1, at most
// max_slice_nums), the one whose aspect ratio is closest to the picture's (in log space).
void best_grid(int32_t max_slice_nums, int32_t multiple, float log_ratio, int32_t & gx, int32_t & gy) {
    gx              = 1;
    gy              = 1;
    float min_error = std::numeric_limits<float>::infinity();
    for (int32_t n : {multiple - 1, multiple, multiple + 1}) {
        if (n == 1 || n > max_slice_nums) {
            continue;
        }
        for (int32_t m = 1; m <= n; ++m) {
            if (n % m != 0) {
                continue;
            }
            // double log of the grid ratio, compared in float, as libmtmd does
            const float error = static_cast<float>(std::abs(log_ratio - std::log(1.0 * m / (n / m))));
            if (error < min_error) {
                gx        = m;
                gy        = n / m;
                min_error = error;
            }
        }
    }
}

// get_refine_size: the picture rounded to the grid, each grid cell best-resized, times the grid.
void refine_size(int32_t w, int32_t h, int32_t gx, int32_t gy, int32_t slice_size, int32_t align, int32_t & out_w,
                 int32_t & out_h) {
    const int32_t cell_w = ensure_divide(w, gx) / gx;
    const int32_t cell_h = ensure_divide(h, gy) / gy;
    int32_t       bw = 0, bh = 0;
    llava_uhd_best_resize(cell_w, cell_h, slice_size, align, true, bw, bh);
    out_w = bw * gx;
    out_h = bh * gy;
}

std::string too_extreme(int32_t w, int32_t h, const std::string & why) {
    return "a " + std::to_string(w) + "x" + std::to_string(h) + " picture cannot be sliced for this model: " + why +
           " (its aspect ratio is too extreme)";
}

}  // namespace

std::string uhd_params_problem(const uhd_params & p) {
    if (p.slice_size <= 0 || p.slice_size > 8192) {
        return "the slice size " + std::to_string(p.slice_size) + " is out of range [1, 8192]";
    }
    if (p.pinpoints.empty()) {
        if (p.patch_align <= 0 || p.patch_align > p.slice_size) {
            return "the slice alignment " + std::to_string(p.patch_align) + " is out of range [1, " +
                   std::to_string(p.slice_size) + "]";
        }
        if (p.max_slice_nums < 1 || p.max_slice_nums > k_uhd_max_slice_nums) {
            return "max_slice_nums " + std::to_string(p.max_slice_nums) + " is out of range [1, " +
                   std::to_string(k_uhd_max_slice_nums) + "]";
        }
        return "";
    }
    if (p.pinpoints.size() > k_uhd_max_pinpoints) {
        return std::to_string(p.pinpoints.size()) + " grid pinpoints are more than mm takes (" +
               std::to_string(k_uhd_max_pinpoints) + ")";
    }
    for (const auto & c : p.pinpoints) {
        const std::string what = "grid pinpoint " + std::to_string(c[0]) + "x" + std::to_string(c[1]);
        if (c[0] <= 0 || c[1] <= 0 || c[0] % p.slice_size != 0 || c[1] % p.slice_size != 0) {
            return what + " is not made of whole " + std::to_string(p.slice_size) + "x" + std::to_string(p.slice_size) +
                   " slices";
        }
        const int64_t n = static_cast<int64_t>(c[0] / p.slice_size) * (c[1] / p.slice_size);
        if (n > k_uhd_max_slices) {
            return what + " makes " + std::to_string(n) + " slices, more than " + std::to_string(k_uhd_max_slices);
        }
        if (static_cast<int64_t>(c[0]) * c[1] > k_uhd_max_refined_pixels) {
            return what + " is larger than " + std::to_string(k_uhd_max_refined_pixels) + " pixels";
        }
    }
    return "";
}

void llava_uhd_best_resize(int32_t w, int32_t h, int32_t scale_resolution, int32_t patch_align, bool allow_upscale,
                           int32_t & out_w, int32_t & out_h) {
    int32_t width  = w;
    int32_t height = h;
    if (static_cast<int64_t>(width) * height > static_cast<int64_t>(scale_resolution) * scale_resolution ||
        allow_upscale) {
        const float r = static_cast<float>(width) / height;
        height        = static_cast<int32_t>(scale_resolution / std::sqrt(r));
        width         = static_cast<int32_t>(height * r);
    }
    out_w = ensure_divide(width, patch_align);
    out_h = ensure_divide(height, patch_align);
}

uhd_instructions llava_uhd_instructions(const uhd_params & p, int32_t w, int32_t h) {
    const std::string problem = uhd_params_problem(p);
    if (!problem.empty()) {
        fail(error_code::invalid_argument, "llava-uhd slicing: " + problem);
    }
    if (w <= 0 || h <= 0) {
        fail(error_code::invalid_argument, "the picture must be at least 1x1");
    }
    const int32_t    S = p.slice_size;
    uhd_instructions inst;
    if (w <= S && h <= S) {
        // fits in one slice: the overview only, a slice_size square
        inst.ov_w = S;
        inst.ov_h = S;
        return inst;
    }

    if (!p.pinpoints.empty()) {
        int32_t rw = 0, rh = 0;
        if (!select_best_resolution(w, h, p.pinpoints, rw, rh)) {
            fail(error_code::invalid_argument,
                 too_extreme(w, h, "every grid pinpoint would keep less than one pixel of it"));
        }
        inst.ov_w   = S;
        inst.ov_h   = S;
        inst.rf_w   = rw;
        inst.rf_h   = rh;
        inst.grid_x = rw / S;
        inst.grid_y = rh / S;
        for (int32_t y = 0; y < rh; y += S) {
            for (int32_t x = 0; x < rw; x += S) {
                inst.slices.push_back({x, y, std::min(S, rw - x), std::min(S, rh - y)});
            }
        }
        return inst;
    }

    // MiniCPM-V: the grid follows the aspect ratio
    const int32_t A = p.patch_align;
    llava_uhd_best_resize(w, h, S, A, false, inst.ov_w, inst.ov_h);
    // log of a float ratio in double, stored as float, as libmtmd's unqualified log() on a float
    const float   log_ratio = static_cast<float>(std::log(static_cast<double>(static_cast<float>(w) / h)));
    const float   ratio     = static_cast<float>(w) * h / (S * S);
    const int32_t multiple  = static_cast<int32_t>(std::fmin(std::ceil(ratio), p.max_slice_nums));
    int32_t       gx = 1, gy = 1;
    best_grid(p.max_slice_nums, multiple, log_ratio, gx, gy);
    refine_size(w, h, gx, gy, S, A, inst.rf_w, inst.rf_h);
    if (static_cast<int64_t>(inst.rf_w) * inst.rf_h > k_uhd_max_refined_pixels ||
        static_cast<int64_t>(inst.ov_w) * inst.ov_h > k_uhd_max_refined_pixels) {
        fail(
            error_code::invalid_argument,
            too_extreme(w, h, "it would be resized to " + std::to_string(inst.rf_w) + "x" + std::to_string(inst.rf_h)));
    }
    inst.grid_x          = gx;
    inst.grid_y          = gy;
    const int32_t cell_w = inst.rf_w / gx;
    const int32_t cell_h = inst.rf_h / gy;
    for (int32_t y = 0, iy = 0; y < inst.rf_h && iy < gy; y += cell_h, ++iy) {
        for (int32_t x = 0, ix = 0; x < inst.rf_w && ix < gx; x += cell_w, ++ix) {
            inst.slices.push_back({x, y, cell_w, cell_h});
        }
    }
    return inst;
}

std::vector<pixel_input> llava_uhd_cut(const uhd_params & p, const rgb_image & img, const uhd_instructions & inst,
                                       slice_layout & layout) {
    if (inst.slices.size() != static_cast<size_t>(inst.grid_x) * inst.grid_y) {
        // libmtmd asserts on this (partial slices from a refined size that is not whole slices)
        fail(error_code::invalid_argument, "llava-uhd slicing: " + std::to_string(inst.slices.size()) +
                                               " slices do not make a " + std::to_string(inst.grid_x) + "x" +
                                               std::to_string(inst.grid_y) + " grid");
    }
    std::vector<pixel_input> out;
    out.reserve(1 + inst.slices.size());
    out.push_back(
        normalize_planar(resize_image(img, inst.ov_w, inst.ov_h, p.algo_ov, p.pad_ov, p.pad_color_ov), p.mean, p.std));
    if (!inst.slices.empty()) {
        const rgb_image refined = resize_image(img, inst.rf_w, inst.rf_h, p.algo_rf, p.pad_rf, p.pad_color_rf);
        for (const uhd_slice & s : inst.slices) {
            out.push_back(normalize_planar(crop_image(refined, s.x, s.y, s.w, s.h), p.mean, p.std));
        }
    }
    layout.grid_x       = inst.slices.empty() ? 0 : inst.grid_x;
    layout.grid_y       = inst.slices.empty() ? 0 : inst.grid_y;
    layout.has_overview = true;
    return out;
}

std::vector<pixel_input> llava_uhd_slices(const uhd_params & p, const rgb_image & img, slice_layout & layout) {
    return llava_uhd_cut(p, img, llava_uhd_instructions(p, img.width, img.height), layout);
}

}  // namespace mm
