#include "graph/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unordered_set>

#include "common/backends.h"
#include "common/compute_gate.h"
#include "common/error.h"
#include "common/rpc.h"
#include "common/system_info.h"
#include "ggml-alloc.h"
#include "graph/gguf_file.h"

namespace mm {

runtime::runtime(const runtime_params & params) {
    ensure_backend_initialised();
    n_threads_ = std::max(1, params.n_threads);
    cpu_       = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (cpu_ == nullptr) {
        fail(error_code::internal, "failed to initialise the ggml CPU backend");
    }
    cpu_set_n_threads(cpu_, n_threads_);
    // mm's own graphs (encoders, projectors, speech decoders) go to the first GPU when asked;
    // MM_OWN_GRAPHS_GPU=0 keeps them on the CPU (the backbone and libmtmd's fused graphs offload as
    // asked either way).
    const char * own_gpu = std::getenv("MM_OWN_GRAPHS_GPU");
    if (!params.rpc.empty()) {
        gpu_ = ggml_backend_dev_init(rpc_devices({params.rpc}).front(), nullptr);
        if (gpu_ == nullptr) {
            fail(error_code::rpc_connect, "failed to initialise the device of the ggml RPC worker at " + params.rpc);
        }
    } else if (params.use_gpu && (own_gpu == nullptr || std::string(own_gpu) != "0")) {
        gpu_ = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_GPU, nullptr);
        if (gpu_ == nullptr) {
            gpu_ = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_IGPU, nullptr);
        }
    }
    std::vector<ggml_backend_t>             backends;
    std::vector<ggml_backend_buffer_type_t> bufts;
    if (gpu_ != nullptr) {
        backends.push_back(gpu_);
        bufts.push_back(ggml_backend_get_default_buffer_type(gpu_));
    }
    backends.push_back(cpu_);
    bufts.push_back(ggml_backend_get_default_buffer_type(cpu_));
    sched_ = ggml_backend_sched_new(backends.data(), bufts.data(), static_cast<int>(backends.size()), 8192,
                                    /*parallel =*/false, /*op_offload =*/true);
    if (sched_ == nullptr) {
        if (gpu_ != nullptr) {
            ggml_backend_free(gpu_);
        }
        ggml_backend_free(cpu_);
        fail(error_code::internal, "failed to create the ggml backend scheduler");
    }
}

runtime::~runtime() {
    if (sched_ != nullptr) {
        ggml_backend_sched_free(sched_);
    }
    if (gpu_ != nullptr) {
        ggml_backend_free(gpu_);
    }
    if (cpu_ != nullptr) {
        ggml_backend_free(cpu_);
    }
}

ggml_backend_buffer_type_t runtime::weights_buffer_type() const {
    return ggml_backend_get_default_buffer_type(main_backend());
}

std::string runtime::backend_name() const {
    return ggml_backend_name(main_backend());
}

bool runtime::supports_flash_attn(ggml_cgraph * gf) const {
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        if (node->op == GGML_OP_FLASH_ATTN_EXT && !ggml_backend_supports_op(main_backend(), node)) {
            return false;
        }
    }
    return true;
}

bool runtime::supports_flash_attn(int64_t d_head, int64_t n_head, int64_t n_q, int64_t n_kv) const {
    graph_holder   h(16);
    ggml_context * ctx = h.ctx();
    ggml_tensor *  q   = ggml_permute(ctx, ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d_head, n_head, n_q), 0, 2, 1, 3);
    ggml_tensor *  k =
        ggml_cast(ctx, ggml_permute(ctx, ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d_head, n_head, n_kv), 0, 2, 1, 3),
                  GGML_TYPE_F16);
    ggml_tensor * v =
        ggml_cast(ctx, ggml_permute(ctx, ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d_head, n_head, n_kv), 0, 2, 1, 3),
                  GGML_TYPE_F16);
    ggml_tensor * fa =
        ggml_flash_attn_ext(ctx, q, k, v, nullptr, 1.0f / std::sqrt(static_cast<float>(d_head)), 0.0f, 0.0f);
    ggml_flash_attn_ext_set_prec(fa, GGML_PREC_F32);
    return ggml_backend_supports_op(main_backend(), fa);
}

double node_flops(const ggml_tensor * t) {
    if (t->op == GGML_OP_MUL_MAT) {
        return 2.0 * static_cast<double>(t->src[0]->ne[0]) * static_cast<double>(ggml_nelements(t));
    }
    if (t->op == GGML_OP_FLASH_ATTN_EXT) {
        // q [d, n_q, heads], k [d, n_kv, heads]: QK^T and PV
        return 4.0 * static_cast<double>(ggml_nelements(t->src[0])) * static_cast<double>(t->src[1]->ne[1]);
    }
    return 0;
}

double graph_flops(ggml_cgraph * gf) {
    double flops = 0;
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        flops += node_flops(ggml_graph_node(gf, i));
    }
    return flops;
}

// Each extra CPU thread costs a wake-up and a barrier per node; below ~4 MFLOP of matrix work per
// thread it slows small graphs down (most visibly on busy machines) without changing any result:
// ggml computes each output element on one thread, so the values do not depend on the count.
constexpr double k_flops_per_thread = 4e6;

