#include "float_views.h"

#include <mutex>
#include <unordered_map>
#include <vector>

#include "addon_vision.h"

namespace mm::napi {

namespace {

// The matrices that have a live view, by the address of their first value. Views are made and
// collected on JS threads (a worker has its own), so the map has a lock.
struct view_registry {
    std::mutex                                                           mu;
    std::unordered_map<const float *, std::weak_ptr<const token_matrix>> live;
};

view_registry & registry() {
    static view_registry * r = new view_registry();  // never destroyed: finalizers may run at exit
    return *r;
}

}  // namespace

Napi::Float32Array float32_view_of(Napi::Env env, const std::shared_ptr<const token_matrix> & m) {
    if (m->data.empty()) {
        return Napi::Float32Array::New(env, 0);
    }
    const float * base = m->data.data();
    {
        std::lock_guard<std::mutex> lock(registry().mu);
        auto [it, added] = registry().live.try_emplace(base, m);
        if (!added) {
            if (!it->second.expired()) {
                return float32_array_of(env, m->data);  // a view of m is alive: one external buffer per address
            }
            it->second = m;  // a collected view of a freed matrix at the same address
        }
    }
    auto *       keep   = new std::shared_ptr<const token_matrix>(m);
    const size_t n      = m->data.size();
    napi_value   buffer = nullptr;
    // the napi C call, not node-addon-api's: a refusal (a runtime without external buffers) is a
    // status to fall back on, not an exception to unwind
    const napi_status st = napi_create_external_arraybuffer(
        env, const_cast<float *>(base), n * sizeof(float),
        [](napi_env, void * data, void * hint) {
            auto * owner = static_cast<std::shared_ptr<const token_matrix> *>(hint);
            {
                std::lock_guard<std::mutex> lock(registry().mu);
                auto                        it = registry().live.find(static_cast<const float *>(data));
                if (it != registry().live.end() && it->second.lock() == *owner) {
                    registry().live.erase(it);
                }
            }
            delete owner;
        },
        keep, &buffer);
    if (st != napi_ok) {
        delete keep;
        {
            std::lock_guard<std::mutex> lock(registry().mu);
            registry().live.erase(base);
        }
        if (env.IsExceptionPending()) {
            env.GetAndClearPendingException();
        }
        return float32_array_of(env, m->data);
    }
    return Napi::Float32Array::New(env, n, Napi::ArrayBuffer(env, buffer), 0);
}

float_rows rows_of(const Napi::Float32Array & a) {
    const size_t  n    = a.ElementLength();
    const float * data = a.Data();
    if (n > 0) {
        const auto *                        base = static_cast<const float *>(a.ArrayBuffer().Data());
        std::shared_ptr<const token_matrix> m;
        {
            std::lock_guard<std::mutex> lock(registry().mu);
            auto                        it = registry().live.find(base);
            if (it != registry().live.end()) {
                m = it->second.lock();
            }
        }
        // the array must lie inside the matrix (a view of it, or a subarray of one)
        if (m && data >= m->data.data() && data + n <= m->data.data() + m->data.size()) {
            return {std::shared_ptr<const float>(m, data), n};
        }
    }
    return float_rows::copy_of(data, n);
}

}  // namespace mm::napi
