"""The shared memory Triton's Python backend needs, checked before ``nuwa serve`` starts.

Every Python-backend instance (a stub process) talks to the server through a region of its own
in ``/dev/shm``, made at its load with the backend's initial size and grown on demand. PyTriton
asks 4 MiB per region; ``nuwa serve`` runs ``--max-rows + --max-queue + 1`` forwarding instances
of ``nuwa`` plus ``nuwa_stream``'s, 18 regions by default: 72 MiB, more than the 64 MiB a Docker
container's ``/dev/shm`` holds unless ``--shm-size`` says otherwise (measured in a 64 MiB tmpfs:
the instances failed to load, "No space left on device", and so did the server). The regions
start at :data:`REGION_BYTES` instead (the backend's smallest: a region grows by
:data:`GROWTH_BYTES` when a request's tensors need it; the demo's answers are ~100 kB), and
:func:`check_shared_memory` refuses to start, in one line saying what to give, when ``/dev/shm``
has less room than :func:`needed_bytes` (initial size and one growth per region).

A server that is killed (out of memory, SIGKILL) or a stub that crashes leaves its regions
behind (a graceful stop removes them); on a host or in a pod that restarts ``nuwa serve``, they
fill ``/dev/shm``. PyTriton names a server's regions ``pytrtion<pid>-...`` after the process
that started it: :func:`dead_servers_regions` lists those whose process is not running here,
and ``nuwa serve`` names them (a warning at start; the check's error says how much they hold),
but does not remove them: a process of another PID namespace sharing this ``/dev/shm`` (Docker's
``--ipc=container:...``) would look dead from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nuwa.spec.errors import NuwaInputError

SHM_DIR = Path("/dev/shm")
REGION_BYTES = 1 << 20  # a region's size at its load (the Python backend's minimum)
GROWTH_BYTES = 1 << 20  # what a region grows by when a request's tensors need more
MIB = 1 << 20
PYTRITON_REGION = re.compile(r"pytrtion(\d+)-")  # PyTriton's region names: its server's pid


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def dead_servers_regions(shm_dir: Path = SHM_DIR) -> list[Path]:
    """The PyTriton regions in ``shm_dir`` whose server process is not running here."""
    try:
        entries = sorted(shm_dir.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = PYTRITON_REGION.match(entry.name)
        if match is not None and not _alive(int(match.group(1))):
            found.append(entry)
    return found


def size_mib(paths: list[Path]) -> float:
    """The files' total size (MiB; files gone meanwhile count nothing)."""
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total / MIB


def needed_bytes(instances: int) -> int:
    """Room for ``instances`` Python-backend instances: each region at its initial size and
    grown once."""
    return instances * (REGION_BYTES + GROWTH_BYTES)


def check_shared_memory(instances: int, shm_dir: Path = SHM_DIR) -> None:
    """Refuse (:class:`~nuwa.spec.errors.NuwaInputError`, one line) when ``shm_dir`` has less
    free room than ``instances`` instances need; a system without the folder is not checked
    (Triton then says what it lacks)."""
    try:
        stat = os.statvfs(shm_dir)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    need = needed_bytes(instances)
    if free < need:
        dead = dead_servers_regions(shm_dir)
        held = (
            f" ({size_mib(dead):.0f} MiB of it held by {len(dead)} regions of servers that are "
            f"gone: {shm_dir}/pytrtion<pid>-*)"
            if dead
            else ""
        )
        raise NuwaInputError(
            f"{shm_dir} has {free / MIB:.0f} MiB free{held}; this server's {instances} Triton "
            f"Python-backend instances need about {need / MIB:.0f} MiB: give it more (docker run "
            "--shm-size=256m; Kubernetes: an emptyDir with medium Memory at /dev/shm) or lower "
            "--max-rows / --max-queue"
        )


def use_small_regions() -> None:
    """Make PyTriton start each Python-backend region at :data:`REGION_BYTES` (and grow it by
    :data:`GROWTH_BYTES`): the module constants its Triton reads when it starts the server."""
    import pytriton.triton

    pytriton.triton.INITIAL_BACKEND_SHM_SIZE = REGION_BYTES
    pytriton.triton.GROWTH_BACKEND_SHM_SIZE = GROWTH_BYTES
