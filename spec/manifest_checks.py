"""A model directory is untrusted input: the checks :func:`nuwa.spec.manifest.load_manifest`
runs on ``manifest.json`` before anything in it is used.

- :func:`check_manifest_schema`: every field the runtime reads is there with the right JSON
  type; a violation names the field (``decoder.num_layers must be an integer, got "4"``).
- :func:`check_inside`: every path the manifest names (graph files, weights files) is relative,
  has no ``..``, and resolves (symlinks followed) inside the directory.
- :func:`check_external_data_locations`: the ``location`` of every external-data tensor in a
  graph file (initializers, constants, function bodies, subgraphs) resolves inside the
  directory too; the graph is parsed without loading the data.

Each raises ``ValueError`` with a one-line message; ``load_manifest`` adds the file's path and
raises :class:`~nuwa.spec.manifest.ManifestError`. No torch; ``onnx`` only for the graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

Check = Callable[[Any, str], None]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(value: Any, where: str) -> None:
    if not _is_int(value):
        raise ValueError(f"{where} must be an integer, got {_type_name(value)} {value!r}")


def string(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {_type_name(value)} {value!r}")


def dim(value: Any, where: str) -> None:
    """A shape entry: a fixed size (integer) or a symbolic name (string)."""
    if not (_is_int(value) or isinstance(value, str)):
        raise ValueError(f"{where} must be an integer or a name, got {_type_name(value)}")


def anything_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, got {_type_name(value)}")


def list_of(item: Check, length: int | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {_type_name(value)}")
        if length is not None and len(value) != length:
            raise ValueError(f"{where} must have {length} items, got {len(value)}")
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")

    return check


def map_of(item: Check) -> Check:
    """An object whose keys are names and whose values all pass ``item``."""

    def check(value: Any, where: str) -> None:
        anything_object(value, where)
        for key, v in value.items():
            item(v, f"{where}.{key}")

    return check


def fields(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """An object with ``required`` fields and maybe ``optional`` ones (others are let through:
    a newer exporter may add fields)."""

    def check(value: Any, where: str) -> None:
        anything_object(value, where)
        prefix = f"{where}." if where else ""
        for key, item in required.items():
            if key not in value:
                raise ValueError(f"required field {prefix}{key} is missing")
            item(value[key], f"{prefix}{key}")
        for key, item in (optional or {}).items():
            if key in value and value[key] is not None:
                item(value[key], f"{prefix}{key}")

    return check


def _tensor() -> Check:
    return fields({"name": string, "dtype": string, "shape": list_of(dim)})


MANIFEST_SCHEMA: Check = fields(
    {
        "format": string,
        "format_version": integer,
        "target": string,
        "opset": integer,
        "precision": string,
        "config": anything_object,
        "decoder": fields(
            {
                "num_layers": integer,
                "num_heads": integer,
                "head_dim": integer,
                "cache_slots": integer,
                "vocab_size": integer,
                "bos_id": integer,
                "grid": list_of(integer, 3),
                "inputs": map_of(string),
                "outputs": map_of(string),
            },
            {"cache_layout": list_of(string)},
        ),
        "conditions": map_of(
            fields(
                {
                    "encoder": string,
                    "grid": list_of(integer, 3),
                    "cross_extents": list_of(integer, 3),
                }
            )
        ),
        "decoder_steps": list_of(
            fields(
                {
                    "graph": string,
                    "condition": string,
                    "frames": integer,
                    "target_grid": list_of(integer, 3),
                }
            )
        ),
        "graphs": map_of(
            fields(
                {
                    "file": string,
                    "kind": string,
                    "sha256": string,
                    "inputs": list_of(_tensor()),
                    "outputs": list_of(_tensor()),
                },
                {
                    "attention_nodes": integer,
                    "meta": anything_object,
                    "check": anything_object,
                    "prepared": map_of(fields({"file": string, "sha256": string})),
                },
            )
        ),
    },
    {
        "model": anything_object,
        "decoder_prefills": map_of(string),
        "external_data": map_of(string),
        "quantization": anything_object,
    },
)


def check_manifest_schema(data: Any) -> None:
    """``ValueError`` naming the first field of ``data`` (parsed ``manifest.json``) that is
    missing or of the wrong type."""
    MANIFEST_SCHEMA(data, "")
    from nuwa.spec.config import check_config_dict  # no torch

    try:
        check_config_dict(data["config"], runtime=True)
    except ValueError as exc:
        raise ValueError(f"config: {exc}") from None


def check_inside(directory: Path, name: Any, where: str) -> Path:
    """``directory / name`` for a ``name`` the directory's files give: relative, without ``..``,
    and inside ``directory`` after following symlinks; else a ``ValueError`` saying which."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} must be a file name, got {name!r}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith("\\"):
        raise ValueError(
            f"{where} {name!r} is an absolute path; it must name a file inside {directory}"
        )
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(
            f"{where} {name!r} leaves the model directory ('..'); it must name a file inside "
            f"{directory}"
        )
    path = directory / name
    root = directory.resolve()
    target = path.resolve()
    if not target.is_relative_to(root):
        raise ValueError(
            f"{where} {name!r} resolves to {target}, outside the model directory {root} (a "
            "symlink pointing out)"
        )
    return path


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph: initializers, sparse initializers, constant and
    attribute tensors, subgraphs'."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _tensors(attr.g)
        for g in attr.graphs:
            yield from _tensors(g)


def external_data_locations(model: Any) -> Iterator[tuple[str, str]]:
    """``(tensor name, location)`` of every tensor of an ONNX ``ModelProto`` stored outside."""
    import onnx

    tensors = list(_tensors(model.graph))
    for function in model.functions:
        for node in function.node:
            tensors.extend(_node_tensors(node))
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            yield tensor.name, entries.get("location", "")


def check_external_data_locations(graph_file: Path, directory: Path) -> None:
    """Every external-data ``location`` in ``graph_file`` resolves inside ``directory`` (the
    locations are relative to the graph file's folder, as ONNX reads them)."""
    import onnx

    model = onnx.load(str(graph_file), load_external_data=False)
    base = graph_file.parent
    root = directory.resolve()
    for tensor, location in external_data_locations(model):
        where = f"{graph_file.name}: tensor {tensor!r} external-data location"
        path = check_inside(base, location, where)
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"{where} {location!r} resolves outside the model directory {root}")
