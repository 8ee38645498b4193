#include "common/backends.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "common/error.h"

#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <dlfcn.h>
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace fs = std::filesystem;

namespace mm {

namespace {

// ggml names its dynamic backends this way on every platform (.so on macOS too).
#ifdef _WIN32
constexpr const char * k_prefix = "ggml-";
constexpr const char * k_suffix = ".dll";
#else
constexpr const char * k_prefix = "libggml-";
constexpr const char * k_suffix = ".so";
#endif

// The module this code is linked into: mm.node in the addon, the executable in the test tools.
std::string this_module_path() {
#ifdef _WIN32
    HMODULE module = nullptr;
    if (GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                           reinterpret_cast<LPCSTR>(&this_module_path), &module) == 0) {
        return {};
    }
    char  path[MAX_PATH];
    DWORD n = GetModuleFileNameA(module, path, MAX_PATH);
    return n == 0 ? std::string() : std::string(path, n);
#else
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&this_module_path), &info) == 0 || info.dli_fname == nullptr) {
        return {};
    }
    return info.dli_fname;
#endif
}

// Asks a CPU variant library how well it suits this machine, without registering it.
[[maybe_unused]] int score_of(const fs::path & file) {
    using score_fn = int (*)();
#ifdef _WIN32
    HMODULE h = LoadLibraryW(file.wstring().c_str());
    if (h == nullptr) {
        return -1;
    }
    auto fn    = reinterpret_cast<score_fn>(GetProcAddress(h, "ggml_backend_score"));
    int  score = fn != nullptr ? fn() : -1;
    FreeLibrary(h);
#else
    void * h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        return -1;
    }
    auto fn    = reinterpret_cast<score_fn>(dlsym(h, "ggml_backend_score"));
    int  score = fn != nullptr ? fn() : -1;
    dlclose(h);
#endif
    return score;
}

// "AuthenticAMD", "GenuineIntel", ... (empty where unknown).
std::string cpu_vendor() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    unsigned int a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0, &a, &b, &c, &d) == 0) {
        return {};
    }
    char v[13];
    std::memcpy(v, &b, 4);
    std::memcpy(v + 4, &d, 4);
    std::memcpy(v + 8, &c, 4);
    v[12] = 0;
    return v;
#else
    return {};
#endif
}

// Variants ggml scores alike (same instructions) but compiled with another -mtune: on their own
// vendor's CPUs they win the tie.
bool tuned_for(const std::string & variant, const std::string & vendor) {
    return variant.rfind("zen", 0) == 0 && vendor == "AuthenticAMD";
}

std::string env(const char * name) {
    const char * v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
}

backend_load_info g_info;

