"""The sampler's random numbers, defined once so that every implementation (the Python runtime,
the PyTorch reference, the C++ runtime ``runtime/cpp/token_sampler.cpp``, any other port) draws
the same numbers from the same seed.

Definition (enough to implement it in C, C++, Rust, ...):

1. The block function is **Philox4x32-10** (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
   as easy as 1, 2, 3", SC 2011; the Random123 library's ``philox4x32_10``). All arithmetic is on
   unsigned 32-bit words, wrapping. Input: a counter of four words ``(c0, c1, c2, c3)`` and a key
   of two words ``(k0, k1)``. Ten rounds; before every round but the first the key is bumped::

       k0 += 0x9E3779B9;  k1 += 0xBB67AE85                    (rounds 2..10)

   and one round is, with 64-bit products split into high and low words::

       p0 = 0xD2511F53 * c0            (hi0, lo0) = (p0 >> 32, p0 & 0xFFFFFFFF)
       p1 = 0xCD9E8D57 * c2            (hi1, lo1) = (p1 >> 32, p1 & 0xFFFFFFFF)
       (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

   The four words after the tenth round are the output ``(x0, x1, x2, x3)``. Known answers
   (Random123 ``tests/kat_vectors``) are in ``tests/spec/test_sampling_random.py``.
2. The inputs of one draw: the request's ``seed`` (an integer in ``[0, 2**64)``), the ``row``
   (the sample's index in the request's output, ``0 .. B-1``: prompt-major for several prompts,
   so each row has its own stream) and the raster ``position`` of the token being chosen
   (``0 .. num_frames*H*W - 1``; the same position numbers the decode loop feeds). The key is the
   seed, low word first: ``k0 = seed & 0xFFFFFFFF``, ``k1 = seed >> 32``; the counter is
   ``(position & 0xFFFFFFFF, position >> 32, row & 0xFFFFFFFF, row >> 32)``. A draw depends on
   nothing else (no state, no count of earlier draws): positions that are forced, or chosen
   greedily, use no numbers and shift nothing.
3. The uniform: ``bits = (x1 << 32) | x0`` (64 bits), ``u = (bits >> 11) * 2**-53``: a float64
   in ``[0, 1)``, exact (53 bits fit a double's mantissa).
4. ``seed`` not given: the seed is 64 bits of fresh operating-system entropy, drawn once per
   request (:func:`fresh_seed`; C++: two ``std::random_device`` words), so an unseeded request
   still has one stream for all its rows.

How the sampler uses ``u`` (the same rule in every decode loop): the row's probabilities
``p (V,)`` (temperature, top-k, top-p, softmax, in float64) give ``cdf = cumsum(p)``; the token
is the number of entries with ``cdf < u * cdf[-1]`` (the first index whose cdf reaches it),
capped at ``V - 1``. Implementations agree exactly on ``u``; on the token they agree unless
``u * cdf[-1]`` falls within rounding (about 1e-16) of a cdf step.

Plain Python (no NumPy, no torch).
"""

from __future__ import annotations

import secrets

SEED_LIMIT = 2**64  # seeds are 0 .. SEED_LIMIT - 1 (the two key words)
PHILOX_ROUNDS = 10
PHILOX_M0 = 0xD2511F53  # multiplier of counter word 0
PHILOX_M1 = 0xCD9E8D57  # multiplier of counter word 2
PHILOX_W0 = 0x9E3779B9  # key bump of word 0 (the golden ratio)
PHILOX_W1 = 0xBB67AE85  # key bump of word 1 (sqrt(3) - 1)
MASK32 = 0xFFFFFFFF
UNIFORM_SCALE = 2.0**-53  # one unit of the 53-bit uniform
# Random123's known answers for philox4x32 10 (its tests/kat_vectors), which every
# implementation checks: counter words, key words -> output words
RANDOM123_KNOWN_ANSWERS = (
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
)


def philox4x32_10(
    counter: tuple[int, int, int, int], key: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Philox4x32-10 of four 32-bit counter words and two 32-bit key words (module docstring)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(PHILOX_ROUNDS):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> 32) ^ c1 ^ k0,
            p1 & MASK32,
            (p0 >> 32) ^ c3 ^ k1,
            p0 & MASK32,
        )
    return c0, c1, c2, c3


def random_bits(seed: int, row: int, position: int) -> int:
    """The 64 random bits of ``row``'s draw at ``position`` for ``seed``."""
    key = (seed & MASK32, seed >> 32)
    counter = (position & MASK32, position >> 32, row & MASK32, row >> 32)
    x0, x1, _, _ = philox4x32_10(counter, key)
    return (x1 << 32) | x0


def uniform(seed: int, row: int, position: int) -> float:
    """The uniform in ``[0, 1)`` that picks ``row``'s token at ``position`` for ``seed``."""
    return (random_bits(seed, row, position) >> 11) * UNIFORM_SCALE


def fresh_seed() -> int:
    """A seed for a request that gives none: 64 bits of operating-system entropy."""
    return secrets.randbits(64)
