#include "common/compute_gate.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace mm {

void yield_to_js_thread() {
#if defined(__linux__)
    thread_local bool done = false;
    if (done) {
        return;
    }
    done              = true;
    const char * v    = std::getenv("MM_COMPUTE_NICE");
    const int    step = v != nullptr && std::string(v) != "idle" ? std::atoi(v) : 5;
    if (step <= 0) {
        return;
    }
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    if (v != nullptr && std::string(v) == "idle") {
        // SCHED_IDLE: the thread runs only when no other thread wants the core, and any other
        // thread that wakes takes the core at once (nice leaves the kernel's slices in between)
        sched_param sp{};
        if (sched_setscheduler(0, SCHED_IDLE, &sp) == 0) {
            return;
        }
    }
    errno         = 0;
    const int now = getpriority(PRIO_PROCESS, tid);
    if (errno == 0 && now < 19) {
        setpriority(PRIO_PROCESS, tid, now + step > 19 ? 19 : now + step);
    }
#endif
}

compute_gate::compute_gate() {
    const char * v = std::getenv("MM_COMPUTE_GATE");
    enabled_       = v == nullptr || std::string(v) != "0";
}

compute_gate & compute_gate::global() {
    static compute_gate g;
    return g;
}

namespace {

// Whether this thread's turn is a borrowed one (lock and unlock run on the same thread).
thread_local bool t_borrowed = false;

}  // namespace

bool compute_gate::lock(bool step) {
    if (!enabled_) {
        return false;
    }
    std::unique_lock<std::mutex> l(mu_);
    const uint64_t               ticket = next_++;
    if (step) {
        ++steps_waiting_;
    }
    cv_.wait(l, [&] { return serving_ == ticket || (step && lent_ && !borrowed_); });
    if (step) {
        --steps_waiting_;
    }
    if (serving_ != ticket) {
        borrowed_  = true;
        t_borrowed = true;
        skipped_.insert(ticket);
        return true;
    }
    return false;
}

void compute_gate::unlock() {
    if (!enabled_) {
        return;
    }
    {
        std::lock_guard<std::mutex> l(mu_);
        if (t_borrowed) {
            // hand the gate back to the holder that lent it
            t_borrowed = false;
            borrowed_  = false;
            lent_      = false;
        } else {
            ++serving_;
            while (skipped_.erase(serving_) != 0) {
                ++serving_;
            }
        }
    }
    cv_.notify_all();
}

void compute_gate::lend_to_step() {
    if (!enabled_) {
        return;
    }
    std::unique_lock<std::mutex> l(mu_);
    if (steps_waiting_ == 0) {
        return;
    }
    lent_ = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return !lent_; });
}

}  // namespace mm