namespace {

// A graph allocated before keeps, in its tensors, the addresses of that allocation, and ggml's
// allocator leaves a tensor that has an address where it is. The compute buffers may have moved
// since (a larger graph grew them, freeing the old ones): a cached graph used again would read and
// write freed memory. Every tensor outside the weights forgets its address before allocating.
void forget_compute_addresses(ggml_cgraph * gf) {
    auto forget = [](ggml_tensor * t) {
        if (t != nullptr && t->buffer != nullptr &&
            ggml_backend_buffer_get_usage(t->buffer) != GGML_BACKEND_BUFFER_USAGE_WEIGHTS) {
            t->data   = nullptr;
            t->buffer = nullptr;
        }
    };
    // the leafs (inputs, constants) are the nodes' sources
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        for (ggml_tensor * src : node->src) {
            forget(src);
        }
        forget(node);
    }
}

}  // namespace

void runtime::restore_sources(ggml_cgraph * gf) {
    const int n     = ggml_graph_n_nodes(gf);
    auto      saved = sources_.find(gf);
    if (saved != sources_.end()) {
        // the same graph: the same nodes (a backend may have reordered them)
        bool                              same = saved->second.size() == static_cast<size_t>(n);
        std::unordered_set<ggml_tensor *> nodes;
        for (int i = 0; same && i < n; ++i) {
            nodes.insert(ggml_graph_node(gf, i));
        }
        for (size_t i = 0; same && i < saved->second.size(); ++i) {
            same = nodes.count(saved->second[i].first) != 0;
        }
        if (same) {
            for (const auto & [node, src] : saved->second) {
                std::copy(src.begin(), src.end(), std::begin(node->src));
            }
            return;
        }
    }
    node_sources & built = sources_[gf];
    built.clear();
    built.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        ggml_tensor *                           node = ggml_graph_node(gf, i);
        std::array<ggml_tensor *, GGML_MAX_SRC> src{};
        std::copy(std::begin(node->src), std::end(node->src), src.begin());
        built.emplace_back(node, src);
    }
}

void runtime::allocate(ggml_cgraph * gf) {
    restore_sources(gf);
    forget_compute_addresses(gf);
    const double wanted = std::ceil(graph_flops(gf) / k_flops_per_thread);
    graph_threads_      = static_cast<int>(std::max(1.0, std::min<double>(n_threads_, wanted)));
    cpu_set_n_threads(cpu_, graph_threads_);
    current_ = nullptr;
    // One split per allocation: alloc_graph grows the compute buffers itself when the graph needs
    // more (a reserve before it would split, and so rewrite, the graph a first time).
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        fail(error_code::out_of_memory, "failed to allocate the graph");
    }
    current_ = gf;
}

namespace {

bool abort_requested(void * data) {
    return static_cast<const std::atomic<bool> *>(data)->load(std::memory_order_relaxed);
}

// MM_ENCODE_SLICE_MS (default 500; 0: whole graphs): about how long a slice of a graph runs
// before a waiting decode step gets the gate (compute_gate::lend_to_step).
double slice_ms() {
    static const double ms = [] {
        const char * v = std::getenv("MM_ENCODE_SLICE_MS");
        return v != nullptr ? std::max(0.0, std::atof(v)) : 500.0;
    }();
    return ms;
}

// Cuts a graph's compute into slices of about slice_ms (ggml's eval callback: the scheduler
// computes the nodes up to one the callback asks for, then calls it again), and after each slice
// lends the gate to a waiting decode step. The slices' size comes from the rate of the slice
// before (flops per ms). Only the order of the computation is split: every node is computed as
// in one piece, so the results are the same.
struct slicer {
    double                                flops_per_ms;
    const std::atomic<bool> *             cancel;
    double                                acc   = 0;  // flops of the slice so far
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

    static bool callback(ggml_tensor * t, bool ask, void * data) {
        auto * s = static_cast<slicer *>(data);
        if (ask) {
            s->acc += node_flops(t);
            return s->acc >= s->flops_per_ms * slice_ms();
        }
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s->start).count();
        if (ms > 0 && s->acc > 0) {
            s->flops_per_ms = s->acc / ms;
        }
        s->acc = 0;
        compute_gate::global().lend_to_step();
        s->start = std::chrono::steady_clock::now();
        return s->cancel == nullptr || !s->cancel->load();
    }
};

}  // namespace

