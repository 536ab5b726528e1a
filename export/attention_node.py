"""The ``nuwa::NearbyAttention3D`` node: its identity (domain, op type, overloads), its
attributes as plain data, and its plugin forms for TensorRT (DESIGN §6).

The exported graphs carry every 3DNA call as one node ``NearbyAttention3D`` in domain ``nuwa``
with the attributes of :meth:`~nuwa.model.attention3d.NearbyAttentionSpec.onnx_attributes`
(``q_grid``, ``k_grid``, ``extents``, ``causal``, ``ring_cache``, ``scale``, ``num_heads``). The
portable target gives each node an ONNX local function (:mod:`nuwa.export.onnx_function`); the
``tensorrt`` target drops the bodies and tags the nodes for TensorRT's plugin importer
(:func:`to_tensorrt`, :func:`to_ort_tensorrt`).

Needs only ``onnx`` (no torch).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import onnx
from onnx import NodeProto, helper

DOMAIN = "nuwa"
OP_TYPE = "NearbyAttention3D"
DOMAIN_VERSION = 1
ATTRIBUTE_NAMES = ("q_grid", "k_grid", "extents", "causal", "ring_cache", "scale", "num_heads")
# TensorRT: the ONNX parser's fallback plugin importer binds an unknown node to the plugin whose
# creator is registered under the node's op_type (the node's domain is not looked at), with
# version = the string attribute ``plugin_version`` (default "1") and namespace = the string
# attribute ``plugin_namespace`` (default ""); each field the plugin creator declares is then read
# from the node attribute of the same name. The parser (<= 10.14) first inlines a local function
# whose name matches the op_type, so the tensorrt target drops the function bodies.
PLUGIN_NAMESPACE = "nuwa"
PLUGIN_VERSION = "1"
# ONNX Runtime's TensorRT execution provider offers every creator in TensorRT's plugin registry
# as a custom op of this domain (variadic I/O); a node must be in it to pass ONNX Runtime's graph
# checks, and the EP's ONNX parser then binds the plugin by op_type + plugin_namespace/version.
ORT_TRT_PLUGIN_DOMAIN = "trt.plugins"


@dataclass(frozen=True)
class Attention3DAttrs:
    """The node's attributes as plain data (mirror of ``NearbyAttentionSpec.onnx_attributes``)."""

    q_grid: tuple[int, int, int]
    k_grid: tuple[int, int, int]
    extents: tuple[int, int, int]
    causal: int
    ring_cache: int
    scale: float
    num_heads: int

    @classmethod
    def from_dict(cls, attrs: dict[str, object]) -> Attention3DAttrs:
        missing = [n for n in ATTRIBUTE_NAMES if n not in attrs]
        if missing:
            raise ValueError(f"NearbyAttention3D attributes miss {missing}")
        return cls(
            q_grid=tuple(int(x) for x in attrs["q_grid"]),  # type: ignore[arg-type, union-attr]
            k_grid=tuple(int(x) for x in attrs["k_grid"]),  # type: ignore[arg-type, union-attr]
            extents=tuple(int(x) for x in attrs["extents"]),  # type: ignore[arg-type, union-attr]
            causal=int(attrs["causal"]),  # type: ignore[call-overload]
            ring_cache=int(attrs["ring_cache"]),  # type: ignore[call-overload]
            scale=float(attrs["scale"]),  # type: ignore[arg-type]
            num_heads=int(attrs["num_heads"]),  # type: ignore[call-overload]
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "q_grid": list(self.q_grid),
            "k_grid": list(self.k_grid),
            "extents": list(self.extents),
            "causal": self.causal,
            "ring_cache": self.ring_cache,
            "scale": self.scale,
            "num_heads": self.num_heads,
        }

    @classmethod
    def from_node(cls, node: NodeProto) -> Attention3DAttrs:
        return cls.from_dict({a.name: helper.get_attribute_value(a) for a in node.attribute})


def overload_name(
    attrs: Attention3DAttrs,
    with_positions: bool,
    key_count: int | None = None,
    grid_table: bool = False,
) -> str:
    """A readable, unique overload tag per (attribute set, q_positions given, position-table
    body for ``key_count`` keys, grid-table body)."""
    g = "x".join
    digest = hashlib.sha256(
        json.dumps(
            [attrs.as_dict(), with_positions, key_count, grid_table], sort_keys=True
        ).encode()
    ).hexdigest()[:8]
    table = f"_n{key_count}" if key_count is not None else ("_g" if grid_table else "")
    return (
        f"q{g(map(str, attrs.q_grid))}_k{g(map(str, attrs.k_grid))}"
        f"_e{g(str(e).replace('-', 'm') for e in attrs.extents)}"
        f"_c{attrs.causal}_r{attrs.ring_cache}_p{int(with_positions)}{table}_{digest}"
    )


def is_attention_node(node: NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def to_tensorrt(model: onnx.ModelProto) -> int:
    """Drop the function bodies and tag every 3DNA node for TensorRT's plugin importer.
    Returns the number of tagged nodes."""
    count = 0
    for node in model.graph.node:
        if not is_attention_node(node):
            continue
        node.overload = ""
        names = {a.name for a in node.attribute}
        for key, value in (
            ("plugin_namespace", PLUGIN_NAMESPACE),
            ("plugin_version", PLUGIN_VERSION),
        ):
            if key not in names:
                node.attribute.append(helper.make_attribute(key, value))
        count += 1
    del model.functions[:]
    return count


def to_ort_tensorrt(model: onnx.ModelProto) -> int:
    """:func:`to_tensorrt` for ONNX Runtime's TensorRT execution provider: the 3DNA nodes also
    move to domain :data:`ORT_TRT_PLUGIN_DOMAIN` (the custom-op domain under which the EP offers
    registered TensorRT plugins), keeping ``plugin_namespace="nuwa"``/``plugin_version="1"`` and
    every attribute, with no function body (the EP's parser would inline it instead of binding
    the plugin). Such a graph runs only where the TensorRT EP takes these nodes: ONNX Runtime
    with a TensorRT EP that lists ``IPluginV3`` creators (``getAllCreators``) and
    ``libnuwa_trt_register.so`` in ``trt_extra_plugin_lib_paths``. Returns the number of nodes."""
    count = to_tensorrt(model)
    for node in model.graph.node:
        if is_attention_node(node):
            node.domain = ORT_TRT_PLUGIN_DOMAIN
    if not any(n.domain == DOMAIN for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    if count and not any(o.domain == ORT_TRT_PLUGIN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ORT_TRT_PLUGIN_DOMAIN, 1))
    return count
