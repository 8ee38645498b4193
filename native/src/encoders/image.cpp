#include "encoders/image.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "encoders/jpeg_check.h"

// stb_image, compiled here once for mm (mm.node does not link libmtmd, whose mtmd-helper.cpp compiles
// its own copy; STB_IMAGE_STATIC keeps ours private so the test tools that link both do not clash).
// Formats without a signature (TGA) and rarely used ones (PSD, PIC) are left out: random bytes must
// never "decode". An stb internal assertion becomes a decode error instead of an abort.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_TGA
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_ASSERT(x)                                                                         \
    do {                                                                                       \
        if (!(x)) {                                                                            \
            ::mm::fail(::mm::error_code::image_decode, "image decoder internal check failed"); \
        }                                                                                      \
    } while (0)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include "stb/stb_image.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace mm {

namespace {

[[noreturn]] void decode_error(const std::string & what) {
    fail(error_code::image_decode, "cannot decode image: " + what);
}

bool starts_with(const uint8_t * b, size_t n, const char * magic, size_t m) {
    return n >= m && std::memcmp(b, magic, m) == 0;
}

const char * sniff_format(const uint8_t * b, size_t n) {
    if (starts_with(b, n, "\x89PNG\r\n\x1a\n", 8)) {
        return "png";
    }
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
        return "jpeg";
    }
    if (starts_with(b, n, "GIF87a", 6) || starts_with(b, n, "GIF89a", 6)) {
        return "gif";
    }
    if (starts_with(b, n, "BM", 2)) {
        return "bmp";
    }
    if (starts_with(b, n, "P5", 2) || starts_with(b, n, "P6", 2)) {
        return "pnm";
    }
    if (starts_with(b, n, "#?RADIANCE\n", 11) || starts_with(b, n, "#?RGBE\n", 7)) {
        return "hdr";
    }
    return nullptr;
}

// stb reads zeros past the end of an uncompressed BMP: the pixel array must fit in the file (the
// padding after the last row may be missing: stb does not need it, and some writers leave it out).
void check_bmp_complete(const uint8_t * b, size_t n, int32_t w, int32_t h) {
    if (n < 34) {
        decode_error("truncated BMP");
    }
    auto u32 = [&](size_t at) {
        return static_cast<uint32_t>(b[at]) | (static_cast<uint32_t>(b[at + 1]) << 8) |
               (static_cast<uint32_t>(b[at + 2]) << 16) | (static_cast<uint32_t>(b[at + 3]) << 24);
    };
    const uint32_t offset   = u32(10);
    const uint32_t hsize    = u32(14);
    uint32_t       bpp      = 0;
    uint32_t       compress = 0;
    if (hsize == 12) {
        bpp = static_cast<uint32_t>(b[24]) | (static_cast<uint32_t>(b[25]) << 8);
    } else {
        bpp      = static_cast<uint32_t>(b[28]) | (static_cast<uint32_t>(b[29]) << 8);
        compress = u32(30);
    }
    if (compress != 0 && compress != 3) {
        return;  // RLE: sizes are not known up front
    }
    const uint64_t stride    = (static_cast<uint64_t>(w) * bpp + 31) / 32 * 4;
    const uint64_t last_row  = (static_cast<uint64_t>(w) * bpp + 7) / 8;
    const uint64_t rows_size = stride * (static_cast<uint64_t>(h) - 1) + last_row;
    if (h > 0 && static_cast<uint64_t>(offset) + rows_size > n) {
        decode_error("truncated BMP (the pixel data ends early)");
    }
}

// stb returns a partly decoded first frame for a truncated GIF: the data blocks of the first image
// (the one stb decodes) must end, with their zero-length terminator, inside the file. What follows
// (more frames, the trailer, trailing bytes) does not change the picture.
void check_gif_complete(const uint8_t * b, size_t n) {
    auto truncated = [] { decode_error("truncated GIF (the first image's data ends early)"); };
    if (n < 13) {
        truncated();
    }
    size_t p = 13;
    if (b[10] & 0x80) {
        p += 3 * (size_t{2} << (b[10] & 7));  // global colour table
    }
    auto skip_sub_blocks = [&]() {
        for (;;) {
            if (p >= n) {
                truncated();
            }
            const size_t len = b[p++];
            if (len == 0) {
                return;
            }
            p += len;
        }
    };
    for (;;) {
        if (p >= n) {
            truncated();
        }
        if (b[p] == 0x21) {  // extension: label, then data blocks
            p += 2;
            skip_sub_blocks();
        } else if (b[p] == 0x2C) {  // image descriptor, local colour table, LZW code size, data blocks
            if (p + 10 > n) {
                truncated();
            }
            const uint8_t flags = b[p + 9];
            p += 10;
            if (flags & 0x80) {
                p += 3 * (size_t{2} << (flags & 7));
            }
            p += 1;
            skip_sub_blocks();
            return;
        } else {
            return;  // the trailer or junk before any image: stb reports it
        }
    }
}

