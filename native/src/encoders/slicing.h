// llava-uhd slicing, ported from libmtmd (tools/mtmd/mtmd-image.cpp,
// mtmd_image_preprocessor_llava_uhd): a picture becomes an overview (the whole picture at a small
// size) and, when it is larger than one slice, a grid of slices cut from a "refined" resize of it.
// Two modes, as in libmtmd:
//  - with pinpoints (LLaVA-1.6 anyres, clip.vision.image_grid_pinpoints): the refined size is the
//    candidate resolution that keeps the most of the picture (select_best_resolution), cut into
//    slice_size squares; the overview is a slice_size square;
//  - without (MiniCPM-V): the grid follows the aspect ratio (at most max_slice_nums slices,
//    get_best_grid), sizes aligned to patch_align; the overview keeps the aspect ratio.
// The pixels are bit-identical to libmtmd's (same float arithmetic, same resampler and padding).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "encoders/image.h"
#include "encoders/preprocess.h"
#include "encoders/vision_hparams.h"

namespace mm {

// libmtmd's clip_hparams fields the llava-uhd preprocessor reads.
struct uhd_params {
    int32_t slice_size     = 0;  // hparams.image_size
    int32_t patch_align    = 0;  // hparams.patch_size * hparams.n_merge (MiniCPM-V mode only)
    int32_t max_slice_nums = 9;  // MiniCPM-V mode: libmtmd's hard-coded 9
    // (width, height) candidates of the refined picture; empty: the MiniCPM-V mode.
    std::vector<std::array<int32_t, 2>> pinpoints;
    // Overview (image_resize_algo_ov, image_pad_ov, image_pad_color_ov) and refined picture (_rf);
    // libmtmd's defaults.
    resize_algo            algo_ov      = resize_algo::bicubic;
    resize_algo            algo_rf      = resize_algo::bicubic;
    pad_style              pad_ov       = pad_style::none;
    pad_style              pad_rf       = pad_style::ceil;
    std::array<uint8_t, 3> pad_color_ov = {0, 0, 0};
    std::array<uint8_t, 3> pad_color_rf = {0, 0, 0};
    std::array<float, 3>   mean         = {0, 0, 0};
    std::array<float, 3>   std          = {1, 1, 1};
};

// Limits on what a file may ask for (hostile pinpoints are refused at load).
inline constexpr size_t  k_uhd_max_pinpoints      = 256;      // candidates
inline constexpr int32_t k_uhd_max_slices         = 64;       // slices of one candidate
inline constexpr int64_t k_uhd_max_refined_pixels = 1 << 26;  // one candidate's area
inline constexpr int32_t k_uhd_max_slice_nums     = 64;       // MiniCPM-V mode

// What is wrong with the parameters, or "" when they are usable: every pinpoint side a positive
// multiple of slice_size (libmtmd cuts partial slices from other sizes, then aborts on the slice
// count), at most k_uhd_max_slices slices and k_uhd_max_refined_pixels pixels per candidate, at most
// k_uhd_max_pinpoints candidates; slice_size, patch_align and max_slice_nums positive and bounded.
std::string uhd_params_problem(const uhd_params & p);

// One slice: its rectangle in the refined picture.
struct uhd_slice {
    int32_t x = 0, y = 0, w = 0, h = 0;
};

// libmtmd's slice_instructions.
struct uhd_instructions {
    int32_t                ov_w = 0, ov_h = 0;      // overview size
    int32_t                rf_w = 0, rf_h = 0;      // refined size (0 x 0 without slices)
    int32_t                grid_x = 0, grid_y = 0;  // slices across and down (0 x 0 without slices)
    std::vector<uhd_slice> slices;                  // row-major
};

// get_slice_instructions for a w x h picture. MM_INVALID_ARGUMENT when the picture cannot be cut
// (an aspect ratio so extreme that no pinpoint keeps a single pixel of it: libmtmd then reads an
// uninitialised size).
uhd_instructions llava_uhd_instructions(const uhd_params & p, int32_t w, int32_t h);

// get_best_resize: the size of a w x h picture scaled to about scale_resolution^2 pixels (only
// when larger, unless allow_upscale), each side a multiple of patch_align. MiniCPM-V's small-picture
// overview (n_merge 2) uses it directly.
void llava_uhd_best_resize(int32_t w, int32_t h, int32_t scale_resolution, int32_t patch_align, bool allow_upscale,
                           int32_t & out_w, int32_t & out_h);

// Cuts the picture as `inst` says: the overview first, then the slices row-major, each normalized
// with mean / std and laid out planar [3][H][W] (libmtmd's clip_image_f32 after normalize).
// layout = {grid_x, grid_y, has_overview = true}.
std::vector<pixel_input> llava_uhd_cut(const uhd_params & p, const rgb_image & img, const uhd_instructions & inst,
                                       slice_layout & layout);

// llava_uhd_instructions + llava_uhd_cut: libmtmd's mtmd_image_preprocessor_llava_uhd::preprocess.
std::vector<pixel_input> llava_uhd_slices(const uhd_params & p, const rgb_image & img, slice_layout & layout);

}  // namespace mm
