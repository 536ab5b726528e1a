// nuwa::Error: a nuwa_status and its one-line message, the one exception type of the C++ side.
// The header-only wrapper (nuwa.hpp) throws it to the caller; inside libnuwa_runtime it is what
// the runtime throws and the C boundary (nuwa_capi.cpp) turns into a status and
// nuwa_last_error(): it never crosses the C API.
#ifndef NUWA_NUWA_ERROR_HPP
#define NUWA_NUWA_ERROR_HPP

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

}  // namespace nuwa

#endif  // NUWA_NUWA_ERROR_HPP
