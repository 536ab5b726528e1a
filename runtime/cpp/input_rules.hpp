// How a model's inputs are read: the export directory's input_rules.json (spec/input_rules.py
// documents it) — the sketch palette and snapping distance, the sizes, the mask threshold, the
// resize filter — or,
// without the file, the built-in rules at the model's sizes (InputRules.builtin: the code's
// palette matched exactly, threshold 127, no vocabulary) — and the words its captions hold, which
// a prompt is checked against (a warning, not an error).
#pragma once

#include <array>
#include <set>
#include <string>
#include <vector>

#include "export_manifest.hpp"

namespace nuwa {

struct SketchRules {
  int size = 0;
  std::vector<std::string> classes;         // class id = index
  std::vector<std::array<int, 3>> colours;  // RGB of each class
  double snap_distance = 0.0;               // 0: exact colours only
};

struct InputRules {
  int frame_size = 0;
  int frames = 0;
  SketchRules sketch;
  int mask_threshold = 127;  // mask pictures: grey above it = generate
  std::string resize_filter = "bicubic";  // pictures of another size: bicubic, bilinear, nearest
  bool has_caption = false;  // the file has a caption grammar (else no prompt is warned about)
  std::set<std::string> caption_words;  // CaptionGrammar.known_words
};

// `manifest.directory`/input_rules.json, or the built-in rules without it (nuwa::Error
// NUWA_ERROR_MODEL naming the field when the file is malformed).
InputRules load_input_rules(const Manifest& manifest);

// uint8 RGB pixels (n x 3) -> class ids (n) by the palette and snapping distance; the pixels that
// read as no class (near none or near two) are an input error with SketchRules.to_classes'
// message (spec/input_rule_parts.py), prefixed "sketch: ".
std::vector<uint8_t> sketch_classes_of(const SketchRules& rules, const uint8_t* rgb, size_t n);

}  // namespace nuwa
