"""Activation ranges for INT8 calibration: expose the tensors that will get Q/DQ as extra graph
outputs, run the float graph on real inputs, and keep per tensor the running max |x| and, for
percentile calibration, a histogram of |x|.

:class:`RangeObserver` is fed by the calibration capture (``nuwa.calibration.capture``), which
runs the augmented graphs along real generations, so nothing has to be stored between steps.

Methods (``RangeObserver.ranges``):

- ``max``: the largest |x| seen (no clipping; one outlier widens the whole tensor's step);
- ``percentile``: the |x| below which ``percentile`` % of all observed values fall, read from a
  streaming histogram (the scheme of TensorRT's and pytorch-quantization's histogram
  calibrators): values above it saturate, everything below gets a finer step.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper


def with_extra_outputs(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``tensors`` (float32, shape left open)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for name in tensors:
        if name not in have:
            info = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            out.graph.output.append(info)
            have.add(name)
    return out


CALIBRATION_METHODS = ("max", "percentile")
HISTOGRAM_BINS = 2048


class AbsHistogram:
    """A streaming histogram of |x| over ``[0, hi]`` with a fixed number of bins; when a batch
    exceeds ``hi`` the range grows to the new max and the old counts move to the new bins by
    their bin centres (so a bin's counts may shift by at most half an old bin)."""

    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        if bins < 2:
            raise ValueError(f"a histogram needs >= 2 bins, got {bins}")
        self.counts = np.zeros(bins, dtype=np.float64)
        self.hi = 0.0

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def add(self, abs_values: np.ndarray, amax: float) -> None:
        bins = self.counts.size
        if amax > self.hi:
            if self.hi > 0.0:
                centres = (np.arange(bins) + 0.5) * (self.hi / bins)
                self.counts, _ = np.histogram(
                    centres, bins=bins, range=(0.0, amax), weights=self.counts
                )
                self.counts = self.counts.astype(np.float64)
            self.hi = amax
        if self.hi == 0.0:  # all zeros so far: they sit in the first bin
            self.counts[0] += abs_values.size
            return
        counts, _ = np.histogram(abs_values, bins=bins, range=(0.0, self.hi))
        self.counts += counts

    def percentile(self, q: float) -> float:
        """The upper edge of the bin where the share of values <= it first reaches ``q`` %."""
        if not 0.0 < q <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {q}")
        total = self.total
        if total == 0.0 or self.hi == 0.0:
            return 0.0
        cdf = np.cumsum(self.counts) / total
        idx = int(np.searchsorted(cdf, q / 100.0 - 1e-12))
        idx = min(idx, self.counts.size - 1)
        return float((idx + 1) * self.hi / self.counts.size)


class RangeObserver:
    """Running max |x| per tensor over every batch it is shown, and with ``histogram=True`` a
    histogram of |x| per tensor for percentile calibration."""

    def __init__(self, histogram: bool = False, bins: int = HISTOGRAM_BINS) -> None:
        self.amax: dict[str, float] = {}
        self.batches: dict[str, int] = {}
        self.histograms: dict[str, AbsHistogram] | None = {} if histogram else None
        self.bins = bins

    def observe(self, name: str, value: np.ndarray) -> None:
        if value.size == 0:
            return
        a = np.abs(np.asarray(value, dtype=np.float32))
        m = float(np.max(a))
        if not np.isfinite(m):
            raise ValueError(f"calibration tensor {name!r} holds inf/NaN")
        self.amax[name] = max(self.amax.get(name, 0.0), m)
        self.batches[name] = self.batches.get(name, 0) + 1
        if self.histograms is not None:
            self.histograms.setdefault(name, AbsHistogram(self.bins)).add(a.ravel(), m)

    def observe_all(self, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            self.observe(name, value)

    def ranges(self, method: str = "max", percentile: float = 99.99) -> dict[str, float]:
        """The calibrated |x| range per tensor (see the module docstring for the methods)."""
        if method == "max":
            return dict(self.amax)
        if method != "percentile":
            raise ValueError(f"unknown calibration method {method!r}; choose {CALIBRATION_METHODS}")
        if self.histograms is None:
            raise ValueError("percentile ranges need an observer made with histogram=True")
        return {
            name: min(self.amax[name], self.histograms[name].percentile(percentile))
            for name in self.amax
        }
