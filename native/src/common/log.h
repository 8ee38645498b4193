// Routes llama.cpp / ggml log lines. Quiet by default (errors only); MM_LOG_LEVEL=debug|info|warn
// shows more on stderr. The last error lines logged on the current thread are kept so that a
// failed llama.cpp call can be reported with llama.cpp's own reason.
#pragma once

#include <string>

#include "ggml.h"

namespace mm {

void install_log_handler();

// The handler install_log_handler gives llama.cpp and ggml, for libraries with a logger of their own
// (libmtmd's mtmd_log_set).
void log_callback(ggml_log_level level, const char * text, void * user);

// Clears the error lines recorded on this thread (call before a llama.cpp operation).
void clear_thread_log_errors();

// Error lines llama.cpp logged on this thread since the last clear, joined with "; ".
std::string thread_log_errors();

}  // namespace mm
