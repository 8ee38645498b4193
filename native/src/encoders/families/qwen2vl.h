// Qwen2.5-VL's attention windows, shared by its ViT (which permutes the patches into window order
// and masks attention to each window) and its merger (which puts the merged tokens back in
// raster order).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

struct ggml_tensor;

namespace mm::qwen2vl {

struct windows {
    std::vector<int32_t>                     idx;      // raster merged token -> window-order slot
    std::vector<int32_t>                     inv_idx;  // window-order slot -> raster merged token
    std::vector<std::pair<int32_t, int32_t>> spans;    // each window's [first, end) slots, in order
};

// For a patch grid npx x npy (both even), windows of `window_px` pixels (libmtmd: 112) with 2x2
// merging; identity indices (and no spans) when window_px is 0.
windows make_windows(int32_t npx, int32_t npy, int32_t patch_size, int32_t window_px);

// Writes libmtmd's window attention mask into `mask` (f32 [n_patches, n_patches], allocated): 0
// inside a patch's window, the lowest float elsewhere. Row by row, so the n_patches^2 floats (1 GiB at
// 4096 tokens) are never held in host memory.
void write_window_mask(ggml_tensor * mask, const windows & w);

}  // namespace mm::qwen2vl
