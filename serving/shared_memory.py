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
"""

from __future__ import annotations

import os
from pathlib import Path

from nuwa.spec.errors import NuwaInputError

SHM_DIR = Path("/dev/shm")
REGION_BYTES = 1 << 20  # a region's size at its load (the Python backend's minimum)
GROWTH_BYTES = 1 << 20  # what a region grows by when a request's tensors need more
MIB = 1 << 20


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
        raise NuwaInputError(
            f"{shm_dir} has {free / MIB:.0f} MiB free; this server's {instances} Triton "
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
