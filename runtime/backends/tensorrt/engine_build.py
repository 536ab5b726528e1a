"""``nuwa build-engine``: TensorRT engines from a ``--target tensorrt`` export (DESIGN §6–§8).

Per graph of the export (any precision — FP32, FP16 from ``nuwa quantize --precision fp16``, or
Q/DQ INT8):

1. **graph preparation** (:func:`check_tensorrt_graph`, runs without TensorRT): the export must
   be the ``tensorrt`` target — no ONNX local functions (parsers up to 10.14 would inline them
   instead of binding the plugin) and every ``nuwa::NearbyAttention3D`` node tagged with
   ``plugin_namespace``/``plugin_version``; Q/DQ nodes must be int8 with zero zero-points (what
   TensorRT's explicit quantization accepts);
2. **strongly typed network**: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` — the precision is
   the graph's own (TensorRT >= 11 only builds these; no FP16/INT8 builder flags, no implicit
   calibrator);
3. the plugin library is loaded into TensorRT's plugin registry (``load_library``) before
   parsing, so the ONNX parser's plugin importer binds ``NearbyAttention3D`` (namespace ``nuwa``);
4. one **optimization profile** per engine over the batch rows the runtime feeds (decode: 1 ..
   ``max_batch`` rows, conditional + unconditional under guidance; VQ graphs: rows x frames); the
   cache and condition axes are fixed by the export;
5. a **timing cache** shared by all graphs and kept on disk (``timing-<key>.cache``), so
   rebuilding is fast and reproducible on the same GPU;
6. ``engines.json`` (:mod:`.engines_json`): TensorRT version, GPU, plugin
   library and version, precision, profiles, the source manifest, and the engine cache key of
   the four (:func:`.engines_json.engine_cache_key`; the timing cache file
   is named by it, so a cache from another TensorRT, GPU, precision or plugin build is never
   reused).

Not run on real TensorRT here: the machine that wrote this has no GPU and no TensorRT. Steps 2–6
follow the TensorRT 10.x Python API (also 11.x); everything else is tested.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from nuwa.export.attention_node import OP_TYPE, PLUGIN_NAMESPACE, is_attention_node
from nuwa.runtime.backends.tensorrt.engines_json import (
    EngineInfo,
    EngineMetadata,
    engine_cache_key,
    write_metadata,
)
from nuwa.spec import install_hints
from nuwa.spec.graph_names import SKETCH_ENCODER_KIND, VQ_DECODER_KIND, VQ_ENCODER_KIND
from nuwa.spec.manifest import MANIFEST_FILE, GraphInfo, ManifestError, load_manifest, sha256_file

TENSORRT_INSTALL = f"TensorRT is not installed: {install_hints.TENSORRT}"
CUDA_PYTHON_INSTALL = f"cuda-python is not installed: {install_hints.CUDA_PYTHON}"
TIMING_CACHE = "timing-{key}.cache"  # keyed like the engines (engine_metadata.engine_cache_key)
ROW_SCALED_KINDS = (VQ_ENCODER_KIND, VQ_DECODER_KIND, SKETCH_ENCODER_KIND)  # batch = rows x frames


class EngineBuildError(RuntimeError):
    """A user-facing build failure (bad export, plugin library, missing TensorRT)."""


@dataclass(frozen=True)
class BuildOptions:
    max_batch: int = 8  # largest number of batch rows (guidance doubles the prompts)
    opt_batch: int = 2  # rows TensorRT tunes kernels for
    workspace_mib: int = 1024
    timing_cache: str | None = None  # default: ENGINE_DIR/timing-<engine cache key>.cache
    graphs: tuple[str, ...] | None = None  # default: every graph of the manifest

    def validate(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise EngineBuildError(
                f"need 1 <= --opt-batch <= --max-batch, got {self.opt_batch} and {self.max_batch}"
            )
        if self.workspace_mib < 16:
            raise EngineBuildError(f"--workspace-mib must be >= 16, got {self.workspace_mib}")


# ---- without TensorRT -------------------------------------------------------------------------


def check_tensorrt_graph(model: onnx.ModelProto, name: str) -> int:
    """Raise :class:`EngineBuildError` unless ``model`` is ready for TensorRT's ONNX parser
    (see module docstring, step 1). Returns the number of 3DNA plugin nodes."""
    if len(model.functions):
        raise EngineBuildError(
            f"graph {name!r} carries ONNX local functions; TensorRT's parser would inline them "
            "instead of using the 3DNA plugin: export with `nuwa export --target tensorrt`"
        )
    inits = {i.name: i for i in model.graph.initializer}
    plugins = 0
    for node in model.graph.node:
        if is_attention_node(node):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            ns = attrs.get("plugin_namespace", b"")
            ns = ns.decode() if isinstance(ns, bytes) else str(ns)
            if ns != PLUGIN_NAMESPACE or "plugin_version" not in attrs:
                raise EngineBuildError(
                    f"graph {name!r}: {OP_TYPE} node {node.name!r} lacks plugin_namespace="
                    f"{PLUGIN_NAMESPACE!r}/plugin_version: export with --target tensorrt"
                )
            plugins += 1
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            if zp is None:
                continue
            values = numpy_helper.to_array(zp)
            if values.dtype != np.int8 or np.any(values != 0):
                raise EngineBuildError(
                    f"graph {name!r}: {node.op_type} {node.name!r} has a non-zero or non-int8 "
                    "zero point; TensorRT's explicit quantization needs symmetric int8"
                )
    return plugins


def profile_shapes(
    graph: GraphInfo, opts: BuildOptions, frames: int
) -> dict[str, dict[str, list[int]]]:
    """One optimization profile: ``{input: {"min", "opt", "max"}}``. Dynamic axes: ``batch``
    (rows; VQ graphs see ``rows x frames`` images) and ``prefix_frames`` (the given frames a
    ``decoder_prefill`` feeds: 1 .. frames, tuned for 2 as in video prediction)."""
    scale = frames if graph.kind in ROW_SCALED_KINDS else 1
    axes = {
        "batch": {"min": 1, "opt": opts.opt_batch * scale, "max": opts.max_batch * scale},
        "prefix_frames": {"min": 1, "opt": min(2, frames), "max": frames},
    }
    profile: dict[str, dict[str, list[int]]] = {}
    for t in graph.inputs:
        shapes: dict[str, list[int]] = {}
        for which in ("min", "opt", "max"):
            dims = []
            for d in t.shape:
                if isinstance(d, int):
                    dims.append(d)
                elif d in axes:
                    dims.append(axes[d][which])
                else:
                    raise EngineBuildError(
                        f"graph {graph.name!r} input {t.name!r} has dynamic axis {d!r}; only "
                        f"{sorted(axes)} have a profile rule"
                    )
            shapes[which] = dims
        profile[t.name] = shapes
    return profile


def check_plugin_library(path: str | Path) -> dict[str, Any]:
    """The plugin library must exist, be ours, and hold the TensorRT plugin."""
    path = Path(path)
    if not path.is_file():
        raise EngineBuildError(
            f"plugin library {path} not found; build it with "
            f"`{install_hints.PLUGIN_BUILD_TENSORRT}`"
        )
    try:
        lib = ctypes.CDLL(str(path.resolve()))
        lib.nuwa_3dna_tensorrt_compiled.restype = ctypes.c_int32
        lib.nuwa_3dna_build_info.restype = ctypes.c_char_p
        has_trt = bool(lib.nuwa_3dna_tensorrt_compiled())
        info = lib.nuwa_3dna_build_info().decode()
    except (OSError, AttributeError) as exc:
        raise EngineBuildError(f"{path} is not a nuwa plugin library: {exc}") from exc
    if not has_trt:
        raise EngineBuildError(
            f"{path} was built without the TensorRT plugin ({info}); rebuild with "
            f"TensorRT headers: {install_hints.PLUGIN_BUILD_TENSORRT}"
        )
    return {
        "library": str(path.resolve()),
        "sha256": sha256_file(path),
        "build_info": info,
        "op": OP_TYPE,
        "namespace": PLUGIN_NAMESPACE,
    }


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineBuildError(TENSORRT_INSTALL) from exc
    return trt


def import_cudart() -> Any:
    """The CUDA runtime API of cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError as exc:
            raise EngineBuildError(CUDA_PYTHON_INSTALL) from exc
    return cudart


