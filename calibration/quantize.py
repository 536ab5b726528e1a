"""``nuwa quantize``: an FP32 export directory -> an INT8 (Q/DQ) or FP16 export directory.

The output is a drop-in export directory: the same graph file names, the same ``manifest.json``
format (``nuwa.spec.manifest``) with ``precision`` set, float32 graph inputs/outputs (so the
runtime feeds the same arrays at every precision), and three added sections:

- ``calibration``: the real samples INT8 ranges came from (count, seed, tasks, sampling) and
  how many runs each graph saw;
- ``quantization``: the scheme and which graphs got which precision;
- ``quality_gates``: the gate results against the FP32 source (``gates.py``), or why skipped.

Which graphs change:

=====================  ============================  =========================
graph kind             int8                          fp16
=====================  ============================  =========================
decoder_step           Q/DQ                          fp16 (+ FP32 islands)
decoder_prefill        fp32 (not calibrated)         fp16 (+ FP32 islands)
condition_encoder      Q/DQ                          fp16 (+ FP32 islands)
vq_decoder             fp32 (``--int8-vq-decoder``)  fp16
vq_encoder, sketch_*   fp32 (codebook lookups)       fp32 (codebook lookups)
=====================  ============================  =========================

``--keep-fp32 PREFIXES`` leaves the graphs whose names start with one of the prefixes in FP32
(e.g. ``sketch_condition_encoder``), to find out which graphs cost a gate its score.

An INT8 export stores every graph's large initializers once, in its own ``weights.bin``
(:class:`~nuwa.export.weights.SharedWeights`, the exporter's compact layout; what Q/DQ and
``MatMulNBits`` nodes read stored as it is): the graphs kept FP32, the INT8 graphs and their
prepared ``cpu-matmulnbits`` forms. The decoder steps of every condition hold the same int8
weights, and the FP32 source's weights that only the converted graphs read are left out, so the
demo's INT8 export is ~25 MB instead of ~180 MB self-contained. Converted FP16 graphs are saved
self-contained (their fp16 weights inline); graphs copied unchanged keep pointing at the
export's shared weights file (``external_data`` in the manifest), which is copied along.
Everything is written into a temporary folder and moved in place, and the manifest is written
last, atomically: a failed run leaves no manifest behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import onnx

from nuwa.calibration.capture import CalibrationSet, calibrate
from nuwa.calibration.fp16 import FP32_OPS, convert_to_fp16
from nuwa.calibration.qdq import INT8_MAX, REDUCED_WEIGHT_MAX, find_targets, insert_qdq
from nuwa.calibration.task_samples import TASKS
from nuwa.export.prepared_graphs import write_prepared_cpu, write_prepared_cpu_matmulnbits
from nuwa.export.weights import WEIGHTS_FILE, SharedWeights, materialize_weights
from nuwa.runtime.cpu_features import int8_products_saturate
from nuwa.spec.generation_config import copy_generation_config
from nuwa.spec.graph_names import (
    CONDITION_ENCODER_KIND,
    DECODER_PREFILL_KIND,
    DECODER_STEP_KIND,
    VQ_DECODER_KIND,
)
from nuwa.spec.input_rules import copy_input_rules
from nuwa.spec.manifest import MANIFEST_FILE, ManifestError, load_manifest, sha256_file


class QualityGate(Protocol):
    """What ``quantize_export`` runs on the graphs it wrote: checked before any work starts,
    then called with the FP32 source and the candidate directories. It returns
    ``{"passed": bool, "tasks": {task: row}, ...}``, which goes into the manifest.
    :class:`nuwa.quality.gate_config.GateConfig` is the one ``nuwa quantize`` passes; quality
    sits above calibration, so calibration takes it as a parameter and never imports it."""

    def validate(self) -> None: ...

    def __call__(
        self, fp32_dir: Path, candidate_dir: Path, log: Callable[[str], None] | None
    ) -> dict[str, Any]: ...


PRECISIONS = ("int8", "fp16")
WEIGHT_RANGES = ("auto", "full", "reduced")
INT8_KINDS = (DECODER_STEP_KIND, CONDITION_ENCODER_KIND)
FP16_KINDS = (DECODER_STEP_KIND, DECODER_PREFILL_KIND, CONDITION_ENCODER_KIND, VQ_DECODER_KIND)


class QuantizeError(ValueError):
    """Bad arguments or input for ``nuwa quantize``."""


class QualityGateError(RuntimeError):
    """The quantized graphs were written but failed their quality gate."""


def weight_qmax(weight_range: str, target: str, saturates: bool | None = None) -> int:
    """The int8 weights' largest magnitude. ``auto``: full 8-bit for TensorRT, and for the
    portable (ONNX Runtime CPU) target on a CPU whose int8 kernels do not saturate (VNNI,
    ARM dot products: ``saturates`` False, by default
    :func:`~nuwa.runtime.cpu_features.int8_products_saturate` of this machine); 7-bit where
    they do (x86 without VNNI), which a full-range export would make compute wrong results.
    8-bit weights halve the weight rounding: on the demo checkpoint they pass every gate that
    7-bit weights fail (bench/RESULTS.md). A full-range portable export loaded on a saturating
    CPU is refused there with a clear error naming ``--weight-range reduced``."""
    if weight_range not in WEIGHT_RANGES:
        raise QuantizeError(f"unknown weight range {weight_range!r}; choose {WEIGHT_RANGES}")
    if weight_range == "auto":
        portable_and_saturates = target == "portable" and (
            int8_products_saturate() if saturates is None else saturates
        )
        weight_range = "reduced" if portable_and_saturates else "full"
    return REDUCED_WEIGHT_MAX if weight_range == "reduced" else INT8_MAX


def weight_range_reason(weight_range: str, target: str, qmax: int) -> str:
    """Why ``auto`` chose the weight range it did (empty for an explicit choice)."""
    if weight_range != "auto":
        return ""
    if target != "portable":
        return " (auto: TensorRT target)"
    if qmax == REDUCED_WEIGHT_MAX:
        return " (auto: this CPU's int8 kernels saturate on full-range weights: no VNNI)"
    return (
        " (auto: this CPU's int8 kernels do not saturate; x86 CPUs without VNNI will refuse "
        "this export: --weight-range reduced for those)"
    )


def _check_dirs(onnx_dir: Path, out_dir: Path) -> None:
    if out_dir.resolve() == onnx_dir.resolve():
        raise QuantizeError("the output directory must differ from the FP32 export directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".nuwa-write-test-"):
            pass
    except OSError as exc:
        raise QuantizeError(f"cannot write to output directory {out_dir}: {exc.strerror}") from exc


def graph_family(name: str) -> str:
    """Graphs that differ only in frame count: ``decoder_step.sketch_t3`` ->
    ``decoder_step.sketch``, ``sketch_condition_encoder.t1`` -> ``sketch_condition_encoder``."""
    return re.sub(r"[._]t\d+$", "", name)


def _borrow_ranges(
    graph: str, names: list[str], ranges: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Ranges for a graph no calibration request ran (a frame count no task used): the max over
    graphs of the same family (same condition kind, other frame counts) with the same tensors."""
    out: dict[str, float] = {}
    for other, theirs in ranges.items():
        if other != graph and graph_family(other) == graph_family(graph):
            for name in names:
                if name in theirs:
                    out[name] = max(out.get(name, 0.0), theirs[name])
    missing = [n for n in names if n not in out]
    if missing:
        raise QuantizeError(
            f"calibration never ran graph {graph!r}; calibrate with the tasks that use it "
            f"(--calib-tasks {','.join(TASKS)})"
        )
    return out


