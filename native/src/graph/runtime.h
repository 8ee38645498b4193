// Where encoder and projector graphs run: a ggml backend scheduler over an optional GPU backend
// plus the CPU backend (the same arrangement libmtmd's clip_ctx uses), weights loaded from a GGUF
// file into a backend buffer, and graphs that are built and allocated once and then recomputed.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace mm {

class gguf_file;

struct runtime_params {
    int  n_threads = 4;
    bool use_gpu   = true;  // use the first GPU device when the build has one
    // A ggml RPC worker ("host:port") whose first device takes the graphs and weights in place of
    // a GPU ("" : none). Connects: MM_RPC_CONNECT when it cannot (call under an abort_guard).
    std::string rpc;
};

class runtime {
  public:
    explicit runtime(const runtime_params & params);
    ~runtime();
    runtime(const runtime &)             = delete;
    runtime & operator=(const runtime &) = delete;

    ggml_backend_t             main_backend() const { return gpu_ != nullptr ? gpu_ : cpu_; }
    ggml_backend_buffer_type_t weights_buffer_type() const;
    std::string                backend_name() const;
    int                        n_threads() const { return n_threads_; }
    // Threads the allocated graph runs on: n_threads, fewer for graphs too small to gain from them.
    int graph_threads() const { return graph_threads_; }

    // True when the main backend runs every FLASH_ATTN_EXT node of the graph (CPU always does).
    bool supports_flash_attn(ggml_cgraph * gf) const;
    // True when it runs the FLASH_ATTN_EXT node blocks::attn builds for these shapes (q [d_head,
    // n_head, n_q] f32, k and v [d_head, n_head, n_kv] cast to f16, no mask). libmtmd decides flash
    // attention once for its whole encoder + projector graph; mm's encoder and projector are two
    // graphs, and each asks this of the other's attention to decide alike.
    bool supports_flash_attn(int64_t d_head, int64_t n_head, int64_t n_q, int64_t n_kv) const;
    // Splits a graph across the backends (from the sources it was built with) and allocates its
    // compute buffers. The graph can then be computed many times, until another graph is allocated
    // (the compute buffers are shared; they grow to the largest).
    void allocate(ggml_cgraph * gf);
    // allocate(gf) unless gf is the graph allocated last. Set a graph's inputs after this.
    void use(ggml_cgraph * gf) {
        if (gf != current_) {
            allocate(gf);
        }
    }
    // Call before freeing a graph (a new graph may reuse its address).
    void forget(ggml_cgraph * gf) {
        if (gf == current_) {
            current_ = nullptr;
        }
        sources_.erase(gf);
    }
    // Computes an allocated graph. `cancel` is polled by the CPU backend between nodes; a cancelled
    // compute throws MM_ABORTED.
    void compute(ggml_cgraph * gf, const std::atomic<bool> * cancel);

  private:
    void restore_sources(ggml_cgraph * gf);

    ggml_backend_t       cpu_           = nullptr;
    ggml_backend_t       gpu_           = nullptr;
    ggml_backend_sched_t sched_         = nullptr;
    int                  n_threads_     = 1;
    int                  graph_threads_ = 1;
    ggml_cgraph *        current_       = nullptr;
    // The rate of the last graph computed (flops per ms, from graph_flops), to size slices; until
    // one is measured, a rate under which no graph is sliced before it.
    std::atomic<double> flops_per_ms_{1e300};
    // Each graph's node sources as built. ggml's scheduler rewrites, in the graph it splits, the
    // sources that cross from one backend to another to its own copies (made in its context, which
    // the next split reuses); the rewritten graph keeps no trace of the inputs it was built with. A
    // graph allocated again (after another graph, or after a reserve) is split from these.
    using node_sources = std::vector<std::pair<ggml_tensor *, std::array<ggml_tensor *, GGML_MAX_SRC>>>;
    std::unordered_map<ggml_cgraph *, node_sources> sources_;
};

// Multiply-adds x 2 of a node's matrix product or attention (0 for other ops), and of a graph's
// (to size its thread count, and its slices).
double node_flops(const ggml_tensor * t);
double graph_flops(ggml_cgraph * gf);

// A ggml context holding one graph's tensors (no data) and the graph itself.
class graph_holder {
  public:
    explicit graph_holder(size_t max_nodes = 8192);
    ~graph_holder();
    graph_holder(const graph_holder &)             = delete;
    graph_holder & operator=(const graph_holder &) = delete;

    ggml_context * ctx() const { return ctx_; }
    ggml_cgraph *  gf() const { return gf_; }

  private:
    std::vector<uint8_t> meta_;
    ggml_context *       ctx_ = nullptr;
    ggml_cgraph *        gf_  = nullptr;
};

// Named tensors of a GGUF file loaded into one backend buffer.
class weight_set {
  public:
    weight_set(const gguf_file & f, const std::vector<std::string> & names, ggml_backend_buffer_type_t buft,
               const std::atomic<bool> * cancel);
    ~weight_set();
    weight_set(const weight_set &)             = delete;
    weight_set & operator=(const weight_set &) = delete;

    // The loaded tensor, or nullptr when it was not loaded (optional tensors).
    ggml_tensor * find(const std::string & name) const;
    // The loaded tensor; MM_INTERNAL when it was not loaded (validation missed it).
    ggml_tensor * get(const std::string & name) const;
    size_t        bytes() const { return bytes_; }

  private:
    ggml_context *                                 ctx_ = nullptr;
    ggml_backend_buffer_t                          buf_ = nullptr;
    std::unordered_map<std::string, ggml_tensor *> by_name_;
    size_t                                         bytes_ = 0;
};

}  // namespace mm
