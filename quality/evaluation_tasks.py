"""The tasks ``nuwa evaluate`` scores and the held-out stream it draws them from, apart from
:mod:`nuwa.quality.evaluation` (which needs PyTorch) so that the command-line parser and the
quantization gates share them without importing it."""

from __future__ import annotations

from nuwa.spec.tasks import TASK_CODES, TRAINED_TASK_CODES

ALL_TASKS = TASK_CODES  # the task table's upper-case codes (nuwa.spec.tasks)
DEFAULT_TASKS = TRAINED_TASK_CODES  # the tasks the model is trained on
EVAL_SEED = 1234  # held-out stream of the evaluation (any seed gives held-out captions)
