"""The sampler's portable generator (nuwa.spec.sampling_random) against known answers: Random123's
Philox4x32-10 vectors, and uniforms worked out from them by the definition's word layout."""

from __future__ import annotations

from fractions import Fraction

from nuwa.spec.sampling_random import (
    RANDOM123_KNOWN_ANSWERS,
    philox4x32_10,
    random_bits,
    uniform,
)


def test_philox_gives_random123s_known_answers() -> None:
    for counter, key, want in RANDOM123_KNOWN_ANSWERS:
        assert philox4x32_10(counter, key) == want


def test_a_draws_inputs_map_to_philox_words_low_word_first() -> None:
    """(seed, row, position) -> key (seed lo, hi), counter (position lo, hi, row lo, hi); the
    bits are x1 << 32 | x0; the uniform is the top 53 bits over 2**53."""
    for counter, key, out in RANDOM123_KNOWN_ANSWERS:
        seed = key[0] | key[1] << 32
        position = counter[0] | counter[1] << 32
        row = counter[2] | counter[3] << 32
        bits = out[0] | out[1] << 32
        assert random_bits(seed, row, position) == bits
        assert Fraction(uniform(seed, row, position)) == Fraction(bits >> 11, 2**53)
    assert uniform(0, 0, 0) == 0xE169C58D6627E8D5 // 2**11 / 2**53  # about 0.8805


def test_uniforms_are_in_the_unit_interval_and_look_uniform() -> None:
    draws = [uniform(seed, row, pos) for seed in (0, 1) for row in range(4) for pos in range(500)]
    assert all(0.0 <= u < 1.0 for u in draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.02  # n = 4000: sd of the mean ~0.0046
    deciles = [sum(int(u * 10) == d for u in draws) for d in range(10)]
    assert min(deciles) > 330 and max(deciles) < 470  # 400 each expected, sd ~19
    assert len(set(draws)) == len(draws)  # every (seed, row, position) its own number
