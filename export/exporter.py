"""``nuwa export``: every graph the runtime needs, checked, hashed and listed in the manifest.

Each :class:`~nuwa.export.graph_specs.GraphSpec` is traced with the TorchScript ONNX exporter
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
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.external_data_helper import load_external_data_for_tensor
from tqdm import tqdm

import nuwa
from nuwa.export.attention_marker import attention_as_onnx_nodes, register_symbolic
from nuwa.export.attention_node import DOMAIN, DOMAIN_VERSION, is_attention_node, to_tensorrt
from nuwa.export.graph_specs import GraphSpec, build_graph_specs, condition_grids
from nuwa.export.onnx_function import attach_functions
from nuwa.export.prepared_graphs import write_prepared_cpu
from nuwa.export.verify import FLOAT_TOLERANCE, check_graph
from nuwa.export.weights import WEIGHTS_FILE, SharedWeights, external_location
from nuwa.model.checkpoint import CheckpointError
from nuwa.model.nuwa import NuwaModel
from nuwa.spec import graph_names as names
from nuwa.spec.errors import ExportError
from nuwa.spec.generation_config import GenerationConfigError, copy_generation_config
from nuwa.spec.input_rules import InputRulesError, copy_input_rules
from nuwa.spec.manifest import (
    MANIFEST_FILE,
    TARGETS,
    ConditionInfo,
    DecoderInfo,
    DecoderStepInfo,
    GraphInfo,
    Manifest,
    TensorInfo,
    checkpoint_sha256,
    sha256_file,
    write_manifest,
)

DEFAULT_OPSET = 18
MIN_OPSET = 18
MAX_OPSET = 20  # the TorchScript exporter's newest opset in torch 2.13
PRECISION = "fp32"


def default_frames(model: NuwaModel) -> list[int]:
    """Request frame counts to export sketch conditions for: every count up to the trained
    frames (the graphs share one weights file, so each costs only its graph structure)."""
    return list(range(1, model.config.transformer.frames + 1))


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


def _trace(spec: GraphSpec, model: NuwaModel, path: Path, opset: int) -> list[tuple[int, ...]]:
    """Export ``spec`` to ``path``; returns its outputs' shapes on the batch-2 trace inputs."""
    gen = torch.Generator().manual_seed(0)
    inputs = spec.make_inputs(2, gen)
    register_symbolic(opset)
    nodes = attention_as_onnx_nodes(model.transformer, spec.attention_grid)
    with torch.no_grad(), nodes, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and TorchScript-exporter deprecation warnings
        outputs = spec.module(*inputs)
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
            custom_opsets={DOMAIN: DOMAIN_VERSION} if spec.uses_attention else None,
        )
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [tuple(o.shape) for o in outputs]


def set_io_shapes(
    onnx_model: onnx.ModelProto, spec: GraphSpec, output_shapes: list[tuple[int, ...]]
) -> None:
    """Declare every output dim: ``batch`` on dynamic axes, the traced size elsewhere (the
    exporter leaves dims behind the custom 3DNA node unnamed)."""
    for value, shape in zip(onnx_model.graph.output, output_shapes, strict=True):
        dynamic = spec.dynamic_axes.get(value.name, {})
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for axis, size in enumerate(shape):
            dim = dims.add()
            if axis in dynamic:
                dim.dim_param = dynamic[axis]
            else:
                dim.dim_value = int(size)


def finalize_graph(
    onnx_model: onnx.ModelProto, target: str, opset: int, name: str, path: Path | None = None
) -> onnx.ModelProto:
    """Attach 3DNA functions (portable) or plugin tags (tensorrt); check; set metadata.
    ``path``: save the graph there and check the file (a graph whose weights are external, in
    files beside ``path``: too big to check in memory), else check it in memory."""
    if target == "portable":
        attach_functions(onnx_model, opset)
    else:
        to_tensorrt(onnx_model)
    onnx_model.ir_version = max(onnx_model.ir_version, 10)
    onnx_model.producer_name = "nuwa-export"
    onnx_model.producer_version = nuwa.__version__
    onnx_model.graph.name = name
    checked: onnx.ModelProto | str = onnx_model
    if path is not None:
        onnx.save(onnx_model, str(path))
        checked = str(path)
    if target == "portable":
        onnx.checker.check_model(checked, full_check=True)
    else:  # the plugin node has no schema here; TensorRT checks it when it parses
        onnx.checker.check_model(checked)
    return onnx_model


