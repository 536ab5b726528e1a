"""``nuwa serve --write-repository DIR``: the model as a Triton model repository (Python
backend) for a standalone ``tritonserver``, so scaling out is Triton's own (many servers behind a
load balancer; README "Serving").

    DIR/models/nuwa_stream/config.pbtxt, 1/model.py   the engine (decoupled; one instance)
    DIR/models/nuwa/config.pbtxt, 1/model.py          forwards to nuwa_stream over gRPC
    DIR/backends/python/                               Triton's Python backend for this Python
    DIR/run_tritonserver.sh                            the PyTriton wheel's tritonserver on it

``models/`` is the repository proper: any Triton whose Python environment has this package
installed serves it (``tritonserver --model-repository DIR/models``). The rest runs it here with
the ``tritonserver`` binary the PyTriton wheel ships: its Python backend with the stub built for
this Python version (linked, not copied), and the environment the stub needs
(:mod:`nuwa.serving.python_library`; this interpreter's folder first on ``PATH``, as PyTriton
does, so the stub finds this environment's packages).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import stat
import sys
from pathlib import Path

from nuwa.serving.contract import ENGINE_URL_VARIABLE, MODEL, STREAM_MODEL
from nuwa.serving.limits import ServingLimits
from nuwa.serving.model_configs import (
    MODEL_FILES,
    config_pbtxt,
    forward_parameters,
    model_config,
)
from nuwa.serving.python_library import interpreter_library_dir, python_version_tag
from nuwa.spec.errors import NuwaInputError

PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


def engine_parameters(args: argparse.Namespace, limits: ServingLimits) -> dict[str, str]:
    model = str(Path(args.model).resolve()) if args.model else ""
    values = {
        "model": model,
        "backend": args.backend,
        "precision": args.precision or "",
        "device": args.device or "",
        "max_rows": str(limits.max_rows),
        "max_queue": str(limits.max_queue),
        "max_frames": str(limits.max_frames),
        "timeout_s": repr(limits.timeout_s),
    }
    for key, value in values.items():
        if '"' in value or "\\" in value:
            raise NuwaInputError(f"--{key.replace('_', '-')} {value!r}: quotes and backslashes")
    return values


def pytriton_server_dir() -> Path:
    """The PyTriton wheel's ``tritonserver`` folder (binary, Python backend, stubs)."""
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def pytriton_libs_dir() -> Path:
    from pytriton.utils.distribution import get_libs_path

    return Path(get_libs_path())


def write_launcher(root: Path) -> Path:
    """``backends/python`` (links into the PyTriton wheel) and ``run_tritonserver.sh``."""
    server = pytriton_server_dir()
    backend = root / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    stub = server / "python_backend_stubs" / python_version_tag() / "triton_python_backend_stub"
    links = {name: server / "backends" / "python" / name for name in PYTHON_BACKEND_FILES}
    links["triton_python_backend_stub"] = stub
    for name, target in links.items():
        if not target.exists():
            raise NuwaInputError(f"PyTriton's {target} is missing: reinstall nvidia-pytriton")
        link = backend / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    library_dirs = ":".join(str(d) for d in (interpreter_library_dir(), pytriton_libs_dir()) if d)
    python_bin = Path(sys.executable).parent
    script = root / "run_tritonserver.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# Written by `nuwa serve --write-repository`: the PyTriton wheel's tritonserver on\n"
        "# models/, its Python backend run by this environment's Python. Extra arguments go to\n"
        "# tritonserver (--http-port, --grpc-port, --metrics-port ...).\n"
        'HERE="$(cd "$(dirname "$0")" && pwd)"\n'
        f'export LD_LIBRARY_PATH="{library_dirs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n'
        f'export PATH={shlex.quote(str(python_bin))}:"$PATH"\n'
        "# nuwa reaches nuwa_stream over this server's gRPC port (tritonserver's default 8001)\n"
        "GRPC_ADDRESS=127.0.0.1 GRPC_PORT=8001 PREVIOUS=\n"
        'for ARG in "$@"; do\n'
        '  case "$PREVIOUS" in\n'
        '    --grpc-port) GRPC_PORT="$ARG" ;;\n'
        '    --grpc-address) GRPC_ADDRESS="$ARG" ;;\n'
        "  esac\n"
        '  case "$ARG" in\n'
        '    --grpc-port=*) GRPC_PORT="${ARG#*=}" ;;\n'
        '    --grpc-address=*) GRPC_ADDRESS="${ARG#*=}" ;;\n'
        "  esac\n"
        '  PREVIOUS="$ARG"\n'
        "done\n"
        '[ "$GRPC_ADDRESS" = 0.0.0.0 ] && GRPC_ADDRESS=127.0.0.1\n'
        f'export {ENGINE_URL_VARIABLE}="$GRPC_ADDRESS:$GRPC_PORT"\n'
        f"exec {shlex.quote(str(server / 'bin' / 'tritonserver'))} "
        '--model-repository "$HERE/models" --backend-directory "$HERE/backends" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def write_repository(root: Path, args: argparse.Namespace, limits: ServingLimits) -> Path:
    """Write the repository and its launcher into ``root``; return the launcher."""
    from nuwa.runtime.model_directory import ModelDirectory, default_model_dir
    from nuwa.serving.triton_models import instances_for

    parameters = engine_parameters(args, limits)
    frames = ModelDirectory.read(args.model or default_model_dir()).input_rules.frames
    forward = forward_parameters(limits.timeout_s, frames, f"127.0.0.1:{args.grpc_port}")
    models = root / "models"
    configs = {
        STREAM_MODEL: config_pbtxt(model_config(STREAM_MODEL, 1, parameters)),
        MODEL: config_pbtxt(model_config(MODEL, instances_for(limits), forward)),
    }
    for name, config in configs.items():
        (models / name / "1").mkdir(parents=True, exist_ok=True)
        (models / name / "config.pbtxt").write_text(config)
        shutil.copyfile(MODEL_FILES[name], models / name / "1" / "model.py")
    script = write_launcher(root)
    print(f"nuwa serve: wrote the Triton model repository {models} and its launcher {script}")
    return script
