"""Every task end to end on the tiny model: the runtime's torch backend reproduces the PyTorch
reference loop, ONNX Runtime agrees with torch token for token under greedy decoding, and seeds
reproduce on each backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nuwa.runtime import Pipeline
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.model_directory import builtin_input_rules
from nuwa.runtime.sampler import SamplingOptions
from nuwa.runtime.task_request import check_task_request
from nuwa.runtime.tasks import TASKS, plan_task

GREEDY = {"temperature": 0.0}


def task_kwargs(task: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """One request per task; masks leave some tokens forced and some sampled."""
    return {
        "t2i": {"prompt": "a red square"},
        "t2v": {"prompt": "a red square moves left"},
        "s2i": {"sketch": inputs["sketch_rgb"][0]},
        "s2v": {"sketch": inputs["sketch_rgb"]},
        "i2i": {"image": inputs["image"], "mask": (8, 0, 16, 16)},
        "ti2i": {"prompt": "a blue circle", "image": inputs["image"], "mask": "0,4,12,12"},
        "v2v": {"video": inputs["video"][:1]},
        "tv2v": {"prompt": "the square in green", "video": inputs["video"], "mask": (0, 0, 8, 8)},
    }[task]


def test_the_eight_tasks_are_there() -> None:
    assert sorted(TASKS) == sorted(["t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v"])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_torch_and_onnxruntime_agree_token_for_token(
    task: str, torch_backend, ort_backend, task_inputs
) -> None:
    kw = task_kwargs(task, task_inputs)
    ref = Pipeline(torch_backend, progress=False)(task, **kw, **GREEDY, batch=2)
    out = Pipeline(ort_backend, progress=False)(task, **kw, **GREEDY, batch=2)
    assert ref.tokens.shape == out.tokens.shape
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    t = 1 if not TASKS[task].video else ref.tokens.shape[1]
    assert ref.frames.shape == (2, t, 16, 16, 3) and ref.frames.dtype == np.uint8
    # same codes -> the same pixels up to float rounding in the VQ decoder
    assert np.abs(out.frames.astype(int) - ref.frames.astype(int)).max() <= 1


@pytest.mark.parametrize("task", ["t2v", "s2v", "ti2i"])
def test_guidance_rows_agree_across_backends(task, torch_backend, ort_backend, task_inputs):
    kw = task_kwargs(task, task_inputs)
    ref = Pipeline(torch_backend, progress=False)(task, **kw, **GREEDY, guidance_scale=3.0)
    out = Pipeline(ort_backend, progress=False)(task, **kw, **GREEDY, guidance_scale=3.0)
    np.testing.assert_array_equal(out.tokens, ref.tokens)


def test_forced_tokens_are_kept(torch_backend, task_inputs) -> None:
    """Outside the mask the result holds the source's codes; v2v keeps the given frame."""
    pipe = Pipeline(torch_backend, progress=False)
    src = torch_backend.frames_to_codes(task_inputs["video"][None])  # (1, 3, 4, 4)
    edit = pipe("tv2v", "a green circle", video=task_inputs["video"], mask=(0, 0, 8, 8), seed=1)
    keep = np.ones((4, 4), dtype=bool)
    keep[:2, :2] = False  # the 8x8 pixel corner is the top-left 2x2 tokens
    assert (edit.tokens[0][:, keep] == src[0][:, keep]).all()
    pred = pipe("v2v", video=task_inputs["video"][:2], seed=1)
    np.testing.assert_array_equal(pred.tokens[0, :2], src[0, :2])


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 0.0, "guidance_scale": 2.5},
        {"temperature": 1.0, "top_k": 12, "top_p": 0.9, "guidance_scale": 2.5, "seed": 5},
    ],
    ids=["greedy", "sampled"],
)
def test_runtime_loop_matches_the_pytorch_reference(tiny_model, torch_backend, sampling) -> None:
    """Greedy and sampled (one generator: nuwa.spec.sampling_random), with guidance and forced
    tokens: nuwa.runtime.engine == nuwa.model.generate."""
    import torch

    from nuwa.model.generate import generate_tokens as reference
    from nuwa.model.sampling import SamplingOptions as RefOptions

    prompts = ["a red square moves left", "the digit 3 in blue moves down"]
    n = 3 * 16
    known = np.arange(2 * n, dtype=np.int64).reshape(2, n) % 32
    known_mask = np.zeros((2, n), dtype=bool)
    known_mask[:, :20] = True
    known_mask[1, 30:40] = True
    plan = plan_task(torch_backend, "t2v", prompt=prompts, guidance=True)
    ours = generate_tokens(
        torch_backend,
        plan.cond,
        3,
        SamplingOptions(**sampling),
        uncond=plan.uncond,
        known=known,
        known_mask=known_mask,
        progress=False,
    )

    def run_reference(options: dict) -> np.ndarray:
        return reference(
            tiny_model.transformer,
            tiny_model.text_condition(prompts),
            3,
            RefOptions(**options),
            uncond=tiny_model.text_condition(["", ""], allow_empty=True),
            known=torch.from_numpy(known),
            known_mask=torch.from_numpy(known_mask),
            progress=False,
        ).numpy()

    np.testing.assert_array_equal(ours, run_reference(sampling))
    if sampling["temperature"]:  # sampled, not the argmax
        assert not np.array_equal(ours, run_reference(dict(sampling, temperature=0.0)))