void load_once() {
#ifndef MM_CPU_BUILD
#define MM_CPU_BUILD "native"
#endif
    backend_load_info info;
    info.build      = MM_CPU_BUILD;
    info.binary     = this_module_path();
    info.forced     = env("MM_CPU_VARIANT");
    std::string dir = env("MM_BACKEND_DIR");
    if (dir.empty() && !info.binary.empty()) {
        dir = fs::u8path(info.binary).parent_path().u8string();
    }
    info.dir = dir;

#ifndef GGML_BACKEND_DL
    // A native build: the CPU backend is linked in and registered by ggml itself.
    info.variants.push_back({"cpu", info.binary, 1});
    info.chosen = "cpu";
    info.reason = "linked in, compiled for the machine that built it (-march=native)";
    if (!info.forced.empty() && info.forced != "cpu") {
        fail(error_code::native_load, "MM_CPU_VARIANT='" + info.forced +
                                          "' cannot be chosen: this mm.node is a native build with one CPU backend "
                                          "compiled in (the prebuilt packages carry every variant)");
    }
    g_info = std::move(info);
#else
    std::error_code       ec;
    const std::string     cpu_prefix = std::string(k_prefix) + "cpu";
    std::vector<fs::path> others;
    for (const auto & entry : fs::directory_iterator(fs::u8path(dir), ec)) {
        const std::string name = entry.path().filename().u8string();
        if (name.size() <= std::string(k_prefix).size() + std::string(k_suffix).size() ||
            name.rfind(k_prefix, 0) != 0 ||
            name.compare(name.size() - std::strlen(k_suffix), std::string::npos, k_suffix) != 0) {
            continue;
        }
        const std::string stem =
            name.substr(std::strlen(k_prefix), name.size() - std::strlen(k_prefix) - std::strlen(k_suffix));
        if (stem == "base") {
            continue;
        }
        if (name.rfind(cpu_prefix, 0) == 0) {
            cpu_variant v;
            v.name  = stem == "cpu" ? "cpu" : stem.substr(4);  // "cpu-haswell" -> "haswell"
            v.file  = entry.path().u8string();
            v.score = score_of(entry.path());
            info.variants.push_back(std::move(v));
        } else {
            others.push_back(entry.path());
        }
    }
    if (ec || info.variants.empty()) {
        fail(error_code::native_load,
             "no ggml CPU backend (" + std::string(k_prefix) + "cpu*" + k_suffix + ") was found in '" + dir + "'" +
                 (ec ? ": " + ec.message() : std::string()) +
                 "; the installation is incomplete (set MM_BACKEND_DIR to the folder that holds them)");
    }
    std::sort(info.variants.begin(), info.variants.end(),
              [](const cpu_variant & a, const cpu_variant & b) { return a.file < b.file; });

    const cpu_variant * pick = nullptr;
    if (!info.forced.empty()) {
        for (const auto & v : info.variants) {
            if (v.name == info.forced) {
                pick = &v;
            }
        }
        std::string names;
        for (const auto & v : info.variants) {
            names += (names.empty() ? "" : ", ") + v.name;
        }
        if (pick == nullptr) {
            fail(error_code::native_load,
                 "MM_CPU_VARIANT='" + info.forced + "' is not among the CPU variants in '" + dir + "': " + names);
        }
        if (pick->score <= 0) {
            fail(error_code::native_load, "MM_CPU_VARIANT='" + info.forced +
                                              "' cannot run on this CPU (it needs instructions this machine lacks); "
                                              "available: " +
                                              names);
        }
        info.reason = "forced by MM_CPU_VARIANT";
    } else {
        const std::string vendor = cpu_vendor();
        for (const auto & v : info.variants) {
            if (v.score <= 0) {
                continue;
            }
            if (pick == nullptr || v.score > pick->score) {
                pick = &v;
            } else if (v.score == pick->score && tuned_for(v.name, vendor) && !tuned_for(pick->name, vendor)) {
                pick = &v;
            }
        }
        if (pick == nullptr) {
            fail(error_code::native_load, "none of the " + std::to_string(info.variants.size()) +
                                              " ggml CPU variants in '" + dir + "' can run on this CPU");
        }
        int supported = 0;
        for (const auto & v : info.variants) {
            supported += v.score > 0 ? 1 : 0;
        }
        const bool tuned = tuned_for(pick->name, vendor);
        info.reason      = "highest score of the " + std::to_string(supported) + " variants this CPU supports (of " +
                      std::to_string(info.variants.size()) + " shipped)" +
                      (tuned ? ", tuned for this CPU's vendor (" + vendor + ")" : "");
    }
    if (ggml_backend_load(pick->file.c_str()) == nullptr) {
        fail(error_code::native_load, "the ggml CPU backend '" + pick->file + "' could not be loaded");
    }
    info.chosen = pick->name;

    // GPU and other accelerator backends (built with MM_GPU=cuda, Metal on macOS): load what is
    // there; a missing driver only means that backend is not used.
    std::sort(others.begin(), others.end());
    for (const auto & p : others) {
        if (ggml_backend_load(p.u8string().c_str()) != nullptr) {
            info.others.push_back(p.filename().u8string());
        }
    }
    g_info = std::move(info);
#endif
}

std::once_flag g_once;

// An extra entry point of the CPU backend, through its registry (it lives in the loaded variant).
template <typename Fn>
Fn cpu_proc(ggml_backend_t cpu, const char * name) {
    ggml_backend_dev_t dev = ggml_backend_get_device(cpu);
    ggml_backend_reg_t reg = dev != nullptr ? ggml_backend_dev_backend_reg(dev) : nullptr;
    return reg != nullptr ? reinterpret_cast<Fn>(ggml_backend_reg_get_proc_address(reg, name)) : nullptr;
}

}  // namespace

void load_backends() {
    // A failed load is reported on every call (std::call_once retries after an exception).
    std::call_once(g_once, load_once);
}

const backend_load_info & backends_loaded() {
    load_backends();
    return g_info;
}

void cpu_set_n_threads(ggml_backend_t cpu, int n_threads) {
    // One CPU backend library is loaded per process: look the entry point up once.
    static const auto fn = cpu_proc<void (*)(ggml_backend_t, int)>(cpu, "ggml_backend_set_n_threads");
    if (fn != nullptr) {
        fn(cpu, n_threads);
    }
}

void cpu_set_abort_callback(ggml_backend_t cpu, ggml_abort_callback cb, void * data) {
    static const auto fn =
        cpu_proc<void (*)(ggml_backend_t, ggml_abort_callback, void *)>(cpu, "ggml_backend_set_abort_callback");
    if (fn != nullptr) {
        fn(cpu, cb, data);
    }
}

}  // namespace mm
