"""The ONNX Runtime backend: the IO-binding path (device-resident, double-buffered ring cache)
against plain ``session.run``, both against PyTorch's logits; no torch on this path; clear errors
for devices and precisions this machine or export does not have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from nuwa.export import load_manifest
from nuwa.runtime.backends import load_backend
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime.request_state import BoundRequestState, to_host
from nuwa.runtime.backends.onnxruntime.sessions import scatters_cache_once
from nuwa.runtime.engine import DecodeState
from nuwa.runtime.export_cache import (
    BUNDLED_EXPORT_DIR,
    BUNDLED_EXPORT_DIRS,
    bundled_export,
    ensure_export,
    export_dir_for,
    quality_gates_passed,
)
from nuwa.runtime.kv_cache import RingCache
from nuwa.runtime.pipeline import default_model_dir
from nuwa.runtime.tasks import plan_task
from nuwa.spec.errors import BackendUnavailableError

DEMO = default_model_dir()


def step_logits(backend, task: str, steps: int, **kw) -> list[np.ndarray]:
    """Logits of ``steps`` greedy steps (a wrapped ring: steps > cache slots)."""
    plan = plan_task(backend, task, guidance=True, **kw)  # 2 rows + 2 guidance rows
    state = DecodeState(backend, plan.cond, plan.uncond, 3 * backend.spec.frames)
    prev = np.full((2,), backend.spec.bos_id, dtype=np.int64)
    out = []
    for pos in range(steps):
        logits = state.step(prev, pos)
        out.append(logits)
        prev = logits[:2].argmax(-1)
    return out


@pytest.mark.parametrize("in_place", [True, False], ids=["cache-in-place", "ping-pong"])
@pytest.mark.parametrize(
    ("task", "kw"), [("t2v", {"prompt": ["a red square", "a blue circle"]}), ("s2v", {})]
)
def test_io_binding_matches_plain_run_and_torch(
    task, kw, in_place, tiny_export_dir, torch_backend, ort_backend, task_inputs
) -> None:
    if task == "s2v":
        kw = {"sketch": task_inputs["sketch_ids"], "batch": 2}
    plain = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, threads=1, io_binding=False)
    steps = 3 * 16 + 20  # past the 32-slot ring: it has wrapped
    backend = ort_backend
    assert ort_backend.cache_in_place  # the CPU default for the exported step graphs
    if not in_place:
        backend = OnnxRuntimeBackend(ort_backend.manifest, threads=1, cache_in_place=False)
        assert not backend.cache_in_place  # the double-buffered binding
    bound = step_logits(backend, task, steps, **kw)
    ref = step_logits(plain, task, steps, **kw)
    torch_logits = step_logits(torch_backend, task, steps, **kw)
    for a, b, t in zip(bound, ref, torch_logits, strict=True):
        assert a.shape == (4, 32)  # 2 rows + 2 guidance rows
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, t, atol=1e-4, rtol=0)


@pytest.mark.parametrize("io_binding", [True, False], ids=["io-binding", "session-run"])
def test_prefill_of_whole_frames_equals_stepping_through_them(
    tiny_export_dir, ort_backend, io_binding
) -> None:
    """``decoder_prefill`` (one call) leaves the cache as the steps would, and decoding after
    it gives the same logits; guidance rows included."""
    backend = (
        ort_backend if io_binding else OnnxRuntimeBackend(ort_backend.manifest, io_binding=False)
    )
    plan = plan_task(backend, "t2v", guidance=True, prompt=["a red square", "a blue circle"])
    hw = backend.spec.tokens_per_frame
    rng = np.random.default_rng(3)
    known = rng.integers(0, backend.spec.image_vocab_size, (2, 3 * hw))
    states = [DecodeState(backend, plan.cond, plan.uncond, 3) for _ in range(2)]
    stepped, prefilled = states
    prev = np.full((2,), backend.spec.bos_id, dtype=np.int64)
    for pos in range(2 * hw):
        stepped.step(prev, pos)
        prev = known[:, pos]
    assert prefilled.prefill_frames(known, 2 * hw + 3) == 2 * hw  # whole frames only
    assert prefilled.steps == 1
    host = [s.request.cache.host_layers(to_host) for s in (stepped, prefilled)]
    for (ka, va), (kb, vb) in zip(*host, strict=True):
        np.testing.assert_allclose(kb, ka, atol=1e-5, rtol=0)
        np.testing.assert_allclose(vb, va, atol=1e-5, rtol=0)
    for pos in range(2 * hw, 2 * hw + 5):
        a, b = stepped.step(prev, pos), prefilled.step(prev, pos)
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
        prev = known[:, pos]


def test_ring_cache_buffers_are_fixed_and_swap(ort_backend) -> None:
    plan = plan_task(ort_backend, "t2i", prompt="a red square")
    state = DecodeState(ort_backend, plan.cond, None, 9)
    assert isinstance(state.request, BoundRequestState)
    cache = state.request.cache
    assert cache.in_place  # one set: past is present
    buffers = [id(v) for v in cache.buffers[0] + cache.buffers[1]]
    prev = np.array([ort_backend.spec.bos_id])
    for pos in range(40):
        prev = state.step(prev, pos).argmax(-1)
        assert state.request.cache is cache and cache.current == (pos + 1) % 2
    assert [id(v) for v in cache.buffers[0] + cache.buffers[1]] == buffers
    (k0, _), _ = cache.host_layers(to_host)
    assert k0.shape == (1, 4, 32, 8) and np.abs(k0).sum() > 0
    plain = OnnxRuntimeBackend(ort_backend.manifest, io_binding=False).new_cache(1)
    assert isinstance(plain, RingCache) and plain.nbytes == 2 * 2 * 4 * 32 * 8 * 4


def test_the_cache_is_written_in_place_only_where_the_scatter_is_its_one_reader(
    ort_backend,
) -> None:
    graph = ort_backend.manifest.decoder_steps[0].graph
    model = onnx.load(str(ort_backend.manifest.path(graph)), load_external_data=False)
    past, present = ort_backend.past_names, ort_backend.present_names
    assert scatters_cache_once(model, past, present)
    extra = onnx.helper.make_node("Identity", [past[3]], ["peek"])  # a second reader of a past
    model.graph.node.insert(0, extra)
    assert not scatters_cache_once(model, past, present)
    del model.graph.node[0]
    assert not scatters_cache_once(model, past, present[::-1])  # writes another output
    gpu = OnnxRuntimeBackend(ort_backend.manifest)
    gpu.device_kind = "cuda"  # not run on a GPU yet: ping-pong there
    assert not gpu.cache_in_place


def test_an_unknown_int8_kernel_choice_is_a_clear_error(ort_backend) -> None:
    with pytest.raises(ValueError, match="int8 kernels must be one of"):  # even for fp32 graphs
        OnnxRuntimeBackend(ort_backend.manifest, int8_kernels="fast")


def test_onnxruntime_path_does_not_import_torch(tiny_export_dir, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from nuwa.runtime import Pipeline\n"
        f"p = Pipeline.from_pretrained({str(tiny_export_dir)!r}, progress=False)\n"
        "r = p.text_to_video('a red square moves left', seed=0)\n"
        f"r.save({str(tmp_path / 'a.gif')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(r.frames.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "(1, 3, 16, 16, 3)" in proc.stdout


def test_a_quantize_style_directory_loads_by_its_precision(tiny_export_dir, tmp_path) -> None:
    """``nuwa quantize`` writes the same graph names with ``precision`` int8/fp16 in the
    manifest; the backend runs it as that precision and refuses another."""
    q = tmp_path / "int8"
    shutil.copytree(tiny_export_dir, q)
    manifest = json.loads((q / "manifest.json").read_text())
    manifest["precision"] = "int8"
    (q / "manifest.json").write_text(json.dumps(manifest))
    backend = load_backend("onnxruntime", q, precision="int8")
    assert backend.precision == "int8"
    assert load_backend("onnxruntime", q).precision == "int8"  # None: what the directory holds
    with pytest.raises(BackendUnavailableError, match="holds int8 graphs, not fp32"):
        load_backend("onnxruntime", q, precision="fp32")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "CUDA execution provider"),
        ("tensorrt", "CUDA execution provider"),
        ("npu", "unknown"),
    ],
)
def test_devices_this_build_lacks_are_clear_errors(tiny_export_dir, device, message) -> None:
    import onnxruntime

    if device != "npu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    with pytest.raises(BackendUnavailableError, match=message):
        load_backend("onnxruntime", tiny_export_dir, device=device)


def test_a_corrupt_export_is_a_clear_error(tiny_export_dir, tmp_path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_export_dir, bad)
    (bad / "vq_decoder.onnx").write_bytes(b"garbage")
    with pytest.raises(Exception, match="SHA-256"):
        load_backend("onnxruntime", bad)


def test_nuwa_generate_runs_where_torch_is_missing(tiny_export_dir, tmp_path: Path) -> None:
    """An edge device without PyTorch: ``nuwa generate`` on ONNX Runtime works, the torch
    backend and the training, export and evaluation commands say what to install."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "from nuwa.cli import main\n"
        f"out = {str(tmp_path / 'a.gif')!r}\n"
        f"args = ['generate', 'a red square', '-o', out, '--model', {str(tiny_export_dir)!r}]\n"
        "assert main([*args, '--seed', '1', '--no-progress']) == 0\n"
        "assert main([*args, '--backend', 'torch']) == 2\n"
        "assert main(['train', 'vqgan']) == 2\n"
        "assert main(['export', 'model', '-o', 'out']) == 2\n"
        "assert main(['evaluate', '--model', 'model']) == 2\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.gif").is_file()
    lines = proc.stderr.strip().splitlines()
    assert lines[-4].startswith("nuwa generate: error: torch is not installed: pip install")
    for line, command in zip(lines[-3:], ("train", "export", "evaluate"), strict=True):
        assert line.startswith(f"nuwa {command}: error: nuwa {command} needs torch"), line
        assert 'pip install "nuwa-edge[torch]"' in line, line


