// The sampler's random numbers: Philox4x32-10 keyed by the request's seed, one counter per
// (row, position), as spec/sampling_random.py defines them (its docstring is the definition;
// tests/runtime_cpp/test_sampled_parity.py checks this file against it and against Random123's
// known answers). Free of ONNX Runtime and JSON: the tests compile it alone.
#pragma once

#include <array>
#include <cstdint>

namespace nuwa {

// Philox4x32-10 of counter words (c0, c1, c2, c3) and key words (k0, k1).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// The 64 random bits of `row`'s draw at raster `position` for `seed`: key (seed low, seed high),
// counter (position low, position high, row low, row high), bits = x1 << 32 | x0.
uint64_t random_bits(uint64_t seed, uint64_t row, uint64_t position);

// (random_bits >> 11) * 2^-53: the uniform in [0, 1) that picks row's token at position.
double uniform(uint64_t seed, uint64_t row, uint64_t position);

// A seed for a request that gives none: 64 bits of the operating system's entropy.
uint64_t fresh_seed();

}  // namespace nuwa