def _traced_weight_files(onnx_model: onnx.ModelProto, directory: Path) -> set[Path]:
    """The files the TorchScript exporter wrote a graph's tensors into (a graph over 2 GB:
    one file per tensor beside it); empty for a graph saved in one piece."""
    tensors = [*onnx_model.graph.initializer]
    for node in onnx_model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    return {
        directory / external_location(t)
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL
    }


def _inline_node_tensors(onnx_model: onnx.ModelProto, directory: Path) -> None:
    """Load, in place, the tensors of the main graph's node attributes (``Constant`` values)
    that the TorchScript exporter stored in files of their own."""
    for node in onnx_model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                load_external_data_for_tensor(attr.t, str(directory))
                attr.t.data_location = onnx.TensorProto.DEFAULT
                del attr.t.external_data[:]


def export_graph(
    spec: GraphSpec,
    model: NuwaModel,
    path: Path,
    target: str,
    opset: int,
    verify: bool = True,
    weights: SharedWeights | None = None,
) -> GraphInfo:
    """Trace one graph to ``path``, check it (ONNX checker; ONNX Runtime against PyTorch on
    random batch-2 inputs when ``verify``), move its weights into ``weights`` (else they stay
    inline) and return its manifest entry.

    With ``weights``, the graph's tensors move into that file before the checks, which then read
    the saved graph (ONNX Runtime loads its weights from the file): no copy of the weights
    besides ONNX Runtime's own is in memory while it runs (a paper-size encoder's ~1.3 GB was in
    memory four times: the graph, its serialized copy, ONNX Runtime's and PyTorch's). A graph
    over 2 GB (the paper preset's decoder), which the TorchScript exporter writes as one file
    per tensor, never lies in memory whole: its tensors move into ``weights`` one at a time; it
    needs ``weights``."""
    output_shapes = _trace(spec, model, path, opset)
    onnx_model = onnx.load(str(path), load_external_data=False)
    traced = _traced_weight_files(onnx_model, path.parent)
    if traced and weights is None:  # a graph over 2 GB, its tensors in files of their own
        raise ExportError(f"{spec.file} is over 2 GB: exporting it needs a shared weights file")
    if not traced:  # the usual graph: one file, loaded whole
        onnx_model = onnx.load(str(path))
    set_io_shapes(onnx_model, spec, output_shapes)
    if traced:
        _inline_node_tensors(onnx_model, path.parent)
    if weights is not None:  # a graph over 2 GB: one tensor at a time, never whole in memory
        weights.externalize(onnx_model, base_dir=path.parent if traced else None)
        for file in traced:
            file.unlink()
    saved = path if weights is not None else None  # the checks read the saved graph
    try:
        onnx_model = finalize_graph(onnx_model, target, opset, spec.name, saved)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{spec.file} failed the ONNX checker: {first}") from exc
    check: dict[str, float | int] = {}
    if verify:
        result = check_graph(spec, saved if saved is not None else onnx_model, opset)
        if not result.ok:
            raise ExportError(
                f"{spec.file} does not match PyTorch: max abs error {result.max_abs_error:.3g} "
                f"(tolerance {FLOAT_TOLERANCE:g}), codes differing {result.code_mismatch:.2%}"
            )
        check = result.to_dict()
    if weights is not None:
        weights.externalize(onnx_model)
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
        check=check,
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


