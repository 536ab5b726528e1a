"""The shared memory of Triton's Python backend: ``nuwa serve`` refuses at once, in one line,
where ``/dev/shm`` cannot hold its instances' regions, and starts each region small."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from nuwa.serving import shared_memory
from nuwa.serving.limits import ServingLimits
from nuwa.serving.shared_memory import MIB, check_shared_memory, needed_bytes
from nuwa.serving.triton_models import instances_for
from nuwa.spec.errors import NuwaInputError


def fake_statvfs(free_mib: int):  # type: ignore[no-untyped-def]
    return lambda path: SimpleNamespace(f_bavail=free_mib * 256, f_frsize=4096)


def test_a_docker_sized_shm_holds_the_default_server(monkeypatch) -> None:
    instances = instances_for(ServingLimits()) + 1  # nuwa's and nuwa_stream's
    assert needed_bytes(instances) == instances * 2 * MIB  # 36 MiB: fits Docker's 64 MiB
    monkeypatch.setattr(shared_memory.os, "statvfs", fake_statvfs(64))
    check_shared_memory(instances)


def test_too_little_shm_is_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(shared_memory.os, "statvfs", fake_statvfs(16))
    with pytest.raises(NuwaInputError) as raised:
        check_shared_memory(33)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("/dev/shm has 16 MiB free; this server's 33 Triton Python-backend")
    assert "about 66 MiB" in text and "--shm-size" in text and "--max-rows" in text


def test_no_shm_folder_is_not_checked(tmp_path: Path) -> None:
    check_shared_memory(10**6, tmp_path / "missing")  # Triton says what it lacks there


def test_the_real_shm_is_read() -> None:
    stat = os.statvfs("/dev/shm")
    free = stat.f_bavail * stat.f_frsize
    check_shared_memory(free // (4 * MIB))  # half of it
    with pytest.raises(NuwaInputError, match="MiB free"):
        check_shared_memory(free // MIB + 1)  # twice it
