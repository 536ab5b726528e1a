#include "runtime_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "nuwa_error.hpp"

namespace nuwa {

Model::Model(const std::string& directory, int threads)
    : manifest_(load_manifest(directory)), threads_(threads) {}

GraphSession Model::session(const std::string& name) {
  const GraphSpec& graph = manifest_.graph(name);
  bool step = graph.kind == "decoder_step";
  auto prepared = graph.prepared.find("cpu");
  bool use_prepared = step && prepared != graph.prepared.end();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) {
    std::string file = use_prepared ? prepared->second : graph.file;
    // the CPU memory arena only for the decoder step (sessions.py ARENA_GRAPH_KINDS)
    it = sessions_.emplace(name, ort::make_session(manifest_.path(file), threads_, step)).first;
  }
  return {it->second.get(), use_prepared};
}

std::vector<ort::HostTensor> Model::encode_text(const std::vector<int64_t>& ids, int rows) {
  const GraphSpec& graph = manifest_.graph(manifest_.conditions.at("text").encoder);
  OrtSession* s = session(graph.name).session;
  const std::string input = graph.inputs.at(0).name;
  if (ort::element_type(graph.inputs.at(0).dtype) != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
    model_error(graph.name + ": text ids must be int64, the manifest says " + graph.inputs.at(0).dtype);
  }
  const int64_t length = manifest_.config.max_text_len;
  const auto& names = manifest_.decoder.cross;
  std::vector<ort::HostTensor> merged;
  for (int first = 0; first < rows; first += kEncoderRowsPerRun) {
    int n = std::min(kEncoderRowsPerRun, rows - first);
    std::vector<int64_t> chunk(ids.begin() + first * length, ids.begin() + (first + n) * length);
    ort::Value x = ort::tensor(chunk.data(), {n, length}, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
    std::vector<ort::HostTensor> outs = ort::run(s, {input}, {x.get()}, names);
    if (merged.empty()) {
      for (auto& o : outs) {
        std::vector<int64_t> shape = o.shape;
        shape[0] = rows;
        ort::HostTensor all(shape, o.type);
        merged.push_back(std::move(all));
      }
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      size_t row = merged[k].row_bytes();
      std::memcpy(merged[k].bytes.data() + first * row, outs[k].bytes.data(), n * row);
    }
  }
  return merged;
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
