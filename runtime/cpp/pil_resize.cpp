#include "pil_resize.hpp"

#include <cmath>
#include <stdexcept>

namespace nuwa {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Resample.c PRECISION_BITS for 8-bit bands

double bicubic(double x) {  // a = -0.5
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc: per output pixel its first input pixel and count,
// and ksize fixed-point weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // (first, count) per output pixel
  std::vector<int32_t> weights;
};

Coefficients coefficients(int in_size, int out_size, bool cubic) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = (cubic ? 2.0 : 1.0) * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double at = (x + xmin - center + 0.5) * ss;
      k[x] = cubic ? bicubic(at) : bilinear(at);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      c.weights[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(
          w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int32_t in) {
  const int32_t v = in >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// ImagingResampleHorizontal_8bpc: rows [row0, row0 + out_rows) of a (.. x cols x 3) picture.
std::vector<uint8_t> horizontal(const std::vector<uint8_t>& in, int cols, int row0, int out_rows,
                                int out_cols, const Coefficients& c) {
  std::vector<uint8_t> out(static_cast<size_t>(out_rows) * out_cols * 3);
  for (int y = 0; y < out_rows; ++y) {
    const uint8_t* line = in.data() + static_cast<size_t>(y + row0) * cols * 3;
    for (int xx = 0; xx < out_cols; ++xx) {
      const int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1];
      const int32_t* k = c.weights.data() + static_cast<size_t>(xx) * c.ksize;
      for (int ch = 0; ch < 3; ++ch) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += line[(x + xmin) * 3 + ch] * k[x];
        out[(static_cast<size_t>(y) * out_cols + xx) * 3 + ch] = clip8(ss);
      }
    }
  }
  return out;
}

// ImagingResampleVertical_8bpc, the bounds shifted up by `row_shift` (the rows not read).
std::vector<uint8_t> vertical(const std::vector<uint8_t>& in, int cols, int out_rows,
                              const Coefficients& c, int row_shift) {
  std::vector<uint8_t> out(static_cast<size_t>(out_rows) * cols * 3);
  for (int yy = 0; yy < out_rows; ++yy) {
    const int ymin = c.bounds[yy * 2] - row_shift, ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = c.weights.data() + static_cast<size_t>(yy) * c.ksize;
    for (int x = 0; x < cols * 3; ++x) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) ss += in[static_cast<size_t>(y + ymin) * cols * 3 + x] * k[y];
      out[static_cast<size_t>(yy) * cols * 3 + x] = clip8(ss);
    }
  }
  return out;
}

// ImagingScaleAffine for Image.resize(NEAREST): the positions accumulated as Pillow does.
std::vector<int> nearest_positions(int in_size, int out_size) {
  const double a = static_cast<double>(in_size) / out_size;
  std::vector<int> out(out_size);
  double at = a * 0.5;
  for (int x = 0; x < out_size; ++x) {
    const int v = at < 0.0 ? -1 : static_cast<int>(at);
    out[x] = v < 0 ? 0 : v >= in_size ? in_size - 1 : v;
    at += a;
  }
  return out;
}

}  // namespace

std::vector<uint8_t> pil_resize_rgb(const uint8_t* rgb, int height, int width, int size,
                                    const std::string& filter) {
  std::vector<uint8_t> pic(rgb, rgb + static_cast<size_t>(height) * width * 3);
  if (height == size && width == size) return pic;
  if (filter == "nearest") {
    const std::vector<int> xs = nearest_positions(width, size), ys = nearest_positions(height, size);
    std::vector<uint8_t> out(static_cast<size_t>(size) * size * 3);
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        for (int ch = 0; ch < 3; ++ch) {
          out[(static_cast<size_t>(y) * size + x) * 3 + ch] =
              pic[(static_cast<size_t>(ys[y]) * width + xs[x]) * 3 + ch];
        }
      }
    }
    return out;
  }
  if (filter != "bicubic" && filter != "bilinear") {
    throw std::invalid_argument("unknown resize filter " + filter);
  }
  const bool cubic = filter == "bicubic";
  const Coefficients ch = coefficients(width, size, cubic), cv = coefficients(height, size, cubic);
  const int shrink_rows = height - size, shrink_cols = width - size;
  if (width != size && height != size && shrink_rows > 0 && shrink_rows > 2 * shrink_cols) {
    pic = vertical(pic, width, size, cv, 0);  // Pillow 13: the height first
    return horizontal(pic, width, 0, size, size, ch);
  }
  int cols = width, shift = 0;
  if (width != size) {  // the horizontal pass on the rows the vertical one reads
    const int first = cv.bounds[0];
    const int last = cv.bounds[size * 2 - 2] + cv.bounds[size * 2 - 1];
    pic = horizontal(pic, width, height == size ? 0 : first, height == size ? size : last - first,
                     size, ch);
    cols = size, shift = height == size ? 0 : first;
  }
  if (height != size) pic = vertical(pic, cols, size, cv, shift);
  return pic;
}

std::vector<uint8_t> resize_labels(const std::vector<uint8_t>& maps, int frames, int height,
                                   int width, int size) {
  std::vector<int> rows(size), cols(size);
  for (int i = 0; i < size; ++i) {
    rows[i] = static_cast<int>((i + 0.5) * height / size);
    cols[i] = static_cast<int>((i + 0.5) * width / size);
  }
  std::vector<uint8_t> out(static_cast<size_t>(frames) * size * size);
  for (int t = 0; t < frames; ++t) {
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        out[(static_cast<size_t>(t) * size + y) * size + x] =
            maps[(static_cast<size_t>(t) * height + rows[y]) * width + cols[x]];
      }
    }
  }
  return out;
}

}  // namespace nuwa
