"""The house's floors (DESIGN §2), read from the code's own imports, function-level ones included:
a part imports only parts on lower floors (no same-floor import, no arrow back up, so no circle
between parts), modules inside a part import each other without a circle, and no Python file is
over 450 lines unless its docstring says why it is one concept."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository root is the package `nuwa`

# DESIGN §2, bottom to top; parts on one floor may not import each other.
FLOORS: dict[str, int] = {
    "": 0,  # `nuwa/__init__.py`: the version only
    "spec": 1,
    "data": 2,
    "plugins": 2,
    "model": 3,
    "export": 4,
    "runtime": 5,
    "calibration": 6,
    "quality": 7,
    "training": 8,
    "serving": 9,
    "bench": 10,
    "cli": 11,
}
NOT_CODE = {"tests", "build", "third_party", "model/checkpoints"}
MAX_LINES = 450
ONE_CONCEPT = "one concept"  # the phrase a longer file's docstring uses to say why it is one


def python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(".") or any(rel.startswith(p + "/") for p in NOT_CODE):
            continue
        if "egg-info" in rel or "__pycache__" in rel:
            continue
        yield path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["nuwa", *parts])


def part_of(module: str) -> str:
    """``nuwa.runtime.engine`` -> ``runtime``; ``nuwa`` -> ``""``; ``nuwa.cli`` -> ``cli``."""
    rest = module.split(".")[1:]
    return rest[0] if rest else ""


def imports_of(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every module ``path`` (the source of ``module``) imports, relative imports resolved, with
    its line."""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from nuwa.data import synthetic_data` imports the module, not just the package
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"
            yield node.lineno, target


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def nuwa_imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    for line, name in imports_of(path, module):
        if (name == "nuwa" or name.startswith("nuwa.")) and is_module(name):
            yield line, name


def violations_of(path: Path, module: str) -> list[str]:
    """The imports of ``path`` (the source of ``module``) against the floors."""
    src_part = part_of(module)
    assert src_part in FLOORS, f"{path}: part {src_part!r} is not on DESIGN §2's floors"
    bad = []
    for line, target in nuwa_imports(path, module):
        dst_part = part_of(target)
        if dst_part != src_part and FLOORS[dst_part] >= FLOORS[src_part]:
            how = "same-floor" if FLOORS[dst_part] == FLOORS[src_part] else "upward"
            bad.append(f"{path.name}:{line}: {module} has an {how} import of {target}")
    return bad


def floor_violations() -> list[str]:
    return [bad for path in python_files() for bad in violations_of(path, module_name(path))]


def module_cycles() -> list[list[str]]:
    """Circles between modules (function-level imports count), found by depth-first search."""
    graph: dict[str, set[str]] = {}
    for path in python_files():
        src = module_name(path)
        graph.setdefault(src, set())
        for _, target in nuwa_imports(path, src):
            if target != src and not src.startswith(target + "."):  # a package's own parents
                graph[src].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_imports_only_go_down_the_floors() -> None:
    bad = floor_violations()
    assert not bad, "imports against DESIGN §2's floors:\n" + "\n".join(bad)


def test_no_module_imports_itself_round_a_circle() -> None:
    cycles = module_cycles()
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def suite_files() -> list[Path]:
    """The suite's own Python files (held to the same length rule as the code)."""
    return sorted(p for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize(
    "path", [*python_files(), *suite_files()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_long_files_say_why_they_are_one_concept(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert ONE_CONCEPT in doc.lower(), (
        f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}) and its docstring does not "
        f"say why it is {ONE_CONCEPT}: split it by concept"
    )


def test_the_check_sees_each_kind_of_violation(tmp_path: Path) -> None:
    """The rules fire: upward, same-floor and function-level imports are reported, relative
    imports are resolved, downward ones pass."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from nuwa.runtime import engine\n"  # spec -> runtime: upward
        "def f():\n"
        "    from nuwa.plugins import library\n"  # data -> plugins: same floor, in a function
        "from nuwa.spec import config\n"  # downward / own part: fine
    )
    assert [v.split(": ", 1)[1] for v in violations_of(probe, "nuwa.spec.probe")] == [
        "nuwa.spec.probe has an upward import of nuwa.runtime.engine",
        "nuwa.spec.probe has an upward import of nuwa.runtime",
        "nuwa.spec.probe has an upward import of nuwa.plugins.library",
        "nuwa.spec.probe has an upward import of nuwa.plugins",
    ]
    same = violations_of(probe, "nuwa.data.probe")
    assert any("same-floor import of nuwa.plugins.library" in v for v in same)
    assert violations_of(probe, "nuwa.quality.probe") == []
    relative = tmp_path / "rel.py"
    relative.write_text("from ..runtime import engine\n")
    assert [name for _, name in nuwa_imports(relative, "nuwa.spec.rel")] == [
        "nuwa.runtime.engine",
        "nuwa.runtime",
    ]
