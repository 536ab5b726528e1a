#include "generation_config.hpp"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nuwa_error.hpp"

namespace nuwa {

namespace {

using json = nlohmann::json;

void apply(const SamplingOverrides& o, SamplingValues& v) {
  if (o.temperature) v.temperature = *o.temperature;
  if (o.guidance_scale) v.guidance_scale = *o.guidance_scale;
  if (o.top_k) v.top_k = *o.top_k;
  if (o.top_p) v.top_p = *o.top_p;
}

// spec/generation_config.py _check_values
SamplingOverrides read_values(const json& values, const std::string& where) {
  if (!values.is_object()) model_error(where + " must be an object");
  SamplingOverrides o;
  for (const auto& [key, value] : values.items()) {
    std::string at = where + "." + key;
    if (value.is_null() && (key == "top_k" || key == "top_p")) {
      if (key == "top_k") o.top_k = std::optional<int>();
      else o.top_p = std::optional<double>();
      continue;
    }
    if (!value.is_number() || !std::isfinite(value.get<double>())) model_error(at + " must be a number");
    double x = value.get<double>();
    if (key == "temperature" || key == "guidance_scale") {
      if (x < 0) model_error(at + " must be >= 0");
      (key == "temperature" ? o.temperature : o.guidance_scale) = x;
    } else if (key == "top_k") {
      if (x != std::floor(x) || x < 1) model_error(at + " must be an integer >= 1 (or null)");
      o.top_k = std::optional<int>(static_cast<int>(x));
    } else if (key == "top_p") {
      if (!(x > 0 && x <= 1)) model_error(at + " must be in (0, 1] (or null)");
      o.top_p = std::optional<double>(x);
    } else {
      model_error(where + ": unknown sampling option '" + key + "'");
    }
  }
  return o;
}

}  // namespace

SamplingValues GenerationConfig::for_task(const std::string& task, bool guided) const {
  SamplingValues v;  // BUILTIN_SAMPLING
  apply(defaults, v);
  auto it = tasks.find(task);
  if (it != tasks.end()) apply(it->second, v);
  if (!guided) v.guidance_scale = 1.0;  // NO_GUIDANCE
  return v;
}

GenerationConfig load_generation_config(const Manifest& m) {
  GenerationConfig config;
  std::string path = m.path("generation_config.json");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return config;
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  json d;
  try {
    d = json::parse(text.str());
  } catch (const json::exception& exc) {
    model_error(path + " is not valid JSON: " + exc.what());
  }
  try {
    if (!d.is_object()) model_error(path + ": must be a JSON object");
    if (d.contains("defaults")) config.defaults = read_values(d.at("defaults"), path + ": defaults");
    if (d.contains("tasks")) {
      for (const auto& [task, values] : d.at("tasks").items()) {
        config.tasks[task] = read_values(values, path + ": tasks." + task);
      }
    }
  } catch (const json::exception& exc) {
    model_error(path + " is malformed: " + exc.what());
  }
  return config;
}

}  // namespace nuwa
