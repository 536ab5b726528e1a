#include "sampling_random.hpp"

#include <random>

namespace nuwa {

namespace {
constexpr int kRounds = 10;
constexpr uint32_t kM0 = 0xD2511F53u;  // multiplier of counter word 0
constexpr uint32_t kM1 = 0xCD9E8D57u;  // multiplier of counter word 2
constexpr uint32_t kW0 = 0x9E3779B9u;  // key bump of word 0
constexpr uint32_t kW1 = 0xBB67AE85u;  // key bump of word 1
}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      k[0] += kW0;
      k[1] += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
  }
  return c;
}

uint64_t random_bits(uint64_t seed, uint64_t row, uint64_t position) {
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const std::array<uint32_t, 4> counter = {static_cast<uint32_t>(position), static_cast<uint32_t>(position >> 32),
                                           static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32)};
  const std::array<uint32_t, 4> x = philox4x32_10(counter, key);
  return (static_cast<uint64_t>(x[1]) << 32) | x[0];
}

double uniform(uint64_t seed, uint64_t row, uint64_t position) {
  return static_cast<double>(random_bits(seed, row, position) >> 11) * 0x1.0p-53;
}

uint64_t fresh_seed() {
  std::random_device device;
  const uint64_t high = device();
  return (high << 32) | static_cast<uint32_t>(device());
}

}  // namespace nuwa
