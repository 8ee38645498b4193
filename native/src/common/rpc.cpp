#include "common/rpc.h"

#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "common/backends.h"
#include "common/error.h"

namespace mm {

namespace {

// ggml's RPC backend, linked in (MM_CPU=native) or loaded from libggml-rpc (MM_CPU=all).
ggml_backend_reg_t rpc_reg() {
    load_backends();
    ggml_backend_reg_t reg = ggml_backend_reg_by_name("RPC");
    if (reg == nullptr) {
        fail(error_code::native_load,
             "this mm.node has no ggml RPC backend (libggml-rpc is missing beside it, or it was built without "
             "GGML_RPC)");
    }
    return reg;
}

template <typename Fn>
Fn rpc_proc(const char * name) {
    auto fn = reinterpret_cast<Fn>(ggml_backend_reg_get_proc_address(rpc_reg(), name));
    if (fn == nullptr) {
        fail(error_code::native_load, std::string("ggml's RPC backend has no entry point ") + name);
    }
    return fn;
}

std::string device_names() {
    std::string names;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (std::string(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev))) == "RPC") {
            continue;
        }
        names += (names.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(dev)) + " (" +
                 ggml_backend_dev_description(dev) + ")";
    }
    return names;
}

}  // namespace

void check_rpc_endpoint(const std::string & endpoint) {
    const size_t colon = endpoint.rfind(':');
    const auto   bad   = [&](const std::string & why) {
        fail(error_code::invalid_argument, "RPC endpoint '" + endpoint + "' " + why + " (expected host:port)");
    };
    if (colon == std::string::npos || colon == 0) {
        bad("has no host");
    }
    if (endpoint.find(':') != colon) {
        bad("has more than one ':' (IPv6 addresses are not supported by ggml's RPC client)");
    }
    const std::string port = endpoint.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::atoi(port.c_str()) < 1 || std::atoi(port.c_str()) > 65535) {
        bad("has no port in 1-65535");
    }
}

std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints) {
    using add_server_fn          = ggml_backend_reg_t (*)(const char *);
    static const auto add_server = rpc_proc<add_server_fn>("ggml_backend_rpc_add_server");
    // ggml registers each endpoint once (and keeps it); connecting runs one at a time.
    static std::mutex               mutex;
    std::lock_guard<std::mutex>     lock(mutex);
    std::vector<ggml_backend_dev_t> out;
    for (size_t i = 0; i < endpoints.size(); ++i) {
        check_rpc_endpoint(endpoints[i]);
        for (size_t j = 0; j < i; ++j) {
            if (endpoints[j] == endpoints[i]) {
                fail(error_code::invalid_argument, "RPC endpoint '" + endpoints[i] + "' is given twice");
            }
        }
        // An unreachable, busy or incompatible worker aborts in ggml with "RPC connect failed: ...",
        // which the caller's abort_guard turns into MM_RPC_CONNECT.
        ggml_backend_reg_t reg = add_server(endpoints[i].c_str());
        if (reg == nullptr || ggml_backend_reg_dev_count(reg) == 0) {
            fail(error_code::rpc_connect, "ggml RPC worker at " + endpoints[i] + " serves no device");
        }
        for (size_t d = 0; d < ggml_backend_reg_dev_count(reg); ++d) {
            out.push_back(ggml_backend_reg_dev_get(reg, d));
        }
    }
    return out;
}

std::vector<ggml_backend_dev_t> rpc_worker_devices(const std::vector<std::string> & names) {
    load_backends();
    std::vector<ggml_backend_dev_t> out;
    if (names.empty()) {
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (cpu == nullptr) {
            fail(error_code::native_load, "no ggml CPU device is loaded");
        }
        out.push_back(cpu);
        return out;
    }
    for (const auto & name : names) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
        if (dev == nullptr || std::string(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev))) == "RPC") {
            fail(error_code::invalid_argument, "no ggml device named '" + name + "'; available: " + device_names());
        }
        for (auto * d : out) {
            if (d == dev) {
                fail(error_code::invalid_argument, "device '" + name + "' is given twice");
            }
        }
        out.push_back(dev);
    }
    return out;
}

void rpc_serve(const rpc_worker_params & params) {
    using start_server_fn                 = void (*)(const char *, const char *, size_t, size_t, ggml_backend_dev_t *);
    const auto                      start = rpc_proc<start_server_fn>("ggml_backend_rpc_start_server");
    std::vector<ggml_backend_dev_t> devices  = rpc_worker_devices(params.devices);
    const std::string               endpoint = params.host + ":" + std::to_string(params.port);
    check_rpc_endpoint(endpoint);
    start(endpoint.c_str(), params.cache_dir.empty() ? nullptr : params.cache_dir.c_str(),
          static_cast<size_t>(params.threads < 1 ? 1 : params.threads), devices.size(), devices.data());
    fail(error_code::io, "the ggml RPC worker could not listen on " + endpoint +
                             " (the address is in use, or is not an IPv4 address of this machine)");
}

}  // namespace mm
