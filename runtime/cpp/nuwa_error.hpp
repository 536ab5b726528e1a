// How the runtime throws nuwa::Error (include/nuwa/nuwa_error.hpp): it never crosses the C API
// (nuwa_capi.cpp turns it into a nuwa_status and nuwa_last_error()).
#pragma once

#include <stdexcept>
#include <string>

#include "nuwa/nuwa.h"
#include "nuwa/nuwa_error.hpp"

namespace nuwa {


// Bad request input: the Python runtime's NuwaInputError (same message).
[[noreturn]] inline void input_error(const std::string& message) {
  throw Error(NUWA_ERROR_INPUT, message);
}
// A missing or malformed export directory.
[[noreturn]] inline void model_error(const std::string& message) {
  throw Error(NUWA_ERROR_MODEL, message);
}

}  // namespace nuwa
