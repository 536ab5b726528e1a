// nuwa_generate: any of the eight tasks from the command line with the C++ runtime (greedy
// decoding); pictures read and every frame written as a PNG (libpng) the moment it is decoded.
// A start for a C++ app: it uses only the public headers (nuwa/nuwa.hpp over nuwa/nuwa.h).
//
//   nuwa_generate EXPORT_DIR TASK [PROMPT] [--frames N] [--batch N] [--guidance G] [--threads N]
//                 [--sketch PNG] [--image PNG] [--video PNG]... [--mask x0,y0,x1,y1|PNG]
//                 [--out PREFIX]
//   nuwa_generate model/checkpoints/demo/onnx t2v "a red square moves left" --guidance 2
//   nuwa_generate model/checkpoints/demo/onnx i2i --image in.png --mask 0,32,64,64
//   -> out_r0_f0.png ... (row r, frame f)
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nuwa/nuwa.hpp"

namespace {

bool write_png(const std::string& path, const uint8_t* rgb, int size) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png == nullptr ? nullptr : png_create_info_struct(png);
  bool ok = info != nullptr && setjmp(png_jmpbuf(png)) == 0;
  if (ok) {
    png_init_io(png, file);
    png_set_IHDR(png, info, size, size, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < size; ++y) {
      png_write_row(png, const_cast<png_bytep>(rgb + static_cast<size_t>(y) * size * 3));
    }
    png_write_end(png, nullptr);
  }
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
  return ok;
}

// An RGB (or RGBA: `channels` 4) PNG appended to `pixels`; false if it cannot be read.
bool read_png(const std::string& path, int channels, std::vector<uint8_t>& pixels, int& height,
              int& width) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return false;
  image.format = channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  size_t at = pixels.size();
  pixels.resize(at + PNG_IMAGE_SIZE(image));
  height = static_cast<int>(image.height), width = static_cast<int>(image.width);
  return png_image_finish_read(&image, nullptr, pixels.data() + at, 0, nullptr) != 0;
}

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s EXPORT_DIR TASK [PROMPT] [--frames N] [--batch N] [--guidance G] "
               "[--threads N] [--sketch PNG] [--image PNG] [--video PNG]... "
               "[--mask x0,y0,x1,y1|PNG] [--out PREFIX]\n  TASK: t2i s2i i2i ti2i t2v s2v v2v tv2v\n",
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
  int frames = 0, batch = 1, threads = 0, mask_channels = 0;
  int height = 0, width = 0, video_frames = 0, mask_height = 0, mask_width = 0;
  double guidance = -1;  // < 0: the model's default
  std::vector<uint8_t> sketch, image, video, mask;
  std::string rect;
  for (int i = first_flag; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(argv[0]);
    std::string flag = argv[i];
    const char* value = argv[i + 1];
    bool read = true;
    if (flag == "--frames") frames = std::atoi(value);
    else if (flag == "--batch") batch = std::atoi(value);
    else if (flag == "--guidance") guidance = std::atof(value);
    else if (flag == "--threads") threads = std::atoi(value);
    else if (flag == "--out") out = value;
    else if (flag == "--sketch") read = read_png(value, 3, sketch, height, width);
    else if (flag == "--image") read = read_png(value, 3, image, height, width);
    else if (flag == "--video") read = read_png(value, 3, video, height, width), ++video_frames;
    else if (flag == "--mask" && std::strchr(value, ',') != nullptr) rect = value;
    else if (flag == "--mask") read = read_png(value, mask_channels = 4, mask, mask_height, mask_width);
    else return usage(argv[0]);
    if (!read) return std::fprintf(stderr, "error: cannot read the PNG %s\n", value), 2;
  }
  std::fprintf(stderr, "nuwa runtime %s (ABI %d)\n", nuwa_version(), nuwa_abi_version());
  try {
    nuwa::Model model(dir, threads);
    nuwa::Request request(task, prompts);
    request.num_frames(frames).batch(batch).temperature(0);  // greedy decoding
    if (guidance >= 0) request.guidance_scale(guidance);
    if (!sketch.empty()) request.sketch(sketch.data(), NUWA_PIXELS_RGB, 1, height, width);
    if (!image.empty()) request.image(image.data(), height, width);
    if (!video.empty()) request.video(video.data(), video_frames, height, width);
    int x0, y0, x1, y1;
    if (!rect.empty() && std::sscanf(rect.c_str(), "%d,%d,%d,%d", &x0, &y0, &x1, &y1) == 4) {
      request.mask_rect(x0, y0, x1, y1);
    } else if (!rect.empty()) {
      return std::fprintf(stderr, "error: mask %s is not x0,y0,x1,y1\n", rect.c_str()), 2;
    }
    if (!mask.empty()) request.mask_picture(mask.data(), mask_height, mask_width, mask_channels);
    bool written = true;
    nuwa::Output result = model.generate(request, [&](int frame, const uint8_t* pixels, int rows, int size) {
      for (int r = 0; r < rows; ++r) {
        std::string path = out + "_r" + std::to_string(r) + "_f" + std::to_string(frame) + ".png";
        written = write_png(path, pixels + static_cast<size_t>(r) * size * size * 3, size) && written;
        std::printf("%s\n", path.c_str());
      }
      return written;  // stop at the first file that cannot be written
    });
    for (const auto& w : result.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  } catch (const nuwa::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.status() == NUWA_ERROR_INPUT ? 2 : 1;
  }
  return 0;
}
