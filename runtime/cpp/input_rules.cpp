#include "input_rules.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "caption_words.hpp"
#include "python_text.hpp"
#include "nuwa_error.hpp"

namespace nuwa {

namespace {

// spec/sketch_palette.py SKETCH_CLASSES / SKETCH_PALETTE: the built-in rules' palette
const char* const kBuiltinClasses[] = {"background", "square", "circle", "triangle", "digit"};
constexpr std::array<int, 3> kBuiltinColours[] = {
    {0, 0, 0}, {255, 64, 64}, {64, 255, 64}, {64, 64, 255}, {255, 255, 255}};
constexpr int kMaskThreshold = 127;  // spec/input_rule_parts.py MASK_THRESHOLD

std::string format_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);  // Python's f"{v:g}"
  return buf;
}

std::string rgb_text(int r, int g, int b) {
  return "RGB(" + std::to_string(r) + ", " + std::to_string(g) + ", " + std::to_string(b) + ")";
}

}  // namespace

InputRules load_input_rules(const Manifest& m) {
  InputRules rules;
  rules.frame_size = m.config.image_size;
  rules.frames = m.config.frames;
  rules.sketch.size = m.config.sketch_size;
  for (size_t i = 0; i < sizeof kBuiltinColours / sizeof kBuiltinColours[0]; ++i) {
    rules.sketch.classes.emplace_back(kBuiltinClasses[i]);
    rules.sketch.colours.push_back(kBuiltinColours[i]);
  }
  rules.mask_threshold = kMaskThreshold;
  std::string path = m.path("input_rules.json");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return rules;  // built-in rules
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json d;
  try {
    d = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& exc) {
    model_error(path + " is not valid JSON: " + exc.what());
  }
  try {
    if (d.at("format") != "nuwa-input-rules/1") model_error(path + ": format must be 'nuwa-input-rules/1'");
    rules.frame_size = d.at("frame_size");
    rules.frames = d.at("frames");
    const auto& sk = d.at("sketch");
    rules.sketch.size = sk.at("size");
    rules.sketch.classes.clear();
    rules.sketch.colours.clear();
    for (const auto& entry : sk.at("palette")) {
      rules.sketch.classes.push_back(entry.at("name").get<std::string>());
      const auto& rgb = entry.at("rgb");
      if (rgb.size() != 3) model_error(path + ": sketch.palette rgb must be 3 integers 0-255");
      std::array<int, 3> c{rgb.at(0).get<int>(), rgb.at(1).get<int>(), rgb.at(2).get<int>()};
      for (int v : c) {
        if (v < 0 || v > 255) model_error(path + ": sketch.palette rgb must be 3 integers 0-255");
      }
      rules.sketch.colours.push_back(c);
    }
    rules.sketch.snap_distance = sk.value("snap_distance", 0.0);
    if (d.contains("mask")) rules.mask_threshold = d.at("mask").value("threshold", kMaskThreshold);
    if (d.contains("resize")) rules.resize_filter = d.at("resize").value("filter", std::string("bicubic"));
    if (d.contains("caption")) {  // CaptionGrammar.known_words: list words, templates' fixed words
      const auto& caption = d.at("caption");
      rules.has_caption = true;
      for (const auto& [name, values] : caption.at("words").items()) {
        for (const auto& v : values) {
          for (const auto& w : words_of(v.get<std::string>())) rules.caption_words.insert(w);
        }
      }
      for (const auto& [rule, t] : caption.at("grammar").items()) {
        std::string text = t.get<std::string>(), fixed;
        bool inside = false;  // re.sub(r"<[^>]*>", " ", template)
        for (size_t i = 0; i < text.size(); ++i) {
          if (!inside && text[i] == '<' && text.find('>', i) != std::string::npos) {
            inside = true;
            fixed += ' ';
          } else if (inside) {
            inside = text[i] != '>';
          } else {
            fixed += text[i];
          }
        }
        for (const auto& w : words_of(fixed)) rules.caption_words.insert(w);
      }
    }
  } catch (const nlohmann::json::exception& exc) {
    model_error(path + " is malformed: " + exc.what());
  }
  if (rules.mask_threshold < 0 || rules.mask_threshold > 254) {
    model_error(path + ": mask.threshold must be 0-254, got " + std::to_string(rules.mask_threshold));
  }
  if (rules.resize_filter != "bicubic" && rules.resize_filter != "bilinear" &&
      rules.resize_filter != "nearest") {
    model_error(path + ": resize.filter must be one of ['bicubic', 'bilinear', 'nearest'], got " +
                py_repr(rules.resize_filter));
  }
  // runtime/model_directory.py load_input_rules: the sizes must be the model's
  if (rules.frame_size != m.config.image_size || rules.frames != m.config.frames ||
      rules.sketch.size != m.config.sketch_size ||
      static_cast<int>(rules.sketch.colours.size()) != m.config.sketch_classes) {
    model_error(path + ": its sizes or sketch classes are not the model's (config.json)");
  }
  return rules;
}

std::vector<uint8_t> sketch_classes_of(const SketchRules& rules, const uint8_t* rgb, size_t n) {
  std::vector<uint8_t> out(n, 0);
  std::map<long, long> bad;  // RGB code -> count: the pixels near no palette colour or near two
  const double reach = rules.snap_distance * rules.snap_distance;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = rgb + 3 * i;
    int near = 0;
    for (size_t c = 0; c < rules.colours.size(); ++c) {
      long d2 = 0;
      for (int k = 0; k < 3; ++k) {
        long d = static_cast<long>(p[k]) - rules.colours[c][k];
        d2 += d * d;
      }
      if (static_cast<double>(d2) <= reach) {
        out[i] = static_cast<uint8_t>(c);
        ++near;
      }
    }
    if (near != 1) ++bad[(static_cast<long>(p[0]) << 16) | (p[1] << 8) | p[2]];
  }
  if (bad.empty()) return out;
  std::string named;
  int shown = 0;
  for (const auto& [code, count] : bad) {
    if (shown == 5) break;
    named += std::string(shown ? ", " : "") + rgb_text(code >> 16, (code >> 8) & 255, code & 255) +
             " x" + std::to_string(count);
    ++shown;
  }
  if (bad.size() > 5) named += " and " + std::to_string(bad.size() - 5) + " more";
  std::string known;
  for (size_t c = 0; c < rules.colours.size(); ++c) {
    const auto& rgb_c = rules.colours[c];
    known += std::string(c ? ", " : "") + rules.classes[c] + "=" + rgb_text(rgb_c[0], rgb_c[1], rgb_c[2]);
  }
  std::string within = rules.snap_distance != 0.0
                           ? " (or within RGB distance " + format_g(rules.snap_distance) + " of exactly one)"
                           : "";
  input_error("sketch: sketch has colours outside the palette: " + named + "; known" + within +
              ": " + known);
}

}  // namespace nuwa
