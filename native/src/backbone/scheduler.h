// A native scheduler thread over one context: continuous batching of many requests, as
// llama-server's loop does it, without a hop to JS per step.
//
// Each request owns one sequence of the context. It brings the part of its prompt the sequence
// does not hold yet (text token runs and embedding spans, each at explicit positions), a sampler
// chain and its limits. Every iteration of the thread:
//   1. takes new requests and cancellations (a new request first drops its sequence's cells from
//      `keep` on: what it kept is a prefix it shares with the sequence's previous request);
//   2. decodes at most one embedding span of a request in prefill. A causal span with one position
//      per row, of a model whose graph takes a token as its token_embd row (model::
//      token_input_is_row), goes in chunks of MM_PREFILL_CHUNK rows (default 128) while other
//      requests generate, in one batch with their next tokens given as embedding rows: their
//      answers go on streaming while a picture is read, as text rows ride along prompt chunks in
//      llama-server. Any other span (non-causal, M-RoPE, or nobody generating) is decoded alone;
//   3. decodes ONE token batch: the next token of every generating request not decoded in step 2
//      (one row each, with logits) and then text prefill rows of requests in arrival order, up to
//      the batch size, or MM_PREFILL_CHUNK rows while others generate; the rows of either batch
//      go in order of sequence, so that llama.cpp makes one ubatch of them (order_by_seq);
//   4. samples each row with logits with its request's sampler and queues events (tokens, ends),
//      then calls `notify` (from this thread) so the JS side drains them.
// A request ends on end-of-generation, its token budget, its position limit, a cancel (between
// iterations) or an error; its cells stay in the KV cache for the next request's prefix.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backbone/model.h"
#include "backbone/sampling.h"
#include "common/error.h"
#include "common/float_rows.h"
#include "llama.h"

namespace mm {

class context;
class compute_turn;

struct sched_item {
    // Text: tokens at pos0, pos0+1, ...
    std::vector<int32_t> tokens;
    // Or an embedding span [n, n_embd] at explicit positions (n or 4n entries; empty: pos0...),
    // shared with the matrix it came from when it can be (not copied).
    float_rows           embd;
    int32_t              n_embd = 0;
    std::vector<int32_t> positions;
    bool                 causal = true;
    int32_t              pos0   = 0;

    bool is_embd() const { return !embd.empty(); }
};

struct sched_request {
    int32_t                 id   = 0;
    int32_t                 seq  = 0;
    int32_t                 keep = 0;  // cells of `seq` kept: positions [0, keep)
    std::vector<sched_item> items;     // the rest of the prompt; the last is text (its last row gets logits)
    int32_t                 max_tokens = 256;
    int32_t                 limit      = 0;  // positions of the sequence; generation stops before it
    bool                    ignore_eog = false;
    sampling_params         sampling;
};

struct sched_event {
    enum kind_t : int32_t { token = 0, done = 1, failed = 2 };
    int32_t     id    = 0;
    kind_t      kind  = token;
    int32_t     value = 0;  // token: the token; done: tokens generated
    std::string reason;     // done: eog | length | context | cancel
    error_code  code = error_code::internal;
    std::string message;
    double      queue_ms   = 0;  // done: submit -> first prefill row
    double      prefill_ms = 0;  // done: first prefill row -> first token
    double      decode_ms  = 0;  // done: first token -> end
    // done: compute time (llama_decode) of the steps that carried its generating row, as
    // llama.cpp's eval timer counts (without sampling and hand-over)
    double  decode_compute_ms = 0;
    int32_t decoded           = 0;      // done: generated tokens decoded into the KV cache
    bool    prefilled         = false;  // done: the whole prompt is in the KV cache
};

struct sched_stats {
    uint64_t iterations   = 0;
    uint64_t token_steps  = 0;  // token batches decoded
    uint64_t decode_steps = 0;  // those with at least one generating row
    uint64_t decode_rows  = 0;  // generating rows in them
    uint64_t prefill_rows = 0;
    uint64_t spans        = 0;
    uint64_t mixed_steps  = 0;  // batches of generating rows and a chunk of a media span
    int32_t  max_rows     = 0;  // most generating rows in one batch
    // token batches with generating rows only (no prompt rows): their rows and compute time, the
    // decode throughput of batching itself
    uint64_t decode_only_steps = 0;
    uint64_t decode_only_rows  = 0;
    double   decode_only_ms    = 0;
    // steps that ran between two slices of another graph (an image encode lent them the gate)
    uint64_t lent_steps = 0;
    int32_t  active     = 0;
};

class scheduler {
  public:
    // `notify` runs on the scheduler thread whenever events are queued (at most once per
    // iteration); it must be cheap and must not call back into the scheduler.
    scheduler(std::shared_ptr<context> ctx, std::function<void()> notify);
    ~scheduler();

    scheduler(const scheduler &)             = delete;
    scheduler & operator=(const scheduler &) = delete;

    // Any thread. Validates what can be checked up front (throws mm::error); the rest fails the
    // request through a `failed` event.
    void submit(sched_request r);
    void cancel(int32_t id);
    // Takes the queued events.
    std::vector<sched_event> drain();
    sched_stats              stats() const;
    // Stops the thread (requests still running end with MM_DISPOSED events) and joins it.
    void stop();

  private:
    struct active;
    using clock = std::chrono::steady_clock;

    void loop();
    void iterate(std::vector<std::unique_ptr<active>> & run);
    // Step 2 of an iteration; false when no request has a media span next.
    bool media_step(std::vector<std::unique_ptr<active>> & run);
    // Decodes one batch whose row i belongs to owner[i]; a failure (not an abort) fails those
    // requests and clears `ok`. Returns the compute time in ms.
    double run_rows(std::vector<std::unique_ptr<active>> & run, llama_batch batch, const std::vector<active *> & owner,
                    bool & ok);
    void   count_step(const std::vector<active *> & decoders, int32_t n_prompt, bool media, double step_ms);
    void   count_lent(const compute_turn & turn);
    // Samples every row with logits with its request's sampler; queues tokens and ends.
    void sample_rows(std::vector<std::unique_ptr<active>> & run, const std::vector<active *> & owner,
                     const std::vector<int32_t> & pos, const std::vector<int8_t> & logits);
    void end(std::unique_ptr<active> & a, const std::string & reason);
    void fail_request(std::unique_ptr<active> & a, error_code code, const std::string & message);
    void push(sched_event ev);
    // Threads for a decode of `rows` rows: as many as its matrix work keeps busy (at most the
    // context's); a tiny model's step on two threads only adds barrier waits.
    void set_threads(int64_t rows);

    std::shared_ptr<context>          ctx_;
    int32_t                           max_threads_   = 1;
    double                            flops_per_row_ = 0;
    int32_t                           prefill_chunk_ = 128;
    std::unique_ptr<token_row_reader> tokens_;  // null: generating rows never ride along media spans
    std::function<void()>             notify_;
    mutable std::mutex                mu_;
    std::condition_variable           cv_;
    std::deque<sched_request>         incoming_;
    std::vector<int32_t>              cancels_;
    std::vector<sched_event>          events_;
    bool                              stop_    = false;
    bool                              pending_ = false;  // a notify is out, not yet drained
    bool                              urgent_  = false;  // a first token or an end is queued
    clock::time_point                 last_notify_{};
    std::atomic<bool>                 abort_{false};  // stops a decode in flight (stop())
    sched_stats                       stats_;
    std::thread                       thread_;
};

}  // namespace mm
