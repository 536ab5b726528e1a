#include "task_inputs.hpp"

#include <algorithm>

#include "nuwa_error.hpp"
#include "pil_resize.hpp"

namespace nuwa {

namespace {

std::string shape_text(std::initializer_list<long> dims) {
  std::string out = "(";
  for (long d : dims) out += (out.size() > 1 ? ", " : "") + std::to_string(d);
  return out + (dims.size() == 1 ? ",)" : ")");
}

void check_dims(const std::string& what, int frames, int height, int width) {
  if (frames < 0 || height < 0 || width < 0) {
    input_error(what + ": frames, height and width must be >= 0, got " +
                shape_text({frames, height, width}));
  }
}

}  // namespace

Frames read_frames(const nuwa_pixels& x, const std::string& what, bool video) {
  check_dims(what, x.frames, x.height, x.width);
  if (x.format != NUWA_PIXELS_RGB || x.frames == 0) {  // as_frames' shape check
    std::string got = x.format != NUWA_PIXELS_RGB
                          ? (x.frames == 1 ? shape_text({x.height, x.width})
                                           : shape_text({x.frames, x.height, x.width}))
                          : shape_text({x.frames, x.height, x.width, 3});
    input_error(what + " must be RGB (H, W, 3) or frames (T, H, W, 3), got " + got);
  }
  Frames f;
  f.frames = video ? x.frames : 1;
  f.height = x.height;
  f.width = x.width;
  f.pixels.assign(x.data, x.data + static_cast<size_t>(f.frames) * x.height * x.width * 3);
  return f;
}

void fit_frames(Frames& f, const std::string& what, int size, const std::string& filter,
                std::vector<std::string>* warnings) {
  if (f.height == size && f.width == size) return;
  warnings->push_back("the " + what + " is " + std::to_string(f.width) + "x" +
                      std::to_string(f.height) + " pixels; resized to the model's " +
                      std::to_string(size) + "x" + std::to_string(size));
  const size_t frame = static_cast<size_t>(f.height) * f.width * 3;
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(f.frames) * size * size * 3);
  for (int t = 0; t < f.frames; ++t) {
    std::vector<uint8_t> one = pil_resize_rgb(f.pixels.data() + t * frame, f.height, f.width, size, filter);
    out.insert(out.end(), one.begin(), one.end());
  }
  f.pixels = std::move(out);
  f.height = f.width = size;
}

std::vector<int64_t> sketch_class_maps(const nuwa_pixels& s, bool video, const SketchRules& rules,
                                       int sketch_classes, int* frames_out,
                                       std::vector<std::string>* warnings) {
  check_dims("sketch", s.frames, s.height, s.width);
  if (s.format != NUWA_PIXELS_RGB && s.format != NUWA_PIXELS_CLASS_IDS) {
    input_error("sketch: format must be NUWA_PIXELS_RGB or NUWA_PIXELS_CLASS_IDS, got " +
                std::to_string(s.format));
  }
  size_t n = static_cast<size_t>(s.frames) * s.height * s.width;
  std::vector<uint8_t> ids;
  if (s.format == NUWA_PIXELS_RGB) {
    ids = sketch_classes_of(rules, s.data, n);
  } else {
    ids.assign(s.data, s.data + n);
  }
  if (s.frames == 0) {
    input_error("a sketch must be (H, W) class ids or (H, W, 3) colours, got " +
                shape_text({s.frames, s.height, s.width}));
  }
  const int size = rules.size;
  if (s.height != size || s.width != size) {
    warnings->push_back("the sketch is " + std::to_string(s.width) + "x" + std::to_string(s.height) +
                        " pixels; resized to the model's " + std::to_string(size) + "x" +
                        std::to_string(size) + " (nearest: colours stay exact)");
    ids = resize_labels(ids, s.frames, s.height, s.width, size);
  }
  int frames = video ? s.frames : 1;
  size_t kept = static_cast<size_t>(frames) * size * size;
  std::vector<int64_t> out(ids.begin(), ids.begin() + kept);
  auto [lo, hi] = std::minmax_element(out.begin(), out.end());
  if (*lo < 0 || *hi >= sketch_classes) {
    input_error("sketch class ids must be in [0, " + std::to_string(sketch_classes) + "), got [" +
                std::to_string(*lo) + ", " + std::to_string(*hi) + "]");
  }
  *frames_out = frames;
  return out;
}

std::vector<int64_t> spread_frames(const std::vector<int64_t>& maps, int given, int frames,
                                   int size) {
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<int64_t> out;
  out.reserve(plane * frames);
  for (int t = 0; t < frames; ++t) {
    size_t src = static_cast<size_t>((static_cast<long long>(t) * given) / frames);
    out.insert(out.end(), maps.begin() + src * plane, maps.begin() + (src + 1) * plane);
  }
  return out;
}

