// One request's decode loop, as runtime/engine.py (DecodeState, TokenWalk, generate_tokens) and
// runtime/backends/onnxruntime/request_state.py BoundRequestState run it on the CPU: the
// condition's cross K/V (conditional rows, then the unconditional rows under guidance) bound
// once; a forced prefix (a video's given frames, the top of an edit) fed without sampling — its
// whole leading frames in one run of the condition's `decoder_prefill` graph where the export
// has one (engine.py prefill / forced_prefix_length, request_state.py PrefillGraph), the rest
// stepped; the ring cache preallocated and bound once — one buffer set as both past and present
// where the step graph is the export's prepared `cpu` form (its ScatterND writes the new slot in
// place), else two sets that swap roles after every step; per position only the token ids and
// positions are refreshed and the logits read. Positions run 0 .. T*H*W-1 (past the trained
// frames the ring slides). Each free position's tokens: a TokenSampler's choice from the guided
// logits (token_sampler.hpp: runtime/sampler.py's rules and spec/sampling_random.py's numbers).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "ort_api.hpp"
#include "runtime_model.hpp"
#include "token_sampler.hpp"

namespace nuwa {

class StepBindings {
 public:
  // `cross`: one tensor per decoder.cross name with `rows` rows (guidance rows included).
  StepBindings(Model& model, const std::string& condition, int num_frames, int rows,
               std::vector<ort::HostTensor> cross);

  // Feed `tokens` (rows,) at `position` -> the logits (rows, V), valid until the next step.
  const float* step(const std::vector<int64_t>& tokens, int64_t position);

  // Feed whole frames `grid` (rows, frames, h, w) into the cache in one run of the condition's
  // decoder_prefill graph; false (nothing run) where the export has none or frames > T.
  bool prefill(std::vector<int64_t> grid, int frames);

 private:
  ort::Binding bind(int current);

  Model& model_;
  std::string condition_;
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

// After frames [first, end) finished (several at once after a prefix): the token grid
// (batch, num_frames*H*W) so far.
using FrameDone = std::function<void(int first, int end, const std::vector<int64_t>& tokens)>;

// Tokens a request forces: known (batch, N) and where (batch, N), N = num_frames*H*W; empty:
// none.
struct ForcedTokens {
  std::vector<int64_t> known;
  std::vector<uint8_t> mask;
};

// The tokens (batch, num_frames*H*W) of one request on `condition` (text, sketch_t{Ts}), each
// free one chosen by `sampler` (row b of the batch is the sampler's row b); `cross` holds the
// unconditional rows after the conditional ones where guidance_scale != 1. Once `stop` (may be
// null) is set, it returns before the next step, the grid unfinished (frame_handoff.hpp).
std::vector<int64_t> decode_tokens(Model& model, const std::string& condition, int batch,
                                   int num_frames, std::vector<ort::HostTensor> cross,
                                   double guidance_scale, TokenSampler& sampler,
                                   const ForcedTokens& forced, const FrameDone& frame_done,
                                   const std::atomic<bool>* stop = nullptr);

}  // namespace nuwa
