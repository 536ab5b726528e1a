// nuwa_generate: any of the eight tasks from the command line with the C++ runtime (greedy
// unless --temperature; sampled, the Python runtime's tokens for the same --seed); pictures read
// as the Python runtime reads them (PNG), every frame written as a PNG the moment it is decoded,
// and with --gif each row's frames as a looping GIF at the end.
// A start for a C++ app: it uses only the public headers (nuwa/nuwa.hpp over nuwa/nuwa.h).
//
//   nuwa_generate EXPORT_DIR TASK [PROMPT] [--frames N] [--batch N] [--guidance G] [--threads N]
//                 [--temperature T] [--seed N] [--device cpu|cuda[:N]|tensorrt[:N]] [--trt-plugin LIB]
//                 [--sketch PNG] [--image PNG] [--video PNG]... [--mask x0,y0,x1,y1|PNG]
//                 [--out PREFIX] [--gif FPS]
//   nuwa_generate model/checkpoints/demo/onnx t2v "a red square moves left" --guidance 2 --gif 4
//   nuwa_generate model/checkpoints/demo/onnx i2i --image in.png --mask 0,32,64,64
//   -> out_r0_f0.png ... (row r, frame f); with --gif: out_r0.gif ...
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nuwa/nuwa.hpp"

namespace {

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s EXPORT_DIR TASK [PROMPT] [--frames N] [--batch N] [--guidance G] "
               "[--threads N] [--temperature T] [--seed N] [--device cpu|cuda[:N]|tensorrt[:N]] [--trt-plugin LIB] [--sketch PNG] [--image PNG] [--video PNG]... "
               "[--mask x0,y0,x1,y1|PNG] [--out PREFIX] [--gif FPS]\n  TASK: t2i s2i i2i ti2i t2v s2v v2v tv2v\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage(argv[0]);
  std::string dir = argv[1], task = argv[2], out = "out";
  std::vector<std::string> prompts;
  int first_flag = 3;
  if (argc > 3 && std::strncmp(argv[3], "--", 2) != 0) prompts.push_back(argv[first_flag++]);
  int frames = 0, batch = 1, threads = 0;
  double guidance = -1, gif_fps = 0;  // guidance < 0: the model's default; gif_fps 0: no GIF
  double temperature = 0;             // 0: greedy; above: sampled, the same as Python per seed
  unsigned long long seed = 0;
  std::vector<std::string> sketches, images, videos;
  std::string rect, mask_png;
  nuwa::OpenOptions open;
  for (int i = first_flag; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(argv[0]);
    std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--frames") frames = std::atoi(value);
    else if (flag == "--batch") batch = std::atoi(value);
    else if (flag == "--guidance") guidance = std::atof(value);
    else if (flag == "--temperature") temperature = std::atof(value);
    else if (flag == "--seed") seed = std::strtoull(value, nullptr, 10);
    else if (flag == "--threads") threads = std::atoi(value);
    else if (flag == "--device") open.device(value);
    else if (flag == "--trt-plugin") open.trt_plugin_library(value);
    else if (flag == "--out") out = value;
    else if (flag == "--gif") gif_fps = std::atof(value);
    else if (flag == "--sketch") sketches.push_back(value);
    else if (flag == "--image") images.push_back(value);
    else if (flag == "--video") videos.push_back(value);
    else if (flag == "--mask" && std::strchr(value, ',') != nullptr) rect = value;
    else if (flag == "--mask") mask_png = value;
    else return usage(argv[0]);
  }
  std::fprintf(stderr, "nuwa runtime %s (ABI %d)\n", nuwa_version(), nuwa_abi_version());
  try {
    nuwa::Model model(dir, open.threads(threads));
    nuwa::Request request(task, prompts);
    request.num_frames(frames).batch(batch).temperature(temperature).seed(seed);
    if (guidance >= 0) request.guidance_scale(guidance);
    nuwa::Picture sketch, image, mask, video;  // read as the Python runtime reads files
    if (!sketches.empty()) sketch = nuwa::read_png_rgb(sketches.back(), "sketch");
    if (!images.empty()) image = nuwa::read_png_rgb(images.back(), "image");
    for (const auto& path : videos) {  // frames of one size: the first's
      nuwa::Picture frame = nuwa::read_png_rgb(path, "video");
      if (video.pixels.empty()) video.height = frame.height, video.width = frame.width;
      if (frame.height != video.height || frame.width != video.width) {
        return std::fprintf(stderr, "error: video frame %s is not %dx%d\n", path.c_str(), video.width, video.height), 2;
      }
      video.pixels.insert(video.pixels.end(), frame.pixels.begin(), frame.pixels.end());
    }
    if (!sketch.pixels.empty()) request.sketch(sketch.pixels.data(), NUWA_PIXELS_RGB, 1, sketch.height, sketch.width);
    if (!image.pixels.empty()) request.image(image.pixels.data(), image.height, image.width);
    if (!video.pixels.empty()) request.video(video.pixels.data(), static_cast<int>(videos.size()), video.height, video.width);
    int x0, y0, x1, y1;
    if (!rect.empty() && std::sscanf(rect.c_str(), "%d,%d,%d,%d", &x0, &y0, &x1, &y1) == 4) {
      request.mask_rect(x0, y0, x1, y1);
    } else if (!rect.empty()) {
      return std::fprintf(stderr, "error: mask %s is not x0,y0,x1,y1\n", rect.c_str()), 2;
    }
    if (!mask_png.empty()) {
      mask = model.read_png_mask(mask_png);  // 1 channel: 1 = generate
      request.mask_picture(mask.pixels.data(), mask.height, mask.width, 1);
    }
    nuwa::Output result = model.generate(request, [&](int frame, const uint8_t* pixels, int rows, int size) {
      for (int r = 0; r < rows; ++r) {  // a file that cannot be written stops the run (nuwa::Error)
        std::string path = out + "_r" + std::to_string(r) + "_f" + std::to_string(frame) + ".png";
        nuwa::write_png(path, pixels + static_cast<size_t>(r) * size * size * 3, size, size);
        std::printf("%s\n", path.c_str());
      }
      return true;
    });
    const nuwa_output_shape& shape = result.shape;
    const size_t row_bytes = static_cast<size_t>(shape.frames) * shape.image_size * shape.image_size * 3;
    for (int r = 0; gif_fps > 0 && r < shape.rows; ++r) {
      std::string path = out + "_r" + std::to_string(r) + ".gif";
      nuwa::write_gif(path, result.frames.data() + r * row_bytes, shape.frames, shape.image_size,
                      shape.image_size, gif_fps);
      std::printf("%s\n", path.c_str());
    }
    for (const auto& w : result.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  } catch (const nuwa::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.status() == NUWA_ERROR_INPUT ? 2 : 1;
  }
  return 0;
}