def decoder_info(model: NuwaModel) -> DecoderInfo:
    """The manifest's decoder section of ``model``: cache geometry, vocabulary, I/O names."""
    cfg = model.config.transformer
    return DecoderInfo(
        num_layers=cfg.n_decoder_layers,
        num_heads=cfg.n_heads,
        head_dim=cfg.head_dim,
        cache_slots=cfg.cache_slots,
        vocab_size=cfg.image_vocab_size,
        bos_id=cfg.bos_id,
        grid=cfg.target_grid,
        input_ids=names.INPUT_IDS,
        positions=names.POSITIONS,
        logits=names.LOGITS,
        past_key=names.PAST_KEY,
        past_value=names.PAST_VALUE,
        present_key=names.PRESENT_KEY,
        present_value=names.PRESENT_VALUE,
        cross_key=names.CROSS_KEY,
        cross_value=names.CROSS_VALUE,
    )


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    target: str = "portable",
    opset: int = DEFAULT_OPSET,
    frames: list[int] | None = None,
    log: Callable[[str], None] | None = None,
    verify: bool = True,
    progress: bool = False,
) -> Manifest:
    """Export every graph of the model in ``model_dir`` into ``out_dir`` and write its manifest.

    ``target``: ``"portable"`` (3DNA as ONNX local functions; any runtime) or ``"tensorrt"``
    (plugin nodes, no function bodies). ``frames``: request frame counts whose sketch
    conditions are exported (``sketch_t{min(f, sketch_frames)}``; default: 1 and the trained
    frames); text conditions cover every frame count. ``verify``: run every graph in ONNX
    Runtime against PyTorch on random batch-2 inputs and record the error in the manifest.
    ``progress``: a progress bar over the graphs on stderr (else ``log`` gets one line per
    graph).

    Raises :class:`~nuwa.spec.errors.ExportError` (one-line message) on bad input or a failed
    check; ``out_dir`` then holds no ``manifest.json``.
    """
    _validate(target, opset)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    try:
        model = NuwaModel.from_pretrained(model_dir)
    except Exception as exc:  # CheckpointError, or anything else a broken directory raises
        msg = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
        raise ExportError(f"cannot load the model in {model_dir}: {msg}") from exc
    cfg = model.config.transformer
    frames = sorted(set(frames)) if frames else default_frames(model)
    if any(not 1 <= f <= cfg.frames for f in frames):
        raise ExportError(f"frames must be in 1..{cfg.frames} (the trained frames), got {frames}")
    _check_writable(out_dir)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # files and manifest never disagree

    specs = build_graph_specs(model, frames)
    decoder = decoder_info(model)
    graphs: dict[str, GraphInfo] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".nuwa-export-", dir=out_dir))
    try:
        weights = SharedWeights(tmp / WEIGHTS_FILE)
        with tqdm(
            specs, desc="exporting", unit="graph", file=sys.stderr, disable=not progress
        ) as bar:
            for spec in bar:
                bar.set_postfix_str(spec.file)
                if log and not progress:
                    log(f"exporting {spec.file}")
                graphs[spec.name] = export_graph(
                    spec, model, tmp / spec.file, target, opset, verify, weights
                )
        if target == "portable":  # and each decoder step as ONNX Runtime's CPU runs it
            graphs = {n: write_prepared_cpu(tmp, g, decoder) for n, g in graphs.items()}
        external = {WEIGHTS_FILE: sha256_file(weights.path)}
        prepared = [p.file for info in graphs.values() for p in info.prepared.values()]
        for file in [*external, *(info.file for info in graphs.values()), *prepared]:
            os.replace(tmp / file, out_dir / file)
    except OSError as exc:
        raise ExportError(f"cannot write the export into {out_dir}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    conditions = {
        key: ConditionInfo(
            key,
            names.condition_encoder_name(key, grid[0]),
            grid,
            extents,
        )
        for key, (grid, extents) in condition_grids(model, frames).items()
    }
    steps = tuple(
        DecoderStepInfo(s.name, s.meta["condition"], f, model.transformer.target_grid(f))
        for s in specs
        if s.kind == names.DECODER_STEP_KIND
        for f in s.meta["frames"]
    )
    try:  # the model's sampling defaults travel with its export
        copy_generation_config(model_dir, out_dir)
    except (GenerationConfigError, OSError) as exc:
        raise ExportError(f"cannot carry the generation config into {out_dir}: {exc}") from exc
    try:  # and its input rules (vocabulary, sketch palette, sizes): every runtime reads these
        copy_input_rules(model_dir, out_dir)
    except (InputRulesError, OSError) as exc:
        raise ExportError(f"cannot carry the input rules into {out_dir}: {exc}") from exc
    manifest = Manifest(
        directory=out_dir,
        target=target,
        opset=opset,
        precision=PRECISION,
        model={"name": model.config.name, "checkpoint_sha256": checkpoint_sha256(model_dir)},
        config=model.config.to_dict(),
        decoder=decoder,
        conditions=conditions,
        decoder_steps=steps,
        graphs=graphs,
        external_data=external,
        decoder_prefills={
            s.meta["condition"]: s.name for s in specs if s.kind == names.DECODER_PREFILL_KIND
        },
    )
    try:
        write_manifest(manifest)
    except OSError as exc:
        raise ExportError(f"cannot write {out_dir / MANIFEST_FILE}: {exc}") from exc
    if log:
        log(f"wrote {len(graphs)} graphs and {out_dir / MANIFEST_FILE}")
    return manifest
