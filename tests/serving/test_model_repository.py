"""``nuwa serve --write-repository``: the model repository served by a standalone
``tritonserver`` (the PyTriton wheel's binary, through the written launcher): the same contract,
answers, streams, errors with Triton's codes (bad input: HTTP 400 / INVALID_ARG), and requests
reaching the one engine concurrently (a full engine answers at once)."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from nuwa.cli import main  # noqa: E402
from nuwa.serving.client import generate, stream  # noqa: E402
from nuwa.serving.contract import (  # noqa: E402
    ENGINE_URL_VARIABLE,
    INPUTS,
    MODEL,
    OUTPUTS,
    STREAM_MODEL,
)
from nuwa.serving.errors import error_line  # noqa: E402

from .conftest import DEMO, Call, Server, free_ports, start_process, stop_server  # noqa: E402


@pytest.fixture(scope="module")
def repository_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("repository")
    args = ["--model", str(DEMO), "--max-rows", "2", "--max-queue", "0", "--max-frames", "8"]
    assert main(["serve", "--write-repository", str(root), *args]) == 0
    ports = free_ports(3)
    command = [
        str(root / "run_tritonserver.sh"), "--http-port", str(ports[0]),
        "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
    ]  # fmt: skip
    s = start_process(command, ports, root / "tritonserver.log")
    yield s
    stop_server(s)


def test_the_repository_is_two_python_models(tmp_path: Path) -> None:
    args = ["--max-rows", "3", "--grpc-port", "9123"]
    assert main(["serve", "--write-repository", str(tmp_path), *args]) == 0
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [MODEL, STREAM_MODEL]
    stream_config = (tmp_path / "models" / STREAM_MODEL / "config.pbtxt").read_text()
    assert "decoupled: true" in stream_config and "count: 1 kind: KIND_CPU" in stream_config
    forward_config = (tmp_path / "models" / MODEL / "config.pbtxt").read_text()
    assert "decoupled" not in forward_config and "count: 12 kind: KIND_CPU" in forward_config
    assert 'key: "engine_url" value: { string_value: "127.0.0.1:9123" }' in forward_config


@pytest.mark.parametrize(
    ("args", "url"),
    [
        ([], "127.0.0.1:8001"),  # tritonserver's default
        (["--http-port", "1", "--grpc-port", "2345"], "127.0.0.1:2345"),
        (["--grpc-port=2345", "--grpc-address=10.0.0.7"], "10.0.0.7:2345"),
        (["--grpc-address", "0.0.0.0", "--grpc-port", "7"], "127.0.0.1:7"),
    ],
)
def test_the_launcher_tells_nuwa_its_servers_grpc_address(
    tmp_path: Path, args: list[str], url: str
) -> None:
    assert main(["serve", "--write-repository", str(tmp_path)]) == 0
    script = (tmp_path / "run_tritonserver.sh").read_text()
    probe = (
        script.rsplit("exec ", 1)[0] + f'echo "${ENGINE_URL_VARIABLE}"\n'
    )  # all but tritonserver
    got = subprocess.run(
        ["sh", "-c", probe, "sh", *args], capture_output=True, text=True, check=True
    )
    assert got.stdout.strip() == url


def test_same_contract_as_nuwa_serve(repository_server) -> None:
    meta = repository_server.http().get_model_metadata(MODEL)
    got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]]
    assert got == [(t.name, t.triton_dtype, list(t.shape)) for t in INPUTS]
    got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]]
    assert got == [(t.name, t.triton_dtype, list(t.shape)) for t in OUTPUTS]


def test_answers_seeds_and_streams(repository_server) -> None:
    client = repository_server.grpc()
    frames, seed = generate(client, "t2v", prompt="a red square moves left", num_frames=2)
    again, _ = generate(client, "t2v", prompt="a red square moves left", num_frames=2, seed=seed)
    assert frames.shape == (2, 64, 64, 3) and np.array_equal(frames, again)
    got = list(stream(client, "t2v", prompt="a red square moves left", num_frames=2, seed=seed))
    assert [i for i, _ in got] == [0, 1] and np.array_equal(np.stack([f for _, f in got]), frames)


def test_bad_input_is_http_400_with_the_one_line_message(repository_server) -> None:
    with pytest.raises(InferenceServerException) as raised:
        generate(repository_server.http(), "t2i", prompt="a red square", top_p=3.0)
    assert raised.value.status() == "400"
    assert error_line(raised.value.message()) == (
        "InvalidRequestError",
        "top-p must be in (0, 1], got 3.0",
    )
    assert raised.value.message().count("\n") == 0  # no traceback: the line alone


def test_requests_reach_the_one_engine_concurrently(repository_server) -> None:
    # A holds both rows (guidance) for about 2 s; B arrives meanwhile and is refused at once,
    # so B reached the engine while A ran in it
    a = Call(repository_server, "t2v", prompt="a red square moves left", num_frames=8, seed=1)
    a.start()
    time.sleep(0.5)
    asked = time.monotonic()
    with pytest.raises(InferenceServerException) as raised:
        generate(repository_server.http(), "t2i", prompt="a green square", seed=3)
    refused = time.monotonic()
    a.join(60)
    assert raised.value.status() == "503", raised.value.message()
    assert error_line(raised.value.message())[0] == "ServerBusyError"
    assert refused - asked < 1.0 and refused < a.ended and a.error is None
    assert repository_server.http().is_server_ready()


def test_a_stream_left_early_is_cancelled_in_the_engine(repository_server) -> None:
    # the client leaves after the first of 8 frames (about 2 s of work, both rows): Triton tells
    # the engine's model, which ends the request at its next check (16 tokens) and says so in
    # the server's log; the rows are free again for the next request
    frames = stream(
        repository_server.grpc(), "t2v", prompt="a red square moves left", num_frames=8, seed=4
    )
    index, _ = next(frames)
    frames.close()  # leaves the stream: stop_stream(cancel_requests=True)
    assert index == 0
    deadline = time.monotonic() + 30
    line = "nuwa_stream: cancelled by its client after "
    while line not in repository_server.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, repository_server.log_tail()
        time.sleep(0.1)
    text = repository_server.log.read_text(errors="replace")
    sent = int(text.split(line)[-1].split()[0])
    assert 1 <= sent < 8, sent
    got, _ = generate(repository_server.http(), "t2v", prompt="a red square", num_frames=2)
    assert got.shape[0] == 2
