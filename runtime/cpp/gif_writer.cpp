#include "gif_writer.hpp"

#include <gif_lib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "nuwa_error.hpp"
#include "python_text.hpp"

namespace nuwa {

namespace {

struct GifFile {
  GifFileType* gif = nullptr;
  ~GifFile() {
    int error = 0;
    if (gif != nullptr) EGifCloseFile(gif, &error);
  }
};

// One frame as palette indices and its colour table (256 entries; giflib wants a power of 2).
void palette_frame(const uint8_t* rgb, int pixels, std::vector<GifByteType>& indices,
                   std::vector<GifColorType>& colours) {
  std::map<uint32_t, int> exact;  // RGB -> index, while there are at most 256
  indices.resize(pixels);
  colours.assign(256, GifColorType{0, 0, 0});
  for (int i = 0; i < pixels && exact.size() <= 256; ++i) {
    const uint32_t key = rgb[i * 3] << 16 | rgb[i * 3 + 1] << 8 | rgb[i * 3 + 2];
    auto found = exact.emplace(key, static_cast<int>(exact.size()));
    if (found.second && exact.size() <= 256) {
      colours[found.first->second] = {rgb[i * 3], rgb[i * 3 + 1], rgb[i * 3 + 2]};
    }
    indices[i] = static_cast<GifByteType>(found.first->second);
  }
  if (exact.size() <= 256) return;
  std::vector<GifByteType> planes(static_cast<size_t>(pixels) * 3);
  for (int i = 0; i < pixels; ++i) {
    for (int c = 0; c < 3; ++c) planes[c * static_cast<size_t>(pixels) + i] = rgb[i * 3 + c];
  }
  int size = 256;
  if (GifQuantizeBuffer(pixels, 1, &size, planes.data(), planes.data() + pixels,
                        planes.data() + 2 * static_cast<size_t>(pixels), indices.data(),
                        colours.data()) == GIF_ERROR) {
    input_error("giflib could not quantise a frame to 256 colours");
  }
  // giflib assigns pixels by their 5-bit cell and averages the cells: refine its table with
  // Lloyd's iterations on the full colours (each pixel to its nearest colour, each colour the
  // mean of its pixels), ending with the nearest colours
  for (int round = 0; round < 3; ++round) {
    std::vector<long long> sums(static_cast<size_t>(size) * 4, 0);
    for (int i = 0; i < pixels; ++i) {
      int best = 0, best_distance = 1 << 30;
      for (int k = 0; k < size; ++k) {
        const int dr = rgb[i * 3] - colours[k].Red, dg = rgb[i * 3 + 1] - colours[k].Green;
        const int db = rgb[i * 3 + 2] - colours[k].Blue;
        const int distance = dr * dr + dg * dg + db * db;
        if (distance < best_distance) best = k, best_distance = distance;
      }
      indices[i] = static_cast<GifByteType>(best);
      for (int c = 0; c < 3; ++c) sums[best * 4 + c] += rgb[i * 3 + c];
      ++sums[best * 4 + 3];
    }
    for (int k = 0; k < size && round < 2; ++k) {
      const long long n = sums[k * 4 + 3];
      if (n == 0) continue;
      colours[k] = {static_cast<GifByteType>((sums[k * 4] + n / 2) / n),
                    static_cast<GifByteType>((sums[k * 4 + 1] + n / 2) / n),
                    static_cast<GifByteType>((sums[k * 4 + 2] + n / 2) / n)};
    }
  }
}

}  // namespace

void write_gif(const std::string& path, const uint8_t* frames, int count, int height, int width,
               double fps) {
  if (frames == nullptr || count < 1 || height < 1 || width < 1 || height > 65535 || width > 65535) {
    input_error("a GIF needs frames (count, height, width >= 1; sides up to 65535), got " +
                std::to_string(count) + " x " + std::to_string(height) + " x " + std::to_string(width));
  }
  if (!(std::isfinite(fps) && fps > 0)) {
    input_error("fps must be a finite number > 0, got " + py_float(fps));
  }
  const double ms = std::max(1.0, std::nearbyint(1000.0 / fps));  // round(): halves to even
  GraphicsControlBlock control{};
  control.DisposalMode = DISPOSAL_UNSPECIFIED;
  control.UserInputFlag = false;
  control.DelayTime = static_cast<int>(ms / 10);  // Pillow: int(duration / 10)
  control.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType control_bytes[4];
  EGifGCBToExtension(&control, control_bytes);

  int error = 0;
  GifFile file{EGifOpenFileName(path.c_str(), false, &error)};
  if (file.gif == nullptr) input_error("cannot write " + path + ": " + GifErrorString(error));
  auto check = [&](int status) {
    if (status == GIF_ERROR) input_error("cannot write " + path + ": " + GifErrorString(file.gif->Error));
  };
  EGifSetGifVersion(file.gif, true);  // GIF89a: delays and the loop extension
  check(EGifPutScreenDesc(file.gif, width, height, 8, 0, nullptr));
  const GifByteType netscape[] = "NETSCAPE2.0", loop[] = {1, 0, 0};  // loop forever
  check(EGifPutExtensionLeader(file.gif, APPLICATION_EXT_FUNC_CODE));
  check(EGifPutExtensionBlock(file.gif, 11, netscape));
  check(EGifPutExtensionBlock(file.gif, 3, loop));
  check(EGifPutExtensionTrailer(file.gif));
  const int pixels = height * width;
  std::vector<GifByteType> indices;
  std::vector<GifColorType> colours;
  for (int f = 0; f < count; ++f) {
    palette_frame(frames + static_cast<size_t>(f) * pixels * 3, pixels, indices, colours);
    ColorMapObject* map = GifMakeMapObject(256, colours.data());
    if (map == nullptr) input_error("out of memory writing " + path);
    if (control.DelayTime != 0) {  // Pillow writes no control block for a delay of 0
      check(EGifPutExtension(file.gif, GRAPHICS_EXT_FUNC_CODE, 4, control_bytes));
    }
    int status = EGifPutImageDesc(file.gif, 0, 0, width, height, false, map);
    for (int y = 0; y < height && status != GIF_ERROR; ++y) {
      status = EGifPutLine(file.gif, indices.data() + static_cast<size_t>(y) * width, width);
    }
    GifFreeMapObject(map);
    check(status);
  }
  GifFileType* gif = file.gif;
  file.gif = nullptr;
  if (EGifCloseFile(gif, &error) == GIF_ERROR) {
    input_error("cannot write " + path + ": " + GifErrorString(error));
  }
}

}  // namespace nuwa
