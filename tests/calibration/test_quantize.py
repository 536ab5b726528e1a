"""``quantize_export`` on the tiny model: valid files, the manifest contract, symmetric Q/DQ,
3DNA untouched, runs in ONNX Runtime, and the quality gates (token agreement vs FP32)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from nuwa.calibration.capture import CalibrationSet, calibrate
from nuwa.calibration.onnx_runner import ExportRunner
from nuwa.calibration.qdq import INT8_MAX, REDUCED_WEIGHT_MAX, find_targets, qdq_zero_points
from nuwa.calibration.quantize import (
    QualityGateError,
    QuantizeError,
    graph_family,
    quantize_export,
    weight_qmax,
    weight_range_reason,
)
from nuwa.calibration.task_samples import (
    TASKS,
    dataset_for,
    generate,
    generation_options,
    make_batch,
    score,
)
from nuwa.export.attention_node import is_attention_node
from nuwa.quality.gate_config import GateConfig
from nuwa.quality.precision_gates import GATED_SCORES, PrecisionGates, run_gates
from nuwa.runtime.backends.tensorrt.engine_build import check_tensorrt_graph
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.manifest import load_manifest

from ..conftest import CALIB_COUNT, GATE_COUNT


def _models(directory: Path) -> dict[str, onnx.ModelProto]:
    m = load_manifest(directory)
    return {name: onnx.load(str(m.path(name))) for name in m.graphs}


def _raw(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def test_int8_files_valid_and_manifest(tiny_portable: Path, tiny_int8: Path) -> None:
    src, out = load_manifest(tiny_portable), load_manifest(tiny_int8)
    assert out.precision == "int8" and set(out.graphs) == set(src.graphs)
    for name, model in _models(tiny_int8).items():
        onnx.checker.check_model(model, full_check=True)
        # float32 I/O: the runtime feeds the same arrays at every precision
        assert out.graph(name).inputs == src.graph(name).inputs
        assert out.graph(name).outputs == src.graph(name).outputs
    raw = _raw(tiny_int8)
    assert raw["calibration"]["count"] == CALIB_COUNT and raw["calibration"]["seed"] == 0
    assert raw["calibration"]["tasks"] == list(TASKS)
    quantized = [n for n, p in raw["quantization"]["graphs"].items() if p == "int8"]
    kinds = {n: g.kind for n, g in src.graphs.items()}
    assert sorted(quantized) == sorted(
        n for n, k in kinds.items() if k in ("decoder_step", "condition_encoder")
    )
    runs, borrowed = raw["calibration"]["graph_runs"], raw["calibration"]["borrowed_ranges"]
    for name in quantized:  # calibrated on real requests, or borrowed from its family
        family = [g for g in runs if graph_family(g) == graph_family(name)]
        assert runs.get(name, 0) > 0 or (name in borrowed and family), name
        assert raw["graphs"][name]["meta"]["precision"] == "int8"
        # (how its weights are stored: test_compact_weights.py)
    assert raw["source"]["precision"] == "fp32"
    # S2I runs the 1-frame sketch graphs, S2V the 3-frame ones; other lengths borrow
    assert set(borrowed) == {n for n in quantized if not runs.get(n)}
    assert all("sketch" in n and not n.endswith(("t1", "t3")) for n in borrowed)


def test_int8_is_symmetric_and_leaves_3dna_in_float(tiny_portable: Path, tiny_int8: Path) -> None:
    before, after = _models(tiny_portable), _models(tiny_int8)
    for name, model in after.items():
        zps = qdq_zero_points(model)
        # int8 activations and weights, int32 Gemm biases (portable target): all zero points 0
        assert all(z.dtype in (np.int8, np.int32) and not np.any(z) for _, z in zps), name
        assert sum(z.dtype == np.int32 for _, z in zps) <= sum(
            n.op_type == "Gemm" for n in model.graph.node
        )
        # 3DNA: same nodes, same function bodies, no Q/DQ inside them
        assert sum(map(is_attention_node, model.graph.node)) == sum(
            map(is_attention_node, before[name].graph.node)
        )
        assert [f.SerializeToString() for f in model.functions] == [
            f.SerializeToString() for f in before[name].functions
        ]
        if zps:
            assert not find_targets(model)  # every weight layer now reads int8 weights
            ints = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
            w_max = max(int(np.abs(onnx.numpy_helper.to_array(i)).max()) for i in ints)
            assert w_max == REDUCED_WEIGHT_MAX  # the fixture's 7-bit weights (see conftest.py)


def test_int8_quality_gates_pass_on_tiny_model(tiny_int8: Path) -> None:
    gates = _raw(tiny_int8)["quality_gates"]
    assert gates["passed"] is True
    assert set(gates["tasks"]) == set(TASKS)
    for task, row in gates["tasks"].items():
        assert row["n"] == GATE_COUNT
        assert row["token_agreement"] >= 0.9, (task, row)
        assert 0.0 < row["sampling_divergence"] < 0.2, (task, row)
        for side in ("fp32", "candidate"):  # reported; not decisive here (conftest.py)
            assert all(0.0 <= v[side] < 100.0 for v in row["scores"].values()), (task, row)
        assert set(row["scores"]) <= set(GATED_SCORES[task]) and row["metric"] in row["scores"]


def test_gate_streams_score_each_side_as_the_mean_of_its_sampled_streams(
    tiny_portable: Path, tiny_int8: Path
) -> None:
    cfg = GateConfig(count=GATE_COUNT, tasks=("T2V", "S2V"), streams=2)
    rows = run_gates(tiny_portable, tiny_int8, cfg)["tasks"]
    # the slow, obvious version: generate each stream by hand and average the checker's scores
    spec = ExportRunner(tiny_portable).spec
    ds = dataset_for(spec, GATE_COUNT, cfg.seed, "heldout")
    generation = GenerationConfig.load(tiny_portable)
    for task, row in rows.items():
        assert row["streams"] == 2
        batch = make_batch(task, ds, list(range(GATE_COUNT)), spec.frames)
        for side, directory in (("fp32", tiny_portable), ("candidate", tiny_int8)):
            runner = ExportRunner(directory)
            per_stream = []
            for seed in (cfg.seed, cfg.seed + 1):
                tokens = generate(runner, batch, generation_options(seed, task, generation))
                per_stream.append(score(batch, runner.codes_to_frames(tokens)))
            for metric, value in row["scores"].items():
                expected = np.mean([float(x[metric]) for stream in per_stream for x in stream])
                assert value[side] == pytest.approx(expected, abs=1e-4), (task, side, metric)


def test_matmul_nbits_kernels_stay_at_least_as_close_to_fp32_as_qdq(
    tiny_portable: Path, tiny_int8: Path
) -> None:
    """The gates' noise-free measures (teacher-forced top-1 agreement and sampling divergence)
    with each CPU kernel choice: MatMulNBits, whose per-block run-time activation scales are
    finer than the calibrated per-tensor ones, agrees with FP32's top-1 token at least as often in
    the mean over the tasks and diverges less in that mean. Per task the 3 samples' 48-144
    positions make one flip 0.7-2 points, so the calibration's sampled data moves single tasks:
    measured with the calibration sampled by spec/sampling_random.py's generator, agreement
    is as high or higher on 4 of 5 tasks (S2V 0.924 vs 0.938: two flips), the mean the same
    (0.981); divergence lower on 4 of 5 (V2V 0.0070 vs 0.0069), mean 0.0113 vs 0.0125."""
    from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import resolve_int8_kernels

    cfg = GateConfig(count=GATE_COUNT, streams=1, int8_kernels="matmulnbits")
    if resolve_int8_kernels("auto") != "matmulnbits":  # ORT < 1.22, or x86 without VNNI
        with pytest.raises(ValueError, match="VNNI"):
            run_gates(tiny_portable, tiny_int8, cfg)
        return
    nbits = run_gates(tiny_portable, tiny_int8, cfg)
    qdq = _raw(tiny_int8)["quality_gates"]  # the fixture's gates: the Q/DQ kernels
    assert "qdq int8 kernels" in qdq["executed_on"]
    assert "matmulnbits int8 kernels" in nbits["executed_on"]
    agreement = [
        np.mean([r["token_agreement"] for r in gates["tasks"].values()]) for gates in (nbits, qdq)
    ]
    assert agreement[0] >= agreement[1] - 1e-4, agreement  # the report's 4-decimal rounding
    divergence = [
        np.mean([r["sampling_divergence"] for r in gates["tasks"].values()])
        for gates in (nbits, qdq)
    ]
    assert divergence[0] < divergence[1], divergence


def test_int8_runs_in_the_onnxruntime_backend(tiny_portable: Path, tiny_int8: Path) -> None:
    from nuwa.runtime.backends import load_backend
    from nuwa.runtime.engine import generate_tokens
    from nuwa.runtime.sampler import SamplingOptions
    from nuwa.spec.tokenizer import ByteTokenizer

    backend = load_backend("onnxruntime", tiny_int8, precision="int8", device="cpu")
    reference = ExportRunner(tiny_portable)
    ids = ByteTokenizer(reference.spec.max_text_len).encode_batch(["a red square moves left"])
    greedy = SamplingOptions(temperature=0.0)
    got = generate_tokens(backend, backend.text_condition(ids), 3, greedy, progress=False)
    ref = generate_tokens(reference, reference.text_condition(ids), 3, greedy, progress=False)
    assert got.shape == ref.shape == (1, 3, 4, 4)
    assert np.mean(got == ref) >= 0.8


def test_int8_cpu_kernels_run_the_same_int8_weights_either_way(
    tiny_portable: Path, tiny_int8: Path
) -> None:
    """The ONNX Runtime backend's two CPU INT8 kernel choices on one decoder step: MatMulNBits
    (every Q/DQ weight layer rewritten, activations quantized per block at run time) and the
    Q/DQ graph as written; both near FP32, and the rewrite leaves no Q/DQ weight layer."""
    from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import resolve_int8_kernels

    ref = ExportRunner(tiny_portable)
    graph = ref.manifest.decoder_step("text", 3)
    rng = np.random.default_rng(1)
    feeds = {}
    for t in graph.inputs:
        shape = [2 if isinstance(d, str) else d for d in t.shape]
        if t.dtype == "int64":
            feeds[t.name] = rng.integers(0, 16, shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
    expected = ref.run(graph.name, feeds)
    qdq = ExportRunner(tiny_int8, int8_kernels="qdq")
    assert qdq.int8_kernels == "qdq" and "qdq int8 kernels" in qdq.describe()
    runners = [qdq]
    if resolve_int8_kernels("auto") == "matmulnbits":  # ORT >= 1.22, no int8 saturation
        nbits = ExportRunner(tiny_int8, int8_kernels="matmulnbits")
        assert "matmulnbits int8 kernels" in nbits.describe()
        model = nbits.prepare_graph(graph.name, onnx.load(str(nbits.manifest.path(graph.name))))
        ops = [n.op_type for n in model.graph.node]
        written = _models(tiny_int8)[graph.name]
        layers = sum(
            1
            for n in written.graph.node
            if n.op_type in ("MatMul", "Gemm") and n.input[1].endswith("_dq")
        )
        assert layers > 0 and ops.count("MatMulNBits") == layers
        assert "QuantizeLinear" not in ops  # every activation pair went with its layer
        runners.append(nbits)
    for runner in runners:
        got = runner.run(graph.name, feeds)
        for key, value in expected.items():
            scale = max(1.0, float(np.abs(value).max()))
            assert np.abs(got[key] - value).max() <= 0.1 * scale, (runner.int8_kernels, key)


def test_fp16_close_to_fp32(tiny_portable: Path, tiny_fp16: Path) -> None:
    raw = _raw(tiny_fp16)
    assert raw["precision"] == "fp16" and raw["quality_gates"]["passed"] is True
    for row in raw["quality_gates"]["tasks"].values():
        assert row["token_agreement"] >= 0.98
        assert row["sampling_divergence"] < 0.01, row
    for model in _models(tiny_fp16).values():
        onnx.checker.check_model(model, full_check=True)
    # one decoder step on the same random inputs
    ref, half = ExportRunner(tiny_portable), ExportRunner(tiny_fp16)
    rng = np.random.default_rng(0)
    graph = ref.manifest.decoder_step("text", 3)
    feeds = {}
    for t in graph.inputs:
        shape = [2 if isinstance(d, str) else d for d in t.shape]
        if t.dtype == "int64":
            feeds[t.name] = rng.integers(0, 16, shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
    a, b = ref.run(graph.name, feeds), half.run(graph.name, feeds)
    for key in a:
        assert b[key].dtype == np.float32
        scale = max(1.0, float(np.abs(a[key]).max()))
        assert float(np.abs(a[key] - b[key]).max()) <= 1e-2 * scale, key


def test_tensorrt_target_int8_keeps_plugin_nodes(tiny_tensorrt: Path, tiny_trt_int8: Path) -> None:
    raw = _raw(tiny_trt_int8)
    assert raw["target"] == "tensorrt" and raw["quantization"]["weight_range"] == [-127, 127]
    assert raw["quality_gates"] == {"skipped": "not run (--no-gates)"}
    for name, model in _models(tiny_trt_int8).items():
        assert not model.functions
        assert check_tensorrt_graph(model, name) == raw["graphs"][name]["attention_nodes"]


def test_calibration_is_deterministic_in_count_and_seed(tiny_portable: Path) -> None:
    graph = "text_encoder"
    model = onnx.load(str(tiny_portable / f"{graph}.onnx"))
    observe = {graph: sorted({t.activation for t in find_targets(model)})}

    def ranges(count: int, seed: int) -> tuple[dict[str, float], dict[str, int]]:
        calib = CalibrationSet(count=count, seed=seed, tasks=("T2I",))
        obs, runs = calibrate(tiny_portable, observe, calib)
        return obs[graph].amax, runs

    a, runs_a = ranges(2, 0)
    b, _ = ranges(2, 0)
    c, _ = ranges(2, 5)
    assert a == b and a != c
    assert runs_a["decoder_step.text"] == 16  # one T2I frame: 4x4 positions, one batched run each
    every = CalibrationSet(count=1, tasks=("S2V",), every_length=True)
    _, runs = calibrate(tiny_portable, {}, every)
    assert runs["decoder_step.sketch_t2"] == 2 * 16 and runs["decoder_step.sketch_t3"] == 3 * 16


def test_percentile_calibration_narrows_ranges_and_is_recorded(
    tmp_path: Path, tiny_portable: Path
) -> None:
    graph = "decoder_step.text"
    model = onnx.load(str(tiny_portable / f"{graph}.onnx"))
    observe = {graph: sorted({t.activation for t in find_targets(model)})}
    calib = CalibrationSet(count=1, tasks=("T2I",), method="percentile", percentile=99.0)
    obs, _ = calibrate(tiny_portable, observe, calib)
    full, clipped = obs[graph].ranges("max"), obs[graph].ranges("percentile", 99.0)
    assert set(full) == set(clipped) == set(observe[graph])
    assert all(0.0 <= clipped[k] <= full[k] for k in full)
    assert any(clipped[k] < 0.9 * full[k] for k in full)  # the tails really are cut

    every = CalibrationSet(count=1, method="percentile", percentile=99.9)
    raw = quantize_export(tiny_portable, tmp_path, "int8", every, gates=None)
    assert raw["calibration"]["method"] == "percentile"
    assert raw["calibration"]["percentile"] == 99.9
    assert "99.9th-percentile" in raw["quantization"]["activations"]
    with pytest.raises(QuantizeError, match="calib-percentile"):
        quantize_export(tiny_portable, tmp_path / "x", "int8", CalibrationSet(percentile=0.0))
    with pytest.raises(QuantizeError, match="calibration method"):
        quantize_export(tiny_portable, tmp_path / "y", "int8", CalibrationSet(method="mse"))


def test_gate_failure_is_reported_and_recorded(tmp_path: Path, tiny_portable: Path) -> None:
    impossible = GateConfig(count=1, tasks=("T2I",), min_token_agreement=1.01)
    with pytest.raises(QualityGateError, match="T2I"):
        quantize_export(
            tiny_portable, tmp_path, "int8", CalibrationSet(count=1), PrecisionGates(impossible)
        )
    gates = _raw(tmp_path)["quality_gates"]
    assert gates["passed"] is False and gates["tasks"]["T2I"]["token_agreement_ok"] is False


def test_keep_fp32_leaves_the_named_graphs_unquantized(tmp_path: Path, tiny_portable: Path) -> None:
    raw = quantize_export(
        tiny_portable, tmp_path, "int8", CalibrationSet(count=1), keep_fp32=("sketch_condition",)
    )
    graphs = raw["quantization"]["graphs"]
    assert raw["quantization"]["kept_fp32"] == ["sketch_condition"]
    kept = [n for n in graphs if n.startswith("sketch_condition")]
    assert kept and all(graphs[n] == "fp32" for n in kept)
    assert graphs["text_encoder"] == "int8"  # the other condition encoder is quantized
    assert all(p == "int8" for n, p in graphs.items() if n.startswith("decoder_step"))
    with pytest.raises(QuantizeError, match="--keep-fp32 decoder_stp matches no graph"):
        quantize_export(tiny_portable, tmp_path / "x", "int8", keep_fp32=("decoder_stp",))


def test_bad_input_errors(tmp_path: Path, tiny_portable: Path, tiny_fp16: Path) -> None:
    with pytest.raises(QuantizeError, match="unknown precision"):
        quantize_export(tiny_portable, tmp_path / "a", "int4")
    with pytest.raises(QuantizeError, match="quantize from an fp32 export"):
        quantize_export(tiny_fp16, tmp_path / "b", "int8")
    with pytest.raises(QuantizeError, match="must differ"):
        quantize_export(tiny_portable, tiny_portable, "int8")
    with pytest.raises(QuantizeError, match="manifest.json is missing"):
        quantize_export(tmp_path / "nowhere", tmp_path / "c", "int8")
    with pytest.raises(QuantizeError, match="calib-count"):
        quantize_export(tiny_portable, tmp_path / "d", "int8", CalibrationSet(count=0))
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_graphs_no_task_reaches_need_those_tasks(tmp_path: Path, tiny_portable: Path) -> None:
    with pytest.raises(QuantizeError, match="calib-tasks"):
        quantize_export(tiny_portable, tmp_path, "int8", CalibrationSet(count=1, tasks=("T2I",)))
    assert not (tmp_path / "manifest.json").exists()


def test_full_range_int8_is_refused_where_the_cpu_kernels_saturate(
    tiny_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full-range weights on an x86 CPU without VNNI would make ONNX Runtime's int8 kernels
    saturate: a clear error instead of wrong outputs. 7-bit weights, CPUs with VNNI and
    simulated Q/DQ (no int8 kernels) load."""
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from nuwa.runtime.backends.onnxruntime import int8_cpu_kernels as kernels
    from nuwa.spec.errors import BackendUnavailableError

    full = tmp_path / "full"
    shutil.copytree(tiny_int8, full)
    raw = _raw(full)
    raw["quantization"]["weight_range"] = [-127, 127]
    (full / "manifest.json").write_text(json.dumps(raw))
    assert (
        load_manifest(full).int8_weight_max == 127
        and load_manifest(tiny_int8).int8_weight_max == 63
    )

    monkeypatch.setattr(kernels, "int8_products_saturate", lambda: True)
    with pytest.raises(BackendUnavailableError, match=r"without VNNI.*--weight-range reduced"):
        OnnxRuntimeBackend(load_manifest(full), device="cpu")
    with pytest.raises(BackendUnavailableError, match="without VNNI"):
        ExportRunner(full)
    ExportRunner(full, simulate_qdq=True)  # Q/DQ executed as written: nothing saturates
    OnnxRuntimeBackend(load_manifest(tiny_int8), device="cpu")  # 7-bit weights
    monkeypatch.setattr(kernels, "int8_products_saturate", lambda: False)
    OnnxRuntimeBackend(load_manifest(full), device="cpu")


