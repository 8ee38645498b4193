// ggml's RPC backend (ggml/src/ggml-rpc in the vendored llama.cpp): the devices of remote workers,
// on which a model's layers can be placed, and serving this machine's devices as such a worker.
// The protocol has no authentication and no encryption: a worker must only listen where every
// peer that can reach it is trusted (loopback by default).
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

namespace mm {

// The devices served by the workers at `endpoints` ("host:port"), in order. Each endpoint is
// connected to (and registered with ggml's RPC backend) once per process; a worker serves one
// client process at a time. Connects, so it must run off the JS thread under an abort_guard:
// an unreachable, busy or incompatible worker is MM_RPC_CONNECT, within ~5 s.
std::vector<ggml_backend_dev_t> rpc_devices(const std::vector<std::string> & endpoints);

// Checks an endpoint's form (host:port, IPv4 address or host name, port 1-65535) without
// connecting: MM_INVALID_ARGUMENT otherwise.
void check_rpc_endpoint(const std::string & endpoint);

struct rpc_worker_params {
    std::string              host    = "127.0.0.1";  // an IPv4 address to listen on
    int                      port    = 50052;
    int                      threads = 1;  // CPU threads of the served CPU device
    std::vector<std::string> devices;      // ggml device names; empty: the CPU
    std::string              cache_dir;    // ggml's tensor cache ("" : none)
};

// The devices a worker would serve: MM_INVALID_ARGUMENT naming the available ones when a name is
// unknown.
std::vector<ggml_backend_dev_t> rpc_worker_devices(const std::vector<std::string> & names);

// Serves the devices until the process ends (ggml_backend_rpc_start_server never returns while it
// listens). Returns, by throwing, only when the server could not start (MM_IO: the address cannot
// be listened on).
[[noreturn]] void rpc_serve(const rpc_worker_params & params);

}  // namespace mm
