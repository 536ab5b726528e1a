#include "execution_providers.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "nuwa_error.hpp"
#include "ort_api.hpp"
#include "python_text.hpp"

namespace nuwa {

namespace {

const char* const kDevices[] = {"cpu", "cuda", "tensorrt"};  // providers.py DEVICES
// spec/install_hints.py ONNXRUNTIME_GPU (the tests compare the messages with Python's live)
const char* const kOnnxruntimeGpu =
    "pip install \"nuwa-edge[gpu]\" (onnxruntime-gpu) on a machine with an NVIDIA GPU";

[[noreturn]] void unavailable(const std::string& message) {
  throw Error(NUWA_ERROR_BACKEND, message);
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

bool has(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

std::string env_value(const char* name) {  // spec/environment.py value(): unset or empty -> ""
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string expand_user(const std::string& path) {  // Path.expanduser() of a leading "~/"
  if (path == "~" || path.rfind("~/", 0) == 0) return env_value("HOME") + path.substr(1);
  return path;
}

}  // namespace

DeviceChoice parse_device(const char* device) {
  std::string given = device == nullptr ? "" : device;
  std::string text = given.empty() ? "cpu" : given;
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  auto colon = text.find(':');
  std::string kind = text.substr(0, colon);
  std::string index = colon == std::string::npos ? "" : text.substr(colon + 1);
  bool known = std::find(std::begin(kDevices), std::end(kDevices), kind) != std::end(kDevices);
  // str.isdigit(): ASCII digits here (Python also takes other scripts' digits)
  bool digits = std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!known || !digits) {
    unavailable("unknown onnxruntime device " + py_repr(given) +
                "; choose one of: cpu, cuda, tensorrt (optionally with :N)");
  }
  DeviceChoice out;
  out.kind = kind;
  long long id = 0;
  for (char c : index) {
    id = id * 10 + (c - '0');
    if (id > INT_MAX) {  // refused by check_providers, after the checks Python makes
      out.too_large = given;
      break;
    }
  }
  out.id = out.too_large.empty() ? static_cast<int>(id) : 0;
  return out;
}

std::vector<std::string> available_providers() {
  const OrtApi& a = ort::api();
  char** names = nullptr;
  int count = 0;
  ort::check(a.GetAvailableProviders(&names, &count), "available providers");
  std::vector<std::string> out(names, names + count);
  ort::check(a.ReleaseAvailableProviders(names, count), "available providers");
  return out;
}

void check_providers(const DeviceChoice& device) {
  if (device.kind == "cpu") return;
  std::vector<std::string> available = available_providers();
  if (!has(available, "CUDAExecutionProvider")) {
    unavailable(std::string("onnxruntime ") + OrtGetApiBase()->GetVersionString() +
                " here has no CUDA execution provider (it has " + joined(available) +
                "): " + kOnnxruntimeGpu);
  }
  if (device.kind == "tensorrt" && !has(available, "TensorrtExecutionProvider")) {
    unavailable(std::string("this onnxruntime build has no TensorRT execution provider: "
                            "install TensorRT and ") + kOnnxruntimeGpu);
  }
  if (!device.too_large.empty()) {
    unavailable("onnxruntime device " + py_repr(device.too_large) + ": the GPU id is too large");
  }
  if (device.kind == "cuda") return;
  if (!device.plugin_library.empty() && !std::filesystem::is_regular_file(device.plugin_library)) {
    unavailable("the TensorRT plugin library " + device.plugin_library + " does not exist");
  }
}

std::string tensorrt_cache_dir(const DeviceChoice& device, const std::string& precision) {
  if (!device.cache_dir.empty()) return device.cache_dir;
  std::string root = env_value("NUWA_CACHE_DIR");
  if (root.empty()) {
    std::string xdg = env_value("XDG_CACHE_HOME");
    root = (xdg.empty() ? env_value("HOME") + "/.cache" : expand_user(xdg)) + "/nuwa";
  }
  return expand_user(root) + "/trt_engines/capi/" + precision;
}

std::vector<std::pair<std::string, std::string>> tensorrt_options(const DeviceChoice& device,
                                                                  const std::string& precision) {
  std::string cache = tensorrt_cache_dir(device, precision);
  std::vector<std::pair<std::string, std::string>> out = {
      {"device_id", std::to_string(device.id)},
      {"trt_fp16_enable", precision == "fp16" ? "1" : "0"},
      {"trt_int8_enable", precision == "int8" ? "1" : "0"},  // explicit Q/DQ: no calibration table
      {"trt_engine_cache_enable", "1"},
      {"trt_engine_cache_path", cache},
      {"trt_timing_cache_enable", "1"},
      {"trt_timing_cache_path", cache},
  };
  if (!device.plugin_library.empty()) {  // dlopened by the EP: registers the plugin at load
    out.emplace_back("trt_extra_plugin_lib_paths", device.plugin_library);
  }
  return out;
}

namespace {

struct CudaOptions {
  void operator()(OrtCUDAProviderOptionsV2* o) const { ort::api().ReleaseCUDAProviderOptions(o); }
};
struct TensorrtOptions {
  void operator()(OrtTensorRTProviderOptionsV2* o) const {
    ort::api().ReleaseTensorRTProviderOptions(o);
  }
};

}  // namespace

void append_providers(OrtSessionOptions* options, const DeviceChoice& device,
                      const std::string& precision) {
  if (device.kind == "cpu") return;
  const OrtApi& a = ort::api();
  if (device.kind == "tensorrt") {
    std::string cache = tensorrt_cache_dir(device, precision);
    std::error_code error;
    std::filesystem::create_directories(cache, error);
    if (error) unavailable("cannot create the TensorRT cache folder " + cache + ": " + error.message());
    OrtTensorRTProviderOptionsV2* raw = nullptr;
    ort::check(a.CreateTensorRTProviderOptions(&raw), "TensorRT provider options");
    std::unique_ptr<OrtTensorRTProviderOptionsV2, TensorrtOptions> trt(raw);
    std::vector<const char*> keys, values;
    auto kv = tensorrt_options(device, precision);
    for (const auto& [k, v] : kv) keys.push_back(k.c_str()), values.push_back(v.c_str());
    ort::check(a.UpdateTensorRTProviderOptions(raw, keys.data(), values.data(), keys.size()),
               "TensorRT provider options");
    ort::check(a.SessionOptionsAppendExecutionProvider_TensorRT_V2(options, raw),
               "TensorRT execution provider");
  }
  OrtCUDAProviderOptionsV2* raw = nullptr;
  ort::check(a.CreateCUDAProviderOptions(&raw), "CUDA provider options");
  std::unique_ptr<OrtCUDAProviderOptionsV2, CudaOptions> cuda(raw);
  std::string id = std::to_string(device.id);
  const char* key = "device_id";
  const char* value = id.c_str();
  ort::check(a.UpdateCUDAProviderOptions(raw, &key, &value, 1), "CUDA provider options");
  ort::check(a.SessionOptionsAppendExecutionProvider_CUDA_V2(options, raw),
             "CUDA execution provider");
}

}  // namespace nuwa
