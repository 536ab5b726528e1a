"""Triton model configurations of the contract's Python-backend models, as ``config.pbtxt``
text (the model repository) or as the JSON Triton's model-load API takes (the forwarding
``nuwa`` model that ``nuwa serve`` loads into its in-process Triton), from one description; and
the files that are the models (``1/model.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nuwa.serving.contract import INPUTS, MODEL, OUTPUTS, STREAM_MODEL, STREAM_OUTPUTS, TensorSpec

HERE = Path(__file__).resolve().parent
MODEL_FILES = {
    STREAM_MODEL: HERE / "repository_engine_model.py",  # the engine (model repository only)
    MODEL: HERE / "repository_forward_model.py",  # forwards to nuwa_stream over gRPC
}
MODEL_OUTPUTS = {MODEL: OUTPUTS, STREAM_MODEL: STREAM_OUTPUTS}


def forward_parameters(timeout_s: float, trained_frames: int, engine_url: str) -> dict[str, str]:
    """The forwarding ``nuwa`` model's parameters: the gRPC address of ``nuwa_stream`` (its own
    server's) and what it needs to tell a stream that ended early
    (:mod:`nuwa.serving.repository_forward_model`)."""
    return {
        "timeout_s": repr(float(timeout_s)),
        "trained_frames": str(int(trained_frames)),
        "engine_url": engine_url,
    }


def _dtype(t: TensorSpec) -> str:
    return "TYPE_STRING" if t.triton_dtype == "BYTES" else f"TYPE_{t.triton_dtype}"


def model_config(name: str, instances: int, parameters: dict[str, str]) -> dict[str, Any]:
    """The configuration of the contract's model ``name`` (Python backend, no batching)."""

    def tensor(t: TensorSpec) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": t.name, "data_type": _dtype(t), "dims": list(t.shape)}
        if t.optional:
            entry["optional"] = True
        return entry

    config: dict[str, Any] = {
        "name": name,
        "backend": "python",
        "max_batch_size": 0,
        "input": [tensor(t) for t in INPUTS],
        "output": [tensor(t) for t in MODEL_OUTPUTS[name]],
        "instance_group": [{"count": instances, "kind": "KIND_CPU"}],
    }
    if name == STREAM_MODEL:
        config["model_transaction_policy"] = {"decoupled": True}
    if parameters:
        config["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
    return config


def config_json(config: dict[str, Any]) -> str:
    """The configuration as Triton's model-load API takes it."""
    return json.dumps(config)


def config_pbtxt(config: dict[str, Any]) -> str:
    """The configuration as a ``config.pbtxt``."""

    def tensor(entry: dict[str, Any]) -> str:
        dims = ", ".join(str(d) for d in entry["dims"])
        optional = " optional: true" if entry.get("optional") else ""
        return (
            f'  {{ name: "{entry["name"]}" data_type: {entry["data_type"]} dims: [ {dims} ]'
            f"{optional} }}"
        )

    lines = [f'name: "{config["name"]}"', 'backend: "python"', "max_batch_size: 0"]
    if config.get("model_transaction_policy", {}).get("decoupled"):
        lines.append("model_transaction_policy { decoupled: true }")
    lines += ["input [", ",\n".join(tensor(e) for e in config["input"]), "]"]
    lines += ["output [", ",\n".join(tensor(e) for e in config["output"]), "]"]
    (group,) = config["instance_group"]
    lines.append(f"instance_group [ {{ count: {group['count']} kind: {group['kind']} }} ]")
    for key, value in config.get("parameters", {}).items():
        lines.append(
            f'parameters {{ key: "{key}" value: {{ string_value: "{value["string_value"]}" }} }}'
        )
    return "\n".join(lines) + "\n"
