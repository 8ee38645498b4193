// One ggml graph computes at a time in the process, in the order they asked (a ticket lock).
//
// Every graph uses all the threads it is given, and ggml's workers spin at barriers: two graphs
// at once on the same cores (an image encode on a libuv worker beside the scheduler thread's
// decode step) make both slower than one after the other, as on a 2-core machine the encode of
// a CLIP-L picture and a batch of decode rows did. llama-server runs one thing at a time in its
// loop for the same reason. mm's own graphs (runtime::compute) and the scheduler's decodes take
// the gate; MM_COMPUTE_GATE=0 turns it off (e.g. when the encoder and the backbone run on
// different devices).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>

namespace mm {

// A long graph (an image encode: seconds on a small CPU) is computed in slices, and between two
// slices its holder lends the gate to a waiting decode step: that one step runs ahead of its ticket
// and the holder then takes the gate back before anyone else, so answers that stream go on during
// an encode instead of pausing for all of it, and other encodes still wait their turn.
class compute_gate {
  public:
    static compute_gate & global();

    // `step`: a decode step of a backbone scheduler, which may borrow a lent gate. True when it
    // did (it runs inside another graph's turn, between two of its slices).
    bool lock(bool step = false);
    void unlock();
    // By the holder between two slices: when a step waits, lets one run now and returns after it.
    void lend_to_step();
    bool enabled() const { return enabled_; }

  private:
    std::mutex              mu_;
    std::condition_variable cv_;
    uint64_t                next_          = 0;
    uint64_t                serving_       = 0;
    bool                    enabled_       = true;
    int                     steps_waiting_ = 0;
    bool                    lent_          = false;  // the holder waits in lend_to_step
    bool                    borrowed_      = false;  // a step runs on the lent gate
    // Tickets of steps that ran on a lent gate: unlock passes over them.
    std::set<uint64_t> skipped_;
    compute_gate();
};

// Lowers the calling thread's CPU priority once (Linux nice is per thread, and the ggml workers a
// thread starts inherit it): a thread that computes graphs yields to the JS thread when both want
// a core, so the event loop that takes requests and streams tokens goes first. The step is
// MM_COMPUTE_NICE (default 5; 0 keeps the priority; `idle`: SCHED_IDLE, so that the thread runs
// only on a core nothing else wants: the event loop's lag is then the least, and the compute
// waits for every other busy thread of its scheduling group: with autogroup or a cpu cgroup,
// other groups compete with the group as a whole, which is why `mm serve` picks it there).
// Raising it back needs a privilege, so a libuv worker that computed once stays lower.
void yield_to_js_thread();

// RAII: holds the global gate for its scope (and lowers the thread's priority the first time).
class compute_turn {
  public:
    explicit compute_turn(bool step = false) {
        yield_to_js_thread();
        borrowed_ = compute_gate::global().lock(step);
    }
    // True when this turn runs on a gate lent between two slices of another graph.
    bool borrowed() const { return borrowed_; }
    ~compute_turn() { compute_gate::global().unlock(); }
    compute_turn(const compute_turn &)             = delete;
    compute_turn & operator=(const compute_turn &) = delete;

  private:
    bool borrowed_ = false;
};

}  // namespace mm