// The size a header claims, read by mm for the formats stb refuses early with its own "too large"
// (PNG, JPEG, GIF, BMP), so that a huge claim is MM_IMAGE_TOO_LARGE and not a decode error. Returns
// false when the header is too short or malformed (stb then reports the error).
bool claimed_size(const uint8_t * b, size_t n, const std::string & format, uint64_t & w, uint64_t & h) {
    auto be16 = [&](size_t at) { return (static_cast<uint32_t>(b[at]) << 8) | b[at + 1]; };
    auto le16 = [&](size_t at) { return static_cast<uint32_t>(b[at]) | (static_cast<uint32_t>(b[at + 1]) << 8); };
    auto be32 = [&](size_t at) { return (be16(at) << 16) | be16(at + 2); };
    auto le32 = [&](size_t at) { return le16(at) | (le16(at + 2) << 16); };
    if (format == "png") {
        if (n < 24 || std::memcmp(b + 12, "IHDR", 4) != 0) {
            return false;
        }
        w = be32(16);
        h = be32(20);
        return true;
    }
    if (format == "gif") {
        if (n < 10) {
            return false;
        }
        w = le16(6);
        h = le16(8);
        return true;
    }
    if (format == "bmp") {
        if (n < 26) {
            return false;
        }
        if (le32(14) == 12) {
            w = le16(18);
            h = le16(20);
        } else {
            const int32_t sw = static_cast<int32_t>(le32(18));
            const int32_t sh = static_cast<int32_t>(le32(22));
            w                = sw < 0 ? 0 : static_cast<uint64_t>(sw);
            h                = sh < 0 ? static_cast<uint64_t>(-static_cast<int64_t>(sh)) : static_cast<uint64_t>(sh);
        }
        return true;
    }
    if (format == "jpeg") {
        size_t i = 2;
        while (i + 4 <= n && b[i] == 0xFF) {
            while (i < n && b[i] == 0xFF) {
                ++i;
            }
            if (i + 3 > n) {
                return false;
            }
            const uint8_t m = b[i++];
            if (m == 0x01 || (m >= 0xD0 && m <= 0xD9)) {
                continue;
            }
            const size_t len = be16(i);
            const bool   sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
            if (sof && len >= 7 && i + 7 <= n) {
                h = be16(i + 3);
                w = be16(i + 5);
                return true;
            }
            if (len < 2) {
                return false;
            }
            i += len;
        }
    }
    return false;
}

}  // namespace

image_header probe_image(const uint8_t * bytes, size_t size) {
    if (bytes == nullptr || size == 0) {
        decode_error("no data");
    }
    const char * format = sniff_format(bytes, size);
    if (format == nullptr) {
        decode_error("unrecognised format (supported: PNG, JPEG, GIF, BMP, PNM, HDR)");
    }
    if (size > static_cast<size_t>(INT_MAX)) {
        fail(error_code::image_too_large, "image data is larger than 2 GiB");
    }
    uint64_t cw = 0, ch = 0;
    if (claimed_size(bytes, size, format, cw, ch) && cw > 0 && ch > 0) {
        return image_header{static_cast<int32_t>(std::min<uint64_t>(cw, INT32_MAX)),
                            static_cast<int32_t>(std::min<uint64_t>(ch, INT32_MAX)), format};
    }
    int w = 0, h = 0, comp = 0;
    if (stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &comp) == 0) {
        const char * why = stbi_failure_reason();
        decode_error(std::string("invalid ") + format + " header" + (why ? std::string(" (") + why + ")" : ""));
    }
    if (w <= 0 || h <= 0) {
        decode_error(std::string(format) + " image has no pixels (" + std::to_string(w) + "x" + std::to_string(h) +
                     ")");
    }
    return image_header{w, h, format};
}

rgb_image decode_image(const uint8_t * bytes, size_t size, uint64_t max_pixels) {
    image_header   hdr    = probe_image(bytes, size);
    const uint64_t pixels = static_cast<uint64_t>(hdr.width) * static_cast<uint64_t>(hdr.height);
    if (pixels > max_pixels || hdr.width > k_max_image_side || hdr.height > k_max_image_side) {
        fail(error_code::image_too_large, "image is " + std::to_string(hdr.width) + "x" + std::to_string(hdr.height) +
                                              " (" + std::to_string(pixels) + " pixels), more than the limit of " +
                                              std::to_string(max_pixels) + " pixels");
    }
    int sw = 0, sh = 0, sc = 0;
    if (stbi_info_from_memory(bytes, static_cast<int>(size), &sw, &sh, &sc) == 0) {
        const char * why = stbi_failure_reason();
        decode_error("invalid " + hdr.format + " header" + (why ? std::string(" (") + why + ")" : ""));
    }
    if (hdr.format == "bmp" && sh < 0 && sh != INT_MIN) {
        sh = -sh;  // a top-down BMP: stbi_info reports the stored (negative) height, stbi_load flips it
    }
    if (sw <= 0 || sh <= 0) {
        decode_error(hdr.format + " image has no pixels (" + std::to_string(sw) + "x" + std::to_string(sh) + ")");
    }
    if (hdr.format == "jpeg") {
        check_jpeg_stream(bytes, size);
    } else if (hdr.format == "bmp") {
        check_bmp_complete(bytes, size, hdr.width, hdr.height);
    } else if (hdr.format == "gif") {
        check_gif_complete(bytes, size);
    }
    int                                         w = 0, h = 0, comp = 0;
    auto                                        deleter = [](stbi_uc * p) { stbi_image_free(p); };
    std::unique_ptr<stbi_uc, decltype(deleter)> data(
        stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &comp, 3), deleter);
    if (!data) {
        const char * why = stbi_failure_reason();
        decode_error("corrupt " + hdr.format + " data" + (why ? std::string(" (") + why + ")" : ""));
    }
    if (w != hdr.width || h != hdr.height) {
        decode_error("decoded size differs from the header");
    }
    rgb_image img;
    img.width  = w;
    img.height = h;
    img.data.assign(data.get(), data.get() + static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
    return img;
}

}  // namespace mm
