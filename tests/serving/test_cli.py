"""``nuwa serve``'s arguments through the real entry point: bad ones end as one line (exit 2)
before anything loads; ``--write-repository`` writes without starting a server."""

from __future__ import annotations

from .conftest import require_serve_extra

require_serve_extra()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from nuwa.cli import main  # noqa: E402


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-rows", "0"], "--max-rows: must be >= 1, got 0"),
        (["--max-queue", "-1"], "--max-queue: must be >= 0, got -1"),
        (["--http-port", "70000"], "a port is 1..65535"),
        (["--timeout", "0"], "--timeout: must be > 0"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(capsys, args, message) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["serve", *args])
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_model_directory_is_one_line(capsys, tmp_path: Path) -> None:
    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nuwa serve: error: --model") and "no such directory" in err
    assert len(err.strip().splitlines()) == 1
