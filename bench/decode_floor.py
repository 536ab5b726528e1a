"""How far the CPU decoder step is from its floor (issue 37, DESIGN §11): in one run, each
precision's step as the runtime runs it, beside the time its weight layers alone take.

The floor of a precision is its step's **weight layers extracted as they run** — the graph's own
``MatMul``/``Gemm`` nodes on constant weights (FP32), its ``MatMulNBits`` nodes or Q/DQ chains
(INT8, whichever kernels this CPU runs: the export's prepared form) — with nothing between
them: every layer reads an input of its own, so the time is what streaming the step's weight
bytes through those kernels costs (``onnx.utils.Extractor`` cuts the subgraph out of the step).
The step is timed the way ``bench/precision.py`` times it: the graph as the CPU backend runs it,
IO-bound with the ring cache written in place, at a position in the middle of a video (ring
wrapped), one intra-op thread, each graph stepping alone in a process of its own; the rounds
alternate step, floor and a read of the step's ring KV cache (one ``ReduceSum`` per cache
tensor: the cache bytes every step streams besides its weights). Reported per precision: ms per
step and per floor (medians of CPU time), the step/floor ratio, the weight bytes, the cache
bytes and their read time, and INT8's speed-up over FP32.

Targets at batch 1 (issue 37): FP32 step <= 1.3x its floor, INT8 <= 2x its floor, INT8 >= 2x
FP32.

    python3 bench/decode_floor.py                         # the demo's export; quantizes INT8
    python3 bench/decode_floor.py --onnx-dir D --int8-dir Q --no-write

Writes the ``decode_floor`` section of ``bench/RESULTS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
from cpu_exports import add_export_options, int8_export, report
from decode_setup import cpu_name
from precision_timing import step_feeds, time_alone

TARGETS = {"fp32": 1.3, "int8": 2.0}  # step / floor at batch 1
INT8_SPEEDUP_TARGET = 2.0
WEIGHT_LAYER_OPS = ("MatMul", "Gemm", "MatMulNBits")


def _log(msg: str) -> None:
    print(f"[decode_floor] {msg}", file=sys.stderr, flush=True)


def _constant(name: str, producer: dict[str, Any], inits: set[str]) -> bool:
    """Whether ``name`` is an initializer, or computed from initializers only (a weight's
    ``DequantizeLinear``, a ``Transpose`` of a constant, ...)."""
    if name in inits:
        return True
    node = producer.get(name)
    return node is not None and all(_constant(i, producer, inits) for i in node.input if i)


def _activation(name: str, producer: dict[str, Any]) -> str:
    """The float activation behind ``name``: through a ``QuantizeLinear -> DequantizeLinear``
    pair (an INT8 layer's input) back to the tensor that is quantized."""
    node = producer.get(name)
    if node is not None and node.op_type == "DequantizeLinear":
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
    return name


def _layer_k(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """The inner dimension K of a weight layer (its activation is ``(rows, K)``)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "MatMulNBits":
        return int(attrs["K"].i)
    weight = shapes[node.input[1]]
    if node.op_type == "Gemm" and "transB" in attrs and attrs["transB"].i:
        return int(weight[1])
    return int(weight[0])


def floor_model(model: Any, batch: int) -> tuple[Any, int, int]:
    """The weight layers of ``model``'s main graph — MatMul / Gemm / MatMulNBits nodes on a
    constant weight, with the nodes that make their weights (a ``DequantizeLinear``) and, for
    a Q/DQ layer, their activation's ``QuantizeLinear -> DequantizeLinear`` — as a graph of
    their own, every layer reading an input ``(batch, K)`` of its own. Returns (the graph, its
    layers, its weight bytes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    shapes: dict[str, tuple[int, ...]] = {n: tuple(t.dims) for n, t in inits.items()}
    for node in graph.node:  # a weight's DequantizeLinear keeps its initializer's shape
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    nodes: list[Any] = []
    seen: set[int] = set()
    inputs, outputs, used = [], [], set()

    def take(name: str) -> None:
        """The constant subgraph computing ``name``, into ``nodes`` / ``used``."""
        if name in inits:
            used.add(name)
            return
        node = producer.get(name)
        if node is None or id(node) in seen:
            return
        for i in node.input:
            if i:
                take(i)
        seen.add(id(node))
        nodes.append(node)

    constants = set(inits)
    for layer in graph.node:
        if layer.op_type not in WEIGHT_LAYER_OPS or len(layer.input) < 2:
            continue
        if not _constant(layer.input[1], producer, constants):
            continue
        act = _activation(layer.input[0], producer)
        k = _layer_k(layer, shapes)
        feed = f"floor_input_{len(inputs)}"
        inputs.append(helper.make_tensor_value_info(feed, TensorProto.FLOAT, [batch, k]))
        rename = {act: feed}
        if act != layer.input[0]:  # a Q/DQ layer: its activation's Q -> DQ, on the new input
            dq = producer[layer.input[0]]
            q = producer[dq.input[0]]
            for chain in (q, dq):
                for i in chain.input[1:]:
                    take(i)
                copy = onnx.NodeProto()
                copy.CopyFrom(chain)
                copy.name = f"{chain.name}/floor{len(inputs)}"
                copy.input[:] = [rename.get(i, i) for i in chain.input]
                copy.output[:] = [f"{o}/floor{len(inputs)}" for o in chain.output]
                rename[chain.output[0]] = copy.output[0]
                nodes.append(copy)
        for i in layer.input[1:]:
            if i:
                take(i)
        copy = onnx.NodeProto()
        copy.CopyFrom(layer)
        copy.input[0] = rename.get(layer.input[0], rename.get(act, act))
        nodes.append(copy)
        outputs.append(helper.make_tensor_value_info(layer.output[0], TensorProto.FLOAT, None))
    if not outputs:
        raise SystemExit("no weight layers found in the decoder step")
    floor = helper.make_graph(
        nodes, "weight_layers", inputs, outputs, [inits[n] for n in sorted(used)]
    )
    out = helper.make_model(floor, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    size = sum(numpy_helper.to_array(inits[n]).nbytes for n in used)
    return out, len(outputs), int(size)


def cache_read_model(step: Any, past: list[str], batch: int) -> tuple[Any, int]:
    """A graph that reads every ``past`` ring-cache input of ``step`` once (a ``ReduceSum``
    each): what streaming the KV cache a step attends over costs. Returns (graph, bytes)."""
    from onnx import TensorProto, helper

    shapes = {
        v.name: [
            d.dim_value if d.HasField("dim_value") else batch for d in v.type.tensor_type.shape.dim
        ]
        for v in step.graph.input
    }
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in past]
    nodes = [helper.make_node("ReduceSum", [n], [f"{n}/read"], keepdims=0) for n in past]
    outputs = [helper.make_tensor_value_info(f"{n}/read", TensorProto.FLOAT, []) for n in past]
    model = helper.make_model(
        helper.make_graph(nodes, "cache_read", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 9
    size = sum(4 * int(np.prod(shapes[n])) for n in past)
    return model, size


def floor_feeds(floor: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in floor.graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import onnx

    from nuwa.export.weights import materialize_weights
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import resolve_int8_kernels

    fp32 = Path(args.onnx_dir)
    int8 = int8_export(args, "decode_floor")
    kernels = resolve_int8_kernels("auto")
    work = Path(tempfile.mkdtemp(prefix="nuwa-decode-floor-"))
    rows: dict[str, dict[str, Any]] = {}
    paths: dict[str, tuple[Path, Path, dict[str, str]]] = {}
    for name, directory in (("fp32", fp32), ("int8", int8)):
        backend = OnnxRuntimeBackend.from_model_dir(directory, threads=1)
        frames = backend.spec.frames
        graph = backend.manifest.decoder_step("text", frames)
        path, left = backend.sessions.source(graph)
        step = onnx.load(str(path))
        step = left.apply(graph, step) if left.changes(graph) else step
        materialize_weights(step)  # stored weights' Cast/Transpose folded, as ORT folds them
        floor, layers, size = floor_model(step, args.batch)
        reader, cache_bytes = cache_read_model(
            step, backend.manifest.decoder.past_names(), args.batch
        )
        position = (
            frames // 2
        ) * backend.spec.tokens_per_frame + backend.spec.tokens_per_frame // 2
        dec = backend.manifest.decoder
        cache = dict(zip(dec.present_names(), dec.past_names(), strict=True))
        files = {}
        for what, model, feeds, bound in (
            ("step", step, step_feeds(backend, graph.name, args.batch, position), cache),
            ("floor", floor, floor_feeds(floor), {}),
            ("cache", reader, floor_feeds(reader), {}),
        ):
            files[what] = (work / f"{name}-{what}.onnx", work / f"{name}-{what}.npz", bound)
            onnx.save(model, str(files[what][0]))
            np.savez(files[what][1], **feeds)
        paths[name] = files  # type: ignore[assignment]
        rows[name] = {
            "weight_bytes": size,
            "layers": layers,
            "kernels": kernels if name == "int8" else "fp32",
            "source": path.name,
            "cache_bytes": cache_bytes,
            "step_cpu": [],
            "floor_cpu": [],
            "cache_cpu": [],
        }
    block = max(1, args.steps // args.rounds)
    for r in range(args.rounds):
        _log(f"round {r + 1}/{args.rounds}: {block} steps of each graph, each in its own process")
        order = [(n, w) for n in rows for w in ("step", "floor", "cache")]
        order = order[r % len(order) :] + order[: r % len(order)]
        for name, what in order:
            model_path, feeds_path, cache = paths[name][what]  # type: ignore[index]
            _, cpu = time_alone(model_path, feeds_path, cache, 1, block)
            rows[name][f"{what}_cpu"].append(float(np.median(cpu)) * 1e3)
    for row in rows.values():
        row["step_ms"] = float(np.median(row["step_cpu"]))
        row["floor_ms"] = float(np.median(row["floor_cpu"]))
        row["ratio"] = row["step_ms"] / row["floor_ms"]
        row["cache_ms"] = float(np.median(row["cache_cpu"]))
        row["ratio_with_cache"] = row["step_ms"] / (row["floor_ms"] + row["cache_ms"])
        row["ratio_range"] = [
            float(min(s / f for s, f in zip(row["step_cpu"], row["floor_cpu"], strict=True))),
            float(max(s / f for s, f in zip(row["step_cpu"], row["floor_cpu"], strict=True))),
        ]
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_name()}, 1 intra-op thread",
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_round": block,
        "fp32_dir": str(fp32),
        "int8_dir": str(int8),
        "rows": rows,
        "int8_speedup": rows["fp32"]["step_ms"] / rows["int8"]["step_ms"],
    }


def section(result: dict[str, Any]) -> str:
    lines = [
        f"`python bench/decode_floor.py` — {result['date']}, {result['machine']}; batch "
        f"{result['batch']}, "
        f"{result['rounds']} rounds of {result['steps_per_round']} steps per graph, each graph "
        "stepping alone in a process of its own; medians of CPU time.",
        "",
        "| precision | runs | weight layers | weight MB | step ms | floor ms | step / floor "
        "(rounds) | target | KV cache MB, read ms | step / (floor + cache read) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, row in result["rows"].items():
        target = TARGETS[name]
        verdict = "met" if row["ratio"] <= target else "not met"
        lo, hi = row["ratio_range"]
        lines.append(
            f"| {name} | {row['kernels']} (`{row['source']}`) | {row['layers']} | "
            f"{row['weight_bytes'] / 1e6:.1f} | {row['step_ms']:.3f} | {row['floor_ms']:.3f} | "
            f"{row['ratio']:.2f}x ({lo:.2f}–{hi:.2f}) | <= {target}x: {verdict} | "
            f"{row['cache_bytes'] / 1e6:.1f}, {row['cache_ms']:.3f} | "
            f"{row['ratio_with_cache']:.2f}x |"
        )
    speedup = result["int8_speedup"]
    verdict = "met" if speedup >= INT8_SPEEDUP_TARGET else "not met"
    lines += [
        "",
        f"INT8 step {speedup:.2f}x faster than FP32 (target >= {INT8_SPEEDUP_TARGET}x: "
        f"{verdict}). The floor is the step's own weight layers cut out of it, each reading an "
        "input of its own: what streaming its weight bytes through the same kernels costs. "
        "Every step also reads the FP32 ring KV cache it attends over (the last columns: one "
        "ReduceSum per cache tensor, timed in the same rounds), which the weight floor leaves out.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_export_options(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000, help="timed steps per graph, all rounds")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    result = measure(args)
    report(section(result), result, args, "decode_floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
