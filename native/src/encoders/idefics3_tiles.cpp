#include "encoders/idefics3_tiles.h"

#include <algorithm>
#include <string>

#include "common/error.h"

namespace mm::idefics3 {

namespace {

std::string size_string(int32_t w, int32_t h) {
    return std::to_string(w) + "x" + std::to_string(h);
}

// Scale to [0, 1], normalise per channel, planar [3][H][W] (libmtmd's from_u8 + normalize).
pixel_input planar(const rgb_image & img, const preprocess_params & p) {
    const size_t n = static_cast<size_t>(img.width) * img.height;
    pixel_input  out;
    out.width  = img.width;
    out.height = img.height;
    out.data.resize(n * 3);
    for (size_t i = 0; i < n; ++i) {
        for (int c = 0; c < 3; ++c) {
            const float v                            = static_cast<float>(img.data[i * 3 + c]) / 255.0f;
            out.data[static_cast<size_t>(c) * n + i] = (v - p.mean[c]) / p.std[c];
        }
    }
    return out;
}

// A tile x tile square of `src` at (x0, y0) (libmtmd's img_tool::crop; always inside).
rgb_image crop(const rgb_image & src, int32_t x0, int32_t y0, int32_t tile) {
    rgb_image out;
    out.width  = tile;
    out.height = tile;
    out.data.resize(static_cast<size_t>(tile) * tile * 3);
    const size_t row = static_cast<size_t>(tile) * 3;
    for (int32_t y = 0; y < tile; ++y) {
        const uint8_t * s = src.data.data() + ((static_cast<size_t>(y0) + y) * src.width + x0) * 3;
        std::copy(s, s + row, out.data.data() + static_cast<size_t>(y) * row);
    }
    return out;
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
    out.push_back(planar(overview, hp.preprocess));
    for (int32_t y = 0; y < p.grid_y; ++y) {
        for (int32_t x = 0; x < p.grid_x; ++x) {
            out.push_back(planar(crop(refined, x * tile, y * tile, tile), hp.preprocess));
        }
    }
    layout.grid_x       = p.grid_x;
    layout.grid_y       = p.grid_y;
    layout.has_overview = true;
    return out;
}

}  // namespace mm::idefics3