@pytest.mark.parametrize("backend", ["torch_backend", "ort_backend"])
def test_seeds_reproduce_on_each_backend(backend: str, request, task_inputs) -> None:
    pipe = Pipeline(request.getfixturevalue(backend), progress=False)
    kw = {"temperature": 1.0, "top_k": 8, "top_p": 0.9, "guidance_scale": 2.0}
    a = pipe("t2v", "a red square moves left", seed=7, batch=2, **kw)
    b = pipe("t2v", "a red square moves left", seed=7, batch=2, **kw)
    c = pipe("t2v", "a red square moves left", seed=8, batch=2, **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.tokens, c.tokens)
    assert not np.array_equal(a.tokens[0], a.tokens[1])  # batch rows draw their own samples


@pytest.mark.parametrize("backend", ["torch_backend", "ort_backend"])
def test_num_frames_beyond_the_trained_length_slides(backend: str, request) -> None:
    """9 frames from a 3-frame model: the first 3 frames are the non-sliding result."""
    pipe = Pipeline(request.getfixturevalue(backend), progress=False)
    long = pipe("t2v", "a red square moves left", num_frames=9, **GREEDY)
    short = pipe("t2v", "a red square moves left", **GREEDY)
    assert long.tokens.shape == (1, 9, 4, 4) and long.frames.shape == (1, 9, 16, 16, 3)
    np.testing.assert_array_equal(long.tokens[:, :3], short.tokens)


def test_a_shorter_video_than_trained_agrees(torch_backend, ort_backend, task_inputs) -> None:
    """2 of 3 trained frames (text and sketch): ORT picks the right step graph."""
    for task, kw in (
        ("t2v", {"prompt": "a red square"}),
        ("s2v", {"sketch": task_inputs["sketch_ids"]}),
    ):
        ref = Pipeline(torch_backend, progress=False)(task, **kw, num_frames=2, **GREEDY)
        out = Pipeline(ort_backend, progress=False)(task, **kw, num_frames=2, **GREEDY)
        assert ref.tokens.shape == (1, 2, 4, 4)
        np.testing.assert_array_equal(out.tokens, ref.tokens)


@pytest.mark.parametrize("backend", ["torch_backend", "ort_backend"])
@pytest.mark.parametrize("task", ["t2i", "s2v"])
def test_the_unconditional_condition_is_encoded_once_per_shape(
    backend: str, task: str, request, task_inputs, monkeypatch
) -> None:
    engine = request.getfixturevalue(backend)
    kind = TASKS[task].condition
    name = f"{kind}_condition"
    calls: list[tuple[int, ...]] = []
    encode = getattr(engine, name)
    monkeypatch.setattr(engine, name, lambda x: calls.append(x.shape) or encode(x))
    monkeypatch.setattr(engine, "_unconditions", {}, raising=False)  # none kept before
    kw = task_kwargs(task, task_inputs)
    first = plan_task(engine, task, **kw, guidance=True)
    assert len(calls) == 2  # the condition, then the unconditional one
    again = plan_task(engine, task, **kw, guidance=True)
    assert len(calls) == 3 and again.uncond is first.uncond  # only the condition again
    plan_task(engine, task, **kw, guidance=True, batch=2)  # another shape: encoded
    assert len(calls) == 5
    rules = builtin_input_rules(engine.spec)
    fresh = encode(check_task_request(engine.spec, rules, task, **kw, guidance=True).uncondition)
    for (k, v), (fk, fv) in zip(first.uncond.cross, fresh.cross, strict=True):
        np.testing.assert_array_equal(np.asarray(k), np.asarray(fk))
        np.testing.assert_array_equal(np.asarray(v), np.asarray(fv))
        if isinstance(k, np.ndarray):
            assert not k.flags.writeable and not v.flags.writeable  # shared: read-only
