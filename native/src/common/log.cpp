#include "common/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ggml.h"
#include "llama.h"

namespace mm {

namespace {

thread_local std::string g_errors;
thread_local std::string g_partial;

int threshold_from_env() {
    const char * v = std::getenv("MM_LOG_LEVEL");
    if (v == nullptr) {
        return GGML_LOG_LEVEL_ERROR;
    }
    if (std::strcmp(v, "debug") == 0) {
        return GGML_LOG_LEVEL_DEBUG;
    }
    if (std::strcmp(v, "info") == 0) {
        return GGML_LOG_LEVEL_INFO;
    }
    if (std::strcmp(v, "warn") == 0) {
        return GGML_LOG_LEVEL_WARN;
    }
    if (std::strcmp(v, "none") == 0) {
        return GGML_LOG_LEVEL_ERROR + 1;
    }
    return GGML_LOG_LEVEL_ERROR;
}

int g_threshold  = GGML_LOG_LEVEL_ERROR;
int g_last_level = GGML_LOG_LEVEL_INFO;

void on_log(ggml_log_level level, const char * text, void * /*user*/) {
    // GGML_LOG_LEVEL_CONT continues the previous line at its level.
    if (level == GGML_LOG_LEVEL_CONT) {
        level = static_cast<ggml_log_level>(g_last_level);
    } else {
        g_last_level = level;
    }
    if (level == GGML_LOG_LEVEL_ERROR && text != nullptr) {
        g_partial += text;
        size_t nl;
        while ((nl = g_partial.find('\n')) != std::string::npos) {
            std::string line = g_partial.substr(0, nl);
            g_partial.erase(0, nl + 1);
            if (!line.empty() && g_errors.size() < 4096) {
                if (!g_errors.empty()) {
                    g_errors += "; ";
                }
                g_errors += line;
            }
        }
    }
    if (level >= g_threshold && text != nullptr) {
        std::fputs(text, stderr);
    }
}

}  // namespace

void log_callback(ggml_log_level level, const char * text, void * user) {
    on_log(level, text, user);
}

void install_log_handler() {
    g_threshold = threshold_from_env();
    llama_log_set(on_log, nullptr);
    ggml_log_set(on_log, nullptr);
}

void clear_thread_log_errors() {
    g_errors.clear();
    g_partial.clear();
}

std::string thread_log_errors() {
    std::string out = g_errors;
    if (!g_partial.empty()) {
        if (!out.empty()) {
            out += "; ";
        }
        out += g_partial;
    }
    return out;
}

}  // namespace mm
