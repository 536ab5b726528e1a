// One opened export directory: its manifest and the ONNX Runtime session of each graph, created
// on first use (under a lock: one model may serve several threads) and kept. The graphs a
// request runs around the decode loop live here: the text condition encoder and the VQ decoder.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "export_manifest.hpp"
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
  Model(const std::string& directory, int threads);

  const Manifest& manifest() const { return manifest_; }

  // The session of `graph`, as runtime/backends/onnxruntime/sessions.py GraphSessions.source
  // picks its file: a decoder step's prepared `cpu` form where the export carries it.
  GraphSession session(const std::string& graph);

  // Text ids (rows, L) -> the condition's cross K/V, one tensor per decoder.cross name, rows
  // encoded kEncoderRowsPerRun at a time (as the Python backend does).
  std::vector<ort::HostTensor> encode_text(const std::vector<int64_t>& ids, int rows);

  // Codes (rows, h, w) -> pixels (rows, S, S, 3) uint8 into `pixels` (spec/pixel_scaling.py).
  void decode_frames(const std::vector<int64_t>& codes, int rows, uint8_t* pixels);

 private:
  Manifest manifest_;
  int threads_;
  std::mutex mutex_;
  std::map<std::string, ort::Session> sessions_;
};

}  // namespace nuwa