@pytest.mark.parametrize("kind", ["text", "sketch"])
def test_condition_encoder_runs_in_row_chunks_equal_to_torch(
    kind, ort_backend, torch_backend, task_inputs
) -> None:
    """An odd batch larger than ENCODER_ROWS_PER_RUN: the chunked encoder's rows equal PyTorch's."""
    from nuwa.runtime.backends.onnxruntime import ENCODER_ROWS_PER_RUN

    rows = 2 * ENCODER_ROWS_PER_RUN + 1
    if kind == "text":
        ids = np.random.default_rng(0).integers(0, 256, (rows, ort_backend.spec.max_text_len))

        def encode(b):
            return b.text_condition(ids)
    else:
        sketch = np.repeat(task_inputs["sketch_ids"][None], rows, axis=0)
        sketch[1::2] = 0  # blank sketches between the real ones

        def encode(b):
            return b.sketch_condition(sketch)

    ours, ref = encode(ort_backend), encode(torch_backend)
    assert ours.batch == rows
    for (k, v), (tk, tv) in zip(ours.cross, ref.cross, strict=True):
        np.testing.assert_allclose(k, tk.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(v, tv.numpy(), atol=1e-4, rtol=0)


def test_only_decode_step_sessions_keep_a_memory_arena(tiny_export_dir) -> None:
    """Graphs run once per request on a whole batch release their activations after each run
    (an arena per session would keep every graph's peak); the per-token decode step keeps
    ONNX Runtime's arena. The calibration runner follows the same rule."""
    from nuwa.calibration.onnx_runner import ExportRunner

    for backend in (
        OnnxRuntimeBackend.from_model_dir(tiny_export_dir, threads=1, io_binding=False),
        ExportRunner(tiny_export_dir),
    ):
        kinds = {name: g.kind for name, g in backend.manifest.graphs.items()}
        assert {"decoder_step", "vq_decoder", "condition_encoder"} <= set(kinds.values())
        for name, kind in kinds.items():
            options = backend.session(name).get_session_options()
            assert options.enable_cpu_mem_arena == (kind == "decoder_step"), name


# ---- where the graphs come from: a bundled onnx/ export, the cache --------------------------


def _with_bundled_export(model_dir: Path, export_dir: Path, dst: Path) -> Path:
    """A copy of the checkpoint ``model_dir`` carrying ``export_dir`` as its ``onnx/``."""
    shutil.copytree(model_dir, dst)
    shutil.copytree(export_dir, dst / BUNDLED_EXPORT_DIR)
    return dst


def test_a_bundled_export_of_the_checkpoint_is_used_without_exporting(
    tiny_model_dir, tiny_export_dir, tmp_path, monkeypatch
) -> None:
    model = _with_bundled_export(tiny_model_dir, tiny_export_dir, tmp_path / "model")
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    assert bundled_export(model) == model / BUNDLED_EXPORT_DIR
    assert ensure_export(model) == model / BUNDLED_EXPORT_DIR
    backend = load_backend("onnxruntime", model)
    assert backend.manifest.directory == model / BUNDLED_EXPORT_DIR
    assert not (tmp_path / "cache").exists()  # nothing exported, nothing cached


def test_a_bundled_export_of_another_checkpoint_is_ignored(
    tiny_model_dir, tiny_export_dir, tmp_path, monkeypatch
) -> None:
    """A checkpoint changed after its export was bundled (fine-tuned in place): the bundle's
    checkpoint_sha256 differs, so the cache is used (here a filled entry), with a note."""
    model = _with_bundled_export(tiny_model_dir, tiny_export_dir, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    config["name"] = "tiny-finetuned"
    (model / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    assert bundled_export(model) is None
    cached = export_dir_for(model)
    shutil.copytree(tiny_export_dir, cached)
    notes: list[str] = []
    assert ensure_export(model, log=notes.append) == cached
    assert len(notes) == 1 and "checkpoint_sha256" in notes[0]


def test_the_checkpoint_hash_covers_the_config_and_every_weights_file(
    tiny_model_dir, tmp_path
) -> None:
    from nuwa.spec.checkpoint_files import CHECKPOINT_FILES
    from nuwa.spec.manifest import checkpoint_sha256

    reference = checkpoint_sha256(tiny_model_dir)
    assert len(reference) == 64
    for name in CHECKPOINT_FILES:  # one changed byte in any file changes the hash
        copy = tmp_path / name.replace(".", "_")
        shutil.copytree(tiny_model_dir, copy)
        data = bytearray((copy / name).read_bytes())
        data[-1] ^= 1
        (copy / name).write_bytes(bytes(data))
        assert checkpoint_sha256(copy) != reference, name
    assert load_manifest(DEMO / BUNDLED_EXPORT_DIR).model["checkpoint_sha256"] == (
        checkpoint_sha256(DEMO)
    )


def test_the_demo_ships_its_exports_within_budget() -> None:
    """The shipped demo runs without PyTorch from its bundled exports: portable FP32 and INT8
    exports of exactly this checkpoint (every file's SHA-256 checked), the INT8 one with 8-bit
    weights and its quality gates passed; each export <= 30 MB (every file of it listed in its
    manifest), the whole model directory <= 70 MB."""
    for precision in ("fp32", "int8"):
        export = bundled_export(DEMO, precision=precision)
        assert export == DEMO / BUNDLED_EXPORT_DIRS[precision]
        manifest = load_manifest(export)  # verifies every file's SHA-256
        assert manifest.target == "portable" and manifest.precision == precision
        files = [p for p in export.iterdir() if p.is_file()]
        listed = {g.file for g in manifest.graphs.values()} | set(manifest.external_data)
        listed |= {p.file for g in manifest.graphs.values() for p in g.prepared.values()}
        extra = {"manifest.json", "generation_config.json", "input_rules.json"}
        assert {p.name for p in files} == listed | extra
        assert sum(p.stat().st_size for p in files) <= 30_000_000
    assert quality_gates_passed(DEMO / BUNDLED_EXPORT_DIRS["int8"])
    assert load_manifest(DEMO / BUNDLED_EXPORT_DIRS["int8"]).int8_weight_max == 127
    model_files = [p for p in DEMO.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in model_files) <= 70_000_000


@pytest.mark.slow
def test_the_demo_generates_without_torch_and_without_an_export_cache(tmp_path: Path) -> None:
    """The core install's path: PyTorch unimportable, an empty NUWA_CACHE_DIR; ``nuwa generate``
    and ``Pipeline.from_pretrained()`` run the shipped demo from its bundled export and leave the
    cache empty."""
    cache = tmp_path / "cache"
    cache.mkdir()
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "from nuwa.cli import main\n"
        "from nuwa.runtime import Pipeline\n"
        f"out = {str(tmp_path / 'out.gif')!r}\n"
        "assert main(['generate', 'a red square moves left', '-o', out, '--seed', '0']) == 0\n"
        "p = Pipeline.from_pretrained(progress=False)\n"
        "r = p.text_to_image('a blue circle', seed=1)\n"
        "print(r.frames.shape)\n"
    )
    env = {**os.environ, "NUWA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.gif").is_file()
    assert "(1, 1, 64, 64, 3)" in proc.stdout
    assert "exporting" not in proc.stderr
    assert not any(cache.iterdir())


@pytest.mark.parametrize("progress", [True, False])
def test_a_first_use_export_says_what_it_does_and_passes_the_progress_flag(
    tiny_model_dir, tmp_path, monkeypatch, progress
) -> None:
    import nuwa.export.exporter

    calls: list[dict] = []

    def fake_export(model_dir, out, **kw) -> None:
        calls.append(kw)
        shutil.copytree(tiny_model_dir, out)  # stands in for the export: a directory ...
        (out / "manifest.json").write_text("{}")  # ... with a manifest

    monkeypatch.setattr(nuwa.export.exporter, "export_model", fake_export)
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    notes: list[str] = []
    out = ensure_export(tiny_model_dir, log=notes.append, progress=progress)
    assert out == export_dir_for(tiny_model_dir)
    assert calls == [{"target": "portable", "progress": progress}]  # the ONNX Runtime graphs
    assert len(notes) == 1 and notes[0].startswith(f"exporting {tiny_model_dir} to ONNX in")
    assert "first use" in notes[0]


def test_export_progress_bar_counts_the_graphs(tiny_model_dir, tmp_path, capsys) -> None:
    from nuwa.export.exporter import export_model

    manifest = export_model(
        tiny_model_dir, tmp_path / "onnx", frames=[1], verify=False, progress=True
    )
    err = capsys.readouterr().err
    n = len(manifest.graphs)
    assert "exporting: 100%" in err and f"{n}/{n}" in err and "graph" in err
