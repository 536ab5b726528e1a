"""Teacher forcing through the runtime's decode loop (``task_samples.teacher_forced_logits``: the
engine with a :class:`TeacherForcing` token chooser) against the slow obvious loop beside it: one
``DecodeState.step`` per position, the reference's token fed next."""

from __future__ import annotations

import numpy as np
import pytest

from nuwa.calibration.task_samples import (
    TaskBatch,
    TeacherForcing,
    conditions,
    dataset_for,
    generate,
    make_batch,
    sampled_reference,
    teacher_forced_agreement,
    teacher_forced_logits,
)
from nuwa.runtime.backends import Backend
from nuwa.runtime.engine import DecodeState
from nuwa.runtime.sampler import SamplingOptions


def step_by_step_logits(
    backend: Backend, batch: TaskBatch, reference: np.ndarray, guidance_scale: float
) -> np.ndarray:
    """Every position stepped one by one (the given frames too), guided logits kept after
    V2V's given frames."""
    guided = guidance_scale != 1.0 and batch.task != "V2V"
    cond, uncond = conditions(backend, batch, guided)
    ref = reference.reshape(batch.size, -1)
    state = DecodeState(backend, cond, uncond, batch.frames)
    prev = np.full((batch.size,), backend.spec.bos_id, dtype=np.int64)
    start = batch.given * backend.spec.tokens_per_frame
    out = []
    for pos in range(ref.shape[1]):
        logits = state.step(prev, pos)
        if pos >= start:
            out.append(state.guided_logits(logits, guidance_scale if guided else 1.0))
        prev = ref[:, pos]
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("task", ["T2I", "S2V", "V2V"])
def test_teacher_forcing_through_the_engine_is_the_step_by_step_loop(ort_backend, task) -> None:
    spec = ort_backend.spec
    batch = make_batch(task, dataset_for(spec, 2, seed=0, split="heldout"), [0, 1], spec.frames)
    greedy = generate(ort_backend, batch, SamplingOptions(temperature=0.0, guidance_scale=2.0))
    fast = teacher_forced_logits(ort_backend, batch, greedy, 2.0)
    slow = step_by_step_logits(ort_backend, batch, greedy, 2.0)
    positions = batch.frames * spec.tokens_per_frame - batch.given * spec.tokens_per_frame
    assert fast.shape == slow.shape == (positions, 2, spec.image_vocab_size)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)
    # fed its own greedy output, a backend agrees with it at every position
    reference = sampled_reference(batch, greedy, ort_backend)
    assert teacher_forced_agreement(fast, reference) == 1.0
    wrong = (reference + 1) % spec.image_vocab_size  # and a wrong sequence does not (a tiny
    assert teacher_forced_agreement(fast, wrong) == 0.0  # model may repeat one token: no roll)


def test_teacher_forcing_returns_the_reference_and_keeps_the_logits() -> None:
    reference = np.array([[3, 1, 4], [1, 5, 9]])
    forcing = TeacherForcing(reference)
    logits = np.arange(8, dtype=np.float64).reshape(2, 4)
    for position in range(3):
        np.testing.assert_array_equal(forcing(position, logits + position), reference[:, position])
    assert forcing.logits.shape == (3, 2, 4) and forcing.logits.dtype == np.float32
    np.testing.assert_array_equal(forcing.logits[2], logits + 2)
