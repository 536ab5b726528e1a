// A C entry point over runtime/cpp/pil_resize.cpp for tests/runtime_cpp/test_resizing.py, which
// compiles the two files alone and compares the pixels with Pillow's.
#include <cstring>

#include "pil_resize.hpp"

extern "C" void resize_rgb(const unsigned char* rgb, int height, int width, int size,
                           const char* filter, unsigned char* out) {
  std::vector<uint8_t> pixels = nuwa::pil_resize_rgb(rgb, height, width, size, filter);
  std::memcpy(out, pixels.data(), pixels.size());
}

extern "C" void resize_labels(const unsigned char* maps, int frames, int height, int width,
                              int size, unsigned char* out) {
  std::vector<uint8_t> in(maps, maps + static_cast<size_t>(frames) * height * width);
  std::vector<uint8_t> labels = nuwa::resize_labels(in, frames, height, width, size);
  std::memcpy(out, labels.data(), labels.size());
}
