"""A request's sampling options, resolved once: the values a caller gives, the model's defaults
for the task (its ``generation_config.json``, :mod:`nuwa.spec.generation_config`) for the rest,
every value checked (:class:`~nuwa.spec.sampling.SamplingOptions`)."""

from __future__ import annotations

from nuwa.runtime.request_checks import check_int, check_real, task_info
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.generation_config import GenerationConfig
from nuwa.spec.sampling import NO_GUIDANCE, SamplingOptions


def resolve_sampling(
    generation: GenerationConfig,
    task: str,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance_scale: float | None = None,
    seed: int | None = None,
) -> SamplingOptions:
    """The checked sampling options of a ``task`` request: the values given, the model's
    defaults (``generation``) for those left ``None``. ``top_k=0`` turns top-k off; guidance
    other than 1 for a task that takes none is an error; so is a value of the wrong type
    (``top_k`` and ``seed`` are ints, the others real numbers) or not finite."""
    info = task_info(task)
    check_int(seed, "seed", 0, optional=True)
    check_int(top_k, "top_k", 0, optional=True)
    for name, value in (
        ("temperature", temperature),
        ("top_p", top_p),
        ("guidance_scale", guidance_scale),
    ):
        check_real(value, name)
    if not info.guided and guidance_scale not in (None, NO_GUIDANCE):
        raise NuwaInputError(
            f"{info.name} ({info.title}) takes no classifier-free guidance (its condition is "
            f"the empty prompt); got guidance_scale {guidance_scale}"
        )
    values = generation.resolve(info.name, temperature, top_k, top_p, guidance_scale)
    options = SamplingOptions(**values, seed=seed)
    options.validate()
    return options
