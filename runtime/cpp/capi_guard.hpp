// What every C entry point (include/nuwa/nuwa.h) shares: the opaque nuwa_model, this thread's
// last error and warnings, and `guarded`, which runs an entry point's body, catches everything
// and turns it into a nuwa_status and nuwa_last_error()'s message. No exception crosses it.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "nuwa/nuwa.h"
#include "nuwa_error.hpp"
#include "runtime_model.hpp"

struct nuwa_model {
  nuwa::Model model;
  nuwa_model(const std::string& dir, int threads, nuwa::DeviceChoice device)
      : model(dir, threads, std::move(device)) {}
};

namespace nuwa::capi {

inline thread_local std::string last_error;
inline thread_local std::string last_warnings;  // nuwa_last_warnings

struct Cancelled {};  // thrown by the frame callback's wrapper, caught below

template <typename F>
nuwa_status guarded(F&& body) {
  try {
    last_error.clear();
    body();
    return NUWA_OK;
  } catch (const nuwa::Error& e) {
    last_error = e.what();
    return e.status();
  } catch (const Cancelled&) {
    last_error = "cancelled by the frame callback";
    return NUWA_ERROR_CANCELLED;
  } catch (const std::bad_alloc&) {
    last_error = "out of memory";
    return NUWA_ERROR_INTERNAL;
  } catch (const std::exception& e) {
    last_error = std::string("internal error: ") + e.what();
    return NUWA_ERROR_INTERNAL;
  } catch (...) {
    last_error = "internal error: unknown exception";
    return NUWA_ERROR_INTERNAL;
  }
}

inline void require(bool ok, const char* message) {
  if (!ok) nuwa::input_error(message);
}

}  // namespace nuwa::capi
