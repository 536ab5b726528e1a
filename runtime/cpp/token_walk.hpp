// One request's decode loop, as runtime/engine.py (DecodeState, TokenWalk, generate_tokens) and
// runtime/backends/onnxruntime/request_state.py BoundRequestState run it on the CPU: the
// condition's cross K/V (conditional rows, then the unconditional rows under guidance) bound
// once; the ring cache preallocated and bound once — one buffer set as both past and present
// where the step graph is the export's prepared `cpu` form (its ScatterND writes the new slot in
// place), else two sets that swap roles after every step; per position only the token ids and
// positions are refreshed and the logits read. Positions run 0 .. T*H*W-1 (past the trained
// frames the ring slides). Greedy choice: argmax of the guided logits (runtime/sampler.py).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ort_api.hpp"
#include "runtime_model.hpp"

namespace nuwa {

class StepBindings {
 public:
  // `cross`: one tensor per decoder.cross name with `rows` rows (guidance rows included).
  StepBindings(Model& model, const std::string& condition, int num_frames, int rows,
               std::vector<ort::HostTensor> cross);

  // Feed `tokens` (rows,) at `position` -> the logits (rows, V), valid until the next step.
  const float* step(const std::vector<int64_t>& tokens, int64_t position);

 private:
  ort::Binding bind(int current);

  const DecoderSpec& decoder_;
  OrtSession* session_;
  int rows_;
  bool in_place_;
  int current_ = 0;
  std::vector<ort::HostTensor> cross_;
  ort::HostTensor ids_, positions_, logits_;
  std::vector<std::vector<ort::HostTensor>> cache_;  // one set (in place) or two (ping-pong)
  std::vector<ort::Value> values_;                   // every OrtValue the bindings hold
  std::vector<ort::Binding> bindings_;
};

// After each finished frame: (frame index, the token grid so far (batch, positions done)).
using FrameDone = std::function<void(int frame, const std::vector<int64_t>& tokens)>;

// Greedy tokens (batch, num_frames*H*W) of one request; `uncond` empty: no guidance.
std::vector<int64_t> greedy_tokens(Model& model, int batch, int num_frames,
                                   std::vector<ort::HostTensor> cross, double guidance_scale,
                                   const FrameDone& frame_done);

}  // namespace nuwa