void runtime::compute(ggml_cgraph * gf, const std::atomic<bool> * cancel) {
    if (cancel != nullptr && cancel->load()) {
        fail(error_code::aborted, "aborted");
    }
    cpu_set_abort_callback(cpu_, cancel != nullptr ? abort_requested : nullptr,
                           const_cast<std::atomic<bool> *>(cancel));
    ggml_status status;
    {
        compute_turn turn;  // one graph at a time in the process (common/compute_gate.h)
        // a graph of more than about two slices at the last rate seen is computed in slices
        const double flops = graph_flops(gf);
        const bool   sliced =
            compute_gate::global().enabled() && slice_ms() > 0 && flops > 2.0 * flops_per_ms_.load() * slice_ms();
        slicer s{flops_per_ms_.load(), cancel};
        // the callback points at `s`: taken off however the compute ends (an abort guard throws)
        struct callback_off {
            ggml_backend_sched_t sched;
            ~callback_off() { ggml_backend_sched_set_eval_callback(sched, nullptr, nullptr); }
        } off{sched_};
        if (sliced) {
            ggml_backend_sched_set_eval_callback(sched_, slicer::callback, &s);
        }
        const auto t0 = std::chrono::steady_clock::now();
        status        = ggml_backend_sched_graph_compute(sched_, gf);
        if (sliced) {
            flops_per_ms_ = s.flops_per_ms;
        } else if (flops > 0) {
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (ms > 0) {
                flops_per_ms_ = flops / ms;
            }
        }
    }
    cpu_set_abort_callback(cpu_, nullptr, nullptr);
    if (status == GGML_STATUS_ABORTED || (cancel != nullptr && cancel->load())) {
        fail(error_code::aborted, "aborted");
    }
    if (status != GGML_STATUS_SUCCESS) {
        fail(error_code::internal, "ggml graph compute failed with status " + std::to_string(status));
    }
}

graph_holder::graph_holder(size_t max_nodes) {
    meta_.resize(max_nodes * ggml_tensor_overhead() + ggml_graph_overhead_custom(max_nodes, false));
    ggml_init_params params{meta_.size(), meta_.data(), /*no_alloc =*/true};
    ctx_ = ggml_init(params);
    if (ctx_ == nullptr) {
        fail(error_code::out_of_memory, "failed to create a ggml graph context");
    }
    gf_ = ggml_new_graph_custom(ctx_, max_nodes, false);
}

graph_holder::~graph_holder() {
    if (ctx_ != nullptr) {
        ggml_free(ctx_);
    }
}

weight_set::weight_set(const gguf_file & f, const std::vector<std::string> & names, ggml_backend_buffer_type_t buft,
                       const std::atomic<bool> * cancel) {
    ggml_init_params params{(names.size() + 1) * ggml_tensor_overhead(), nullptr, /*no_alloc =*/true};
    ctx_ = ggml_init(params);
    if (ctx_ == nullptr) {
        fail(error_code::out_of_memory, "failed to create a ggml context for the weights");
    }
    for (const auto & name : names) {
        const ggml_tensor * meta = f.tensor(name);
        if (meta == nullptr || by_name_.count(name) != 0) {
            continue;
        }
        ggml_tensor * t = ggml_dup_tensor(ctx_, meta);
        ggml_set_name(t, name.c_str());
        by_name_[name] = t;
    }
    if (by_name_.empty()) {
        return;
    }
    buf_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
    if (buf_ == nullptr) {
        ggml_free(ctx_);
        ctx_ = nullptr;
        fail(error_code::out_of_memory, "failed to allocate the weights buffer");
    }
    ggml_backend_buffer_set_usage(buf_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);

    auto cleanup = [this]() {
        ggml_backend_buffer_free(buf_);
        buf_ = nullptr;
        ggml_free(ctx_);
        ctx_ = nullptr;
    };
    std::ifstream in(f.path(), std::ios::binary);
    if (!in.good()) {
        cleanup();
        fail(error_code::io, "cannot open '" + f.path() + "' to read the weights");
    }
    const bool           host = ggml_backend_buft_is_host(buft);
    std::vector<uint8_t> staging;
    for (const auto & name : names) {
        auto it = by_name_.find(name);
        if (it == by_name_.end()) {
            continue;
        }
        if (cancel != nullptr && cancel->load()) {
            cleanup();
            fail(error_code::aborted, "aborted");
        }
        ggml_tensor * t     = it->second;
        const size_t  nbyte = ggml_nbytes(t);
        in.seekg(static_cast<std::streamoff>(f.tensor_file_offset(name)), std::ios::beg);
        char * dst = nullptr;
        if (host) {
            dst = static_cast<char *>(t->data);
        } else {
            staging.resize(nbyte);
            dst = reinterpret_cast<char *>(staging.data());
        }
        in.read(dst, static_cast<std::streamsize>(nbyte));
        if (!in.good() || static_cast<size_t>(in.gcount()) != nbyte) {
            cleanup();
            fail(error_code::io, "'" + f.path() + "': failed to read tensor '" + name + "'");
        }
        if (!host) {
            ggml_backend_tensor_set(t, staging.data(), 0, nbyte);
        }
        bytes_ += nbyte;
    }
}

weight_set::~weight_set() {
    if (buf_ != nullptr) {
        ggml_backend_buffer_free(buf_);
    }
    if (ctx_ != nullptr) {
        ggml_free(ctx_);
    }
}

ggml_tensor * weight_set::find(const std::string & name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

ggml_tensor * weight_set::get(const std::string & name) const {
    ggml_tensor * t = find(name);
    if (t == nullptr) {
        fail(error_code::internal, "weight '" + name + "' was not loaded");
    }
    return t;
}

}  // namespace mm