def quantize_export(
    onnx_dir: str | Path,
    out_dir: str | Path,
    precision: str,
    calib: CalibrationSet | None = None,
    gates: QualityGate | None = None,
    weight_range: str = "auto",
    int8_vq_decoder: bool = False,
    log: Callable[[str], None] | None = None,
    keep_fp32: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the ``precision`` version of the FP32 export ``onnx_dir`` into ``out_dir`` and
    return its manifest (as a dict). ``gates=None`` skips the quality gates. Graphs whose
    names start with one of ``keep_fp32`` stay FP32 (to find which graphs cost quality). Raises
    :class:`QuantizeError` on bad input and :class:`QualityGateError` (after writing) when a
    gate fails."""
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise QuantizeError(f"unknown precision {precision!r}; choose one of {choices}")
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    try:
        manifest = load_manifest(onnx_dir)
    except ManifestError as exc:
        raise QuantizeError(str(exc)) from exc
    if manifest.precision != "fp32":
        raise QuantizeError(
            f"{onnx_dir} holds {manifest.precision} graphs; quantize from an fp32 export"
        )
    calib = calib or CalibrationSet()
    try:
        calib.validate()
        if gates is not None:
            gates.validate()
    except ValueError as exc:
        raise QuantizeError(str(exc)) from exc
    qmax = weight_qmax(weight_range, manifest.target)
    _check_dirs(onnx_dir, out_dir)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    strict_check = manifest.target == "portable"

    unmatched = [p for p in keep_fp32 if not any(n.startswith(p) for n in manifest.graphs)]
    if unmatched:
        raise QuantizeError(
            f"--keep-fp32 {', '.join(unmatched)} matches no graph of {onnx_dir}; its graphs: "
            + ", ".join(sorted(manifest.graphs))
        )
    kinds = {
        name: "kept_fp32" if name.startswith(keep_fp32) else g.kind
        for name, g in manifest.graphs.items()
    }
    int8_kinds = INT8_KINDS + ((VQ_DECODER_KIND,) if int8_vq_decoder else ())
    changed_kinds = int8_kinds if precision == "int8" else FP16_KINDS
    models = {name: onnx.load(str(manifest.path(name))) for name in manifest.graphs}
    for model in models.values():  # weights the export stores as float16 + Cast, or as
        materialize_weights(model)  # Transpose of another: plain float32 initializers
    converted: dict[str, onnx.ModelProto] = {}
    calibration: dict[str, Any] | None = None

    if precision == "int8":
        if log is not None:
            reason = weight_range_reason(weight_range, manifest.target, qmax)
            log(f"int8 weights in [-{qmax}, {qmax}]{reason}")
        targets = {n: find_targets(models[n]) for n in models if kinds[n] in changed_kinds}
        observe = {n: sorted({t.activation for t in ts}) for n, ts in targets.items() if ts}
        observers, runs = calibrate(onnx_dir, observe, calib, log)
        ranges = {n: obs.ranges(calib.method, calib.percentile) for n, obs in observers.items()}
        borrowed: list[str] = []
        for name, ts in targets.items():
            if not ts:
                continue
            amax = ranges[name]
            if not amax:
                amax = _borrow_ranges(name, observe[name], ranges)
                borrowed.append(name)
            converted[name] = insert_qdq(
                models[name], ts, amax, qmax, int32_bias=manifest.target == "portable"
            )
        calibration = {
            **calib.to_dict(),
            "graph_runs": dict(sorted(runs.items())),
            # graphs no request ran: ranges are the max over same-kind graphs' same tensors
            "borrowed_ranges": borrowed,
        }
        scheme = {
            "format": "QDQ",
            "weights": "int8 symmetric per-output-channel, zero point 0",
            "weight_range": [-qmax, qmax],
            "activations": "int8 symmetric per-tensor, zero point 0, "
            + (
                "max-abs calibration"
                if calib.method == "max"
                else f"{calib.percentile:g}th-percentile-of-|x| calibration"
            ),
            "gemm_bias": "int32" if manifest.target == "portable" else "float Add",
            "quantized_ops": ["MatMul", "Gemm", "Conv"],
            "float_ops": "everything else, including nuwa::NearbyAttention3D and LayerNorm",
            "layers": {n: len(ts) for n, ts in targets.items()},
            "kept_fp32": list(keep_fp32),
        }
    else:
        for name in models:
            if kinds[name] in changed_kinds:
                if log:
                    log(f"fp16: converting {name}")
                converted[name] = convert_to_fp16(models[name])
        scheme = {
            "format": "float16 with float32 I/O",
            "fp32_ops": list(FP32_OPS),
            "kept_fp32": list(keep_fp32),
        }

    graph_precision = {n: (precision if n in converted else "fp32") for n in models}
    scheme["graphs"] = graph_precision
    tmp = Path(tempfile.mkdtemp(prefix=".nuwa-quantize-", dir=out_dir))
    raw = json.loads((onnx_dir / MANIFEST_FILE).read_text())
    decoder, prepared_files = manifest.decoder, list[str]()
    # int8: one weights file for every graph (the FP32 source's is not copied)
    store = SharedWeights(tmp / WEIGHTS_FILE) if precision == "int8" else None
    try:
        for name, info in manifest.graphs.items():
            dst = tmp / info.file
            if name in converted:  # loaded with its external data
                model = converted[name]
                model.producer_name = "nuwa-quantize"
                if strict_check:
                    onnx.checker.check_model(model, full_check=True)
                else:
                    onnx.checker.check_model(model)
            if store is not None:
                stored = onnx.ModelProto()
                stored.CopyFrom(converted.get(name, models[name]))
                store.externalize(stored)
                onnx.save(stored, str(dst))
            elif name in converted:  # fp16: self-contained
                onnx.save(converted[name], str(dst))
            else:
                shutil.copyfile(manifest.path(name), dst)
            raw["graphs"][name]["sha256"] = sha256_file(dst)
            raw["graphs"][name].setdefault("meta", {})["precision"] = graph_precision[name]
            # the prepared forms are made again from the graph as written here
            raw["graphs"][name].pop("prepared", None)
            if manifest.target == "portable":
                entry = write_prepared_cpu(tmp, dataclasses.replace(info, prepared={}), decoder)
                if precision == "int8" and name in converted:
                    entry = write_prepared_cpu_matmulnbits(
                        tmp, entry, decoder, converted[name], store
                    )
                for key, form in entry.prepared.items():
                    raw["graphs"][name].setdefault("prepared", {})[key] = form.to_dict()
                    prepared_files.append(form.file)
        if store is not None:
            raw["external_data"] = {WEIGHTS_FILE: sha256_file(store.path)}
        else:  # graphs copied unchanged still point at the export's shared weights file(s)
            for file in raw.get("external_data", {}):
                shutil.copyfile(onnx_dir / file, tmp / file)
        external = list(raw.get("external_data", {}))
        files = [*external, *(info.file for info in manifest.graphs.values()), *prepared_files]
        for file in files:
            os.replace(tmp / file, out_dir / file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    raw["precision"] = precision
    raw["source"] = {
        "directory": str(onnx_dir),
        "precision": manifest.precision,
        "model": manifest.model,
    }
    raw["calibration"] = calibration
    raw["quantization"] = scheme
    raw["quality_gates"] = {"skipped": "not run (--no-gates)"} if gates is None else None
    copy_generation_config(onnx_dir, out_dir)  # the model's sampling defaults
    copy_input_rules(onnx_dir, out_dir)  # its vocabulary, sketch palette and sizes
    _write_manifest(out_dir, raw)
    if gates is not None:
        result = gates(onnx_dir, out_dir, log)
        raw["quality_gates"] = result
        _write_manifest(out_dir, raw)
        if not result["passed"]:
            failed = [t for t, r in result["tasks"].items() if not r["passed"]]
            raise QualityGateError(
                f"{precision} failed its quality gate on {', '.join(failed)} (results in "
                f"{out_dir / MANIFEST_FILE}); the graphs are written but should not ship"
            )
    load_manifest(out_dir)  # what we wrote must read back
    return raw


def _write_manifest(out_dir: Path, raw: dict[str, Any]) -> None:
    path = out_dir / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(path)
