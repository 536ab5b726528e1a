// The C API's text and picture-file entry points (include/nuwa/nuwa.h): a prompt's token ids,
// PNG pictures read as the Python runtime reads them, frames written as PNG or GIF.
#include <cstring>
#include <string>

#include "capi_guard.hpp"
#include "gif_writer.hpp"
#include "nuwa/nuwa.h"
#include "png_pictures.hpp"
#include "text_tokenizer.hpp"

namespace {

using nuwa::capi::guarded;
using nuwa::capi::require;

std::string what_of(const char* what, const char* fallback) {
  return what == nullptr || *what == '\0' ? fallback : what;
}

void check_size(size_t given, size_t needed, const char* buffer) {
  if (given < needed) {
    nuwa::input_error(std::string("the ") + buffer + " buffer holds " + std::to_string(given) +
                      " bytes; this picture needs " + std::to_string(needed) +
                      " (nuwa_png_size: height x width" + (std::strcmp(buffer, "rgb") == 0 ? " x 3)" : ")"));
  }
}

}  // namespace

extern "C" {

NUWA_API nuwa_status nuwa_prompt_tokens(const nuwa_model* model, const char* prompt,
                                        int64_t* ids, size_t count) {
  return guarded([&] {
    require(model != nullptr && ids != nullptr, "nuwa_prompt_tokens: model and ids must not be NULL");
    require(prompt != nullptr, "the prompt must be a string, got NoneType");
    const int length = model->model.manifest().config.max_text_len;
    if (count < static_cast<size_t>(length)) {
      nuwa::input_error("the ids buffer holds " + std::to_string(count) + " values; this model's text is " +
                        std::to_string(length) + " tokens long (max_prompt_bytes + 1)");
    }
    nuwa::check_utf8(prompt, "the prompt");
    std::vector<int64_t> row = nuwa::encode_prompt(prompt, length, false);
    std::memcpy(ids, row.data(), row.size() * sizeof(int64_t));
  });
}

NUWA_API nuwa_status nuwa_png_size(const char* path, const char* what, int* height, int* width) {
  return guarded([&] {
    require(path != nullptr && height != nullptr && width != nullptr,
            "nuwa_png_size: path, height and width must not be NULL");
    nuwa::png_size(path, what_of(what, "image"), *height, *width);
  });
}

NUWA_API nuwa_status nuwa_read_png_rgb(const char* path, const char* what, uint8_t* rgb,
                                       size_t size) {
  return guarded([&] {
    require(path != nullptr && rgb != nullptr, "nuwa_read_png_rgb: path and rgb must not be NULL");
    nuwa::PilPicture picture = nuwa::read_png(path, what_of(what, "image"));
    std::vector<uint8_t> out = nuwa::picture_rgb(picture);
    check_size(size, out.size(), "rgb");
    std::memcpy(rgb, out.data(), out.size());
  });
}

NUWA_API nuwa_status nuwa_read_png_mask(const nuwa_model* model, const char* path,
                                        uint8_t* mask, size_t size) {
  return guarded([&] {
    require(model != nullptr && path != nullptr && mask != nullptr,
            "nuwa_read_png_mask: model, path and mask must not be NULL");
    nuwa::PilPicture picture = nuwa::read_png(path, "mask");
    std::vector<uint8_t> out = nuwa::picture_mask(picture, model->model.input_rules().mask_threshold);
    check_size(size, out.size(), "mask");
    std::memcpy(mask, out.data(), out.size());
  });
}

NUWA_API nuwa_status nuwa_write_png(const char* path, const uint8_t* rgb, int height, int width) {
  return guarded([&] {
    require(path != nullptr && rgb != nullptr, "nuwa_write_png: path and rgb must not be NULL");
    require(height >= 1 && width >= 1, "nuwa_write_png: height and width must be >= 1");
    nuwa::write_png(path, rgb, height, width);
  });
}

NUWA_API nuwa_status nuwa_write_gif(const char* path, const uint8_t* frames, int count,
                                    int height, int width, double fps) {
  return guarded([&] {
    require(path != nullptr, "nuwa_write_gif: path must not be NULL");
    nuwa::write_gif(path, frames, count, height, width, fps);
  });
}

}  // extern "C"
