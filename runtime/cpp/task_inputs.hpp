// A request's pictures read as the Python runtime reads them (runtime/input_reading.py,
// runtime/region_masks.py, spec/token_mask.py): frames (T, S, S, 3) uint8, sketches as class maps
// (T, S, S), the region to generate as a token mask. Errors and warnings are the Python
// runtime's; a picture of another size than the model's is resized as Python resizes it
// (pil_resize.hpp: Pillow's pixels for frames, nearest labels for sketches) with its warning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "input_rules.hpp"
#include "nuwa/nuwa.h"

namespace nuwa {

struct Frames {
  int frames = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // (frames, height, width, 3)
};

// as_frames: RGB frames (an image: its first frame) as given.
Frames read_frames(const nuwa_pixels& x, const std::string& what, bool video);

// fit_frames: frames of another size than the model's `size` resized with `filter` (the model's
// input rules), the Python runtime's warning appended to `warnings`.
void fit_frames(Frames& frames, const std::string& what, int size, const std::string& filter,
                std::vector<std::string>* warnings);

// sketch_class_maps: class ids (T, S, S) (an image task: the first frame) by the model's rules;
// a sketch of another size resized nearest, with the Python runtime's warning.
std::vector<int64_t> sketch_class_maps(const nuwa_pixels& sketch, bool video,
                                       const SketchRules& rules, int sketch_classes,
                                       int* frames_out, std::vector<std::string>* warnings);

// spread_frames: a sketch's T frames spread evenly over `frames` condition frames.
std::vector<int64_t> spread_frames(const std::vector<int64_t>& maps, int given, int frames,
                                   int size);

// pixel_mask: the region to generate, bool (height, width), in a height x width input's pixels;
// Python's warnings (a rectangle clipped to the frame, a mask picture not `size` x `size`) are
// appended to `warnings`.
std::vector<uint8_t> pixel_mask(const nuwa_mask& mask, int height, int width, int size,
                                int threshold, int* mask_height, int* mask_width,
                                std::vector<std::string>* warnings);

// spec/token_mask.py token_mask: bool (H, W) -> bool (h, w), a token marked if any pixel of its
// patch is.
std::vector<uint8_t> token_mask(const std::vector<uint8_t>& pixels, int height, int width, int h,
                                int w);

// Whether the request gives a mask (a rectangle or a picture).
inline bool mask_given(const nuwa_mask& m) { return m.has_rect != 0 || m.data != nullptr; }

}  // namespace nuwa
