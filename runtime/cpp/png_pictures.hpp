// PNG files read as the Python runtime reads pictures (runtime/media.py, through Pillow) and
// written (libpng). Reading follows Pillow's PNG decoder mode by mode (PngImagePlugin: "1", "L"
// from 1/2/4/8-bit grey, "I;16", "P" with its palette and tRNS, "LA", "RGB", "RGBA"; 16-bit
// colour keeps the high byte, 16-bit grey+alpha reads as RGBA) and then its conversions:
//   read_image: RGBA/LA/P pictures composited on opaque black (Image.alpha_composite's integer
//     arithmetic), then RGB (I;16 clamped to 255);
//   read_mask: convert("L") — ITU-R 601-2 luma as Pillow computes it,
//     (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 — and, where the picture has an alpha band
//     (LA, RGBA), 0 where alpha <= 127; then grey > threshold. A palette's or grey's tRNS is
//     not an alpha band in Pillow, so it does not mask.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nuwa {

// A PNG decoded as Pillow holds it: `mode` one of "1" "L" "I;16" "P" "LA" "RGB" "RGBA";
// `pixels` bands per pixel (I;16: two bytes, little-endian), `palette` RGB triples and
// `palette_alpha` (tRNS) for "P".
struct PilPicture {
  std::string mode;
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> palette;
  std::vector<uint8_t> palette_alpha;
};

// The file's size without decoding it; `what` names it in errors (Python's check_input_file
// and read_image messages: "mask x.png does not exist", "cannot read image x.png: not a
// readable image (...)").
void png_size(const std::string& path, const std::string& what, int& height, int& width);
PilPicture read_png(const std::string& path, const std::string& what);

std::vector<uint8_t> picture_rgb(const PilPicture& picture);  // media.read_image: H x W x 3
// media.read_mask: H x W of 0 / 1 (1: grey above `threshold` = generate)
std::vector<uint8_t> picture_mask(const PilPicture& picture, int threshold);

void write_png(const std::string& path, const uint8_t* rgb, int height, int width);

}  // namespace nuwa
