"""``nuwa generate``: every task from the command line (the product's main job).

    nuwa generate "a red square moves left" -o out.gif          # text -> video (demo model, ORT)
    nuwa generate "a red square" -o out.png                     # text -> image
    nuwa generate --sketch sketch.png -o out.gif                # sketch -> video
    nuwa generate --image in.png --mask 0,0,32,64 -o out.png    # image completion
    nuwa generate "the circle in green" --video in.gif --mask mask.png -o out.gif

Without ``--task`` the task follows from the inputs and the output's suffix: ``--video`` ->
``tv2v`` with a prompt and a mask, else ``v2v``; ``--image`` -> ``ti2i`` with a prompt, else
``i2i``; ``--sketch`` -> ``s2i`` for a ``.png`` output, else ``s2v``; a prompt alone -> ``t2i``
for a ``.png`` output, else ``t2v``. A video task saved as ``.png`` writes a contact sheet; GIF and
MP4 outputs get a contact sheet beside them (``<stem>.sheet.png``) unless ``--no-sheet``.

Sampling options not given (``--temperature``, ``--top-k``, ``--top-p``, ``--guidance-scale``) take
the model's defaults for the task (its ``generation_config.json``; the log line shows them).

Errors a user can cause print one line and exit with code 2 (``nuwa.cli``), checked
before the model loads where they can be: the prompt (UTF-8, length), which inputs go together,
paths (a directory where a file is meant and the other way round), sampling values (finite),
``--fps``, and the request's memory (:mod:`nuwa.runtime.limits`). An input of another size than
the model's frames (image, video, mask or sketch) is resized to it with a one-line warning; a
mask rectangle reaching outside the frame is clipped with one. A prompt with words the model
never saw (its ``input_rules.json``) gets one warning line naming the nearest known words;
``--help`` ends with what the shipped demo model understands.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from nuwa.runtime.backends import BACKENDS, DEFAULT_BACKEND
from nuwa.runtime.media import (
    DEFAULT_FPS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    check_fps,
    check_input_directory,
    check_input_file,
    check_output_path,
)
from nuwa.spec.errors import NuwaInputError, NuwaInputWarning
from nuwa.spec.model_spec import CONFIG_FILE

if TYPE_CHECKING:
    from collections.abc import Callable

    from nuwa.runtime.model_directory import ModelDirectory
    from nuwa.runtime.task_request import TaskRequest
    from nuwa.spec.sampling import SamplingOptions
    from nuwa.spec.tasks import TaskInfo


def check_combination(args: argparse.Namespace) -> None:
    """Inputs that do not go together, said in the command line's words (before any task is
    inferred from them)."""
    if args.image is not None and args.video is not None:
        raise NuwaInputError("give --image or --video, not both")
    if args.mask is not None and args.image is None and args.video is None:
        raise NuwaInputError(
            "--mask needs --image or --video: it marks the region of that input to generate"
        )
    if args.task is None and args.prompt is not None and args.mask is None:
        if args.video is not None:
            raise NuwaInputError(
                "a prompt with --video and no --mask: to change the video as the prompt says "
                "(tv2v) add --mask REGION; for video prediction (v2v) drop the prompt"
            )
        if args.image is not None:
            raise NuwaInputError(
                "a prompt with --image and no --mask: to change the image as the prompt says "
                "(ti2i) add --mask REGION; image completion (i2i) takes no prompt"
            )


def check_paths(args: argparse.Namespace) -> None:
    """Input files are files, ``--model`` is a directory, ``-o`` can be written."""
    from nuwa.runtime.region_masks import parse_rect

    for flag in ("sketch", "image", "video"):
        value = getattr(args, flag)
        if value is not None:
            check_input_file(value, f"--{flag}")
    if args.mask is not None:
        mask = Path(args.mask)
        if mask.exists() or mask.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES):
            check_input_file(mask, "--mask")  # a picture
        else:
            parse_rect(args.mask)  # else a rectangle: "neither a file nor a rectangle" if not
    if args.model is not None:
        check_input_directory(args.model, "--model")
    if args.output is not None:
        check_output_path(args.output)


def infer_task(args: argparse.Namespace) -> str:
    """The task named by ``--task``, or the one the inputs and the output suffix imply."""
    if args.task:
        return str(args.task).lower()
    image_out = args.output is not None and Path(args.output).suffix.lower() == ".png"
    if args.video is not None:
        return "tv2v" if args.prompt is not None and args.mask is not None else "v2v"
    if args.image is not None:
        return "ti2i" if args.prompt is not None else "i2i"
    if args.sketch is not None:
        return "s2i" if image_out else "s2v"
    return "t2i" if image_out else "t2v"


def check_sampling(
    directory: ModelDirectory, args: argparse.Namespace, task: str, seed: int
) -> SamplingOptions:
    """The request's sampling options, resolved once (given, or the model's defaults for
    ``task``), and the cheap numeric flags: ``--num-frames``, ``--batch``, ``--fps``."""
    from nuwa.runtime.request_sampling import resolve_sampling

    options = resolve_sampling(
        directory.generation_config,
        task,
        args.temperature,
        args.top_k,
        args.top_p,
        args.guidance_scale,
        seed,
    )
    if args.num_frames is not None and args.num_frames <= 0:
        raise NuwaInputError(f"num-frames must be >= 1, got {args.num_frames}")
    if args.batch < 1:
        raise NuwaInputError(f"batch must be >= 1, got {args.batch}")
    check_fps(args.fps)
    return options


def check_request(
    directory: ModelDirectory, args: argparse.Namespace, task: str, options: SamplingOptions
) -> TaskRequest:
    """The whole request checked and read before the model loads (or exports): which inputs go
    together, the prompt (tokenized once), the pictures at the model's size, the frame count
    and batch within :mod:`nuwa.runtime.limits`."""
    from nuwa.runtime.input_reading import read_inputs
    from nuwa.runtime.task_request import check_task_request

    rules = directory.input_rules
    return check_task_request(
        directory.spec,
        rules,
        task,
        prompt=args.prompt,
        **read_inputs(args.sketch, args.image, args.mask, args.video, rules.mask_threshold),  # type: ignore[arg-type]
        num_frames=args.num_frames,
        batch=args.batch,
        guidance=options.uses_guidance,
    )


def describe_sampling(o: SamplingOptions) -> str:
    """``temperature 0.5, top-k 16, guidance 2`` for the log line."""
    parts = ["greedy" if o.temperature == 0 else f"temperature {o.temperature:g}"]
    if o.top_k:
        parts.append(f"top-k {o.top_k}")
    if o.top_p is not None and o.top_p < 1:
        parts.append(f"top-p {o.top_p:g}")
    parts.append(f"guidance {o.guidance_scale:g}" if o.guidance_scale != 1 else "no guidance")
    return ", ".join(parts)


def _cmd_generate(args: argparse.Namespace) -> int:
    from nuwa.runtime.model_directory import ModelDirectory, default_model_dir
    from nuwa.runtime.request_checks import task_info

    check_combination(args)
    check_paths(args)
    task = task_info(infer_task(args))
    out = args.output or f"{task.name}.{'gif' if task.video else 'png'}"
    out = check_output_path(out)
    if args.prompt is not None and "prompt" not in task.needs:
        raise NuwaInputError(f"{task.name} ({task.title}) takes no prompt")
    model = Path(args.model) if args.model else default_model_dir()
    if args.model is None and not (model / CONFIG_FILE).is_file():
        raise NuwaInputError(
            f"the shipped demo checkpoint is missing ({model / CONFIG_FILE} not found); "
            "pass --model DIR"
        )
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    # the model directory's files, read once; the sampling options, resolved once
    directory = ModelDirectory.read(model)
    options = check_sampling(directory, args, task.name, seed)

    def log(msg: str) -> None:
        print(f"nuwa generate: {msg}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", NuwaInputWarning)
        warnings.showwarning = lambda message, *_, **__: log(f"warning: {message}")
        request = check_request(directory, args, task.name, options)  # before a model loads
        return _generate(args, task, out, directory, request, options, log)


def _generate(
    args: argparse.Namespace,
    task: TaskInfo,
    out: Path,
    directory: ModelDirectory,
    request: TaskRequest,
    options: SamplingOptions,
    log: Callable[[str], None],
) -> int:
    from nuwa.runtime.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(
        directory,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        log=log,
        progress=not args.no_progress,
    )
    prepared = pipe.encode(request, options)
    # always, also with --no-progress: the seed is what repeats a run
    log(f"{task.title} with {pipe.describe()}, seed {options.seed}, {describe_sampling(options)}")
    result = pipe.run(prepared, progress=not args.no_progress)
    for path in result.save_all(out, fps=args.fps, sheet=False if args.no_sheet else None):
        print(path)
    return 0


def demo_rules_epilog() -> str:
    """What the shipped demo model understands, from its ``input_rules.json`` (read as JSON:
    building the parser stays light); a line saying why where the file cannot be read."""
    from nuwa.runtime.model_directory import default_model_dir
    from nuwa.spec.input_rules import INPUT_RULES_FILE, InputRules, InputRulesError

    demo = default_model_dir()
    try:
        rules = InputRules.load(demo)
    except InputRulesError as exc:
        return f"(the demo model's input rules cannot be read: {exc})"
    if rules is None:
        return f"(the demo model's {INPUT_RULES_FILE} is missing: {demo})"
    body = "\n".join(f"  {line}" for line in rules.describe().splitlines())
    return (
        "what the shipped demo model understands (its input_rules.json; another model's: "
        f"nuwa info --model DIR):\n{body}\n"
        "unknown words get a one-line warning naming the nearest known ones; name every "
        "attribute (colour, shape, start position, direction) for dependable results"
    )


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate an image or a video (all eight tasks)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "tasks: t2i text->image, s2i sketch->image, i2i image completion, ti2i text-guided "
            "image manipulation, t2v text->video, s2v sketch->video, v2v video prediction, tv2v "
            "text-guided video manipulation\n\n" + demo_rules_epilog()
        ),
    )
    p.add_argument("prompt", nargs="?", help="the text prompt (text and manipulation tasks)")
    p.add_argument("-o", "--output", help="output .png, .gif or .mp4 (default: <task>.gif/.png)")
    p.add_argument("--task", help="t2i s2i i2i ti2i t2v s2v v2v tv2v (default: from the inputs)")
    p.add_argument("--sketch", help="sketch PNG/GIF in the palette colours (s2i, s2v)")
    p.add_argument("--image", help="input image (i2i, ti2i)")
    p.add_argument("--video", help="input GIF/MP4 (v2v: the first frames; tv2v: the source)")
    p.add_argument("--mask", help="region to generate: x0,y0,x1,y1 in pixels, or a mask PNG")
    p.add_argument("--num-frames", type=int, help="frames to make (video; default: trained)")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    p.add_argument(
        "--temperature", type=float, help="0 = greedy (default: the model's, for the task)"
    )
    p.add_argument("--top-k", type=int, help="0 = off (default: the model's)")
    p.add_argument(
        "--top-p", type=float, help="nucleus sampling mass, 1 = off (default: the model's)"
    )
    p.add_argument(
        "--guidance-scale", type=float, help="1 = no guidance (default: the model's, for the task)"
    )
    p.add_argument("--batch", type=int, default=1, help="samples per prompt")
    p.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of {', '.join(BACKENDS)}")
    p.add_argument("--precision", help="fp32 fp16 int8 (default: what the model holds)")
    p.add_argument("--device", help="cpu (default), cuda or tensorrt")
    p.add_argument("--model", help="checkpoint or export directory (default: shipped demo)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second of videos")
    p.add_argument("--no-sheet", action="store_true", help="no contact sheet beside videos")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)