std::vector<uint8_t> pixel_mask(const nuwa_mask& m, int height, int width, int size,
                                int threshold, int* mask_height, int* mask_width,
                                std::vector<std::string>* warnings) {
  if (m.has_rect && m.data != nullptr) {
    input_error("the mask is a rectangle or a picture, not both (nuwa_mask: has_rect and data)");
  }
  std::vector<uint8_t> pixels;
  if (m.has_rect) {  // rect_mask
    const int x0 = m.x0, y0 = m.y0, x1 = m.x1, y1 = m.y1;
    std::string text = "mask rectangle " + std::to_string(x0) + "," + std::to_string(y0) + "," +
                       std::to_string(x1) + "," + std::to_string(y1);
    if (x0 >= x1 || y0 >= y1) {
      input_error(text + " is empty, so it selects nothing (need x0 < x1 and y0 < y1; x1 and y1 "
                  "are exclusive)");
    }
    if (x1 <= 0 || y1 <= 0 || x0 >= width || y0 >= height) {
      input_error(text + " lies wholly outside the " + std::to_string(width) + "x" +
                  std::to_string(height) + " input, so it selects nothing (x runs 0.." +
                  std::to_string(width) + ", y 0.." + std::to_string(height) + ")");
    }
    int cx0 = std::max(x0, 0), cy0 = std::max(y0, 0), cx1 = std::min(x1, width),
        cy1 = std::min(y1, height);
    if (cx0 != x0 || cy0 != y0 || cx1 != x1 || cy1 != y1) {
      warnings->push_back(text + " reaches outside the " + std::to_string(width) + "x" +
                          std::to_string(height) + " input; using the part inside: " +
                          std::to_string(cx0) + "," + std::to_string(cy0) + "," +
                          std::to_string(cx1) + "," + std::to_string(cy1));
    }
    pixels.assign(static_cast<size_t>(height) * width, 0);
    for (int y = cy0; y < cy1; ++y) {
      for (int x = cx0; x < cx1; ++x) pixels[static_cast<size_t>(y) * width + x] = 1;
    }
    *mask_height = height;
    *mask_width = width;
  } else {
    const int c = m.channels;
    if ((c != 1 && c != 3 && c != 4) || m.height <= 0 || m.width <= 0) {
      std::string shape = c == 1 ? shape_text({m.height, m.width}) : shape_text({m.height, m.width, c});
      input_error("a mask must be (H, W) or a picture (H, W, 3), got shape " + shape);
    }
    size_t n = static_cast<size_t>(m.height) * m.width;
    pixels.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t* p = m.data + i * c;
      pixels[i] = c == 1 ? (p[0] != 0) : (std::max({p[0], p[1], p[2]}) > threshold);
    }
    // a mask of another size than the model's covers the whole frame all the same: the token
    // rule maps any size
    if (m.height != size || m.width != size) {
      warnings->push_back("the mask is " + std::to_string(m.width) + "x" + std::to_string(m.height) +
                          " pixels; scaled to the model's " + std::to_string(size) + "x" +
                          std::to_string(size) +
                          " (a token is generated if any of its pixels is masked)");
    }
    *mask_height = m.height;
    *mask_width = m.width;
  }
  if (std::none_of(pixels.begin(), pixels.end(), [](uint8_t v) { return v != 0; })) {
    input_error("the mask selects nothing (no pixel is set): no region to generate");
  }
  return pixels;
}

std::vector<uint8_t> token_mask(const std::vector<uint8_t>& pixels, int height, int width, int h,
                                int w) {
  auto start = [](int i, int pixels_n, int tokens) { return (static_cast<long>(i) * pixels_n) / tokens; };
  auto end = [](int i, int pixels_n, int tokens) {
    return (static_cast<long>(i + 1) * pixels_n + tokens - 1) / tokens;  // ceil
  };
  std::vector<uint8_t> out(static_cast<size_t>(h) * w, 0);
  for (int i = 0; i < h; ++i) {
    for (int j = 0; j < w; ++j) {
      bool any = false;
      for (long y = start(i, height, h); y < end(i, height, h) && !any; ++y) {
        for (long x = start(j, width, w); x < end(j, width, w); ++x) {
          if (pixels[static_cast<size_t>(y) * width + x]) {
            any = true;
            break;
          }
        }
      }
      out[static_cast<size_t>(i) * w + j] = any;
    }
  }
  return out;
}

}  // namespace nuwa
