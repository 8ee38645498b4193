#include "common/error.h"

namespace mm {

void fail(error_code code, const std::string & message) {
    throw error(code, message);
}

}  // namespace mm
