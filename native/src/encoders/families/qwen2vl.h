// Qwen2.5-VL's attention windows, shared by its ViT (which permutes the patches into window order
// and masks attention to each window) and its merger (which puts the merged tokens back in
// raster order).
#pragma once

#include <cstdint>
#include <vector>

namespace mm::qwen2vl {

struct windows {
    std::vector<int32_t> idx;      // raster merged token -> window-order slot
    std::vector<int32_t> inv_idx;  // window-order slot -> raster merged token
    std::vector<float>   mask;     // [n_patches][n_patches]: 0 inside a window, lowest float elsewhere
};

// For a patch grid npx x npy (both even), windows of `window_px` pixels (libmtmd: 112) with 2x2
// merging; identity indices when window_px is 0. The mask is filled only when `with_mask`.
windows make_windows(int32_t npx, int32_t npy, int32_t patch_size, int32_t window_px, bool with_mask);

}  // namespace mm::qwen2vl
