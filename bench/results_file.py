"""bench/RESULTS.md's marked sections: each benchmark owns the text between its
``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers and rewrites only that, so one
benchmark's run never touches another's numbers.

The benchmarks are scripts (``python bench/NAME.py``), not a package: each puts this folder on
``sys.path`` and imports its sibling modules by their file names.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NEW_FILE = "# Benchmark results\n"  # what a missing RESULTS.md starts from


def markers(name: str) -> tuple[str, str]:
    """The ``(BEGIN, END)`` markers of the section called ``name``."""
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def replace_marked_section(text: str, body: str, name: str) -> str:
    """``text`` with what lies between ``name``'s markers replaced by ``body`` (the markers and
    ``body`` appended at the end when absent). Other sections are left untouched."""
    begin, end = markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def write_marked_section(body: str, name: str, path: Path = RESULTS) -> None:
    """Rewrite ``name``'s section of ``path`` (bench/RESULTS.md) with ``body``."""
    old = path.read_text() if path.is_file() else NEW_FILE
    path.write_text(replace_marked_section(old, body, name))
