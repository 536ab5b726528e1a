// Prints the C++ runtime's TensorRT provider options (execution_providers.cpp tensorrt_options)
// for a device string, a precision, a plugin library ("" : none) and a cache folder ("" : the
// default), one `key=value` a line, for test_capi_devices.py to compare with providers_for.
#include <cstdio>

#include "execution_providers.hpp"
#include "nuwa/nuwa_error.hpp"

int main(int argc, char** argv) {
  if (argc != 5) return std::fprintf(stderr, "usage: %s DEVICE PRECISION PLUGIN CACHE\n", argv[0]), 2;
  try {
    nuwa::DeviceChoice device = nuwa::parse_device(argv[1]);
    device.plugin_library = argv[3];
    device.cache_dir = argv[4];
    for (const auto& [key, value] : nuwa::tensorrt_options(device, argv[2])) {
      std::printf("%s=%s\n", key.c_str(), value.c_str());
    }
  } catch (const nuwa::Error& e) {
    return std::fprintf(stderr, "%s\n", e.what()), 1;
  }
  return 0;
}
