"""Every kind of bad input, table-driven, for the CLI (exit code 2, one line on stderr, no
traceback, nothing written) and the Python API (:class:`NuwaInputError` naming the problem);
the inputs used after a warning are test_input_warnings.py's. All on the tiny test model."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from nuwa.cli import main
from nuwa.runtime import Pipeline
from nuwa.runtime.limits import MAX_REQUEST_BYTES
from nuwa.runtime.media import write_image, write_video
from nuwa.runtime.pipeline import GenerationResult
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GENERATION_CONFIG_FILE
from nuwa.spec.manifest import MANIFEST_FILE, sha256_file


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, task_inputs) -> dict[str, Path]:
    """Good and bad input files, and a place outside every model directory."""
    d = tmp_path_factory.mktemp("inputs")
    write_image(d / "image.png", task_inputs["image"])
    write_video(d / "video.gif", task_inputs["video"])
    write_image(d / "sketch.png", task_inputs["sketch_rgb"][0])
    (d / "a_dir").mkdir()
    (d / "a_dir.png").mkdir()  # a directory named like a picture
    (d / "out_dir.gif").mkdir()
    (d / "cache_file").write_text("not a directory")
    return {"d": d}


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = keys.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _point_external_data_outside(model_dir: Path) -> None:
    """Point one tensor of decoder_step graph at ``../outside.bin``, with the manifest's SHA-256
    updated (so only the location is wrong)."""
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    for graph in manifest["graphs"].values():
        path = model_dir / graph["file"]
        model = onnx.load(str(path), load_external_data=False)
        external = [
            t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
        ]
        if external:
            for entry in external[0].external_data:
                if entry.key == "location":
                    entry.value = "../outside.bin"
            onnx.save(model, str(path))
            graph["sha256"] = sha256_file(path)
            (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
            return
    raise AssertionError("the tiny export has no external-data tensor to point outside")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_export_dir, tiny_model_dir):
    """Broken copies of the tiny export and checkpoint, one per way a model directory can be
    bad; ``export`` and ``checkpoint`` are the good ones."""
    root = tmp_path_factory.mktemp("models")
    (root / "outside.onnx").write_bytes((tiny_export_dir / "vq_encoder.onnx").read_bytes())
    (root / "outside.bin").write_bytes(b"\0" * 64)
    out = {"export": tiny_export_dir, "checkpoint": tiny_model_dir}

    def variant(name: str, source: Path, change: Callable[[Path], None]) -> None:
        path = root / name / "model"
        shutil.copytree(source, path)
        change(path)
        out[name] = path

    manifest = MANIFEST_FILE
    variant(
        "dotdot",
        tiny_export_dir,
        lambda p: _edit_json(p / manifest, _set("graphs.vq_encoder.file", "../../outside.onnx")),
    )
    variant(
        "absolute",
        tiny_export_dir,
        lambda p: _edit_json(
            p / manifest, _set("graphs.vq_encoder.file", str(root / "outside.onnx"))
        ),
    )
    variant(
        "weights_out",
        tiny_export_dir,
        lambda p: _edit_json(p / manifest, _set("external_data", {"../../outside.bin": "0"})),
    )

    def symlink_out(p: Path) -> None:
        (p / "vq_encoder.onnx").unlink()
        (p / "vq_encoder.onnx").symlink_to(root / "outside.onnx")

    variant("symlink", tiny_export_dir, symlink_out)
    variant("external_out", tiny_export_dir, _point_external_data_outside)
    variant(
        "manifest_type",
        tiny_export_dir,
        lambda p: _edit_json(p / manifest, _set("decoder.num_layers", "2")),
    )
    variant(
        "manifest_missing",
        tiny_export_dir,
        lambda p: _edit_json(p / manifest, _drop("decoder_steps")),
    )
    variant(
        "manifest_config",
        tiny_export_dir,
        lambda p: _edit_json(p / manifest, _set("config.transformer.grid_h", 4.5)),
    )
    variant("manifest_json", tiny_export_dir, lambda p: (p / manifest).write_text("{not json"))
    variant(
        "config_type",
        tiny_model_dir,
        lambda p: _edit_json(p / "config.json", _set("transformer.frames", "3")),
    )
    variant(
        "config_missing",
        tiny_model_dir,
        lambda p: _edit_json(p / "config.json", _drop("transformer")),
    )
    variant(
        "generation_type",
        tiny_export_dir,
        lambda p: (p / GENERATION_CONFIG_FILE).write_text('{"note": 5}'),
    )
    return out


# ---- the CLI -------------------------------------------------------------------------------


def cli(case: str, argv: str, message: str, model: str = "export", **env: str) -> tuple:
    """A row: ``argv`` split on spaces ({d}: the input files' folder), run with ``--model``
    ``models[model]`` and the environment ``env``; ``message``: a substring of the error."""
    return case, argv.split(" "), message, model, env


RECT_IMAGE = "--image {d}/image.png --mask"
CLI_CASES = [
    # prompts
    cli("prompt not UTF-8", "caf\udce9", "not valid UTF-8: byte 0xe9 at position 3"),
    # a directory given as a file, a file given as a directory
    cli("image is a dir", "--image {d}/a_dir --mask 0,0,8,8", "a_dir is a directory, not a file"),
    cli("image under a file", "--image {d}/image.png/x.png --mask 0,0,8,8", "image.png is a file,"),
    cli("video is a dir", "--video {d}/a_dir", "--video {d}/a_dir is a directory, not a file"),
    cli("sketch is a dir", "--sketch {d}/a_dir", "--sketch {d}/a_dir is a directory, not a file"),
    cli("mask is a dir", f"{RECT_IMAGE} {{d}}/a_dir.png", "--mask {d}/a_dir.png is a directory"),
    cli("output is a dir", "p -o {d}/out_dir.gif", "output {d}/out_dir.gif is a directory, not"),
    cli("output under a file", "p -o {d}/image.png/o.gif", "image.png is a file, not a directory"),
    cli("model is a file", "p --model {d}/image.png", "--model {d}/image.png is a file, not a"),
    cli("model under a file", "p --model {d}/image.png/m", "image.png is a file, not a directory"),
    # mask rectangles
    cli("rect wholly outside", f"{RECT_IMAGE} 20,20,30,30", "lies wholly outside the 16x16 input"),
    cli("rect negative outside", f"{RECT_IMAGE}=-9,-9,-1,-1", "lies wholly outside"),
    cli("rect empty", f"{RECT_IMAGE} 8,8,8,12", "mask rectangle 8,8,8,12 is empty"),
    # inputs that do not go together
    cli("mask alone", "p --mask 0,0,8,8", "--mask needs --image or --video"),
    cli("image and video", "--image {d}/image.png --video {d}/video.gif", "not both"),
    cli("prompt + video, no mask", "p --video {d}/video.gif", "(tv2v) add --mask REGION"),
    cli("prompt + image, no mask", "p --image {d}/image.png", "(ti2i) add --mask REGION"),
    cli("image, no mask", "--image {d}/image.png", "i2i (image completion) needs a mask"),
    # fps and sampling values
    cli("fps 0", "p --fps 0", "fps must be a finite number > 0, got 0"),
    cli("fps < 0", "p --fps -2", "fps must be a finite number > 0, got -2"),
    cli("fps nan", "p --fps nan", "fps must be a finite number > 0, got nan"),
    cli("fps inf", "p --fps inf", "fps must be a finite number > 0, got inf"),
    cli("temperature nan", "p --temperature nan", "temperature must be a finite number"),
    cli("temperature inf", "p --temperature inf", "temperature must be a finite number"),
    cli("top-p nan", "p --top-p nan", "top_p must be a finite number"),
    cli("guidance inf", "p --guidance-scale inf", "guidance_scale must be a finite number"),
    cli("guidance -inf", "p --guidance-scale=-inf", "guidance_scale must be a finite number"),
    # NUWA_CACHE_DIR (a checkpoint: the ONNX Runtime backend needs the cache)
    cli(
        "cache dir is a file",
        "p",
        "NUWA_CACHE_DIR={d}/cache_file is a file, not a directory",
        "checkpoint",
        NUWA_CACHE_DIR="{d}/cache_file",
    ),
    cli(
        "cache dir under a file",
        "p",
        "is under {d}/cache_file, which is a file",
        "checkpoint",
        NUWA_CACHE_DIR="{d}/cache_file/c",
    ),
    # a model directory is untrusted input
    cli("manifest ..", "p", "file '../../outside.onnx' leaves the model directory", "dotdot"),
    cli("manifest absolute", "p", "outside.onnx' is an absolute path", "absolute"),
    cli("weights ..", "p", "file '../../outside.bin' leaves the model directory", "weights_out"),
    cli("symlink out", "p", "outside the model directory", "symlink"),
    cli("external data out", "p", "location '../outside.bin' leaves the model", "external_out"),
    cli("manifest type", "p", "decoder.num_layers must be an integer, got str", "manifest_type"),
    cli("manifest field", "p", "required field decoder_steps is missing", "manifest_missing"),
    cli("manifest config", "p", "config: transformer.grid_h must be an integer", "manifest_config"),
    cli("manifest not JSON", "p", "manifest.json is not valid JSON", "manifest_json"),
    cli("config type", "p", "config.json: transformer.frames must be an integer", "config_type"),
    cli("config field", "p", "config.json: required field transformer is", "config_missing"),
    cli("generation config", "p", "generation_config.json: note must be a", "generation_type"),
    # resource limits
    cli("num-frames too many", "p --num-frames 10000000", "nuwa.runtime.limits.MAX_REQUEST_BYTES"),
    cli("batch too many", "p --batch 1000000", "with batch 1000000 needs about"),
]


@pytest.mark.parametrize(
    ("case", "argv", "message", "model", "env"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_cli_refuses_bad_input(
    case, argv, message, model, env, files, models, tmp_path, monkeypatch, capsys
) -> None:
    d = str(files["d"])
    argv = [a.replace("{d}", d) for a in argv]
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("{d}", d))
    if "--model" not in argv:
        argv += ["--model", str(models[model])]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / ("out.png" if "--image" in argv else "out.gif"))]
    rc = main(["generate", *argv, "--no-progress", "--seed", "0"])
    out, err = capsys.readouterr()
    assert rc == 2, (case, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nuwa generate: error:"), err
    assert "Traceback" not in err
    assert message.replace("{d}", d) in lines[0], lines[0]
    assert not list(tmp_path.glob("out*")), "no output on error"


def test_the_limit_is_named_with_what_fits(models, tmp_path, capsys) -> None:
    args = ["p", "--model", str(models["export"]), "-o", str(tmp_path / "a.gif")]
    assert main(["generate", *args, "--num-frames", "10000000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    limit = f"{MAX_REQUEST_BYTES / (1 << 30):.1f} GiB"
    assert f"a request may use {limit}" in err and "at most " in err and " frames at batch 1" in err


# ---- the Python API ------------------------------------------------------------------------

Call = Callable[[Pipeline, dict[str, Any]], object]
IMAGE = np.zeros((16, 16, 3), np.uint8)
VIDEO = np.zeros((2, 16, 16, 3), np.uint8)
RECT = (0, 0, 8, 8)


def call(task: str, *args: Any, **kw: Any) -> Call:
    """``pipe(task, *args, **kw)``; a ``Path`` argument relative to the input files' folder is
    given as ``"{d}/name"``."""

    def run(p: Pipeline, x: dict[str, Any]) -> object:
        def at(v: Any) -> Any:
            return x["d"] / v[4:] if isinstance(v, str) and v.startswith("{d}/") else v

        return p(task, *map(at, args), **{k: at(v) for k, v in kw.items()})

    return run


def t2i(**kw: Any) -> Call:
    return call("t2i", "a", **kw)


def i2i(mask: Any = RECT, **kw: Any) -> Call:
    return call("i2i", image=kw.pop("image", IMAGE), mask=mask, **kw)


def load(model: Any, **kw: Any) -> Call:
    """``Pipeline.from_pretrained`` of a ``models`` key (or any other value)."""

    def run(p: Pipeline, x: dict[str, Any]) -> object:
        path = x["models"].get(model, model) if isinstance(model, str) else model
        if isinstance(path, str) and path.startswith("{d}/"):
            path = x["d"] / path[4:]
        return Pipeline.from_pretrained(path, progress=False, **kw)

    return run


def save(method: str = "save_all", **kw: Any) -> Call:
    result = GenerationResult("t2v", np.zeros((1, 2, 16, 16, 3), np.uint8), np.zeros((1, 2, 4, 4)))
    return lambda p, x: getattr(result, method)(x["tmp"] / "a.gif", **kw)


def cache_dir(name: str) -> Call:
    def run(p: Pipeline, x: dict[str, Any]) -> object:
        x["monkeypatch"].setenv("NUWA_CACHE_DIR", str(x["d"] / name))
        return Pipeline.from_pretrained(x["models"]["checkpoint"], progress=False)

    return run


API_CASES: list[tuple[str, Call, str]] = [
    # prompts
    ("prompt int", call("t2i", 5), "prompt must be a string or a list of strings, got int"),
    ("prompt list item", call("t2i", ["a", 3]), "prompt[1] must be a string, got int"),
    ("prompt bytes", call("t2i", b"caf\xe9"), "not valid UTF-8: byte 0xe9 at position 3"),
    ("prompt surrogate", call("t2i", "a\ud800"), "lone surrogate U+D800 at position 1"),
    ("prompt escaped byte", call("t2i", "caf\udce9"), "not valid UTF-8: byte 0xe9"),
    ("edit prompt", call("ti2i", b"\xff", image=IMAGE, mask=RECT), "not valid UTF-8: byte 0xff"),
    # wrong Python types
    ("task int", call(3, "a"), "task must be a string"),
    ("top_k float", t2i(top_k=2.5), "top_k must be an int or None, got float 2.5"),
    ("top_k bool", t2i(top_k=True), "top_k must be an int or None, got bool"),
    ("seed str", t2i(seed="1"), "seed must be an int or None, got str '1'"),
    ("seed float", t2i(seed=1.0), "seed must be an int or None, got float"),
    ("num_frames float", call("t2v", "a", num_frames=2.0), "num_frames must be an int or None"),
    ("batch bool", t2i(batch=True), "batch must be an int, got bool"),
    ("batch str", t2i(batch="2"), "batch must be an int, got str"),
    ("temperature str", t2i(temperature="hot"), "temperature must be a number (or None), got str"),
    ("top_p bool", t2i(top_p=True), "top_p must be a number (or None), got bool"),
    ("image int", i2i(image=5), "image must be a NumPy array or a file path"),
    ("image list", i2i(image=[[0]]), "image must be a NumPy array or a file path (str or Path)"),
    ("sketch floats", call("s2i", sketch=np.zeros((16, 16))), "class ids must be integers"),
    ("mask list", i2i([0, 0, 8, 8]), "mask must be a bool array, a rectangle"),
    ("mask rect float", i2i((0, 0, 8.5, 8)), "a mask rectangle must be four ints"),
    ("callback", t2i(callback=5), "callback must be callable, got int"),
    ("progress str", t2i(progress="yes"), "progress must be True or False, got str"),
    ("stream_frames None", t2i(stream_frames=None), "stream_frames must be True or False"),
    ("model_dir int", load(5), "model_dir must be a str or Path (or None), got int"),
    ("backend None", load("export", backend=None), "backend must be a str, got NoneType"),
    ("save fps str", save(fps="4"), "fps must be a number, got str"),
    ("save index float", save("save", index=0.0), "index must be an int, got float"),
    ("save index past", save("save", index=1), "index 1 is past the result's 1 row(s)"),
    # non-finite numbers
    ("temperature nan", t2i(temperature=math.nan), "temperature must be a finite number, got nan"),
    ("temperature inf", t2i(temperature=math.inf), "temperature must be a finite number, got inf"),
    ("top_p nan", t2i(top_p=math.nan), "top_p must be a finite number"),
    ("guidance inf", t2i(guidance_scale=math.inf), "guidance_scale must be a finite number"),
    ("guidance np nan", t2i(guidance_scale=np.float32("nan")), "guidance_scale must be a finite"),
    ("save fps 0", save(fps=0), "fps must be a finite number > 0, got 0"),
    ("save fps nan", save(fps=math.nan), "fps must be a finite number > 0, got nan"),
    # a directory as a file, a file as a directory
    ("image is a dir", i2i(image="{d}/a_dir"), "image {d}/a_dir is a directory, not a file"),
    ("image under a file", i2i(image="{d}/image.png/x.png"), "image.png is a file, not a"),
    ("video is a dir", call("v2v", video="{d}/a_dir"), "video {d}/a_dir is a directory, not a"),
    ("sketch is a dir", call("s2i", sketch="{d}/a_dir"), "sketch {d}/a_dir is a directory"),
    ("mask is a dir", i2i("{d}/a_dir.png"), "mask {d}/a_dir.png is a directory, not a file"),
    ("model is a file", load("{d}/image.png"), "model directory {d}/image.png is a file, not a"),
    # mask rectangles
    ("rect outside", i2i((16, 0, 20, 8)), "rectangle 16,0,20,8 lies wholly outside the 16x16"),
    ("rect negative outside", i2i("-8,-8,0,4"), "rectangle -8,-8,0,4 lies wholly outside"),
    ("rect empty", i2i((8, 8, 4, 12)), "mask rectangle 8,8,4,12 is empty"),
    ("mask black", i2i(np.zeros((16, 16), bool)), "the mask selects nothing (no pixel is set)"),
    # inputs that do not go together
    ("mask without image", t2i(mask=RECT), "a mask was given without an image or a video"),
    (
        "image and video",
        call("tv2v", "a", image=IMAGE, video=VIDEO, mask=RECT),
        "an image and a video were given together",
    ),
    ("prompt + video", call("v2v", "a", video=VIDEO), "manipulation (tv2v) needs a mask"),
    (
        "tv2v, no mask",
        call("tv2v", "a", video=VIDEO),
        "tv2v (text-guided video manipulation) needs",
    ),
    (
        "sketch to t2v",
        call("t2v", "a", sketch=IMAGE[..., 0]),
        "t2v (text to video) takes no sketch",
    ),
    ("prompt to i2i", call("i2i", "a", image=IMAGE, mask=RECT), "i2i (image completion) takes no"),
    # resource limits
    ("num_frames too many", call("t2v", "a", num_frames=10**7), "limits.MAX_REQUEST_BYTES"),
    ("batch too many", t2i(batch=10**6), "with batch 1000000 needs about"),
    (
        "prompts x batch",
        call("t2i", ["a"] * 1000, batch=1000),
        "batch 1000 for each of 1000 prompts needs",
    ),
    # NUWA_CACHE_DIR
    ("cache dir file", cache_dir("cache_file"), "NUWA_CACHE_DIR={d}/cache_file is a file, not a"),
    # a model directory is untrusted input
    ("manifest ..", load("dotdot"), "leaves the model directory ('..')"),
    ("manifest absolute", load("absolute"), "is an absolute path"),
    ("weights ..", load("weights_out"), "external_data file '../../outside.bin'"),
    ("symlink out", load("symlink"), "(a symlink pointing out)"),
    ("external data out", load("external_out"), "external-data location '../outside.bin'"),
    ("manifest type", load("manifest_type"), "decoder.num_layers must be an integer"),
    ("manifest field", load("manifest_missing"), "required field decoder_steps is missing"),
    ("manifest config", load("manifest_config"), "config: transformer.grid_h must be an integer"),
    ("config type", load("config_type"), "config.json: transformer.frames must be an integer >= 1"),
    ("config field", load("config_missing"), "config.json: required field transformer is missing"),
    ("generation config", load("generation_type"), "generation_config.json: note must be a string"),
]


@pytest.fixture(scope="module")
def pipe(tiny_export_dir) -> Pipeline:
    return Pipeline.from_pretrained(tiny_export_dir, progress=False)


@pytest.mark.parametrize(("case", "call", "message"), API_CASES, ids=[c[0] for c in API_CASES])
def test_api_raises_nuwa_input_error(
    case, call, message, pipe, files, models, tmp_path, monkeypatch
) -> None:
    x = {"d": files["d"], "models": models, "tmp": tmp_path, "monkeypatch": monkeypatch}
    with pytest.raises(NuwaInputError) as info:
        call(pipe, x)
    text = str(info.value)
    assert "\n" not in text, text
    assert message.replace("{d}", str(files["d"])) in text, text
    assert not list(tmp_path.glob("a*")), "nothing written on error"
