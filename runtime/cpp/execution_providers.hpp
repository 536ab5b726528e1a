// Which ONNX Runtime execution providers run the graphs: the C API's device choice, as the Python
// runtime's runtime/backends/onnxruntime/providers.py makes it (parse_device, providers_for).
//
//  - "cpu" (default, also "" and NULL): the CPU provider;
//  - "cuda[:N]": CUDA (device_id N), then the CPU;
//  - "tensorrt[:N]": TensorRT (device_id N; FP16/INT8 enabled to match the export's precision;
//    engine and timing caches in one folder; the 3DNA plugin's registration library as
//    trt_extra_plugin_lib_paths when given), then CUDA, then the CPU.
// A provider this ONNX Runtime build lacks is refused with the Python runtime's message, before
// any graph is loaded. The graphs run as exported on CUDA/TensorRT (the portable 3DNA nodes run
// their function bodies, as in the Python backend); only the CPU reads the prepared `cpu` forms.
#pragma once

#include <onnxruntime_c_api.h>

#include <string>
#include <utility>
#include <vector>

namespace nuwa {

struct DeviceChoice {
  std::string kind = "cpu";  // cpu, cuda, tensorrt
  int id = 0;
  std::string too_large;  // the device string when its id does not fit an int (refused)
  std::string plugin_library;  // tensorrt: trt_extra_plugin_lib_paths ("" : none)
  std::string cache_dir;       // tensorrt: engine + timing cache folder ("": the default)
};

// parse_device: "cpu", "CUDA:1", "tensorrt", ... -> kind and id; anything else is refused with
// parse_device's message (nuwa::Error, NUWA_ERROR_BACKEND: Python's BackendUnavailableError).
DeviceChoice parse_device(const char* device);

// ONNX Runtime's available providers (GetAvailableProviders), in its order.
std::vector<std::string> available_providers();

// providers_for's checks: the Python runtime's message when CUDA (cuda, tensorrt) or TensorRT
// (tensorrt) is not in this ONNX Runtime build. Also checks the plugin library file exists.
void check_providers(const DeviceChoice& device);

// The TensorRT folder of engines and timing caches: the caller's, else
// <cache root>/trt_engines/capi/<precision> (cache root: $NUWA_CACHE_DIR, else
// $XDG_CACHE_HOME/nuwa, else ~/.cache/nuwa: spec/environment.py cache_dir).
std::string tensorrt_cache_dir(const DeviceChoice& device, const std::string& precision);

// The TensorRT provider's options (providers_for's dict, as UpdateTensorRTProviderOptions keys).
std::vector<std::pair<std::string, std::string>> tensorrt_options(const DeviceChoice& device,
                                                                  const std::string& precision);

// Append the device's providers to session options (the CPU provider is ORT's own fallback).
void append_providers(OrtSessionOptions* options, const DeviceChoice& device,
                      const std::string& precision);

}  // namespace nuwa
