// Image preprocessing, ported from libmtmd (tools/mtmd/mtmd-image.cpp img_tool::resize and its
// Pillow-compatible fixed-point resampler, clip-impl.h clip_image_f32::from_u8/normalize) so that
// the pixels fed to the encoder are bit-identical to libmtmd's.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "encoders/image.h"

namespace mm {

enum class resize_algo { bilinear, bicubic, lanczos };
enum class pad_style { none, ceil, nearest };

struct preprocess_params {
    int32_t image_size = 0;  // square target side (fixed-size families)
    // Dynamic resolution (Qwen-VL's "smart resize", libmtmd's dyn_size preprocessor): when
    // align > 0 the target keeps the aspect ratio, each side a multiple of `align`, with
    // min_pixels <= w * h <= max_pixels; image_size is then unused.
    int32_t                align      = 0;
    int32_t                min_pixels = 0;
    int32_t                max_pixels = 0;
    resize_algo            algo       = resize_algo::bicubic;
    pad_style              pad        = pad_style::ceil;
    std::array<uint8_t, 3> pad_color  = {0, 0, 0};
    std::array<float, 3>   mean       = {0, 0, 0};
    std::array<float, 3>   std        = {1, 1, 1};
};

// Pillow-compatible separable resampling to exactly target_w x target_h (no padding).
rgb_image resample(const rgb_image & src, int32_t target_w, int32_t target_h, resize_algo algo);

// libmtmd's img_tool::resize: a plain copy when the size already matches; with padding, an
// aspect-preserving resample centred on a canvas filled with pad_color.
rgb_image resize_image(const rgb_image & src, int32_t target_w, int32_t target_h, resize_algo algo, pad_style pad,
                       const std::array<uint8_t, 3> & pad_color);

// Pixels ready for an encoder: planar [3][height][width] f32.
struct pixel_input {
    int32_t            width  = 0;
    int32_t            height = 0;
    std::vector<float> data;
};

// libmtmd's calc_size_preserved_ratio without longest_edge: the size a dynamic-resolution family
// resizes a w x h picture to.
void dynamic_target_size(int32_t w, int32_t h, int32_t align, int32_t min_pixels, int32_t max_pixels, int32_t & out_w,
                         int32_t & out_h);

// The size the picture is resized to: image_size square, or the dynamic target.
void target_size(const preprocess_params & p, int32_t w, int32_t h, int32_t & out_w, int32_t & out_h);

// Scale to [0, 1], normalise per channel and lay out planar ([3][H][W]): libmtmd's
// clip_image_f32::from_u8 + normalize.
pixel_input normalize_planar(const rgb_image & img, const std::array<float, 3> & mean,
                             const std::array<float, 3> & std);

// The w x h rectangle of `src` at (x, y) (libmtmd's img_tool::crop); MM_INTERNAL when it is not inside.
rgb_image crop_image(const rgb_image & src, int32_t x, int32_t y, int32_t w, int32_t h);

// Resize to the target size, scale to [0, 1], normalise per channel, and lay the result out
// planar ([3][H][W], the encoder's input layout).
pixel_input preprocess_image(const rgb_image & src, const preprocess_params & p);

}  // namespace mm
