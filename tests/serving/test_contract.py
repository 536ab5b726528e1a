"""The §12 contract through tritonclient, HTTP and gRPC: model names, tensor names, dtypes and
shapes; all eight tasks answered with frames; the seed that repeats a request; the frames a
lone request gets equal the Python API's; streaming sends each frame once, in order."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nuwa.runtime import Pipeline  # noqa: E402
from nuwa.serving.client import generate, stream  # noqa: E402
from nuwa.serving.contract import INPUTS, MODEL, OUTPUTS, STREAM_MODEL, STREAM_OUTPUTS  # noqa: E402
from nuwa.serving.shared_memory import REGION_BYTES  # noqa: E402

from .conftest import DEMO  # noqa: E402
from .serving_requests import SIZE, task_requests, values_of  # noqa: E402

TASKS = task_requests()


def _shape(dims: tuple[int, ...]) -> list[int]:
    return list(dims)


@pytest.mark.parametrize("model, outputs", [(MODEL, OUTPUTS), (STREAM_MODEL, STREAM_OUTPUTS)])
def test_metadata_names_dtypes_and_shapes(server, model, outputs) -> None:
    for meta in (
        server.http().get_model_metadata(model),
        server.grpc().get_model_metadata(model, as_json=True),
    ):
        assert meta["name"] == model
        got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]]
        assert got == [(t.name, t.triton_dtype, _shape(t.shape)) for t in INPUTS]
        got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]]
        assert got == [(t.name, t.triton_dtype, _shape(t.shape)) for t in outputs]
    config = server.http().get_model_config(model)
    assert config.get("model_transaction_policy", {}).get("decoupled", False) == (
        model == STREAM_MODEL
    )
    optional = {i["name"]: i.get("optional", False) for i in config["input"]}
    assert optional == {t.name: t.optional for t in INPUTS}


def test_health_and_readiness(server) -> None:
    for client in (server.http(), server.grpc()):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL) and client.is_model_ready(STREAM_MODEL)


def test_python_backend_regions_start_small(server) -> None:
    # each Python-backend instance's region in /dev/shm starts at 1 MiB, not PyTriton's 4 MiB
    # (the default server then fits Docker's 64 MiB /dev/shm: nuwa.serving.shared_memory)
    regions = list(Path("/dev/shm").glob(f"pytrtion{server.process.pid}-*"))
    sizes = sorted(r.stat().st_size for r in regions)
    instances = 4 + 4 + 1 + 1  # nuwa's (the fixture's rows 4 and queue 4, plus one), nuwa_stream's
    assert len(regions) == instances, sizes
    assert sizes[0] == REGION_BYTES and sizes[-1] < 4 * REGION_BYTES, sizes


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_is_answered_with_frames(server, task) -> None:
    request = TASKS[task]
    frames, seed = generate(server.http(), task, seed=11, **values_of(request))
    assert frames.dtype == np.uint8 and frames.shape == (request["frames"], SIZE, SIZE, 3)
    assert seed == 11 and frames.std() > 0  # a picture, not a blank


def test_seed_returned_repeats_the_request_over_grpc(server) -> None:
    client = server.grpc()
    first, seed = generate(client, "t2i", prompt="a yellow circle", temperature=1.0)
    again, seed_again = generate(
        client, "t2i", prompt="a yellow circle", temperature=1.0, seed=seed
    )
    assert seed_again == seed and np.array_equal(first, again)


def test_a_lone_request_equals_the_python_api(server) -> None:
    frames, _ = generate(
        server.http(), "t2v", prompt="a cyan circle moves up", num_frames=2, seed=5
    )
    pipe = Pipeline.from_pretrained(DEMO, progress=False)
    expected = pipe("t2v", "a cyan circle moves up", num_frames=2, seed=5).frames[0]
    assert np.array_equal(frames, expected)


@pytest.mark.parametrize("task", ["t2v", "v2v", "tv2v"])
def test_stream_sends_each_frame_once_in_order(server, task) -> None:
    values = {**values_of(TASKS[task]), "num_frames": 3, "seed": 3}
    if task in ("v2v", "tv2v"):  # v2v: two given frames, the first without an event of its own
        values["video"] = np.concatenate([values["video"], values["video"]])[
            : 3 if task == "tv2v" else 2
        ]
    client = server.grpc()
    got = list(stream(client, task, **values))
    assert [i for i, _ in got] == [0, 1, 2]
    whole, _ = generate(client, task, **values)
    assert np.array_equal(np.stack([f for _, f in got]), whole)  # the frames `nuwa` answers
