// A command-line driver of runtime/cpp/sampling_random.cpp and token_sampler.cpp alone (no ONNX
// Runtime), for tests/runtime_cpp/test_sampled_parity.py. One request a line on stdin, one answer
// a line on stdout:
//   philox C0 C1 C2 C3 K0 K1                 -> the four output words (hex)
//   uniform SEED ROW POSITION                -> the 64 bits (hex) and the uniform (C99 hex float)
//   choose T K P SEED ROW POSITION V L0..    -> the token (T, P and the logits as hex floats)
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "sampling_random.hpp"
#include "token_sampler.hpp"

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string op;
    in >> op;
    if (op == "philox") {
      std::array<uint32_t, 4> c{};
      std::array<uint32_t, 2> k{};
      for (auto& w : c) in >> std::hex >> w;
      for (auto& w : k) in >> std::hex >> w;
      const auto x = nuwa::philox4x32_10(c, k);
      std::printf("%08" PRIx32 " %08" PRIx32 " %08" PRIx32 " %08" PRIx32 "\n", x[0], x[1], x[2], x[3]);
    } else if (op == "uniform") {
      uint64_t seed = 0, row = 0, position = 0;
      in >> seed >> row >> position;
      std::printf("%016" PRIx64 " %a\n", nuwa::random_bits(seed, row, position),
                  nuwa::uniform(seed, row, position));
    } else if (op == "choose") {
      std::string t, p, word;
      nuwa::SamplingRule rule;
      uint64_t seed = 0, row = 0, position = 0;
      int vocab = 0;
      in >> t >> rule.top_k >> p >> seed >> row >> position >> vocab;
      rule.temperature = std::strtod(t.c_str(), nullptr);
      rule.top_p = std::strtod(p.c_str(), nullptr);
      std::vector<float> logits(vocab);
      for (auto& v : logits) {
        in >> word;
        v = static_cast<float>(std::strtod(word.c_str(), nullptr));
      }
      nuwa::TokenSampler sampler(rule, seed, vocab);
      std::printf("%" PRId64 "\n", sampler.choose(logits.data(), row, position));
    } else {
      std::fprintf(stderr, "unknown request: %s\n", line.c_str());
      return 2;
    }
    std::fflush(stdout);
  }
  return 0;
}
