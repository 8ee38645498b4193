#include "common/abort_guard.h"

#include <cstdio>
#include <mutex>
#include <string>

#include "common/error.h"
#include "ggml.h"

namespace mm {

namespace {

thread_local int g_depth = 0;

void on_ggml_abort(const char * message) {
    if (g_depth > 0) {
        throw error(error_code::internal, std::string("llama.cpp aborted: ") + (message ? message : "?"));
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
