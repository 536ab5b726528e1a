// A C request checked and laid out before any graph runs, with the Python runtime's checks in
// its order and its messages (runtime/pipeline.py prepare: runtime/request_checks.py,
// runtime/request_sampling.py, runtime/task_request.py, runtime/limits.py).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "export_manifest.hpp"
#include "nuwa/nuwa.h"

namespace nuwa {

struct TaskRequest {
  std::string task;  // lower case: t2i, t2v
  bool video = false;
  int rows = 0;       // B: prompts x batch, prompt-major
  int num_frames = 0;
  double guidance_scale = 1.0;
  bool guided = false;                  // conditional + unconditional rows
  std::vector<int64_t> condition;       // (rows, L) text ids
  std::vector<int64_t> uncondition;     // (rows, L) the empty prompt's ids, when guided
};

// Every check of the request (nuwa::Error with the Python runtime's message on failure).
TaskRequest check_request(const Manifest& manifest, const nuwa_request& request);

}  // namespace nuwa
