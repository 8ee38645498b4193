#include "common/system_info.h"

#include <fstream>
#include <mutex>
#include <thread>

#include "common/backends.h"
#include "common/log.h"
#include "ggml-backend.h"
#include "llama.h"

#ifndef MM_LLAMA_COMMIT
#define MM_LLAMA_COMMIT "unknown"
#endif

namespace mm {

namespace {

const char * device_type_name(enum ggml_backend_dev_type t) {
    switch (t) {
        case GGML_BACKEND_DEVICE_TYPE_CPU:
            return "cpu";
        case GGML_BACKEND_DEVICE_TYPE_GPU:
            return "gpu";
        case GGML_BACKEND_DEVICE_TYPE_IGPU:
            return "igpu";
        case GGML_BACKEND_DEVICE_TYPE_ACCEL:
            return "accel";
        default:
            return "other";
    }
}

std::string read_cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string   line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                auto v = line.substr(colon + 1);
                auto b = v.find_first_not_of(" \t");
                return b == std::string::npos ? std::string() : v.substr(b);
            }
        }
    }
    return {};
}

}  // namespace

void ensure_backend_initialised() {
    static std::once_flag log_once;
    std::call_once(log_once, install_log_handler);
    load_backends();  // throws (MM_NATIVE_LOAD) until a usable CPU backend is found
    static std::once_flag once;
    std::call_once(once, llama_backend_init);
}

system_info get_system_info() {
    ensure_backend_initialised();
    system_info info;
    info.llama_commit     = MM_LLAMA_COMMIT;
    info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());

    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        info.backends.emplace_back(ggml_backend_reg_name(reg));
        // The CPU backend (and others) publish their compiled-in features.
        auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
            ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
        if (get_features != nullptr) {
            for (ggml_backend_feature * f = get_features(reg); f != nullptr && f->name != nullptr; ++f) {
                if (std::string(ggml_backend_reg_name(reg)) == "CPU") {
                    info.cpu_features.emplace_back(f->name, f->value);
                }
            }
        }
    }
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        device_info        d;
        d.name        = ggml_backend_dev_name(dev);
        d.description = ggml_backend_dev_description(dev);
        d.type        = device_type_name(ggml_backend_dev_type(dev));
        d.backend     = ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev));
        size_t free_b = 0, total_b = 0;
        ggml_backend_dev_memory(dev, &free_b, &total_b);
        d.memory_free  = free_b;
        d.memory_total = total_b;
        info.devices.push_back(std::move(d));
    }
    info.cpu_model            = read_cpu_model();
    info.supports_gpu_offload = llama_supports_gpu_offload();
    info.supports_mmap        = llama_supports_mmap();
    info.supports_mlock       = llama_supports_mlock();
    info.llama_system_info    = llama_print_system_info();
    return info;
}

}  // namespace mm
