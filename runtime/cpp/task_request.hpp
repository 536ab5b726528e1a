// A C request checked and laid out before any graph runs, with the Python runtime's checks in
// its order and its messages (runtime/pipeline.py prepare: runtime/request_checks.py,
// runtime/request_sampling.py, runtime/task_request.py, runtime/input_reading.py,
// runtime/region_masks.py, runtime/limits.py). Inputs are read at the model's size only: one of
// another size is refused (the Python runtime resizes it with a warning).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "export_manifest.hpp"
#include "generation_config.hpp"
#include "input_rules.hpp"
#include "nuwa/nuwa.h"

namespace nuwa {

struct TaskRequest {
  std::string task;  // lower case: t2i ... tv2v
  bool video = false;
  int rows = 0;  // B: the samples (t2i/t2v: prompts x batch, prompt-major; ti2i/tv2v: batch-major)
  int num_frames = 0;
  SamplingValues sampling;              // resolved: the caller's values, else the model's defaults
  std::optional<uint64_t> seed;         // the caller's; none: fresh entropy when generating
  bool guided = false;                  // conditional + unconditional rows
  bool sketch = false;                  // the condition is a sketch (else text ids)
  int sketch_frames = 0;                // Ts of a sketch condition
  std::vector<int64_t> condition;       // (rows, L) text ids or (rows, Ts, S, S) sketch class ids
  std::vector<int64_t> uncondition;     // the same for guidance: the empty prompt / blank sketch
  std::vector<uint8_t> source;          // (source_frames, S, S, 3): frames whose tokens are forced
  int source_frames = 0;
  std::vector<uint8_t> forced;          // (source_frames*h*w): 1 where the source's token is forced
  std::vector<std::string> warnings;    // the Python runtime's warnings of this request, in order
};

// Every check of the request (nuwa::Error with the Python runtime's message on failure).
TaskRequest check_request(const Manifest& manifest, const InputRules& rules,
                          const GenerationConfig& generation, const nuwa_request& request);

}  // namespace nuwa
