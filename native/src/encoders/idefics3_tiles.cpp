#include "encoders/idefics3_tiles.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace mm::idefics3 {

namespace {

std::string size_string(int32_t w, int32_t h) {
    return std::to_string(w) + "x" + std::to_string(h);
}

}  // namespace

tile_plan plan(const vision_hparams & hp, int32_t w, int32_t h) {
    if (w <= 0 || h <= 0) {
        fail(error_code::invalid_argument, "image must be at least 1x1");
    }
    const int32_t tile = hp.image_size;
    tile_plan     p;
    if (hp.longest_edge > 0) {
        // the float arithmetic of libmtmd's idefics3 preprocessor, step by step
        const int32_t edge   = hp.longest_edge;
        const double  aspect = static_cast<double>(w) / h;
        if (w >= h) {
            p.resized_w = edge;
            p.resized_h = static_cast<int32_t>(edge / aspect);
            p.resized_h += p.resized_h % 2;
        } else {
            p.resized_h = edge;
            p.resized_w = static_cast<int32_t>(edge * aspect);
            p.resized_w += p.resized_w % 2;
        }
        if (p.resized_w < 1 || p.resized_h < 1) {
            // libmtmd asserts in its resampler (a 0-pixel side) and takes the process down
            fail(error_code::invalid_argument, "a " + size_string(w, h) + " picture resizes to " +
                                                   size_string(p.resized_w, p.resized_h) + " (longest edge " +
                                                   std::to_string(edge) + "): its aspect ratio is too extreme");
        }
        p.grid_x = (p.resized_w + tile - 1) / tile;
        p.grid_y = (p.resized_h + tile - 1) / tile;
    } else {
        // older files: sides rounded to whole tiles (libmtmd's calc_size_preserved_ratio, align =
        // image_size, no pixel limits)
        int32_t rw = 0, rh = 0;
        dynamic_target_size(w, h, tile, 0, 0, rw, rh);
        p.grid_x = rw / tile;
        p.grid_y = rh / tile;
    }
    if (static_cast<int64_t>(p.grid_x) * p.grid_y > k_max_tiles) {
        fail(error_code::image_too_large, "a " + size_string(w, h) + " picture would be cut into " +
                                              size_string(p.grid_x, p.grid_y) + " tiles of " + std::to_string(tile) +
                                              " px, more than mm's limit of " + std::to_string(k_max_tiles) + " tiles");
    }
    p.refined_w = p.grid_x * tile;
    p.refined_h = p.grid_y * tile;
    return p;
}

std::vector<pixel_input> tiles(const vision_hparams & hp, const rgb_image & img, slice_layout & layout) {
    const tile_plan p    = plan(hp, img.width, img.height);
    const int32_t   tile = hp.image_size;
    rgb_image       refined, overview;
    if (hp.longest_edge > 0) {
        const rgb_image resized =
            resize_image(img, p.resized_w, p.resized_h, resize_algo::lanczos, pad_style::none, {});
        refined  = resize_image(resized, p.refined_w, p.refined_h, resize_algo::lanczos, pad_style::none, {});
        overview = resize_image(refined, tile, tile, resize_algo::lanczos, pad_style::none, {});
    } else {
        // libmtmd's llava-uhd slice_image with its default overview / refined parameters
        overview = resize_image(img, tile, tile, resize_algo::bicubic, pad_style::none, {});
        refined  = resize_image(img, p.refined_w, p.refined_h, resize_algo::bicubic, pad_style::ceil, {0, 0, 0});
    }
    std::vector<pixel_input> out;
    out.reserve(static_cast<size_t>(p.grid_x) * p.grid_y + 1);
    out.push_back(normalize_planar(overview, hp.preprocess.mean, hp.preprocess.std));
    for (int32_t y = 0; y < p.grid_y; ++y) {
        for (int32_t x = 0; x < p.grid_x; ++x) {
            out.push_back(normalize_planar(crop_image(refined, x * tile, y * tile, tile, tile), hp.preprocess.mean,
                                           hp.preprocess.std));
        }
    }
    layout.grid_x       = p.grid_x;
    layout.grid_y       = p.grid_y;
    layout.has_overview = true;
    return out;
}

}  // namespace mm::idefics3
