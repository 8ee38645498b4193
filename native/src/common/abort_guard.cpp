#include "common/abort_guard.h"

#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "common/error.h"
#include "ggml.h"

namespace mm {

namespace {

thread_local int g_depth = 0;

// ggml's RPC client reports a worker it cannot reach or has lost with these prefixes
// (native/patches/0003-ggml-rpc-errors-not-aborts.patch): the one channel it has is the abort message.
struct rpc_marker {
    const char * prefix;
    error_code   code;
    const char * lead;  // what mm's message says before ggml's text
};

constexpr rpc_marker k_rpc_markers[] = {
    {"RPC connect failed: ", error_code::rpc_connect, "ggml RPC worker: "},
    {"RPC connection lost: ", error_code::rpc_lost, "lost the connection to the ggml RPC worker at "},
};

void on_ggml_abort(const char * message) {
    if (g_depth > 0) {
        const char * text = message ? message : "?";
        for (const auto & m : k_rpc_markers) {
            if (const char * at = std::strstr(text, m.prefix)) {
                throw error(m.code, std::string(m.lead) + (at + std::strlen(m.prefix)));
            }
        }
        throw error(error_code::internal, std::string("llama.cpp aborted: ") + text);
    }
    std::fprintf(stderr, "%s\n", message ? message : "ggml abort");
}

}  // namespace

void install_abort_handler() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_set_abort_callback(on_ggml_abort); });
}

abort_guard::abort_guard() {
    install_abort_handler();
    ++g_depth;
}

abort_guard::~abort_guard() {
    --g_depth;
}

}  // namespace mm
