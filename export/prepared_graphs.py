"""The prepared forms an export carries beside its portable graphs (manifest
``graphs.<name>.prepared``): each graph as one runtime runs it, written once here instead of
being rewritten in memory by every client (the Python runtime, serving, the C/C++ runtime).

- ``cpu`` (:data:`~nuwa.spec.manifest_entries.PREPARED_CPU`): a decoder step as ONNX Runtime's
  CPU runs it, its ring-cache writes as ``ScatterND`` (:mod:`nuwa.export.ring_cache_writes`:
  bit-identical outputs). Written for every ``decoder_step`` of a portable export by the
  exporter, and by ``nuwa quantize`` for the steps it writes (an FP16 step's writes are not the
  pattern: it has none, and runs as written, as it did when prepared in memory).
- ``cpu-matmulnbits`` (:data:`~nuwa.spec.manifest_entries.PREPARED_CPU_MATMULNBITS`): an INT8
  graph as ONNX Runtime's CPU runs it with its 8-bit ``MatMulNBits`` kernels — the ``cpu`` form
  of a step, and every Q/DQ weight layer as one ``MatMulNBits`` node holding the same int8
  weights (:mod:`nuwa.export.matmul_nbits`). Written by ``nuwa quantize --precision int8`` for
  every graph with weight layers; its weights are new tensors, stored in the INT8 export's shared
``weights.int8.bin`` (one copy for the steps of every condition) or inline.

A prepared file is ``<graph>.<key>.onnx`` in the export directory. A ``cpu`` form reads the same
external weights file as its graph (the rewrite adds only small inline index constants), so it
costs a graph's structure, not its weights. A runtime that finds no prepared form (an export written
before them) prepares the graph in memory the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from nuwa.export.matmul_nbits import rewrite_to_matmul_nbits
from nuwa.export.ring_cache_writes import rewrite_ring_writes_to_scatter_nd
from nuwa.export.weights import SharedWeights
from nuwa.spec.file_hashes import sha256_file
from nuwa.spec.graph_names import DECODER_STEP_KIND
from nuwa.spec.manifest_entries import (
    PREPARED_CPU,
    PREPARED_CPU_MATMULNBITS,
    DecoderInfo,
    GraphInfo,
    PreparedGraph,
)


def prepared_file(graph: GraphInfo, key: str) -> str:
    """``decoder_step.text.onnx`` -> ``decoder_step.text.cpu.onnx``."""
    return f"{graph.name}.{key}.onnx"


def prepare_cpu(model: onnx.ModelProto, decoder: DecoderInfo) -> bool:
    """Rewrite ``model`` (a decoder step) in place as ONNX Runtime's CPU runs it; whether it
    changed (a graph that is not the exporter's pattern is left alone)."""
    return (
        rewrite_ring_writes_to_scatter_nd(model, decoder.past_names(), decoder.present_names()) > 0
    )


def write_prepared_cpu(directory: Path, graph: GraphInfo, decoder: DecoderInfo) -> GraphInfo:
    """Write ``graph``'s ``cpu`` form into ``directory`` (beside its file and weights) and return
    its manifest entry with the form listed. Other kinds of graph, and a step whose ring writes
    are not the exporter's pattern (an FP16 conversion's), come back unchanged: the CPU runs
    them as they are."""
    if graph.kind != DECODER_STEP_KIND:
        return graph
    model = onnx.load(str(directory / graph.file), load_external_data=False)
    if not prepare_cpu(model, decoder):
        return graph
    file = prepared_file(graph, PREPARED_CPU)
    onnx.save(model, str(directory / file))
    prepared = {**graph.prepared, PREPARED_CPU: PreparedGraph(file, sha256_file(directory / file))}
    return dataclasses.replace(graph, prepared=prepared)


def write_prepared_cpu_matmulnbits(
    directory: Path,
    graph: GraphInfo,
    decoder: DecoderInfo,
    model: onnx.ModelProto,
    store: SharedWeights | None = None,
) -> GraphInfo:
    """Write the ``cpu-matmulnbits`` form of ``graph`` (``model``: the INT8 graph as written,
    weights loaded; not changed) into ``directory`` and return the entry with the form listed; a
    graph without Q/DQ weight layers comes back unchanged. ``store``: a weights file in
    ``directory`` that keeps its large initializers (shared with the other graphs' forms),
    else the form is self-contained."""
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    if not rewrite_to_matmul_nbits(prepared):
        return graph
    if graph.kind == DECODER_STEP_KIND:
        prepare_cpu(prepared, decoder)
    if store is not None:
        store.externalize(prepared)
    file = prepared_file(graph, PREPARED_CPU_MATMULNBITS)
    onnx.save(prepared, str(directory / file))
    form = PreparedGraph(file, sha256_file(directory / file))
    return dataclasses.replace(graph, prepared={**graph.prepared, PREPARED_CPU_MATMULNBITS: form})
