"""ONNX export of a NÜWA model (DESIGN §6) and the manifest that is the runtime's only contract.

Public API (stable; the runtime uses nothing else)::

    from nuwa.export import export_model, load_manifest, Manifest, ExportError, MANIFEST_FILE

    manifest = export_model(model_dir, out_dir, target="portable", opset=18)  # needs PyTorch
    manifest = load_manifest(out_dir)            # no PyTorch; verifies every file's SHA-256

    manifest.graph("text_encoder")               # GraphInfo: file, inputs/outputs (name, dtype,
    manifest.path("vq_decoder")                  #   shape with "batch"), sha256, meta
    manifest.conditions["text"].encoder          # graph producing the cross K/V of a condition
    manifest.condition_key("sketch", frames=8)   # "text" | "sketch_t{Ts}"
    manifest.decoder_step("text", num_frames=8)  # GraphInfo of the decoder step for a request
    manifest.decoder                             # DecoderInfo: layers, heads, head_dim,
                                                 #   cache_slots, bos_id, I/O names/patterns

Graphs (all with a dynamic ``batch`` axis; the decoder I/O names follow DESIGN §5):

========================================  ======================================================
``vq_encoder``                             ``frames (B, 3, S, S)`` float in [-1, 1] ->
                                           ``codes (B, h, w)`` int64
``vq_decoder``                             ``codes (B, h, w)`` int64 -> ``frames (B, 3, S, S)``
``sketch_encoder``                         ``sketch (B, S, S)`` int64 class map ->
                                           ``sketch_codes (B, h, w)`` int64
``text_encoder``                           ``text_ids (B, L)`` int64 -> ``cross_key_values.{i}.
                                           key/value (B, nh, L, hd)`` for every decoder layer
``sketch_condition_encoder.t{Ts}``         ``sketch_tokens (B, Ts, h, w)`` int64 -> cross K/V
``decoder_step.*``                         ``input_ids (B,)`` int64 (token at position-1, <bos>
                                           at 0), ``positions (B,)`` int64, ``past_key_values.
                                           {i}.key/value (B, nh, slots, hd)``, cross K/V ->
                                           ``logits (B, V)``, ``present.{i}.key/value``
========================================  ======================================================

Importing this package does not import PyTorch; :func:`export_model` imports it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nuwa.spec.errors import ExportError
from nuwa.spec.manifest import (
    MANIFEST_FILE,
    ConditionInfo,
    DecoderInfo,
    DecoderStepInfo,
    GraphInfo,
    Manifest,
    ManifestError,
    TensorInfo,
    load_manifest,
)

if TYPE_CHECKING:
    from nuwa.export.exporter import export_model

__all__ = [
    "MANIFEST_FILE",
    "ConditionInfo",
    "DecoderInfo",
    "DecoderStepInfo",
    "ExportError",
    "GraphInfo",
    "Manifest",
    "ManifestError",
    "TensorInfo",
    "export_model",
    "load_manifest",
]


def __getattr__(name: str) -> Any:  # lazy: the exporter needs PyTorch
    if name == "export_model":
        from nuwa.export.exporter import export_model

        return export_model
    raise AttributeError(f"module 'nuwa.export' has no attribute {name!r}")
