"""The task table (``nuwa.spec.tasks``) is the only one: every part reads it, and no other module
writes its own list of tasks (checked from the code itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nuwa.spec.tasks import (
    TASK_CODES,
    TASK_NAMES,
    TASKS,
    TRAINED_TASK_CODES,
    TRAINED_VIDEO_TASK_CODES,
    UNGUIDED_TASKS,
    find_task,
)

ROOT = Path(__file__).resolve().parents[2]
SPELLINGS = set(TASK_NAMES) | set(TASK_CODES)


def test_the_table() -> None:
    assert TASK_NAMES == ("t2i", "s2i", "i2i", "ti2i", "t2v", "s2v", "v2v", "tv2v")
    assert set(TASK_CODES) == {n.upper() for n in TASK_NAMES}
    assert TRAINED_TASK_CODES == ("T2I", "T2V", "S2I", "S2V", "V2V")
    assert TRAINED_VIDEO_TASK_CODES == ("T2V", "S2V", "V2V")
    assert UNGUIDED_TASKS == ("i2i", "v2v")
    for name, info in TASKS.items():
        assert find_task(name) is info and find_task(info.code) is info
        assert info.video == name.endswith("v")
        assert (info.condition == "sketch") == name.startswith("s")
        # guidance needs a condition to guide towards: a prompt or a sketch
        assert info.guided == ("prompt" in info.needs or info.condition == "sketch")
    assert find_task("x2y") is None and find_task(3) is None  # type: ignore[arg-type]


def _task_lists(path: Path) -> list[tuple[int, list[str]]]:
    """Tuple/list/set literals of three or more task spellings in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 3:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and all(v in SPELLINGS for v in values):
                found.append((node.lineno, values))
    return found


def _package_modules() -> list[Path]:
    skip = {"tests", "build", ".git", ".ci"}
    return [
        p
        for p in ROOT.rglob("*.py")
        if not skip & set(p.relative_to(ROOT).parts) and p != ROOT / "spec" / "tasks.py"
    ]


@pytest.mark.parametrize("path", _package_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_writes_its_own_task_list(path: Path) -> None:
    assert not _task_lists(path), f"{path.relative_to(ROOT)}: a task list; read nuwa.spec.tasks"


def test_the_check_finds_a_task_list(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('TASKS = ("T2I", "T2V", "S2I")\nOK = ("T2I", "other", "S2I")\n')
    assert _task_lists(module) == [(1, ["T2I", "T2V", "S2I"])]
