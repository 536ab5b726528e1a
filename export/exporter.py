"""``nuwa export``: every graph the runtime needs, checked, hashed and listed in the manifest.

Each :class:`~nuwa.export.graphs.GraphSpec` is traced with the TorchScript ONNX exporter
(``dynamo=False``: module-scoped, path-like node names such as
``/transformer/decoder_layers.0/self_attn/NearbyAttention3D`` that quantization can target, and
a ``symbolic`` hook that emits the custom 3DNA node). Then, per target:

- ``portable``: every ``nuwa::NearbyAttention3D`` node gets its ONNX local function (the gather
  body in standard ops, :mod:`nuwa.export.onnx_function`), and
  ``onnx.checker.check_model(full_check=True)`` must pass;
- ``tensorrt``: no function bodies; nodes carry ``plugin_namespace``/``plugin_version`` so
  TensorRT's ONNX parser binds the 3DNA plugin.

Graphs are written into a temporary folder inside the output directory and moved in place only
when all of them exported and passed their checks; the manifest is written last, atomically, so
a failed export never leaves a manifest behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

import nuwa
from nuwa.model.checkpoint import CheckpointError, checkpoint_hash
from nuwa.model.nuwa import NuwaModel

from .errors import ExportError
from .graphs import (
    CROSS_KEY,
    CROSS_VALUE,
    INPUT_IDS,
    LOGITS,
    PAST_KEY,
    PAST_VALUE,
    POSITIONS,
    PRESENT_KEY,
    PRESENT_VALUE,
    GraphSpec,
    attention_as_onnx_nodes,
    build_graph_specs,
    condition_grids,
    register_symbolic,
)
from .manifest import (
    MANIFEST_FILE,
    TARGETS,
    ConditionInfo,
    DecoderInfo,
    DecoderStepInfo,
    GraphInfo,
    Manifest,
    TensorInfo,
    sha256_file,
    write_manifest,
)
from .onnx_function import attach_functions, is_attention_node, to_tensorrt

DEFAULT_OPSET = 18
MIN_OPSET = 18
MAX_OPSET = 20  # the TorchScript exporter's newest opset in torch 2.13
PRECISION = "fp32"


def default_frames(model: NuwaModel) -> list[int]:
    """Target frame counts to export decoder steps for: images (1) and full videos."""
    return sorted({1, model.config.transformer.frames})


def _dtype_name(elem_type: int) -> str:
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def _tensor_infos(values: list[onnx.ValueInfoProto]) -> tuple[TensorInfo, ...]:
    out = []
    for v in values:
        t = v.type.tensor_type
        shape: list[int | str] = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or f"{v.name}_dim{i}")
        out.append(TensorInfo(v.name, _dtype_name(t.elem_type), tuple(shape)))
    return tuple(out)


def _trace(spec: GraphSpec, model: NuwaModel, path: Path, opset: int) -> None:
    gen = torch.Generator().manual_seed(0)
    inputs = spec.make_inputs(2, gen)
    register_symbolic(opset)
    with torch.no_grad(), attention_as_onnx_nodes(model.transformer), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript-exporter deprecation warnings
        torch.onnx.export(
            spec.module,
            inputs,
            str(path),
            dynamo=False,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            custom_opsets={"nuwa": 1},
        )


def finalize_graph(
    onnx_model: onnx.ModelProto, target: str, opset: int, name: str
) -> onnx.ModelProto:
    """Attach 3DNA functions (portable) or plugin tags (tensorrt); check; set metadata."""
    if target == "portable":
        attach_functions(onnx_model, opset)
    else:
        to_tensorrt(onnx_model)
    onnx_model.ir_version = max(onnx_model.ir_version, 10)
    onnx_model.producer_name = "nuwa-export"
    onnx_model.producer_version = nuwa.__version__
    onnx_model.graph.name = name
    if target == "portable":
        onnx.checker.check_model(onnx_model, full_check=True)
    else:  # the plugin node has no schema here; TensorRT checks it when it parses
        onnx.checker.check_model(onnx_model)
    return onnx_model


def export_graph(
    spec: GraphSpec, model: NuwaModel, path: Path, target: str, opset: int
) -> GraphInfo:
    """Trace one graph to ``path`` and return its manifest entry."""
    _trace(spec, model, path, opset)
    onnx_model = finalize_graph(onnx.load(str(path)), target, opset, spec.name)
    onnx.save(onnx_model, str(path))
    return GraphInfo(
        name=spec.name,
        file=spec.file,
        kind=spec.kind,
        sha256=sha256_file(path),
        inputs=_tensor_infos(list(onnx_model.graph.input)),
        outputs=_tensor_infos(list(onnx_model.graph.output)),
        attention_nodes=sum(is_attention_node(n) for n in onnx_model.graph.node),
        meta=spec.meta,
    )


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".nuwa-write-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write to output directory {out_dir}: {exc.strerror}") from exc


def _validate(target: str, opset: int) -> None:
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET}")


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    target: str = "portable",
    opset: int = DEFAULT_OPSET,
    frames: list[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> Manifest:
    """Export every graph of the model in ``model_dir`` into ``out_dir`` and write its manifest.

    ``frames``: the request frame counts to export decoder steps for (default: 1 and the trained
    number of frames). Raises :class:`ExportError` or :class:`CheckpointError` on bad input.
    """
    _validate(target, opset)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    try:
        model = NuwaModel.from_pretrained(model_dir)
    except CheckpointError:
        raise
    except Exception as exc:  # anything else a broken directory can raise while loading
        raise CheckpointError(f"cannot load the model in {model_dir}: {exc}") from exc
    cfg = model.config.transformer
    frames = sorted(set(frames)) if frames else default_frames(model)
    if any(not 1 <= f <= cfg.frames for f in frames):
        raise ExportError(f"--frames must be in 1..{cfg.frames} (the trained frames), got {frames}")
    _check_writable(out_dir)
    stale = out_dir / MANIFEST_FILE
    stale.unlink(missing_ok=True)  # files and manifest must never disagree, even on failure

    specs = build_graph_specs(model, frames)
    graphs: dict[str, GraphInfo] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".nuwa-export-", dir=out_dir))
    try:
        for spec in specs:
            if log:
                log(f"exporting {spec.file}")
            graphs[spec.name] = export_graph(spec, model, tmp / spec.file, target, opset)
        for info in graphs.values():
            os.replace(tmp / info.file, out_dir / info.file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    conditions = {
        key: ConditionInfo(
            key,
            "text_encoder" if key == "text" else f"sketch_condition_encoder.t{grid[0]}",
            grid,
            extents,
        )
        for key, (grid, extents) in condition_grids(model, frames).items()
    }
    steps = tuple(
        DecoderStepInfo(s.name, s.meta["condition"], s.meta["frames"], tuple(s.meta["target_grid"]))
        for s in specs
        if s.kind == "decoder_step"
    )
    manifest = Manifest(
        directory=out_dir,
        target=target,
        opset=opset,
        precision=PRECISION,
        model={"name": model.config.name, "checkpoint_sha256": checkpoint_hash(model_dir)},
        config=model.config.to_dict(),
        decoder=DecoderInfo(
            num_layers=cfg.n_decoder_layers,
            num_heads=cfg.n_heads,
            head_dim=cfg.head_dim,
            cache_slots=cfg.cache_slots,
            vocab_size=cfg.image_vocab_size,
            bos_id=cfg.bos_id,
            grid=cfg.target_grid,
            input_ids=INPUT_IDS,
            positions=POSITIONS,
            logits=LOGITS,
            past_key=PAST_KEY,
            past_value=PAST_VALUE,
            present_key=PRESENT_KEY,
            present_value=PRESENT_VALUE,
            cross_key=CROSS_KEY,
            cross_value=CROSS_VALUE,
        ),
        conditions=conditions,
        decoder_steps=steps,
        graphs=graphs,
    )
    write_manifest(manifest)
    if log:
        log(f"wrote {len(graphs)} graphs and {out_dir / MANIFEST_FILE}")
    return manifest
