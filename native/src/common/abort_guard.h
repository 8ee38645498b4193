// Last line of defence against GGML_ABORT / GGML_ASSERT reached from user input.
//
// mm validates files before handing them to llama.cpp, but llama.cpp has many asserts. While an
// abort_guard is alive on a thread, a ggml abort on that thread throws mm::error (MM_INTERNAL,
// with llama.cpp's message) instead of killing the process. Unwinding out of llama.cpp this way
// can leak what it had allocated, so it is a safety net, not a way to validate: aborts on other
// threads (ggml's compute workers) still end the process.
#pragma once

namespace mm {

void install_abort_handler();

class abort_guard {
  public:
    abort_guard();
    ~abort_guard();
    abort_guard(const abort_guard &)             = delete;
    abort_guard & operator=(const abort_guard &) = delete;
};

}  // namespace mm
