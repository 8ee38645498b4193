// Floats shared with what made them (a picture's embedding matrix, without a copy) or owned.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace mm {

struct float_rows {
    std::shared_ptr<const float> data;  // keeps its owner alive (an aliasing pointer)
    size_t                       size = 0;

    static float_rows copy_of(const float * p, size_t n) {
        auto v = std::make_shared<std::vector<float>>(p, p + n);
        return {std::shared_ptr<const float>(v, v->data()), n};
    }

    bool          empty() const { return size == 0; }
    const float * begin() const { return data.get(); }
    const float * end() const { return data.get() + size; }
};

}  // namespace mm
