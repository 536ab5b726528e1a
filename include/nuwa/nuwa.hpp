// nuwa C++ wrapper: header-only RAII over the C API (nuwa.h). Errors become nuwa::Error
// exceptions on the caller's side of the boundary (the library itself throws nothing across it).
//
//   nuwa::Model model("model/checkpoints/demo/onnx", /*threads=*/2);
//   // or on a GPU, where the ONNX Runtime library has the provider:
//   //   nuwa::Model model(dir, nuwa::OpenOptions().device("tensorrt:0").trt_plugin_library(lib));
//   nuwa::Request request("t2v", {"a red square moves left"});
//   request.temperature(0).guidance_scale(2.0);  // greedy; options left unset: the model's
//   nuwa::Output out = model.generate(request, [](int frame, const uint8_t*, int, int) {
//     std::printf("frame %d\n", frame);
//     return true;  // go on
//   });
//   // out.frames: rows x frames x S x S x 3 uint8; out.tokens: rows x frames x h x w int64
#ifndef NUWA_NUWA_HPP
#define NUWA_NUWA_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nuwa/nuwa.h"
#include "nuwa/nuwa_error.hpp"

namespace nuwa {

inline void check(nuwa_status status) {
  if (status != NUWA_OK) throw Error(status, nuwa_last_error());
}

// A request: the task, its prompts and options (nuwa_request); it owns its strings.
class Request {
 public:
  Request(std::string task, std::vector<std::string> prompts = {})
      : task_(std::move(task)), prompts_(std::move(prompts)) {
    nuwa_request_init(&request_);
  }
  Request& num_frames(int n) { request_.num_frames = n; return *this; }
  Request& batch(int n) { request_.batch = n; return *this; }
  // Sampling options: one not set is the model's default (its generation_config.json).
  Request& temperature(double t) { request_.temperature = t; request_.set_options |= NUWA_SET_TEMPERATURE; return *this; }
  Request& seed(uint64_t s) { request_.seed = s; request_.set_options |= NUWA_SET_SEED; return *this; }
  Request& guidance_scale(double g) { request_.guidance_scale = g; request_.set_options |= NUWA_SET_GUIDANCE; return *this; }
  Request& top_k(int k) { request_.top_k = k; request_.set_options |= NUWA_SET_TOP_K; return *this; }
  Request& top_p(double p) { request_.top_p = p; request_.set_options |= NUWA_SET_TOP_P; return *this; }
  // Pictures (not copied: they must outlive the request's use), in the model's size.
  Request& sketch(const uint8_t* data, nuwa_pixel_format format, int frames, int height, int width) {
    request_.sketch = {data, format, frames, height, width};
    return *this;
  }
  Request& image(const uint8_t* rgb, int height, int width) {
    request_.image = {rgb, NUWA_PIXELS_RGB, 1, height, width};
    return *this;
  }
  Request& video(const uint8_t* rgb, int frames, int height, int width) {
    request_.video = {rgb, NUWA_PIXELS_RGB, frames, height, width};
    return *this;
  }
  Request& mask_rect(int x0, int y0, int x1, int y1) {
    request_.mask = nuwa_mask{};
    request_.mask.has_rect = 1;
    request_.mask.x0 = x0, request_.mask.y0 = y0, request_.mask.x1 = x1, request_.mask.y1 = y1;
    return *this;
  }
  Request& mask_picture(const uint8_t* data, int height, int width, int channels) {
    request_.mask = nuwa_mask{};
    request_.mask.data = data, request_.mask.height = height, request_.mask.width = width;
    request_.mask.channels = channels;
    return *this;
  }

  // The C struct, pointing into this object (valid while it lives and is not changed).
  const nuwa_request* get() const {
    pointers_.clear();
    for (const auto& p : prompts_) pointers_.push_back(p.c_str());
    request_.task = task_.c_str();
    request_.prompts = pointers_.empty() ? nullptr : pointers_.data();
    request_.num_prompts = pointers_.size();
    return &request_;
  }

 private:
  std::string task_;
  std::vector<std::string> prompts_;
  mutable std::vector<const char*> pointers_;
  mutable nuwa_request request_{};
};

// A picture read from a file: height x width x channels uint8.
struct Picture {
  int height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;
};

// A PNG as RGB, read as the Python runtime reads picture files (nuwa_read_png_rgb); `what`
// ("image", "video", "sketch") names it in errors.
inline Picture read_png_rgb(const std::string& path, const std::string& what = "image") {
  Picture out;
  check(nuwa_png_size(path.c_str(), what.c_str(), &out.height, &out.width));
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  check(nuwa_read_png_rgb(path.c_str(), what.c_str(), out.pixels.data(), out.pixels.size()));
  return out;
}

inline void write_png(const std::string& path, const uint8_t* rgb, int height, int width) {
  check(nuwa_write_png(path.c_str(), rgb, height, width));
}

// `count` frames (count x height x width x 3) as a looping GIF (nuwa_write_gif).
inline void write_gif(const std::string& path, const uint8_t* frames, int count, int height,
                      int width, double fps = 4.0) {
  check(nuwa_write_gif(path.c_str(), frames, count, height, width, fps));
}

struct Output {
  nuwa_output_shape shape{};
  std::vector<uint8_t> frames;  // rows x frames x S x S x 3
  std::vector<int64_t> tokens;  // rows x frames x grid_h x grid_w
  std::vector<std::string> warnings;  // nuwa_last_warnings(), a line each
};

// (frame, pixels rows x S x S x 3, rows, S) -> true to go on, false to stop
using FrameCallback = std::function<bool(int, const uint8_t*, int, int)>;

// How a Model opens (nuwa_open_options): threads and the execution provider.
class OpenOptions {
 public:
  OpenOptions& threads(int n) { return threads_ = n, *this; }
  OpenOptions& device(std::string d) { return device_ = std::move(d), *this; }  // "cpu", "cuda:1", ...
  OpenOptions& trt_plugin_library(std::string path) { return plugin_ = std::move(path), *this; }
  OpenOptions& trt_cache_dir(std::string path) { return cache_ = std::move(path), *this; }

