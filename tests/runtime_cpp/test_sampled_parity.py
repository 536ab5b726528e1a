"""Sampled decoding in C++ equals the Python runtime's: the same random numbers
(``spec/sampling_random.py``: Philox4x32-10, Random123's known answers) and the same rules
(``runtime/sampler.py``: temperature, top-k with ties, top-p, float64 softmax, inverse cdf).

- the generator and the sampler alone: ``runtime/cpp/sampling_random.cpp`` and
  ``token_sampler.cpp`` compiled with a small driver (``sampler_driver.cpp``, no ONNX Runtime),
  against the spec's known answers and the Python sampler on random logits (hypothesis);
- through the C API: every task of the tiny export, sampled with a seed (guidance, top-k, top-p,
  the model's defaults), gives the Python runtime's tokens and frames; a seed twice gives the
  same video; the demo export for some tasks (slow).

Float note: the implementations agree exactly on the uniforms; a token could differ only where a
draw falls within rounding (~1e-16) of a step of the cdf, which these cases never meet."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.runtime import Pipeline
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.sampler import Sampler, SamplingOptions
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.sampling_random import (
    RANDOM123_KNOWN_ANSWERS,
    philox4x32_10,
    random_bits,
    uniform,
)

from . import capi
from .conftest import unavailable
from .test_capi_tasks import DEMO_EXPORT, demo_inputs, python_pipeline

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = ROOT / "runtime" / "cpp"
DRIVER_SOURCE = Path(__file__).with_name("sampler_driver.cpp")


class SamplerDriver:
    """The compiled driver, one request a line."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def philox(self, counter: tuple[int, ...], key: tuple[int, ...]) -> tuple[int, ...]:
        words = " ".join(f"{w:x}" for w in (*counter, *key))
        return tuple(int(w, 16) for w in self.ask(f"philox {words}").split())

    def uniform(self, seed: int, row: int, position: int) -> tuple[int, float]:
        bits, u = self.ask(f"uniform {seed} {row} {position}").split()
        return int(bits, 16), float.fromhex(u)

    def choose(
        self, options: SamplingOptions, seed: int, row: int, position: int, logits: np.ndarray
    ) -> int:
        values = " ".join(float(v).hex() for v in logits.astype(np.float32))
        top_p = 1.0 if options.top_p is None else options.top_p
        line = (
            f"choose {float(options.temperature).hex()} {options.top_k or 0} {top_p.hex()} "
            f"{seed} {row} {position} {logits.size} {values}"
        )
        return int(self.ask(line))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("c++") is None:
        unavailable("a C++ compiler (c++) is needed")
    binary = tmp_path_factory.mktemp("sampler_driver") / "sampler_driver"
    sources = [
        DRIVER_SOURCE,
        *(RUNTIME_DIR / f for f in ("sampling_random.cpp", "token_sampler.cpp")),
    ]
    command = ["c++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
    command += [f"-I{RUNTIME_DIR}", *map(str, sources), "-o", str(binary)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    process = SamplerDriver(binary)
    yield process
    process.close()


def test_generator_gives_random123s_known_answers(driver: SamplerDriver) -> None:
    for counter, key, want in RANDOM123_KNOWN_ANSWERS:
        assert philox4x32_10(counter, key) == want
        assert driver.philox(counter, key) == want


def test_uniforms_equal_the_spec(driver: SamplerDriver) -> None:
    rng = np.random.default_rng(0)
    cases = [(0, 0, 0), (2**64 - 1, 2**64 - 1, 2**64 - 1), (1, 2, 3)]
    cases += [tuple(int(v) for v in rng.integers(0, 2**63, 3)) for _ in range(200)]
    cases += [(int(s), int(r), int(p)) for s, r, p in rng.integers(0, 64, (50, 3))]
    for seed, row, position in cases:
        bits = random_bits(seed, row, position)
        assert driver.uniform(seed, row, position) == (bits, uniform(seed, row, position))


logit_rows = st.one_of(
    st.lists(st.floats(-8, 8, width=32), min_size=2, max_size=40),
    st.lists(st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]), min_size=2, max_size=40),  # ties
)


@settings(max_examples=150, deadline=None)
@given(
    row_values=st.lists(logit_rows, min_size=1, max_size=3),
    temperature=st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.5]),
    top_k=st.one_of(st.none(), st.integers(1, 42)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    seed=st.integers(0, 2**64 - 1),
    position=st.integers(0, 2**40),
)
def test_cpp_sampler_chooses_the_python_samplers_tokens(
    driver: SamplerDriver, row_values, temperature, top_k, top_p, seed, position
) -> None:
    vocab = len(row_values[0])
    logits = np.array([(r * vocab)[:vocab] for r in row_values], dtype=np.float32)
    options = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    want = Sampler(options)(logits, position)
    got = [driver.choose(options, seed, b, position, logits[b]) for b in range(len(logits))]
    assert got == want.tolist()


