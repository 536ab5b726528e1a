// One opened export directory: its manifest and the ONNX Runtime session of each graph, created
// on first use (under a lock: one model may serve several threads) and kept. The graphs a
// request runs around the decode loop live here: the text condition encoder and the VQ decoder.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "execution_providers.hpp"
#include "export_manifest.hpp"
#include "generation_config.hpp"
#include "input_rules.hpp"
#include "ort_api.hpp"

namespace nuwa {

constexpr int kEncoderRowsPerRun = 2;  // runtime/backends/onnxruntime/backend.py ENCODER_ROWS_PER_RUN

// The session a graph runs on and whether its decoder step writes the ring cache in place.
struct GraphSession {
  OrtSession* session = nullptr;
  bool prepared_cpu = false;  // read from the export's prepared `cpu` form
};

class Model {
 public:
  // `device`: parsed and checked (check_providers) by the caller.
  Model(const std::string& directory, int threads, DeviceChoice device = {});

  const Manifest& manifest() const { return manifest_; }
  const InputRules& input_rules() const { return input_rules_; }
  const GenerationConfig& generation_config() const { return generation_config_; }

  // The session of `graph`, as runtime/backends/onnxruntime/sessions.py GraphSessions.source
  // picks its file: on the CPU a decoder step's prepared `cpu` form where the export carries it;
  // on CUDA/TensorRT the graph as exported (GraphPasses.for_device: no CPU passes there).
  GraphSession session(const std::string& graph);

  // Text ids (rows, L) -> the condition's cross K/V, one tensor per decoder.cross name, rows
  // encoded kEncoderRowsPerRun at a time (as the Python backend does).
  std::vector<ort::HostTensor> encode_text(const std::vector<int64_t>& ids, int rows);

  // Sketch class maps (rows, Ts, S, S) -> the sketch_t{Ts} condition's cross K/V: the sketch
  // encoder over all rows x frames at once, then its condition encoder (backend.py
  // sketch_condition).
  std::vector<ort::HostTensor> encode_sketch(const std::vector<int64_t>& maps, int rows,
                                             int frames);

  // RGB frames (n, S, S, 3) uint8 -> VQ-GAN codes (n, h, w), all n in one run (frames_to_codes).
  std::vector<int64_t> encode_frames(const std::vector<uint8_t>& pixels, int n);

  // Codes (rows, h, w) -> pixels (rows, S, S, 3) uint8 into `pixels` (spec/pixel_scaling.py).
  void decode_frames(const std::vector<int64_t>& codes, int rows, uint8_t* pixels);

 private:
  // one condition encoder graph over `input` (rows, ...) -> its cross K/V
  std::vector<ort::HostTensor> encode_condition(const std::string& key, const std::vector<int64_t>& input,
                                                const std::vector<int64_t>& row_shape, int rows);

  Manifest manifest_;
  InputRules input_rules_;
  GenerationConfig generation_config_;
  int threads_;
  DeviceChoice device_;
  std::mutex mutex_;
  std::map<std::string, ort::Session> sessions_;
};

}  // namespace nuwa
