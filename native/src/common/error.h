// mm's one exception type: every failure that can reach JS carries a stable code.
#pragma once

#include <stdexcept>
#include <string>

#include "common/error_codes.h"

namespace mm {

class error : public std::runtime_error {
  public:
    error(error_code code, const std::string & message) : std::runtime_error(message), code_(code) {}

    error_code code() const noexcept { return code_; }

  private:
    error_code code_;
};

[[noreturn]] void fail(error_code code, const std::string & message);

}  // namespace mm
