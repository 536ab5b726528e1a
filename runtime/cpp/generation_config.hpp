// A model's sampling defaults per task: the export directory's generation_config.json
// (spec/generation_config.py documents it), on top of the built-in defaults
// (spec/sampling.py BUILTIN_SAMPLING); the tasks that take no guidance (i2i, v2v) always get 1.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "export_manifest.hpp"

namespace nuwa {

struct SamplingValues {
  double temperature = 0.5;
  std::optional<int> top_k = 16;       // none: off
  std::optional<double> top_p;         // none: off
  double guidance_scale = 2.0;
};

// One task's overrides (a value absent keeps the defaults').
struct SamplingOverrides {
  std::optional<double> temperature, guidance_scale;
  std::optional<std::optional<int>> top_k;       // null in the file: off
  std::optional<std::optional<double>> top_p;    // null in the file: off
};

struct GenerationConfig {
  SamplingOverrides defaults;
  std::map<std::string, SamplingOverrides> tasks;  // lower-case task name -> overrides

  // GenerationConfig.for_task: built-in, then defaults, then the task's; guidance 1 where the
  // task takes none (`guided` false).
  SamplingValues for_task(const std::string& task, bool guided) const;
};

// `manifest.directory`/generation_config.json, or no overrides without it (nuwa::Error
// NUWA_ERROR_MODEL naming the field when it is malformed).
GenerationConfig load_generation_config(const Manifest& manifest);

}  // namespace nuwa
