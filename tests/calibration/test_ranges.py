"""Activation range observers: max |x| and the streaming-histogram percentile against NumPy on
the whole concatenated stream."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.calibration.ranges import AbsHistogram, RangeObserver


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    chunks=st.integers(1, 6),
    q=st.sampled_from([50.0, 90.0, 99.0, 99.9, 99.99, 100.0]),
    bins=st.sampled_from([64, 2048]),
)
def test_streaming_percentile_matches_numpy_on_the_whole_stream(
    seed: int, chunks: int, q: float, bins: int
) -> None:
    rng = np.random.default_rng(seed)
    # ranges that grow and shrink between batches, so the histogram has to re-bin
    stream = [
        rng.standard_normal(int(rng.integers(1, 3000))) * float(rng.uniform(0.1, 10.0))
        for _ in range(chunks)
    ]
    hist = AbsHistogram(bins)
    for x in stream:
        a = np.abs(x)
        hist.add(a, float(a.max()))
    everything = np.abs(np.concatenate(stream))
    hi = float(everything.max())
    assert hist.hi == pytest.approx(hi) and hist.total == everything.size
    # the smallest |x| with at least q % of the values <= it; the histogram answers with the
    # upper edge of that value's bin: one bin of resolution, plus half a bin of drift per re-bin
    reference = float(np.percentile(everything, q, method="inverted_cdf"))
    tolerance = (1 + 0.5 * chunks) * hi / bins + 1e-9
    assert abs(hist.percentile(q) - reference) <= tolerance


def test_percentile_clips_an_outlier_that_max_keeps() -> None:
    rng = np.random.default_rng(0)
    obs = RangeObserver(histogram=True)
    for _ in range(4):
        obs.observe("x", rng.standard_normal((64, 256)).astype(np.float32))
    obs.observe("x", np.array([[0.5, -1000.0]], dtype=np.float32))
    assert obs.ranges("max")["x"] == 1000.0
    clipped = obs.ranges("percentile", 99.9)["x"]
    assert 2.5 < clipped < 4.5  # |N(0,1)|'s 99.9th percentile is 3.29
    assert obs.ranges("percentile", 100.0)["x"] == pytest.approx(1000.0, rel=1e-3)


def test_zero_tensors_and_bad_arguments() -> None:
    obs = RangeObserver(histogram=True)
    obs.observe("z", np.zeros((3, 4), dtype=np.float32))
    assert obs.ranges("max") == {"z": 0.0} and obs.ranges("percentile") == {"z": 0.0}
    obs.observe("z", np.array([2.0], dtype=np.float32))  # grows from an all-zero histogram
    assert obs.ranges("percentile", 100.0)["z"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown calibration method"):
        obs.ranges("entropy")
    with pytest.raises(ValueError, match="histogram=True"):
        RangeObserver().ranges("percentile")
    with pytest.raises(ValueError, match="percentile must be"):
        AbsHistogram().percentile(0.0)
    with pytest.raises(ValueError, match="inf/NaN"):
        obs.observe("z", np.array([np.nan], dtype=np.float32))
