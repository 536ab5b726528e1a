"""Bad requests get an error carrying the runtime's one-line message (the CLI's): from ``nuwa``
that line alone with HTTP 400 / gRPC INVALID_ARGUMENT; from ``nuwa_stream`` (PyTriton answers a
model's error with its traceback, INTERNAL) the traceback ending in it. The server stays up."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from nuwa.runtime.request_checks import task_info  # noqa: E402
from nuwa.serving.client import generate, stream  # noqa: E402
from nuwa.serving.errors import error_line  # noqa: E402
from nuwa.spec.errors import NuwaInputError  # noqa: E402
from nuwa.spec.sampling import SamplingOptions  # noqa: E402

from .serving_requests import pictures  # noqa: E402


def runtime_message(call) -> str:
    with pytest.raises(NuwaInputError) as raised:
        call()
    return str(raised.value)


BAD = [
    ("t9i", {}, lambda: runtime_message(lambda: task_info("t9i"))),
    ("t2i", {"prompt": "a red square", "top_p": 3.0},
     lambda: runtime_message(lambda: SamplingOptions(top_p=3.0).validate())),
    ("i2i", {"image": pictures(1)[0]}, None),  # the mask is missing
    ("v2v", {"video": pictures(2), "num_frames": 2}, None),  # nothing left to predict
    ("t2v", {"prompt": "a red square", "num_frames": 9}, None),  # past --max-frames 8
    ("t2i", {"prompt": "a red square", "seed": -1}, None),
    ("t2i", {"prompt": "a red square", "image": pictures(1)[0]}, None),  # t2i takes no image
]  # fmt: skip
HINTS = ["unknown task", "top-p", "mask", "num-frames", "at most 8", "seed", "image"]


@pytest.mark.parametrize("case", range(len(BAD)))
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_input_gets_the_one_line_message(server, case, protocol) -> None:
    task, values, expected = BAD[case]
    client = server.http() if protocol == "http" else server.grpc()
    with pytest.raises(InferenceServerException) as raised:
        generate(client, task, **values)
    text = str(raised.value.message())
    found = error_line(text)
    assert found is not None, text
    kind, message = found
    assert kind == "InvalidRequestError" and text == f"nuwa.serving.errors.{kind}: {message}"
    status = str(raised.value.status())
    assert status == ("400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"), status
    assert HINTS[case] in message, message
    if expected is not None:
        assert message == expected()


def test_a_bad_stream_gets_its_message_and_no_frames(server) -> None:
    got = []
    with pytest.raises(InferenceServerException) as raised:
        for item in stream(server.grpc(), "t2v", prompt="a red square", temperature=-1.0):
            got.append(item)
    assert got == []
    assert error_line(str(raised.value.message())) == (
        "InvalidRequestError",
        runtime_message(lambda: SamplingOptions(temperature=-1.0).validate()),
    )


def test_wrong_dtype_or_rank_is_refused_by_triton(server) -> None:
    """Triton checks dtypes and ranks against the model's config before the model sees them."""
    import tritonclient.http as httpclient

    client = server.http()
    task = httpclient.InferInput("task", [1], "BYTES")
    task.set_data_from_numpy(np.array([b"t2i"], dtype=np.object_))
    seed = httpclient.InferInput("seed", [1], "FP32")
    seed.set_data_from_numpy(np.array([1.5], dtype=np.float32))
    with pytest.raises(InferenceServerException, match="seed"):
        client.infer("nuwa", [task, seed])
    assert client.is_server_ready()
