// Decoded images: 8-bit RGB, row-major, 3 bytes per pixel. Decoding uses stb_image from the
// vendored llama.cpp (the decoder libmtmd uses), hardened: the dimensions are read from the header
// and checked against a pixel limit BEFORE anything is decoded, and every decoder error, including
// a truncated JPEG that stb would silently fill with grey, is an MM_IMAGE_DECODE error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mm {

struct rgb_image {
    int32_t              width  = 0;
    int32_t              height = 0;
    std::vector<uint8_t> data;  // width * height * 3
};

struct image_header {
    int32_t     width  = 0;
    int32_t     height = 0;
    std::string format;  // "png", "jpeg", "gif", "bmp", "pnm", "hdr"
};

// Largest side stb_image accepts (STBI_MAX_DIMENSIONS).
inline constexpr int32_t k_max_image_side = 1 << 24;

// Reads the format and the dimensions from the header only. Throws MM_IMAGE_DECODE.
image_header probe_image(const uint8_t * bytes, size_t size);

// Decodes to RGB. Throws MM_IMAGE_TOO_LARGE when width * height > max_pixels (checked on the header,
// before decoding) and MM_IMAGE_DECODE for anything that is not a complete, valid image.
rgb_image decode_image(const uint8_t * bytes, size_t size, uint64_t max_pixels);

}  // namespace mm
