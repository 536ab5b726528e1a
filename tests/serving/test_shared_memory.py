"""The shared memory of Triton's Python backend: ``nuwa serve`` refuses at once, in one line,
where ``/dev/shm`` cannot hold its instances' regions, and starts each region small."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nuwa.serving import shared_memory
from nuwa.serving.limits import ServingLimits
from nuwa.serving.shared_memory import (
    MIB,
    check_shared_memory,
    dead_servers_regions,
    needed_bytes,
    size_mib,
)
from nuwa.serving.triton_models import instances_for
from nuwa.spec.errors import NuwaInputError


def fake_statvfs(free_mib: int):  # type: ignore[no-untyped-def]
    return lambda path: SimpleNamespace(f_bavail=free_mib * 256, f_frsize=4096)


def test_a_docker_sized_shm_holds_the_default_server(monkeypatch) -> None:
    instances = instances_for(ServingLimits()) + 1  # nuwa's and nuwa_stream's
    assert needed_bytes(instances) == instances * 2 * MIB  # 36 MiB: fits Docker's 64 MiB
    monkeypatch.setattr(shared_memory.os, "statvfs", fake_statvfs(64))
    check_shared_memory(instances)


def test_too_little_shm_is_refused_in_one_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shared_memory.os, "statvfs", fake_statvfs(16))
    with pytest.raises(NuwaInputError) as raised:
        check_shared_memory(33, tmp_path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path} has 16 MiB free; this server's 33 Triton Python-backend")
    assert "about 66 MiB" in text and "--shm-size" in text and "--max-rows" in text


def test_no_shm_folder_is_not_checked(tmp_path: Path) -> None:
    check_shared_memory(10**6, tmp_path / "missing")  # Triton says what it lacks there


def test_the_real_shm_is_read() -> None:
    stat = os.statvfs("/dev/shm")
    free = stat.f_bavail * stat.f_frsize
    check_shared_memory(free // (4 * MIB))  # half of it
    with pytest.raises(NuwaInputError, match="MiB free"):
        check_shared_memory(free // MIB + 1)  # twice it


def test_regions_of_dead_servers_are_named(tmp_path: Path, monkeypatch) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead = int(done.stdout)  # a process that has ended
    files = {
        f"pytrtion{dead}-0a1b2c3d4e5f6a7b-ab-cd": 3 * MIB,  # a killed server's
        f"pytrtion{os.getpid()}-0a1b2c3d-ef": MIB,  # a live server's
        "triton_python_backend_shm_region_0a1b": MIB,  # not attributable
        "psm_0a1b2c3d": 4096,  # not PyTriton's region
    }
    for name, size in files.items():
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)
    found = dead_servers_regions(tmp_path)
    assert [p.name for p in found] == [list(files)[0]] and size_mib(found) == 3
    assert dead_servers_regions(tmp_path / "missing") == []
    monkeypatch.setattr(shared_memory.os, "statvfs", fake_statvfs(16))
    with pytest.raises(NuwaInputError, match=r"16 MiB free \(3 MiB of it held by 1 regions of "):
        check_shared_memory(33, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing removed
