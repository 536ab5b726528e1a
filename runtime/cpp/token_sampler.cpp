#include "token_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "sampling_random.hpp"

namespace nuwa {

namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// runtime/sampler.py softmax over x[0..n) (indices through `at`): max, exp, over the sum
template <typename At>
void softmax(int n, At at, std::vector<double>& out) {
  double top = kMinusInf;
  for (int i = 0; i < n; ++i) top = std::max(top, at(i));
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += (out[i] = std::exp(at(i) - top));
  for (int i = 0; i < n; ++i) out[i] /= sum;
}

}  // namespace

TokenSampler::TokenSampler(const SamplingRule& rule, uint64_t seed, int vocab)
    : rule_(rule), seed_(seed), vocab_(vocab), x_(vocab), scratch_(vocab), probs_(vocab), order_(vocab) {}

int64_t TokenSampler::choose(const float* logits, uint64_t row, uint64_t position) {
  const int n = vocab_;
  if (rule_.temperature == 0.0) {  // np.argmax: the first maximum
    int best = 0;
    for (int v = 1; v < n; ++v) {
      if (logits[v] > logits[best]) best = v;
    }
    return best;
  }
  std::vector<double>& x = x_;
  for (int v = 0; v < n; ++v) x[v] = static_cast<double>(logits[v]) / rule_.temperature;
  if (rule_.top_k > 0 && rule_.top_k < n) {  // the k-th largest (np.partition); ties stay
    scratch_ = x;
    std::nth_element(scratch_.begin(), scratch_.begin() + (rule_.top_k - 1), scratch_.end(),
                     std::greater<double>());
    const double kth = scratch_[rule_.top_k - 1];
    for (int v = 0; v < n; ++v) {
      if (x[v] < kth) x[v] = kMinusInf;
    }
  }
  if (rule_.top_p < 1.0) {  // np.argsort(-x, kind="stable"), softmax, cumsum - probs >= p: drop
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(), [&](int a, int b) { return x[a] > x[b]; });
    softmax(n, [&](int i) { return x[order_[i]]; }, probs_);
    double cumulative = 0.0;
    for (int i = 0; i < n; ++i) {
      cumulative += probs_[i];
      if (cumulative - probs_[i] >= rule_.top_p) x[order_[i]] = kMinusInf;
    }
  }
  softmax(n, [&](int v) { return x[v]; }, probs_);
  double total = 0.0;  // np.cumsum: probs_ becomes the cdf
  for (int v = 0; v < n; ++v) probs_[v] = (total += probs_[v]);
  const double u = uniform(seed_, row, position) * probs_[n - 1];
  int64_t token = 0;  // how many cdf entries lie below u: the first index whose cdf reaches it
  for (int v = 0; v < n; ++v) token += probs_[v] < u ? 1 : 0;
  return std::min<int64_t>(token, n - 1);
}

}  // namespace nuwa
