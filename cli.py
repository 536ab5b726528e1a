"""The ``nuwa`` command line: one entry point with a subcommand per job.

Subcommands register themselves through ``add_*_parser(subparsers)`` functions that live beside
the code they drive (``nuwa.export.cli``, ``nuwa.training.cli``, ...), so this file only wires
them. Errors a user can cause end as one line on stderr and exit code 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

import nuwa
from nuwa.spec.install_hints import for_module

# (module, function) pairs that add subcommands, each the part's own module
SUBCOMMAND_PROVIDERS: list[tuple[str, str]] = [
    ("nuwa.export.cli", "add_export_parser"),
    ("nuwa.training.cli", "add_train_parser"),
    ("nuwa.quality.evaluate_cli", "add_evaluate_parser"),
    ("nuwa.runtime.generate_cli", "add_generate_parser"),
    ("nuwa.quality.quantize_cli", "add_quantize_parser"),
    ("nuwa.runtime.build_engine_cli", "add_build_engine_parser"),
    ("nuwa.serving.cli", "add_serve_parser"),
]
# libraries a provider's commands cannot run without, though building its parser does not
# import them (so `nuwa --help` stays fast): where one is missing the command is listed and says
# what to install instead of failing deep inside the run
SUBCOMMAND_NEEDS: dict[str, tuple[str, ...]] = {
    "nuwa.export.cli": ("torch",),  # exports a PyTorch model
    "nuwa.training.cli": ("torch",),
    "nuwa.quality.evaluate_cli": ("torch",),  # loads the checkpoint to score any backend's pixels
    "nuwa.serving.cli": ("pytriton",),  # Triton Inference Server through PyTriton ([serve])
}


def _cmd_info(args: argparse.Namespace) -> int:
    from nuwa.runtime.info import model_report, report

    print(report() if args.model is None else model_report(args.model))
    return 0


def command_name(func_name: str) -> str:
    """The subcommand a provider adds, by convention: ``add_build_engine_parser`` ->
    ``build-engine``."""
    return func_name.removeprefix("add_").removesuffix("_parser").replace("_", "-")


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing_dependency_parser(sub: argparse._SubParsersAction, command: str, missing: str) -> None:
    """A subcommand whose module needs a library that is not installed (e.g. torch on an edge
    device): it is listed, and running it says what to install."""
    hint = for_module(missing)

    def fail(args: argparse.Namespace) -> int:
        raise RuntimeError(f"nuwa {command} needs {missing}, which is not installed: {hint}")

    p = sub.add_parser(command, help=f"(needs {missing})", add_help=False)
    p.set_defaults(func=fail, takes_any_arguments=True)  # `main` lets every argument through


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, import just the provider of that subcommand (so
    ``nuwa generate`` on ONNX Runtime never imports the training code or PyTorch)."""
    parser = argparse.ArgumentParser(
        prog="nuwa",
        description="NÜWA-style visual synthesis: generate, export, quantize, build engines.",
    )
    parser.add_argument("--version", action="version", version=f"nuwa {nuwa.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="version and the backends usable on this machine")
    info.add_argument(
        "--model",
        metavar="DIR",
        help="instead: what the model in DIR understands (caption words, sketch palette, frame "
        "size, mask convention; its input_rules.json)",
    )
    info.set_defaults(func=_cmd_info)
    for module_name, func_name in SUBCOMMAND_PROVIDERS:
        command = command_name(func_name)
        if only is not None and command != only:
            continue
        missing = [m for m in SUBCOMMAND_NEEDS.get(module_name, ()) if not _importable(m)]
        if missing:
            _missing_dependency_parser(sub, command, missing[0])
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and not exc.name.startswith("nuwa"):
                _missing_dependency_parser(sub, command, exc.name.split(".")[0])
                continue
            raise  # a provider of the package itself is missing: a broken install, say so
        add: Callable[[argparse._SubParsersAction], None] = getattr(module, func_name)
        add(sub)
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if one of the providers adds it."""
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {command_name(f) for _, f in SUBCOMMAND_PROVIDERS} | {"info"}
    return first if first in known else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_requested_command(argv))
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")  # what parse_args says
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("nuwa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug for the traceback
        if args.debug:
            raise
        print(f"nuwa {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
