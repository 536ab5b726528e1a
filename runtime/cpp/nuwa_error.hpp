// The one exception type inside the runtime: a status code and a one-line message. It never
// crosses the C API (nuwa_capi.cpp turns it into a nuwa_status and nuwa_last_error()).
#pragma once

#include <stdexcept>
#include <string>

#include "nuwa/nuwa.h"

namespace nuwa {

class Error : public std::runtime_error {
 public:
  Error(nuwa_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  nuwa_status status() const { return status_; }

 private:
  nuwa_status status_;
};

// Bad request input: the Python runtime's NuwaInputError (same message).
[[noreturn]] inline void input_error(const std::string& message) {
  throw Error(NUWA_ERROR_INPUT, message);
}
// A missing or malformed export directory.
[[noreturn]] inline void model_error(const std::string& message) {
  throw Error(NUWA_ERROR_MODEL, message);
}

}  // namespace nuwa
