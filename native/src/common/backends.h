// Loading ggml's backends at run time (GGML_BACKEND_DL): the CPU variant that suits this machine best,
// and a GPU backend when one was built, from the folder the addon was loaded from.
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

namespace mm {

struct cpu_variant {
    std::string name;       // "haswell", "skylakex", ... ("cpu" for a single native build)
    std::string file;       // full path of the shared library
    int         score = 0;  // ggml_backend_score(): 0 = this CPU cannot run it
};

struct backend_load_info {
    std::string              build;     // MM_CPU at build time: "native" or "all"
    std::string              dir;       // where backends were looked for
    std::string              binary;    // the module (mm.node, or the executable) that loaded them
    std::vector<cpu_variant> variants;  // every CPU variant found, in file-name order
    std::string              chosen;    // the variant loaded
    std::string              forced;    // MM_CPU_VARIANT, when set
    std::string              reason;    // why `chosen` was loaded, in words
    std::vector<std::string> others;    // GPU/accelerator backend libraries loaded
};

// Loads the backends once per process (thread-safe). Throws mm::error (native_load) when no usable
// CPU backend is found or MM_CPU_VARIANT names one that is missing or unsupported here.
// Environment: MM_BACKEND_DIR overrides the folder; MM_CPU_VARIANT=<name> forces a CPU variant.
void load_backends();

// What load_backends() did (loads first if needed).
const backend_load_info & backends_loaded();

// The CPU backend's extra entry points, looked up through ggml's registry (they live in the
// dynamically loaded variant, not in a library mm links against).
void cpu_set_n_threads(ggml_backend_t cpu, int n_threads);
void cpu_set_abort_callback(ggml_backend_t cpu, ggml_abort_callback cb, void * data);

}  // namespace mm