def test_cpu_flags_tell_whether_int8_products_saturate(tmp_path: Path, monkeypatch) -> None:
    from nuwa.runtime import cpu_features

    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: "x86_64")
    info.write_text("processor : 0\nflags : fpu sse avx2 fma\n")
    assert cpu_features.int8_products_saturate(info) is True
    info.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n")
    assert cpu_features.int8_products_saturate(info) is False
    assert cpu_features.int8_products_saturate(tmp_path / "missing") is False
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: "aarch64")
    info.write_text("processor : 0\nFeatures : fp asimd\n")
    assert cpu_features.int8_products_saturate(info) is False


def test_channel_norm_vqgan_keeps_its_layer_norm_in_fp32(tmp_path: Path) -> None:
    """A VQ-GAN with ``norm="channel"`` normalises with LayerNormalization: INT8 leaves it
    unquantized (no DequantizeLinear feeds it), FP16 computes it in FP32, and the VQ decoder
    stays close to FP32 at both precisions."""
    import torch

    from nuwa.export.exporter import export_model
    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    cfg = NuwaConfig.from_name("tiny")
    cfg.vqgan.norm = cfg.vqgan_seg.norm = "channel"
    cfg.transformer.max_text_len = 128  # the dataset's captions
    torch.manual_seed(0)
    NuwaModel(cfg).eval().save_pretrained(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "fp32", verify=False)
    calib = CalibrationSet(count=1)
    quantize_export(tmp_path / "fp32", tmp_path / "int8", "int8", calib, int8_vq_decoder=True)
    quantize_export(tmp_path / "fp32", tmp_path / "fp16", "fp16", calib)
    for precision in ("int8", "fp16"):
        model = _models(tmp_path / precision)["vq_decoder"]
        producer = {out: n for n in model.graph.node for out in n.output}
        norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
        assert norms
        feeders = {producer[n.input[0]].op_type for n in norms}
        assert "DequantizeLinear" not in feeders
        if precision == "fp16":
            assert feeders == {"Cast"}  # the converter's FP32 island
    codes = np.random.default_rng(0).integers(0, cfg.vqgan.codebook_size, (2, 4, 4))
    ref = ExportRunner(tmp_path / "fp32").run("vq_decoder", {"codes": codes})
    for precision, tolerance in (("int8", 0.15), ("fp16", 1e-2)):
        got = ExportRunner(tmp_path / precision).run("vq_decoder", {"codes": codes})
        for key in ref:
            assert float(np.abs(ref[key] - got[key]).max()) <= tolerance, (precision, key)


def test_auto_weight_range_is_8_bit_where_the_cpu_int8_kernels_do_not_saturate() -> None:
    """``auto``: TensorRT always 8-bit; portable 8-bit unless this CPU saturates (x86 without
    VNNI), 7-bit there; explicit choices win; the log line says why."""
    assert weight_qmax("auto", "tensorrt", saturates=True) == INT8_MAX
    assert weight_qmax("auto", "portable", saturates=False) == INT8_MAX
    assert weight_qmax("auto", "portable", saturates=True) == REDUCED_WEIGHT_MAX
    assert weight_qmax("full", "portable", saturates=True) == INT8_MAX
    assert weight_qmax("reduced", "tensorrt", saturates=False) == REDUCED_WEIGHT_MAX
    assert "saturate" in weight_range_reason("auto", "portable", REDUCED_WEIGHT_MAX)
    assert "--weight-range reduced" in weight_range_reason("auto", "portable", INT8_MAX)
    assert weight_range_reason("full", "portable", INT8_MAX) == ""
    with pytest.raises(QuantizeError, match="unknown weight range"):
        weight_qmax("8bit", "portable")
