"""The Python API: callbacks that stream finished frames, the progress bar switch, inputs from
files, and results saved as PNG / GIF / MP4 / contact sheet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.runtime import Pipeline, StepEvent
from nuwa.runtime.media import read_frames, write_image, write_video
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import (
    BUILTIN_SAMPLING,
    GENERATION_CONFIG_FILE,
    GenerationConfig,
)


@pytest.fixture(scope="module")
def pipe(torch_backend) -> Pipeline:
    return Pipeline(torch_backend, progress=False)


def test_from_pretrained_loads_a_checkpoint_on_torch(tiny_model_dir) -> None:
    p = Pipeline.from_pretrained(tiny_model_dir, backend="torch", progress=False)
    assert p.spec.name == "tiny" and "torch" in p.describe()
    out = p.text_to_image("a red square", seed=0)
    assert out.frames.shape == (1, 1, 16, 16, 3) and len(out.images) == 1


def test_from_pretrained_loads_an_export_on_onnxruntime(tiny_export_dir) -> None:
    p = Pipeline.from_pretrained(tiny_export_dir, backend="onnxruntime", progress=False)
    assert "onnxruntime" in p.describe() and p.backend.precision == "fp32"
    assert p.text_to_video("a red square moves left", seed=0).frames.shape == (1, 3, 16, 16, 3)


def test_sampling_defaults_come_from_the_generation_config_per_task(
    tiny_model_dir, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    GenerationConfig({"top_k": 8}, {"t2i": {"temperature": 0.0}, "v2v": {"top_p": 0.9}}).save(model)
    p = Pipeline.from_pretrained(model, backend="torch", progress=False)
    assert p.sampling_defaults("T2I") == {
        "temperature": 0.0,
        "top_k": 8,
        "top_p": None,
        "guidance_scale": BUILTIN_SAMPLING["guidance_scale"],
    }
    assert p.sampling_defaults("v2v")["guidance_scale"] == 1.0  # takes no guidance
    # a request without options runs the model's ones (greedy here); given ones override them
    implicit = p.text_to_image("a red square", seed=3, batch=2)
    explicit = p.text_to_image(
        "a red square", seed=4, batch=2, temperature=0.0, top_k=8, guidance_scale=2.0
    )
    assert np.array_equal(implicit.tokens, explicit.tokens)
    assert implicit.options.temperature == 0.0 and implicit.options.top_k == 8
    hot = p.text_to_image("a red square", seed=3, batch=2, temperature=1.0, top_k=0)
    assert hot.options.top_k is None and hot.options.temperature == 1.0
    with pytest.raises(NuwaInputError, match="takes no classifier-free guidance"):
        p("i2i", image=np.zeros((16, 16, 3), np.uint8), mask=(0, 0, 8, 8), guidance_scale=2.0)


def test_a_broken_generation_config_is_a_clear_error(tiny_model_dir, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / GENERATION_CONFIG_FILE).write_text('{"tasks": {"t2v": {"top_k": -1}}}')
    with pytest.raises(NuwaInputError, match=r"tasks\.t2v\.top_k must be an integer >= 1"):
        Pipeline.from_pretrained(model, backend="torch")


def test_export_and_quantize_carry_the_generation_config(tiny_model_dir, tmp_path: Path) -> None:
    from nuwa.calibration.quantize import quantize_export
    from nuwa.export.exporter import export_model

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = GenerationConfig({"temperature": 0.7}, {"s2v": {"top_k": 2}})
    config.save(model)
    export_model(model, tmp_path / "onnx", frames=[1], verify=False)
    assert GenerationConfig.load(tmp_path / "onnx") == config
    quantize_export(tmp_path / "onnx", tmp_path / "fp16", "fp16", gates=None)
    assert GenerationConfig.load(tmp_path / "fp16") == config
    p = Pipeline.from_pretrained(tmp_path / "fp16", backend="onnxruntime", progress=False)
    assert p.sampling_defaults("s2v")["top_k"] == 2


def test_callback_sees_every_position_and_streams_finished_frames(pipe) -> None:
    events: list[StepEvent] = []
    out = pipe.text_to_video(
        "a red square moves left", seed=1, batch=2, callback=events.append, stream_frames=True
    )
    assert [e.position for e in events] == list(range(48))
    assert all(e.total == 48 and e.tokens.shape == (2, e.position + 1) for e in events)
    finished = [e for e in events if e.frame is not None]
    assert [e.frame for e in finished] == [0, 1, 2]
    for e in finished:
        assert e.frame_pixels is not None and e.frame_pixels.shape == (2, 16, 16, 3)
        diff = np.abs(e.frame_pixels.astype(int) - out.frames[:, e.frame].astype(int))
        assert diff.max() <= 1  # the same codes through the VQ decoder, one frame at a time
    np.testing.assert_array_equal(events[-1].tokens.reshape(out.tokens.shape), out.tokens)


def test_callback_after_a_prefill_reports_the_given_frames_once(pipe, task_inputs) -> None:
    events: list[StepEvent] = []
    pipe.predict_video(task_inputs["video"][:2], seed=0, callback=events.append)
    assert events[0].position == 31 and events[0].frame == 1  # two given frames, one call
    assert [e.position for e in events[1:]] == list(range(32, 48))
    assert events[-1].frame == 2 and events[-1].frame_pixels is None  # not asked to stream


def test_progress_bar_can_be_turned_off(pipe, capsys) -> None:
    pipe.text_to_image("a red square", seed=0, progress=False)
    assert capsys.readouterr().err == ""
    pipe.text_to_image("a red square", seed=0, progress=True)
    assert "decoding" in capsys.readouterr().err


def test_results_save_as_png_gif_mp4_and_contact_sheet(pipe, tmp_path: Path) -> None:
    image = pipe.text_to_image("a red square", seed=0)
    png = image.save(tmp_path / "image.png")
    assert np.asarray(Image.open(png).convert("RGB")).shape == (16, 16, 3)
    video = pipe.text_to_video("a red square moves left", seed=0, batch=2)
    gif = read_frames(video.save(tmp_path / "v.gif", index=1))
    np.testing.assert_array_equal(gif, video.frames[1])  # GIF frames are lossless here
    mp4 = read_frames(video.save(tmp_path / "v.mp4"))
    assert mp4.shape[0] == 3 and mp4.shape[-1] == 3
    sheet = np.asarray(Image.open(video.save(tmp_path / "sheet.png")).convert("RGB"))
    np.testing.assert_array_equal(sheet, video.contact_sheet(0))
    written = video.save_all(tmp_path / "all.gif")
    assert [p.name for p in written] == [
        "all-0.gif",
        "all-0.sheet.png",
        "all-1.gif",
        "all-1.sheet.png",
    ]
    with pytest.raises(NuwaInputError, match="png"):
        image.save(tmp_path / "image.jpg")


def test_inputs_from_files(pipe, task_inputs, tmp_path: Path) -> None:
    """Sketch PNG/GIF in the palette, image PNG, mask PNG and GIF video give the same tokens as
    the arrays."""
    write_image(tmp_path / "sketch.png", task_inputs["sketch_rgb"][0])
    write_video(tmp_path / "sketch.gif", task_inputs["sketch_rgb"])
    write_image(tmp_path / "image.png", task_inputs["image"])
    write_video(tmp_path / "video.gif", task_inputs["video"])
    mask = np.zeros((16, 16, 3), dtype=np.uint8)
    mask[:, 8:] = 255
    write_image(tmp_path / "mask.png", mask)
    greedy = {"temperature": 0.0}
    pairs = [
        ("s2i", {"sketch": tmp_path / "sketch.png"}, {"sketch": task_inputs["sketch_ids"][0]}),
        ("s2v", {"sketch": str(tmp_path / "sketch.gif")}, {"sketch": task_inputs["sketch_ids"]}),
        (
            "i2i",
            {"image": tmp_path / "image.png", "mask": tmp_path / "mask.png"},
            {"image": task_inputs["image"], "mask": (8, 0, 16, 16)},
        ),
        (
            "v2v",
            {"video": tmp_path / "video.gif", "num_frames": 5},
            {"video": task_inputs["video"], "num_frames": 5},
        ),
    ]
    for task, files, arrays in pairs:
        a = pipe(task, **files, **greedy)
        b = pipe(task, **arrays, **greedy)
        np.testing.assert_array_equal(a.tokens, b.tokens, err_msg=task)


def test_a_single_sketch_holds_for_the_whole_clip(pipe, task_inputs) -> None:
    one = task_inputs["sketch_ids"][:1]
    a = pipe.sketch_to_video(one, temperature=0.0)
    b = pipe.sketch_to_video(np.repeat(one, 3, axis=0), temperature=0.0)
    assert a.tokens.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(a.tokens, b.tokens)
