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
    int32_t                image_size = 0;  // square target side
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

// Resize to image_size x image_size, scale to [0, 1], normalise per channel, and lay the result
// out planar ([3][H][W], the encoder's input layout).
std::vector<float> preprocess_image(const rgb_image & src, const preprocess_params & p);

}  // namespace mm
