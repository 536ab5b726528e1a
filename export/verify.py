"""Numerical checks of exported graphs against PyTorch (DESIGN §6: every export is checked).

- :func:`check_graph` runs one graph in ONNX Runtime (CPU) and its PyTorch module on the same
  random inputs and returns the largest absolute error of the float outputs and the fraction of
  differing integer outputs (VQ codes).
- :func:`write_polygraphy_reference` saves one graph's random inputs and PyTorch outputs for
  ``polygraphy run --onnxrt --load-outputs`` (``python -m nuwa.export.verify``).

A whole greedy generation through an export needs a decode loop, which is the runtime's (a
floor above export): the tests compare it (``tests/export/test_generation.py``).

A ``tensorrt`` export has no 3DNA function bodies; :func:`check_graph` checks such a graph by
attaching the portable bodies to an in-memory copy, so everything but the plugin itself is
checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from nuwa.export.attention_node import is_attention_node
from nuwa.export.onnx_function import attach_functions

if TYPE_CHECKING:
    import onnxruntime as ort

    from nuwa.export.graph_specs import GraphSpec

FLOAT_TOLERANCE = 1e-4  # FP32 max abs error allowed on logits, K/V and pixels
CODE_MISMATCH_TOLERANCE = 0.01  # VQ codes: argmin near-ties may flip between implementations


@dataclass(frozen=True)
class GraphCheck:
    """Result of comparing one graph with PyTorch on random inputs."""

    max_abs_error: float  # over every float output (0.0 if none)
    code_mismatch: float  # fraction of differing integer outputs (0.0 if none)
    batch: int

    @property
    def ok(self) -> bool:
        return (
            self.max_abs_error <= FLOAT_TOLERANCE and self.code_mismatch <= CODE_MISMATCH_TOLERANCE
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "max_abs_error": self.max_abs_error,
            "code_mismatch": self.code_mismatch,
            "batch": self.batch,
            "tolerance": FLOAT_TOLERANCE,
        }


def session(model: str | Path | onnx.ModelProto, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session (``threads`` intra-op threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def runnable_copy(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` with 3DNA function bodies (a tensorrt-target graph made runnable by ORT)."""
    if not any(is_attention_node(n) for n in model.graph.node) or len(model.functions):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if is_attention_node(node):
            keep = [a for a in node.attribute if not a.name.startswith("plugin_")]
            del node.attribute[:]
            node.attribute.extend(keep)
    attach_functions(copy, opset)
    return copy


def compare_outputs(actual: list[np.ndarray], expected: list[np.ndarray], batch: int) -> GraphCheck:
    max_err, mismatched, total = 0.0, 0, 0
    for a, e in zip(actual, expected, strict=True):
        if a.shape != e.shape:
            raise ValueError(f"output shape {a.shape} != PyTorch's {e.shape}")
        if np.issubdtype(e.dtype, np.floating):
            max_err = max(max_err, float(np.abs(a.astype(np.float64) - e).max(initial=0.0)))
        else:
            mismatched += int((a != e).sum())
            total += e.size
    return GraphCheck(max_err, mismatched / total if total else 0.0, batch)


