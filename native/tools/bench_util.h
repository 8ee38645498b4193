// What the side-by-side benchmarks (vision-bench.cpp, audio-bench.cpp) share: wall-clock spans in
// ms, a series of samples with its median and range, per-pair ratios, reading a file whole.
// Test-only tools; never shipped.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/error.h"

namespace mm::bench {

using clock_type = std::chrono::steady_clock;

inline double ms(clock_type::time_point a, clock_type::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

struct series {
    std::vector<double> v;

    double median() const {
        std::vector<double> s = v;
        std::sort(s.begin(), s.end());
        const size_t n = s.size();
        return n == 0 ? 0 : (n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]));
    }

    double min() const { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }

    double max() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

// The ratio of each interleaved pair (a / b).
inline series pair_ratio(const series & a, const series & b) {
    series out;
    for (size_t r = 0; r < a.v.size() && r < b.v.size(); ++r) {
        out.v.push_back(a.v[r] / b.v[r]);
    }
    return out;
}

// {"median":..,"min":..,"max":..}
inline std::string json_series(const series & s) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "{\"median\":%.4f,\"min\":%.4f,\"max\":%.4f}", s.median(), s.min(), s.max());
    return buf;
}

// The whole file; MM_FILE_NOT_FOUND when it cannot be opened.
inline std::vector<uint8_t> read_file(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        fail(error_code::file_not_found, "cannot open '" + path + "'");
    }
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace mm::bench
