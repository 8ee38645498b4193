#include "common/compute_gate.h"

#include <cstdlib>
#include <string>

namespace mm {

compute_gate::compute_gate() {
    const char * v = std::getenv("MM_COMPUTE_GATE");
    enabled_       = v == nullptr || std::string(v) != "0";
}

compute_gate & compute_gate::global() {
    static compute_gate g;
    return g;
}

void compute_gate::lock() {
    if (!enabled_) {
        return;
    }
    std::unique_lock<std::mutex> l(mu_);
    const uint64_t               ticket = next_++;
    cv_.wait(l, [&] { return serving_ == ticket; });
}

void compute_gate::unlock() {
    if (!enabled_) {
        return;
    }
    {
        std::lock_guard<std::mutex> l(mu_);
        ++serving_;
    }
    cv_.notify_all();
}

}  // namespace mm
