"""Where the TensorRT backend finds its engines: an engine directory (``engines.json``) given
directly, else the engine cache, built on this GPU on first use — the TensorRT side of
:mod:`nuwa.runtime.export_cache`.

- An engine directory written by ``nuwa build-engine`` is used as it is.
- An ONNX export with target ``tensorrt`` (``manifest.json``; ``nuwa export --target tensorrt``,
  then ``nuwa quantize`` for fp16/int8) gets its engines from the cache,
  ``$NUWA_CACHE_DIR/engines/<export key>-<engine key>/`` (:func:`engine_dir_for`): the export's
  files' hash (:func:`nuwa.runtime.export_cache.model_key`, 16 hex digits) and
  :func:`.engines_json.engine_cache_key` of the TensorRT version, GPU model, precision and
  plugin library, so another export, TensorRT, GPU, precision or plugin build never reuses an
  entry. A missing entry is built with :func:`.engine_build.build_engines` into a temporary
  sibling directory and renamed into place once complete: a crashed or failed build leaves no
  half entry, and of two processes building the same entry the second to finish keeps the
  first's. The builder's timing cache is shared by the entries of one engine key
  (``engines/timing-<engine key>.cache``), so a second model on the same GPU builds faster.
- A checkpoint directory (``config.json``) is first exported with target ``tensorrt`` through
  the export cache (:func:`nuwa.runtime.export_cache.ensure_export`), then as above.

The plugin library is the one ``nuwa build-engine`` takes by default (``$NUWA_PLUGINS_LIB``,
else :func:`nuwa.plugins.library_path`). This module imports neither TensorRT nor a CUDA
library: the caller (:meth:`.backend.TensorRTBackend.from_model_dir`) passes the TensorRT version
and the GPU identity, which keeps these checks testable with fakes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nuwa.runtime.backends.tensorrt.engines_json import ENGINES_FILE, engine_cache_key
from nuwa.runtime.export_cache import (
    check_cache_root,
    check_checkpoint_precision,
    ensure_export,
    model_key,
)
from nuwa.spec import environment
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import MANIFEST_FILE, ManifestError, load_manifest, sha256_file
from nuwa.spec.model_spec import CONFIG_FILE

ENGINE_CACHE_DIR = "engines"  # under the cache root, beside the export cache's "onnx"
TIMING_CACHE = "timing-{key}.cache"  # one per engine key, shared by the entries that have it
EXPORT_TARGET = "tensorrt"  # the export target engines are built from


def is_engine_dir(path: str | Path) -> bool:
    return (Path(path) / ENGINES_FILE).is_file()


def plugin_library() -> Path:
    """The plugin library engines are built with, found as ``nuwa build-engine`` finds it by
    default: ``$NUWA_PLUGINS_LIB`` (a file, or a folder holding it), else the built library
    (:func:`nuwa.plugins.library_path`); missing: a :class:`BackendUnavailableError` saying
    how to build it."""
    from nuwa.plugins.library import PluginLibraryError, library_path

    try:
        return library_path()
    except PluginLibraryError as exc:
        raise BackendUnavailableError(str(exc)) from exc


def engine_root() -> Path:
    return environment.cache_dir() / ENGINE_CACHE_DIR


def engine_dir_for(
    export_dir: str | Path,
    tensorrt_version: str,
    gpu: dict[str, Any],
    precision: str,
    plugin_sha256: str,
) -> Path:
    """The cache entry of an export's engines: the export's files' hash, then the engine key of
    what the engines depend on (:func:`.engines_json.engine_cache_key`)."""
    key = engine_cache_key(tensorrt_version, gpu, precision, plugin_sha256)
    return engine_root() / f"{model_key(export_dir)[:16]}-{key}"


def check_tensorrt_export(export_dir: str | Path, precision: str) -> None:
    """Refuse, in one line, an export engines cannot be built from for ``precision``: not a
    readable export, a portable export, or an export of another precision."""
    export_dir = Path(export_dir)
    try:
        manifest = load_manifest(export_dir, verify_hashes=False)  # the builder verifies them
    except ManifestError as exc:
        raise NuwaInputError(str(exc)) from None
    if manifest.target != EXPORT_TARGET:
        raise NuwaInputError(
            f"{export_dir} is a {manifest.target} export; the tensorrt backend builds engines "
            f"from `nuwa export --target {EXPORT_TARGET}` (then `nuwa quantize` for fp16/int8)"
        )
    if manifest.precision != precision:
        raise NuwaInputError(
            f"the export {export_dir} is {manifest.precision}, not {precision}: ask for "
            f"--precision {manifest.precision} or pass a {precision} export"
        )


def ensure_engines(
    export_dir: str | Path,
    precision: str,
    tensorrt_version: str,
    gpu: dict[str, Any],
    plugin_lib: str | Path,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The engine directory of the ``tensorrt`` export ``export_dir`` for this TensorRT version,
    GPU, precision and plugin library: the cache entry (:func:`engine_dir_for`), built now if
    missing (needs TensorRT and the GPU ``gpu`` names)."""
    # the module, not its function: looked up at call time (tests replace build_engines)
    from nuwa.runtime.backends.tensorrt import engine_build

    export_dir = Path(export_dir)
    check_tensorrt_export(export_dir, precision)
    check_cache_root(write=False)
    plugin_sha256 = sha256_file(plugin_lib)
    out = engine_dir_for(export_dir, tensorrt_version, gpu, precision, plugin_sha256)
    if is_engine_dir(out):
        return out
    check_cache_root(write=True)
    key = engine_cache_key(tensorrt_version, gpu, precision, plugin_sha256)
    out.parent.mkdir(parents=True, exist_ok=True)
    if log:
        log(
            f"building TensorRT engines for {export_dir} in {out}: first use on this GPU "
            f"({gpu.get('name')}, TensorRT {tensorrt_version}); later runs reuse them"
        )
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    options = engine_build.BuildOptions(timing_cache=str(out.parent / TIMING_CACHE.format(key=key)))
    try:
        try:
            meta = engine_build.build_engines(export_dir, plugin_lib, building, options, log=log)
        except engine_build.EngineBuildError as exc:
            raise BackendUnavailableError(str(exc)) from exc
        if meta.cache_key != key:  # e.g. the builder saw another GPU than the one asked for
            raise BackendUnavailableError(
                f"the engines built for {export_dir} are for TensorRT {meta.tensorrt_version} on "
                f"{meta.gpu.get('name')}, not TensorRT {tensorrt_version} on {gpu.get('name')}: "
                "not cached; build them with `nuwa build-engine` on the GPU that runs them"
            )
        try:
            building.rename(out)  # atomic: the entry appears complete or not at all
        except OSError:
            if not is_engine_dir(out):  # else another process finished the same entry first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out


