// nuwa_generate: text to image / video from the command line with the C++ runtime; every frame
// written as a PNG (libpng) the moment it is decoded. A start for a C++ app: it uses only the
// public headers (nuwa/nuwa.hpp over nuwa/nuwa.h).
//
//   nuwa_generate EXPORT_DIR TASK PROMPT [--frames N] [--batch N] [--guidance G] [--threads N]
//                 [--out PREFIX]
//   nuwa_generate model/checkpoints/demo/onnx t2v "a red square moves left" --guidance 2
//   -> out_r0_f0.png ... (row r, frame f)
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

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

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s EXPORT_DIR TASK PROMPT [--frames N] [--batch N] [--guidance G] "
               "[--threads N] [--out PREFIX]\n  TASK: t2i or t2v\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage(argv[0]);
  std::string dir = argv[1], task = argv[2], prompt = argv[3], out = "out";
  int frames = 0, batch = 1, threads = 0;
  double guidance = 1.0;
  for (int i = 4; i < argc; i += 2) {
    if (i + 1 >= argc) return usage(argv[0]);
    std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--frames") frames = std::atoi(value);
    else if (flag == "--batch") batch = std::atoi(value);
    else if (flag == "--guidance") guidance = std::atof(value);
    else if (flag == "--threads") threads = std::atoi(value);
    else if (flag == "--out") out = value;
    else return usage(argv[0]);
  }
  std::fprintf(stderr, "nuwa runtime %s (ABI %d)\n", nuwa_version(), nuwa_abi_version());
  try {
    nuwa::Model model(dir, threads);
    nuwa::Request request(task, {prompt});
    request.num_frames(frames).batch(batch).guidance_scale(guidance);  // greedy decoding
    bool written = true;
    model.generate(request, [&](int frame, const uint8_t* pixels, int rows, int size) {
      for (int r = 0; r < rows; ++r) {
        std::string path = out + "_r" + std::to_string(r) + "_f" + std::to_string(frame) + ".png";
        written = write_png(path, pixels + static_cast<size_t>(r) * size * size * 3, size) && written;
        std::printf("%s\n", path.c_str());
      }
      return written;  // stop at the first file that cannot be written
    });
  } catch (const nuwa::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.status() == NUWA_ERROR_INPUT ? 2 : 1;
  }
  return 0;
}