  // A nuwa_open_options over this object's strings (valid while it lives).
  nuwa_open_options c_options() const {
    nuwa_open_options out;
    nuwa_open_options_init(&out);
    out.threads = threads_;
    out.device = device_.empty() ? nullptr : device_.c_str();
    out.trt_plugin_library = plugin_.empty() ? nullptr : plugin_.c_str();
    out.trt_cache_dir = cache_.empty() ? nullptr : cache_.c_str();
    return out;
  }

 private:
  int threads_ = 0;
  std::string device_, plugin_, cache_;
};

class Model {
 public:
  explicit Model(const std::string& export_dir, int threads = 0)
      : Model(export_dir, OpenOptions().threads(threads)) {}
  Model(const std::string& export_dir, const OpenOptions& options) {
    nuwa_open_options c = options.c_options();
    check(nuwa_open(export_dir.c_str(), &c, &model_));
  }
  ~Model() { nuwa_close(model_); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&& other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
  Model& operator=(Model&& other) noexcept {
    if (this != &other) {
      nuwa_close(model_);
      model_ = std::exchange(other.model_, nullptr);
    }
    return *this;
  }

  nuwa_model_info info() const {
    nuwa_model_info out{};
    out.struct_size = sizeof(out);
    check(nuwa_model_get_info(model_, &out));
    return out;
  }

  nuwa_output_shape shape(const Request& request) const {
    nuwa_output_shape out{};
    out.struct_size = sizeof(out);
    check(nuwa_request_shape(model_, request.get(), &out));
    return out;
  }

  // Safe to call from several threads at once on one Model (nuwa.h). `on_frame` runs on this
  // thread, frame by frame, while the decode loop goes on (nuwa_frame_callback); what it throws
  // stops the generation and is rethrown here.
  Output generate(const Request& request, FrameCallback on_frame = {}) {
    Output out;
    out.shape = shape(request);
    out.frames.resize(out.shape.frame_bytes);
    out.tokens.resize(out.shape.token_count);
    struct Context {
      FrameCallback* callback;
      std::exception_ptr error;
    } context{&on_frame, nullptr};
    auto trampoline = [](void* user, int frame, const uint8_t* pixels, int rows, int size) -> int {
      auto* c = static_cast<Context*>(user);
      try {
        return (*c->callback)(frame, pixels, rows, size) ? 0 : 1;
      } catch (...) {  // never across the C boundary: rethrown below
        c->error = std::current_exception();
        return 1;
      }
    };
    nuwa_status status = nuwa_generate(model_, request.get(), out.frames.data(), out.frames.size(),
                                       out.tokens.data(), out.tokens.size(),
                                       on_frame ? +trampoline : nullptr, &context);
    if (context.error) std::rethrow_exception(context.error);
    check(status);
    std::string text = nuwa_last_warnings();
    for (size_t at = 0; at < text.size();) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      out.warnings.push_back(text.substr(at, end - at));
      at = end + 1;
    }
    return out;
  }

  // The text token ids of one prompt (nuwa_prompt_tokens): max_prompt_bytes + 1 of them.
  std::vector<int64_t> prompt_tokens(const std::string& prompt) const {
    std::vector<int64_t> ids(static_cast<size_t>(info().max_prompt_bytes) + 1);
    check(nuwa_prompt_tokens(model_, prompt.c_str(), ids.data(), ids.size()));
    return ids;
  }

  // A mask PNG read as the Python runtime reads one (nuwa_read_png_mask): 1 channel, 1 = generate.
  Picture read_png_mask(const std::string& path) const {
    Picture out{0, 0, 1, {}};
    check(nuwa_png_size(path.c_str(), "mask", &out.height, &out.width));
    out.pixels.resize(static_cast<size_t>(out.height) * out.width);
    check(nuwa_read_png_mask(model_, path.c_str(), out.pixels.data(), out.pixels.size()));
    return out;
  }

  nuwa_model* get() const { return model_; }

 private:
  nuwa_model* model_ = nullptr;
};

}  // namespace nuwa

#endif  // NUWA_NUWA_HPP
