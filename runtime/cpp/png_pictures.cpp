#include "png_pictures.hpp"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "nuwa_error.hpp"

namespace nuwa {

namespace {

namespace fs = std::filesystem;

// media.check_input_file: the path names a readable file, else Python's message.
void check_input_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) input_error(what + " " + path + " is a directory, not a file");
  if (!fs::exists(p, ec)) {
    for (fs::path parent = p.parent_path(); !parent.empty(); parent = parent.parent_path()) {
      if (fs::exists(parent, ec)) {
        if (!fs::is_directory(parent, ec)) {
          input_error(what + " " + path + ": " + parent.string() + " is a file, not a directory");
        }
        break;
      }
      if (parent == parent.parent_path()) break;
    }
    input_error(what + " " + path + " does not exist");
  }
  if (!fs::is_regular_file(p, ec)) input_error(what + " " + path + " is not a regular file");
}

struct PngError {
  std::jmp_buf jump;
  char message[256] = "";
};

void on_png_error(png_structp png, png_const_charp message) {
  auto* error = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(error->message, sizeof error->message, "%s", message);
  std::longjmp(error->jump, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // Pillow reads on past these too

struct File {
  std::FILE* f;
  ~File() {
    if (f != nullptr) std::fclose(f);
  }
};

// Pillow's PngImagePlugin _MODES: (bit depth, colour type) -> mode.
const char* pil_mode(int bit_depth, int colour_type) {
  switch (colour_type) {
    case PNG_COLOR_TYPE_GRAY:
      return bit_depth == 1 ? "1" : bit_depth == 16 ? "I;16" : "L";
    case PNG_COLOR_TYPE_RGB:
      return "RGB";
    case PNG_COLOR_TYPE_PALETTE:
      return "P";
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return bit_depth == 16 ? "RGBA" : "LA";  // LA;16B is unpacked to RGBA
    case PNG_COLOR_TYPE_RGB_ALPHA:
      return "RGBA";
    default:
      return nullptr;
  }
}

int bands_of(const std::string& mode) {
  if (mode == "RGBA") return 4;
  if (mode == "RGB") return 3;
  if (mode == "LA" || mode == "I;16") return 2;  // I;16: two bytes
  return 1;
}

// Decodes `file` into `out`; false with error.message on a libpng error. Every object with a
// destructor is the caller's, so a longjmp back to the setjmp below skips none.
bool decode(std::FILE* file, bool header_only, PilPicture& out, std::vector<uint8_t>& rows,
            std::vector<png_bytep>& pointers, PngError& error) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  png_infop info = png == nullptr ? nullptr : png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(error.message, sizeof error.message, "out of memory");
    return false;
  }
  if (setjmp(error.jump) != 0) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_init_io(png, file);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  const int depth = png_get_bit_depth(png, info), colour = png_get_color_type(png, info);
  const char* mode = pil_mode(depth, colour);
  if (mode == nullptr) png_error(png, "unknown colour type");
  if (width > 65535 || height > 65535) png_error(png, "picture too large");
  out.mode = mode, out.height = static_cast<int>(height), out.width = static_cast<int>(width);
  if (header_only) {
    png_destroy_read_struct(&png, &info, nullptr);
    return true;
  }
  if (colour == PNG_COLOR_TYPE_PALETTE) {
    png_colorp entries = nullptr;
    int count = 0;
    if (png_get_PLTE(png, info, &entries, &count) != 0) {
      for (int i = 0; i < count; ++i) {
        out.palette.insert(out.palette.end(), {entries[i].red, entries[i].green, entries[i].blue});
      }
    }
    png_bytep alpha = nullptr;
    int alpha_count = 0;
    if (png_get_tRNS(png, info, &alpha, &alpha_count, nullptr) != 0 && alpha != nullptr) {
      out.palette_alpha.assign(alpha, alpha + alpha_count);
    }
    png_set_packing(png);  // 1/2/4-bit indices one a byte
  } else if (colour == PNG_COLOR_TYPE_GRAY && depth < 8 && depth > 1) {
    png_set_expand_gray_1_2_4_to_8(png);  // Pillow's L;2 / L;4: x 85 / x 17
  } else if (colour == PNG_COLOR_TYPE_GRAY && depth == 1) {
    png_set_expand_gray_1_2_4_to_8(png);  // mode "1": 0 / 255
  } else if (depth == 16 && colour != PNG_COLOR_TYPE_GRAY) {
    png_set_strip_16(png);  // Pillow's RGB;16B, RGBA;16B, LA;16B: the high byte
  }
  if (depth == 16 && colour == PNG_COLOR_TYPE_GRAY) png_set_swap(png);  // I;16 little-endian
  if (depth == 16 && colour == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  rows.resize(row_bytes * height);
  pointers.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) pointers[y] = rows.data() + y * row_bytes;
  png_read_image(png, pointers.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

PilPicture read(const std::string& path, const std::string& what, bool header_only) {
  check_input_file(path, what);
  File file{std::fopen(path.c_str(), "rb")};
  if (file.f == nullptr) {
    input_error("cannot read " + what + " " + path + ": not a readable image (" + std::strerror(errno) + ")");
  }
  unsigned char signature[8] = {};
  if (std::fread(signature, 1, 8, file.f) != 8 || png_sig_cmp(signature, 0, 8) != 0) {
    input_error("cannot read " + what + " " + path + ": not a readable image (not a PNG: the C "
                "runtime reads PNG pictures only)");
  }
  std::rewind(file.f);
  PilPicture out;
  std::vector<uint8_t> rows;
  std::vector<png_bytep> pointers;
  auto error = std::make_unique<PngError>();
  if (!decode(file.f, header_only, out, rows, pointers, *error)) {
    input_error("cannot read " + what + " " + path + ": not a readable image (libpng: " +
                error->message + ")");
  }
  out.pixels = std::move(rows);
  return out;
}

// Pillow's L24 >> 16: ITU-R 601-2 luma in 16-bit fixed point, rounded.
uint8_t luma(uint32_t r, uint32_t g, uint32_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// Image.alpha_composite of (r, a) over opaque black (AlphaComposite.c, PRECISION_BITS 7).
uint8_t over_black(uint32_t value, uint32_t alpha) {
  if (alpha == 0) return 0;
  const uint32_t t = value * (alpha * 128) + (0x80u << 7);
  return static_cast<uint8_t>(((((t >> 8) + t) >> 8)) >> 7);
}

// The palette entry's RGB (Pillow pads a short palette with black).
void palette_rgb(const PilPicture& p, uint8_t index, uint32_t rgb[3]) {
  for (int c = 0; c < 3; ++c) {
    size_t at = static_cast<size_t>(index) * 3 + c;
    rgb[c] = at < p.palette.size() ? p.palette[at] : 0;
  }
}

}  // namespace

void png_size(const std::string& path, const std::string& what, int& height, int& width) {
  PilPicture p = read(path, what, true);
  height = p.height, width = p.width;
}

PilPicture read_png(const std::string& path, const std::string& what) {
  return read(path, what, false);
}

std::vector<uint8_t> picture_rgb(const PilPicture& p) {
  const size_t n = static_cast<size_t>(p.height) * p.width;
  const int bands = bands_of(p.mode);
  std::vector<uint8_t> out(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* px = p.pixels.data() + i * bands;
    uint32_t rgb[3] = {px[0], px[0], px[0]};
    uint32_t alpha = 255;
    if (p.mode == "I;16") {
      uint32_t v = px[0] | (px[1] << 8);
      rgb[0] = rgb[1] = rgb[2] = v > 255 ? 255 : v;
    } else if (p.mode == "LA") {
      alpha = px[1];
    } else if (p.mode == "RGB" || p.mode == "RGBA") {
      rgb[1] = px[1], rgb[2] = px[2];
      if (p.mode == "RGBA") alpha = px[3];
    } else if (p.mode == "P") {
      palette_rgb(p, px[0], rgb);
      alpha = px[0] < p.palette_alpha.size() ? p.palette_alpha[px[0]] : 255;
    }
    const bool composite = p.mode == "RGBA" || p.mode == "LA" || p.mode == "P";
    for (int c = 0; c < 3; ++c) {
      out[i * 3 + c] = composite ? over_black(rgb[c], alpha) : static_cast<uint8_t>(rgb[c]);
    }
  }
  return out;
}

std::vector<uint8_t> picture_mask(const PilPicture& p, int threshold) {
  const size_t n = static_cast<size_t>(p.height) * p.width;
  const int bands = bands_of(p.mode);
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* px = p.pixels.data() + i * bands;
    int grey = px[0];
    if (p.mode == "I;16") {
      uint32_t v = px[0] | (px[1] << 8);
      grey = v > 255 ? 255 : static_cast<int>(v);
    } else if (p.mode == "LA") {
      grey = px[1] > 127 ? px[0] : 0;
    } else if (p.mode == "RGB" || p.mode == "RGBA") {
      grey = luma(px[0], px[1], px[2]);
      if (p.mode == "RGBA" && px[3] <= 127) grey = 0;
    } else if (p.mode == "P") {
      uint32_t rgb[3];
      palette_rgb(p, px[0], rgb);
      grey = luma(rgb[0], rgb[1], rgb[2]);
    }
    out[i] = grey > threshold ? 1 : 0;
  }
  return out;
}

void write_png(const std::string& path, const uint8_t* rgb, int height, int width) {
  File file{std::fopen(path.c_str(), "wb")};
  if (file.f == nullptr) input_error("cannot write " + path + ": " + std::strerror(errno));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png == nullptr ? nullptr : png_create_info_struct(png);
  bool ok = info != nullptr && setjmp(png_jmpbuf(png)) == 0;
  if (ok) {
    png_init_io(png, file.f);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; ++y) {
      png_write_row(png, const_cast<png_bytep>(rgb + static_cast<size_t>(y) * width * 3));
    }
    png_write_end(png, nullptr);
  }
  png_destroy_write_struct(&png, &info);
  if (!ok) input_error("cannot write " + path + ": libpng failed");
}

}  // namespace nuwa
