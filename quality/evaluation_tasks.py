"""The tasks ``nuwa evaluate`` scores and the held-out stream it draws them from, apart from
:mod:`nuwa.quality.evaluation` (which needs PyTorch) so that the command-line parser and the
quantization gates share them without importing it."""

from __future__ import annotations

ALL_TASKS = ("T2I", "T2V", "S2I", "S2V", "V2V", "I2I", "TI2I", "TV2V")
DEFAULT_TASKS = ("T2I", "T2V", "S2I", "S2V", "V2V")
EVAL_SEED = 1234  # held-out stream of the evaluation (any seed gives held-out captions)
