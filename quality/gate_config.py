"""What the quality gates check and how hard (:class:`GateConfig`), apart from the gates
themselves so that ``nuwa quantize``'s parser can take its defaults from here without importing
ONNX Runtime (:mod:`nuwa.quality.precision_gates` explains the gates and why the defaults are
what they are)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nuwa.calibration.task_samples import TASKS
from nuwa.quality.evaluation_tasks import EVAL_SEED


@dataclass(frozen=True)
class GateConfig:
    count: int = 32  # held-out samples per task
    seed: int = EVAL_SEED  # dataset seed and sampling seed
    tasks: tuple[str, ...] = TASKS
    min_token_agreement: float = 0.9
    tolerance_points: float = 2.0  # accuracy / IoU, percentage points
    tolerance_px: float = 1.0  # V2V position error, pixels
    # sampled generations per sample and side (seeds seed, seed+1, ...): 32 x 4 generations
    # make one changed generation 0.8 points, inside the 2-point tolerance (see gates' doc)
    streams: int = 4
    int8_kernels: str = "auto"  # how the candidate's INT8 layers run (runtime int8_cpu_kernels)

    def validate(self) -> None:
        from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import check_int8_kernels

        if self.count < 1:
            raise ValueError(f"--gate-count must be >= 1, got {self.count}")
        if self.streams < 1:
            raise ValueError(f"--gate-streams must be >= 1, got {self.streams}")
        check_int8_kernels(self.int8_kernels)
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown gate tasks {unknown}; choose from {TASKS}")

    @property
    def sample_points(self) -> float:
        """Percentage points one changed generation (one sample of one stream) moves an
        accuracy / IoU-like score by."""
        return 100.0 / (self.count * self.streams)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d
