// What this process runs on: the pinned llama.cpp, ggml backends and devices, CPU features.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mm {

struct device_info {
    std::string name;
    std::string description;
    std::string type;  // "cpu", "gpu", "igpu", "accel"
    std::string backend;
    uint64_t    memory_total = 0;
    uint64_t    memory_free  = 0;
};

struct system_info {
    std::string                                      llama_commit;
    std::vector<std::string>                         backends;
    std::vector<device_info>                         devices;
    std::vector<std::pair<std::string, std::string>> cpu_features;
    std::string                                      cpu_model;
    int                                              hardware_threads     = 0;
    bool                                             supports_gpu_offload = false;
    bool                                             supports_mmap        = false;
    bool                                             supports_mlock       = false;
    std::string                                      llama_system_info;
};

// Initialises llama.cpp's backends once per process (idempotent, thread-safe).
void ensure_backend_initialised();

system_info get_system_info();

}  // namespace mm