def reference_outputs(spec: GraphSpec, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """PyTorch's outputs of ``spec``'s module; its 3DNA calls through the export op's kernel (the
    model's gather implementation; whole-grid calls in bounded blocks of queries, so that a
    paper-size grid's neighbourhoods are never gathered at once)."""
    import torch

    from nuwa.export.attention_marker import attention_as_onnx_nodes
    from nuwa.model.transformer import NuwaTransformer

    transformer = next((m for m in spec.module.modules() if isinstance(m, NuwaTransformer)), None)
    with torch.no_grad():
        if transformer is None:  # the VQ-GAN graphs: no attention
            ref = spec.module(*inputs)
        else:
            with attention_as_onnx_nodes(transformer):
                ref = spec.module(*inputs)
    return ref if isinstance(ref, tuple) else (ref,)


def check_graph(
    spec: GraphSpec,
    model: str | Path | onnx.ModelProto,
    opset: int,
    batch: int = 2,
    seed: int = 1,
) -> GraphCheck:
    """Run ``spec``'s PyTorch module and the ONNX graph on the same random inputs. A graph file
    that runs as saved (a portable one) is given to ONNX Runtime as the file, which reads its
    external weights itself: a graph over 2 GB is never serialized in memory."""
    import torch

    if isinstance(model, onnx.ModelProto):
        sess = session(runnable_copy(model, opset))
    else:
        structure = onnx.load(str(model), load_external_data=False)
        runs_as_saved = runnable_copy(structure, opset) is structure
        sess = session(model if runs_as_saved else runnable_copy(onnx.load(str(model)), opset))
    inputs = spec.make_inputs(batch, torch.Generator().manual_seed(seed))
    ref = reference_outputs(spec, inputs)
    wanted = {i.name for i in sess.get_inputs()}  # the exporter drops inputs a graph ignores
    feeds = {
        name: x.numpy() for name, x in zip(spec.input_names, inputs, strict=True) if name in wanted
    }
    out = sess.run(spec.output_names, feeds)
    return compare_outputs(out, [r.numpy() for r in ref], batch)


# --------------------------------------------------------------------------------------------
# Polygraphy: PyTorch reference data for `polygraphy run --onnxrt --load-outputs`
# --------------------------------------------------------------------------------------------

POLYGRAPHY_INPUTS = "inputs.json"
POLYGRAPHY_OUTPUTS = "torch_outputs.json"


def write_polygraphy_reference(
    spec: GraphSpec, directory: str | Path, batch: int = 2, seed: int = 1
) -> tuple[Path, Path]:
    """Save random inputs of ``spec`` and PyTorch's outputs on them in Polygraphy's JSON
    formats, so that::

        polygraphy run GRAPH.onnx --onnxrt --load-inputs inputs.json \\
            --load-outputs torch_outputs.json --atol 1e-4 --rtol 0

    compares ONNX Runtime with PyTorch. Returns (inputs path, outputs path)."""
    import torch
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.json import save_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inputs = spec.make_inputs(batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = spec.module(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    feeds = {name: x.numpy() for name, x in zip(spec.input_names, inputs, strict=True)}
    outputs = {name: r.numpy() for name, r in zip(spec.output_names, ref, strict=True)}
    inputs_path, outputs_path = directory / POLYGRAPHY_INPUTS, directory / POLYGRAPHY_OUTPUTS
    save_json([feeds], str(inputs_path), description="PyTorch reference inputs")
    results = RunResults([("pytorch", [IterationResult(outputs, runner_name="pytorch")])])
    results.save(str(outputs_path))
    return inputs_path, outputs_path


def main(argv: list[str] | None = None) -> int:
    """``python -m nuwa.export.verify MODEL_DIR GRAPH OUT_DIR``: write the Polygraphy reference
    data of one graph (names as in the manifest, e.g. ``decoder_step.text``)."""
    import argparse

    from nuwa.export.graph_specs import build_graph_specs
    from nuwa.model.nuwa import NuwaModel

    parser = argparse.ArgumentParser(prog="python -m nuwa.export.verify")
    parser.add_argument("model_dir")
    parser.add_argument("graph")
    parser.add_argument("out_dir")
    parser.add_argument("--frames", type=int, nargs="*", default=None)
    args = parser.parse_args(argv)
    model = NuwaModel.from_pretrained(args.model_dir)
    frames = args.frames or sorted({1, model.config.transformer.frames})
    specs = {s.name: s for s in build_graph_specs(model, frames)}
    if args.graph not in specs:
        parser.error(f"unknown graph {args.graph!r}; choose one of {sorted(specs)}")
    for path in write_polygraphy_reference(specs[args.graph], args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
