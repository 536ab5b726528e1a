// Pictures brought to the model's size as the Python runtime brings them (runtime/media.py):
// RGB frames by Pillow's Image.resize with the model's filter (input_rules.json "resize":
// bicubic, bilinear or nearest), ported from Pillow's Resample.c and Geometry.c so the pixels
// are Pillow's exactly — bicubic (a = -0.5) and bilinear as two separable passes of float64
// kernels normalised per output pixel and rounded to 22-bit fixed point, horizontal first unless
// the height shrinks by more than twice what the width does (Pillow 13.0, PR #9549); nearest as
// Pillow's affine scaling (source positions accumulated in float64) — and sketch class maps by
// resize_labels' nearest rule (NumPy: ((i + 0.5) * in / out) truncated).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nuwa {

// One frame height x width x 3 -> size x size x 3; `filter` "bicubic", "bilinear" or "nearest".
std::vector<uint8_t> pil_resize_rgb(const uint8_t* rgb, int height, int width, int size,
                                    const std::string& filter);

// Label maps frames x height x width -> frames x size x size by nearest neighbour.
std::vector<uint8_t> resize_labels(const std::vector<uint8_t>& maps, int frames, int height,
                                   int width, int size);

}  // namespace nuwa