def gpu_identity(device: int = 0) -> dict[str, Any]:
    """``{"name", "compute_capability"}`` of CUDA device ``device``."""
    cudart = import_cudart()
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise EngineBuildError(f"no usable CUDA device {device} (cudaGetDeviceProperties: {err})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"name": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


# ---- with TensorRT ----------------------------------------------------------------------------


def find_plugin_creator(registry: Any, version: str = "1") -> Any:
    """Our creator in TensorRT's plugin registry, or None. ``get_creator`` (TensorRT >= 10, any
    plugin interface), else ``get_plugin_creator`` (IPluginV2 era), else a scan of
    ``all_creators``."""
    for method in ("get_creator", "get_plugin_creator"):
        fn = getattr(registry, method, None)
        if fn is not None:
            try:
                found = fn(OP_TYPE, version, PLUGIN_NAMESPACE)
            except (TypeError, RuntimeError):
                found = None
            if found is not None:
                return found
    for creator in getattr(registry, "all_creators", []) or []:
        if (
            getattr(creator, "name", None) == OP_TYPE
            and str(getattr(creator, "plugin_version", "")) == version
            and getattr(creator, "plugin_namespace", None) == PLUGIN_NAMESPACE
        ):
            return creator
    return None


# Plugin libraries this process registered with TensorRT: resolved path -> SHA-256.
_REGISTERED_LIBRARIES: dict[str, str] = {}


def register_plugin_library(registry: Any, library: str | Path, sha256: str) -> None:
    """Make ``nuwa::NearbyAttention3D`` v1 available in TensorRT's ``registry`` from ``library``
    (SHA-256 ``sha256``), once per process: ``load_library`` (TensorRT's loader calls the
    library's ``getCreators``) the first time; again (a second backend, build-then-run in one
    process) it is already registered and nothing is loaded — TensorRT refuses to register a
    creator twice. A creator registered from a *different* library file is refused."""
    path = str(Path(library).resolve())
    known = _REGISTERED_LIBRARIES.get(path)
    if known is not None and known != sha256:
        raise EngineBuildError(
            f"{path} changed since this process loaded it into TensorRT; restart the process"
        )
    if find_plugin_creator(registry) is not None:
        others = {p for p, h in _REGISTERED_LIBRARIES.items() if h != sha256}
        if others:
            raise EngineBuildError(
                f"another plugin library ({', '.join(sorted(others))}) is already registered "
                f"with TensorRT in this process; {path} cannot replace it: restart the process"
            )
        _REGISTERED_LIBRARIES.setdefault(path, sha256)
        return
    if registry.load_library(path) is None and find_plugin_creator(registry) is None:
        raise EngineBuildError(f"TensorRT could not load the plugin library {path}")
    if find_plugin_creator(registry) is None:
        raise EngineBuildError(
            f"{path} did not register {PLUGIN_NAMESPACE}::{OP_TYPE} v1 with TensorRT"
        )
    _REGISTERED_LIBRARIES[path] = sha256


def _build_one(
    trt: Any,
    logger: Any,
    onnx_path: Path,
    profile: dict[str, dict[str, list[int]]],
    cache: Any,
    opts: BuildOptions,
) -> bytes:
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib << 20)
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a foreign cache is an error
    prof = builder.create_optimization_profile()
    for name, shapes in profile.items():
        prof.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(prof)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path.name} (see its log above)")
    return bytes(plan)


