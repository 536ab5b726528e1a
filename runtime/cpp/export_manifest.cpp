#include "export_manifest.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nuwa_error.hpp"

namespace nuwa {

using json = nlohmann::json;

namespace {

bool is_dir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> kv_names(const std::string& key, const std::string& value, int layers) {
  auto format = [](const std::string& pattern, int i) {
    auto at = pattern.find("%d");
    if (at == std::string::npos) model_error("manifest name pattern without %d: " + pattern);
    return pattern.substr(0, at) + std::to_string(i) + pattern.substr(at + 2);
  };
  std::vector<std::string> out;
  for (int i = 0; i < layers; ++i) {
    out.push_back(format(key, i));
    out.push_back(format(value, i));
  }
  return out;
}

std::vector<TensorSpec> tensors(const json& list) {
  std::vector<TensorSpec> out;
  for (const auto& t : list) out.push_back({t.at("name").get<std::string>(), t.at("dtype").get<std::string>()});
  return out;
}

// A file the manifest names: a plain relative path inside the directory.
std::string inside(const std::string& file, const std::string& what) {
  if (file.empty() || file[0] == '/' || file.find("..") != std::string::npos) {
    model_error(what + " " + file + " is not a file inside the export directory");
  }
  return file;
}

}  // namespace

const TensorSpec& GraphSpec::tensor(const std::string& tensor_name) const {
  for (const auto* list : {&inputs, &outputs}) {
    for (const auto& t : *list) {
      if (t.name == tensor_name) return t;
    }
  }
  model_error("graph " + name + " has no tensor '" + tensor_name + "'");
}

std::vector<std::string> GraphSpec::input_names() const {
  std::vector<std::string> out;
  for (const auto& t : inputs) out.push_back(t.name);
  return out;
}

std::vector<std::string> GraphSpec::output_names() const {
  std::vector<std::string> out;
  for (const auto& t : outputs) out.push_back(t.name);
  return out;
}

const GraphSpec& Manifest::graph(const std::string& name) const {
  auto it = graphs.find(name);
  if (it == graphs.end()) model_error(directory + ": no graph '" + name + "' in the manifest");
  return it->second;
}

const GraphSpec& Manifest::decoder_step(const std::string& condition, int num_frames) const {
  int frames = std::min(num_frames, decoder.frames);
  for (const auto& s : decoder_steps) {
    if (s.condition == condition && s.frames == frames) return graph(s.graph);
  }
  input_error(directory + ": no decoder_step for condition '" + condition + "' with " +
              std::to_string(frames) + " frame(s) (re-export with --frames)");
}

Manifest load_manifest(const std::string& directory_in) {
  std::string directory = directory_in;
  while (directory.size() > 1 && directory.back() == '/') directory.pop_back();
  if (!is_dir(directory)) input_error("model directory " + directory + " does not exist");
  std::string path = directory + "/manifest.json";
  if (!is_file(path)) {
    model_error(path + " is missing: not a nuwa export directory (run `nuwa export`)");
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  json d;
  try {
    d = json::parse(text.str());
  } catch (const json::exception& exc) {
    model_error(path + " is not valid JSON: " + exc.what());
  }
  Manifest m;
  m.directory = directory;
  try {
    if (d.at("format") != "nuwa-onnx" || d.at("format_version") != 1) {
      model_error(path + ": not a nuwa-onnx v1 manifest");
    }
    m.target = d.at("target").get<std::string>();
    m.precision = d.at("precision").get<std::string>();
    if (m.target != "portable") {
      model_error(directory + " is a --target " + m.target +
                  " export (TensorRT plugin nodes without ONNX function bodies); onnxruntime "
                  "runs the portable export");
    }
    const json& dec = d.at("decoder");
    DecoderSpec& ds = m.decoder;
    ds.num_layers = dec.at("num_layers");
    ds.num_heads = dec.at("num_heads");
    ds.head_dim = dec.at("head_dim");
    ds.cache_slots = dec.at("cache_slots");
    ds.vocab_size = dec.at("vocab_size");
    ds.bos_id = dec.at("bos_id");
    ds.frames = dec.at("grid").at(0);
    ds.grid_h = dec.at("grid").at(1);
    ds.grid_w = dec.at("grid").at(2);
    const json& din = dec.at("inputs");
    const json& dout = dec.at("outputs");
    ds.input_ids = din.at("input_ids");
    ds.positions = din.at("positions");
    ds.logits = dout.at("logits");
    ds.past = kv_names(din.at("past_key"), din.at("past_value"), ds.num_layers);
    ds.present = kv_names(dout.at("present_key"), dout.at("present_value"), ds.num_layers);
    ds.cross = kv_names(din.at("cross_key"), din.at("cross_value"), ds.num_layers);
    const json& tr = d.at("config").at("transformer");
    m.config.image_size = d.at("config").at("vqgan").at("image_size");
    m.config.max_text_len = tr.at("max_text_len");
    m.config.sketch_frames = tr.at("sketch_frames");
    m.config.frames = tr.at("frames");
    m.config.sketch_size = d.at("config").at("vqgan_seg").at("image_size");
    m.config.sketch_classes = d.at("config").at("vqgan_seg").at("in_channels");
    for (const auto& [key, c] : d.at("conditions").items()) {
      m.conditions[key] = {key, c.at("encoder").get<std::string>()};
    }
    for (const auto& s : d.at("decoder_steps")) {
      m.decoder_steps.push_back(
          {s.at("graph").get<std::string>(), s.at("condition").get<std::string>(), s.at("frames")});
    }
    if (d.contains("decoder_prefills")) {
      for (const auto& [key, g] : d.at("decoder_prefills").items()) {
        m.decoder_prefills[key] = g.get<std::string>();
      }
    }
    for (const auto& [name, g] : d.at("graphs").items()) {
      GraphSpec gs;
      gs.name = name;
      gs.file = inside(g.at("file").get<std::string>(), "graphs." + name + ".file");
      gs.kind = g.at("kind").get<std::string>();
      gs.inputs = tensors(g.at("inputs"));
      gs.outputs = tensors(g.at("outputs"));
      if (g.contains("prepared") && g.at("prepared").is_object()) {
        for (const auto& [key, p] : g.at("prepared").items()) {
          gs.prepared[key] = inside(p.at("file").get<std::string>(),
                                    "graphs." + name + ".prepared." + key + ".file");
        }
      }
      m.graphs[name] = gs;
    }
  } catch (const json::exception& exc) {
    model_error(path + " is malformed: " + exc.what());
  }
  for (const auto& [name, g] : m.graphs) {
    if (!is_file(m.path(g.file))) {
      model_error(path + ": graph '" + name + "' file " + m.path(g.file) + " is missing");
    }
    for (const auto& [key, file] : g.prepared) {
      if (!is_file(m.path(file))) {
        model_error(path + ": graph '" + name + " (" + key + ")' file " + m.path(file) +
                    " is missing");
      }
    }
  }
  for (const auto& [key, c] : m.conditions) m.graph(c.encoder);
  for (const auto& s : m.decoder_steps) m.graph(s.graph);
  for (const auto& [key, g] : m.decoder_prefills) m.graph(g);
  m.graph("vq_decoder");
  return m;
}

}  // namespace nuwa