SOURCE_ENGINES, SOURCE_EXPORT, SOURCE_CHECKPOINT = "engines", "export", "checkpoint"


def check_source(model_dir: str | Path, precision: str) -> str:
    """What ``model_dir`` holds, checked before any work (no TensorRT, no export, no build):
    :data:`SOURCE_ENGINES` (``engines.json``), :data:`SOURCE_EXPORT` (a ``tensorrt`` export of
    ``precision``: :func:`check_tensorrt_export`) or :data:`SOURCE_CHECKPOINT` (``config.json``;
    fp32 only, like the ONNX Runtime path); else a one-line :class:`NuwaInputError`."""
    model_dir = Path(model_dir)
    if is_engine_dir(model_dir):
        return SOURCE_ENGINES
    if (model_dir / MANIFEST_FILE).is_file():
        check_tensorrt_export(model_dir, precision)
        return SOURCE_EXPORT
    if (model_dir / CONFIG_FILE).is_file():
        check_checkpoint_precision(precision, EXPORT_TARGET)
        return SOURCE_CHECKPOINT
    raise NuwaInputError(
        f"{model_dir} is not a TensorRT engine directory ({ENGINES_FILE}), an ONNX export "
        f"({MANIFEST_FILE}) or a checkpoint ({CONFIG_FILE})"
    )


def ensure_engine_dir(
    model_dir: str | Path,
    precision: str,
    tensorrt_version: str,
    gpu: dict[str, Any],
    plugin_lib: str | Path,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> Path:
    """The engine directory for ``model_dir`` (see :func:`check_source`): itself if it holds
    ``engines.json``; for a ``tensorrt`` export its cached engines (:func:`ensure_engines`); for
    a checkpoint the cached engines of its ``tensorrt`` export, itself from the export cache
    (:func:`nuwa.runtime.export_cache.ensure_export`, exported now if missing)."""
    model_dir = Path(model_dir)
    source = check_source(model_dir, precision)
    if source == SOURCE_ENGINES:
        return model_dir
    export_dir = model_dir
    if source == SOURCE_CHECKPOINT:
        export_dir = ensure_export(model_dir, precision, log, progress, target=EXPORT_TARGET)
    return ensure_engines(export_dir, precision, tensorrt_version, gpu, plugin_lib, log)