def build_engines(
    onnx_dir: str | Path,
    plugin_lib: str | Path,
    out_dir: str | Path,
    opts: BuildOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> EngineMetadata:
    """Build every engine of the export in ``onnx_dir`` into ``out_dir`` (see module docstring)."""
    opts = opts or BuildOptions()
    opts.validate()
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    try:
        manifest = load_manifest(onnx_dir)
    except ManifestError as exc:
        raise EngineBuildError(str(exc)) from exc
    if manifest.target != "tensorrt":
        raise EngineBuildError(
            f"{onnx_dir} is a {manifest.target!r} export; build engines from "
            "`nuwa export --target tensorrt` (then `nuwa quantize` it for fp16/int8)"
        )
    names = list(opts.graphs) if opts.graphs else list(manifest.graphs)
    unknown = [n for n in names if n not in manifest.graphs]
    if unknown:
        raise EngineBuildError(
            f"unknown graphs {unknown}; the export has {sorted(manifest.graphs)}"
        )
    frames = int(manifest.decoder.grid[0])
    profiles = {n: profile_shapes(manifest.graph(n), opts, frames) for n in names}
    for n in names:
        check_tensorrt_graph(onnx.load(str(manifest.path(n))), n)
    plugin = check_plugin_library(plugin_lib)
    trt = import_tensorrt()
    gpu = gpu_identity()

    out_dir.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    register_plugin_library(trt.get_plugin_registry(), plugin["library"], plugin["sha256"])
    plugin["version"] = "1"
    key = engine_cache_key(str(trt.__version__), gpu, manifest.precision, plugin["sha256"])

    cache_path = (
        Path(opts.timing_cache) if opts.timing_cache else out_dir / TIMING_CACHE.format(key=key)
    )
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    cache_config = trt.Builder(logger).create_builder_config()
    cache = cache_config.create_timing_cache(cache_bytes)

    engines: dict[str, EngineInfo] = {}
    for n in names:
        if log:
            log(f"building {n} (TensorRT {trt.__version__}, {gpu['name']})")
        plan = _build_one(trt, logger, manifest.path(n), profiles[n], cache, opts)
        file = f"{n}.engine"
        with tempfile.NamedTemporaryFile(dir=out_dir, delete=False) as f:
            f.write(plan)
        os.replace(f.name, out_dir / file)
        engines[n] = EngineInfo(n, file, sha256_file(out_dir / file), [profiles[n]])
    with tempfile.NamedTemporaryFile(dir=cache_path.parent, delete=False) as f:
        f.write(bytes(cache.serialize()))  # atomic: builds sharing the cache never read half
    os.replace(f.name, cache_path)

    meta = EngineMetadata(
        tensorrt_version=str(trt.__version__),
        gpu=gpu,
        plugin=plugin,
        precision=manifest.precision,
        build={
            "strongly_typed": True,
            "max_batch": opts.max_batch,
            "opt_batch": opts.opt_batch,
            "workspace_mib": opts.workspace_mib,
            "timing_cache": str(cache_path),
        },
        onnx_manifest=json.loads((onnx_dir / MANIFEST_FILE).read_text()),
        engines=engines,
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    write_metadata(out_dir, meta)
    return meta
