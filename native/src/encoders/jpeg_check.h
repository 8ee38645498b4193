// A strict structural check of a JPEG before stb_image decodes it. stb is lenient: it pads a
// truncated or desynchronised entropy-coded segment with zeros, skips extra bytes, ignores a
// missing or misnumbered restart marker and stops early at an unknown marker, and in each case
// reports success with a partly grey or garbled picture. This check walks every segment and every
// scan at the Huffman level (symbols and coefficient bits, no IDCT), with stb's own geometry and
// rules, and throws MM_IMAGE_DECODE unless each scan holds exactly the blocks it should: every
// Huffman code valid, no coefficient past the end of its band, each restart interval and each scan
// ending on its last byte (only padding bits left) right before the next marker, restart markers in
// sequence, every component scanned, and an EOI marker at the end.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mm {

// Throws MM_IMAGE_DECODE for a corrupt or incomplete baseline / progressive (Huffman) JPEG. Frames
// stb does not decode at all (arithmetic coding, lossless, 12-bit, ...) pass unchecked: stb itself
// then reports the error.
void check_jpeg_stream(const uint8_t * bytes, size_t size);

}  // namespace mm