def sampled_call(task: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """A sampled request of every task on the tiny export (16x16 pixels, 3 trained frames)."""
    image, video, sketch = inputs["image"], inputs["video"], inputs["sketch_rgb"]
    return {
        "t2i": {"task": "t2i", "prompt": ["a red square", "two blue circles"], "batch": 2,
                "temperature": 1.0, "top_k": 8, "guidance_scale": 2.0},
        "s2i": {"task": "s2i", "sketch": sketch[0], "temperature": 0.8, "top_p": 0.9,
                "guidance_scale": 1.5},
        "i2i": {"task": "i2i", "image": image, "mask": (0, 8, 16, 16), "batch": 2,
                "temperature": 1.2},
        "ti2i": {"task": "ti2i", "prompt": "a red square", "image": image, "mask": (4, 4, 12, 12),
                 "temperature": 0.7, "top_k": 5, "top_p": 0.8, "guidance_scale": 2.0},
        "t2v": {"task": "t2v", "prompt": "a ball moves left", "num_frames": 4},  # defaults, ring
        "s2v": {"task": "s2v", "sketch": sketch, "temperature": 1.0, "top_p": 0.5,
                "guidance_scale": 2.5},
        "v2v": {"task": "v2v", "video": video[:1], "num_frames": 3, "temperature": 0.9,
                "top_k": 3},
        "tv2v": {"task": "tv2v", "prompt": "a ball", "video": video, "mask": (8, 0, 16, 16),
                 "temperature": 1.0, "top_p": 0.95, "guidance_scale": 2.0},
    }[task]  # fmt: skip


def c_generate(
    lib: ctypes.CDLL, model: ctypes.c_void_p, call: dict[str, Any], seed: int | None
) -> capi.CResult:
    request, _keep = capi.request_for_call(lib, call, call.get("temperature"), seed)
    return capi.generate(lib, model, request)


def check_sampled_parity(
    lib: ctypes.CDLL, model: ctypes.c_void_p, pipe: Pipeline, call: dict[str, Any], seed: int
) -> np.ndarray:
    got = c_generate(lib, model, call, seed)
    want = pipe(**call, seed=seed)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.frames, want.frames)
    return got.tokens


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_export_dir: Path) -> Pipeline:
    return python_pipeline(tiny_export_dir)


TASKS = ["t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v"]


@pytest.mark.parametrize("task", TASKS)
def test_tiny_sampled_equals_python(lib, tiny_c_model, tiny_pipeline, task_inputs, task) -> None:
    call = sampled_call(task, task_inputs)
    tokens = check_sampled_parity(lib, tiny_c_model, tiny_pipeline, call, seed=11)
    greedy = tiny_pipeline(**call | {"temperature": 0.0}).tokens
    assert not np.array_equal(tokens, greedy)  # sampled, not the argmax
    other = c_generate(lib, tiny_c_model, call, seed=12).tokens
    assert not np.array_equal(tokens, other)  # another seed, another stream


def test_model_defaults_that_sample_give_pythons_tokens(
    lib, tiny_export_dir: Path, tmp_path: Path, task_inputs
) -> None:
    """Options left unset: the directory's generation_config.json, sampling (temperature > 0),
    per-task overrides included."""
    export = tmp_path / "export"
    shutil.copytree(tiny_export_dir, export)
    config = {
        "defaults": {"temperature": 0.9, "top_k": 6, "guidance_scale": 1.5},
        "tasks": {"s2v": {"top_k": None, "top_p": 0.7}},
    }
    (export / "generation_config.json").write_text(json.dumps(config))
    backend = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1)
    pipe = Pipeline(backend, progress=False, generation_config=GenerationConfig.load(export))
    model = capi.open_model(lib, export, threads=1)
    try:
        for call in (
            {"task": "t2v", "prompt": "a ball", "num_frames": 2},
            {"task": "s2v", "sketch": task_inputs["sketch_ids"][:2]},
        ):
            assert pipe.sampling_defaults(call["task"])["temperature"] == 0.9
            check_sampled_parity(lib, model, pipe, call, seed=3)
    finally:
        lib.nuwa_close(model)


def test_a_seed_repeats_and_no_seed_draws_fresh(lib, tiny_c_model, task_inputs) -> None:
    call = sampled_call("t2v", task_inputs)
    first = c_generate(lib, tiny_c_model, call, seed=2**64 - 1)
    again = c_generate(lib, tiny_c_model, call, seed=2**64 - 1)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    np.testing.assert_array_equal(first.frames, again.frames)
    unseeded = [c_generate(lib, tiny_c_model, call, seed=None).tokens for _ in range(2)]
    assert not np.array_equal(unseeded[0], unseeded[1])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["t2i", "s2v", "tv2v"])
def test_demo_sampled_equals_python(lib, task: str) -> None:
    inputs = demo_inputs()
    call = {
        "t2i": {"task": "t2i", "prompt": "a red square"},  # the model's defaults
        "s2v": {"task": "s2v", "sketch": inputs["sketch"], "num_frames": 2, "temperature": 0.8,
                "top_p": 0.9, "guidance_scale": 2.0},
        "tv2v": {"task": "tv2v", "prompt": "a green circle", "video": inputs["video"][:3],
                 "mask": (32, 0, 64, 64), "temperature": 1.0, "top_k": 32},
    }[task]  # fmt: skip
    model = capi.open_model(lib, DEMO_EXPORT, threads=1)
    try:
        check_sampled_parity(lib, model, python_pipeline(DEMO_EXPORT), call, seed=7)
    finally:
        lib.nuwa_close(model)
