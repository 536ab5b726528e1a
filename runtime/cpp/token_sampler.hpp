// Next-token choice from one row's guided logits, as runtime/sampler.py makes it (Sampler,
// sampling_distribution, filter_logits, inverse_cdf): greedy (temperature 0) is NumPy's argmax
// (the first maximum); else in float64 the logits over the temperature, top-k (every token at
// least as likely as the k-th, ties kept), top-p (tokens in a stable descending order, dropped
// once the mass strictly before them reaches p; the top token always stays), softmax, cumsum,
// and the first token whose cdf reaches uniform(seed, row, position) * cdf[V-1]
// (sampling_random.hpp). Free of ONNX Runtime and JSON: the tests compile it alone.
#pragma once

#include <cstdint>
#include <vector>

namespace nuwa {

struct SamplingRule {
  double temperature = 0.0;  // 0: greedy
  int top_k = 0;             // 0: off
  double top_p = 1.0;        // 1: off
};

class TokenSampler {
 public:
  TokenSampler(const SamplingRule& rule, uint64_t seed, int vocab);

  // The token of `row` (its index in the request's output) at raster `position` from its
  // guided logits (vocab floats).
  int64_t choose(const float* logits, uint64_t row, uint64_t position);

  uint64_t seed() const { return seed_; }

 private:
  SamplingRule rule_;
  uint64_t seed_;
  int vocab_;
  std::vector<double> x_, scratch_, probs_;
  std::vector<int> order_;
};

}  // namespace nuwa
