#include "runtime_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "nuwa_error.hpp"

namespace nuwa {

Model::Model(const std::string& directory, int threads, DeviceChoice device)
    : manifest_(load_manifest(directory)),
      input_rules_(load_input_rules(manifest_)),
      generation_config_(load_generation_config(manifest_)),
      threads_(threads),
      device_(std::move(device)) {}

GraphSession Model::session(const std::string& name) {
  const GraphSpec& graph = manifest_.graph(name);
  bool step = graph.kind == "decoder_step";
  auto prepared = graph.prepared.find("cpu");
  bool use_prepared = step && device_.kind == "cpu" && prepared != graph.prepared.end();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) {
    std::string file = use_prepared ? prepared->second : graph.file;
    // the CPU memory arena only for the decoder step (sessions.py ARENA_GRAPH_KINDS)
    auto providers = [this](OrtSessionOptions* o) { append_providers(o, device_, manifest_.precision); };
    it = sessions_.emplace(name, ort::make_session(manifest_.path(file), threads_, step, providers)).first;
  }
  return {it->second.get(), use_prepared};
}

std::vector<ort::HostTensor> Model::encode_text(const std::vector<int64_t>& ids, int rows) {
  return encode_condition("text", ids, {manifest_.config.max_text_len}, rows);
}

std::vector<ort::HostTensor> Model::encode_sketch(const std::vector<int64_t>& maps, int rows,
                                                  int frames) {
  const GraphSpec& graph = manifest_.graph("sketch_encoder");
  const int64_t size = manifest_.config.sketch_size;
  std::vector<int64_t> input(maps);
  ort::Value x = ort::tensor(input.data(), {static_cast<int64_t>(rows) * frames, size, size},
                             ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  std::vector<ort::HostTensor> outs =
      ort::run(session(graph.name).session, {graph.inputs.at(0).name}, {x.get()}, {graph.outputs.at(0).name});
  const ort::HostTensor& codes = outs[0];  // (rows*frames, h, w)
  if (codes.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || codes.shape.size() != 3) {
    model_error("sketch_encoder must give int64 (batch, h, w) codes");
  }
  std::vector<int64_t> flat(codes.data<int64_t>(), codes.data<int64_t>() + codes.count());
  std::string key = "sketch_t" + std::to_string(frames);
  if (manifest_.conditions.find(key) == manifest_.conditions.end()) {
    std::string exported;
    for (const auto& [k, c] : manifest_.conditions) exported += (exported.empty() ? "" : ", ") + k;
    input_error(manifest_.directory + ": no " + key + " condition encoder (exported: " + exported +
                "); re-export with more frames");
  }
  return encode_condition(key, flat, {frames, codes.shape[1], codes.shape[2]}, rows);
}

std::vector<ort::HostTensor> Model::encode_condition(const std::string& key,
                                                     const std::vector<int64_t>& input,
                                                     const std::vector<int64_t>& row_shape,
                                                     int rows) {
  const GraphSpec& graph = manifest_.graph(manifest_.conditions.at(key).encoder);
  OrtSession* s = session(graph.name).session;
  const std::string name = graph.inputs.at(0).name;
  if (ort::element_type(graph.inputs.at(0).dtype) != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
    model_error(graph.name + ": condition inputs must be int64, the manifest says " + graph.inputs.at(0).dtype);
  }
  int64_t per_row = 1;
  for (int64_t d : row_shape) per_row *= d;
  const auto& names = manifest_.decoder.cross;
  std::vector<ort::HostTensor> merged;
  for (int first = 0; first < rows; first += kEncoderRowsPerRun) {
    int n = std::min(kEncoderRowsPerRun, rows - first);
    std::vector<int64_t> chunk(input.begin() + first * per_row, input.begin() + (first + n) * per_row);
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), row_shape.begin(), row_shape.end());
    ort::Value x = ort::tensor(chunk.data(), shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
    std::vector<ort::HostTensor> outs = ort::run(s, {name}, {x.get()}, names);
    if (merged.empty()) {
      for (auto& o : outs) {
        std::vector<int64_t> all_shape = o.shape;
        all_shape[0] = rows;
        merged.emplace_back(all_shape, o.type);
      }
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      size_t row = merged[k].row_bytes();
      std::memcpy(merged[k].bytes.data() + first * row, outs[k].bytes.data(), n * row);
    }
  }
  return merged;
}

std::vector<int64_t> Model::encode_frames(const std::vector<uint8_t>& pixels, int n) {
  const GraphSpec& graph = manifest_.graph("vq_encoder");
  const int64_t size = manifest_.config.image_size;
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<float> x(static_cast<size_t>(n) * 3 * plane);
  for (int64_t f = 0; f < n; ++f) {  // pixels_to_model, channels first
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) {
        float p = static_cast<float>(pixels[(f * plane + i) * 3 + c]);
        x[(f * 3 + c) * plane + i] = p / 127.5f - 1.0f;
      }
    }
  }
  ort::Value v = ort::tensor(x.data(), {n, 3, size, size}, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  std::vector<ort::HostTensor> outs =
      ort::run(session(graph.name).session, {graph.inputs.at(0).name}, {v.get()}, {graph.outputs.at(0).name});
  const ort::HostTensor& codes = outs[0];
  if (codes.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) model_error("vq_encoder must give int64 codes");
  return std::vector<int64_t>(codes.data<int64_t>(), codes.data<int64_t>() + codes.count());
}

void Model::decode_frames(const std::vector<int64_t>& codes, int rows, uint8_t* pixels) {
  const GraphSpec& graph = manifest_.graph("vq_decoder");
  OrtSession* s = session(graph.name).session;
  const int64_t h = manifest_.decoder.grid_h, w = manifest_.decoder.grid_w;
  std::vector<int64_t> input(codes);
  ort::Value x = ort::tensor(input.data(), {rows, h, w}, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
  std::vector<ort::HostTensor> outs =
      ort::run(s, {graph.inputs.at(0).name}, {x.get()}, {graph.outputs.at(0).name});
  const ort::HostTensor& y = outs[0];  // (rows, 3, S, S)
  if (y.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || y.shape.size() != 4 || y.shape[1] != 3) {
    model_error("vq_decoder must give float32 (batch, 3, S, S) frames");
  }
  const int64_t size = y.shape[2];
  const float* v = y.data<float>();
  for (int64_t b = 0; b < rows; ++b) {
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < size * size; ++i) {
        // model_to_pixels: round((clip(x, -1, 1) + 1) * 127.5), round half to even, in float32
        float x1 = std::min(std::max(v[(b * 3 + c) * size * size + i], -1.0f), 1.0f);
        float p = std::nearbyint((x1 + 1.0f) * 127.5f);
        pixels[(b * size * size + i) * 3 + c] = static_cast<uint8_t>(p);
      }
    }
  }
}

}  // namespace nuwa
