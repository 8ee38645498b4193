// Idefics3 / SmolVLM image splitting, ported from libmtmd (tools/mtmd/mtmd-image.cpp,
// mtmd_image_preprocessor_idefics3): a picture becomes a global image (the whole picture squeezed
// to one tile) and a grid of image_size tiles cut from a resize of it. Two rules, as in libmtmd:
//  - with clip.vision.preproc_image_size (files from current converters): the long side is
//    resized to that "longest edge" (the short side keeps the aspect ratio, rounded down, then up to
//    an even number), then both sides up to whole tiles; Lanczos throughout, no padding;
//  - without it (older files): the sides are rounded to the nearest multiple of image_size (at
//    least one tile), the global image is a bicubic squeeze, the tiles come from a bicubic resize
//    that keeps the aspect ratio, centred on black.
// The encoder inputs are the global image first, then the tiles row-major (libmtmd's
// split_batch_to_chunk order); the prompt puts the tiles first and the global image last. Pixels
// are bit-identical to libmtmd's.
#pragma once

#include <cstdint>
#include <vector>

#include "encoders/image.h"
#include "encoders/preprocess.h"
#include "encoders/vision_hparams.h"

namespace mm::idefics3 {

// Bounds on what a file may ask for: the longest edge, and tiles per side of a picture (a file
// whose longest edge makes more is refused at load; older files' tiles follow the picture, and a
// picture that asks for more tiles than k_max_tiles is MM_IMAGE_TOO_LARGE).
inline constexpr int32_t k_max_longest_edge   = 8192;
inline constexpr int32_t k_max_tiles_per_side = 16;
inline constexpr int32_t k_max_tiles          = k_max_tiles_per_side * k_max_tiles_per_side;

// How a w x h picture is cut.
struct tile_plan {
    int32_t resized_w = 0, resized_h = 0;  // longest-edge rule: the aspect-preserving resize
    int32_t refined_w = 0, refined_h = 0;  // the picture the tiles are cut from (whole tiles)
    int32_t grid_x = 0, grid_y = 0;        // tiles across and down (>= 1 each)
};

// The plan for a w x h picture. MM_INVALID_ARGUMENT for a picture so narrow that its short side
// resizes to 0 pixels (libmtmd aborts there), MM_IMAGE_TOO_LARGE for more than k_max_tiles tiles.
tile_plan plan(const vision_hparams & hp, int32_t w, int32_t h);

// The encoder inputs of a picture: the global image, then grid_y rows of grid_x tiles, each
// image_size square, normalized and planar [3][H][W]. layout = {grid_x, grid_y, has_overview}.
std::vector<pixel_input> tiles(const vision_hparams & hp, const rgb_image & img, slice_layout & layout);

}  // namespace mm::idefics3
