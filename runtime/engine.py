"""The decode loop over any backend (DESIGN §3, §5), split like gpt-fast's ``generate.py``.

- :class:`DecodeState`: a request's conditions (cross K/V once), ring caches and rows;
  classifier-free guidance runs the unconditional condition as extra batch rows;
- :func:`prefill`: feed the given prefix (a video's first frames, the top of an edit) into the
  cache without sampling — whole frames in one backend call where the backend can;
- :func:`decode_one_token`: one position, chosen from its guided logits (and overridden where a
  token is forced);
- :func:`generate_tokens`: a whole ``(B, num_frames, H, W)`` grid. Positions past the trained
  number of frames slide the window.

Two public hooks let callers drive this loop instead of writing their own: a
:data:`TokenChooser` (``choose=``) picks each free position's tokens from its guided logits —
the request's :class:`~nuwa.runtime.sampler.Sampler` by default; teacher forcing
(``nuwa.calibration.task_samples``) records the logits and returns the reference's tokens — and
a :data:`StepObserver` (``callback=``) sees the tokens after every position.

Greedy decoding here is token-for-token the reference ``nuwa.model.generate.generate_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.sampler import Sampler, SamplingOptions, apply_guidance
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.sampling import default_sampling_options

# (last position done, tokens so far (B, pos+1)) -> None; called after every position and once
# after the prefill
StepObserver = Callable[[int, np.ndarray], None]
# (position, guided logits (B, V) float32) -> the tokens (B,) int64 chosen there
TokenChooser = Callable[[int, np.ndarray], np.ndarray]


class DecodeState:
    """Everything one request carries between steps."""

    def __init__(
        self, backend: Backend, cond: Condition, uncond: Condition | None, num_frames: int
    ) -> None:
        if num_frames < 1:
            raise NuwaInputError(f"num-frames must be >= 1, got {num_frames}")
        self.backend = backend
        self.batch = cond.batch
        if uncond is not None:
            if uncond.batch != cond.batch:
                raise ValueError("the unconditional condition must have the condition's batch")
            cond = backend.concat_conditions(cond, uncond)
        self.cond = cond
        self.guided = uncond is not None
        self.rows = cond.batch
        self.num_frames = num_frames
        self.request = backend.start_request(cond, num_frames)  # step graph, cache: once
        self.steps = 0

    def step(self, prev_tokens: np.ndarray, position: int) -> np.ndarray:
        """Feed ``prev_tokens (B,)`` (the token at ``position-1``, or <bos>) -> logits
        ``(rows, V)``."""
        rows = np.tile(np.asarray(prev_tokens, dtype=np.int64), self.rows // self.batch)
        positions = np.full((self.rows,), position, dtype=np.int64)
        logits = self.request.step(rows, positions)
        self.steps += 1
        return logits

    def prefill_frames(self, known: np.ndarray, length: int) -> int:
        """Feed the whole frames of ``known[:, :length]`` (up to the trained length) in one
        backend call if the backend can; returns how many positions went in (0 if none)."""
        spec = self.backend.spec
        frames = min(length // spec.tokens_per_frame, spec.frames)
        if frames == 0:
            return 0
        n = frames * spec.tokens_per_frame
        grid = known[:, :n].reshape(self.batch, frames, spec.grid_h, spec.grid_w)
        rows = np.tile(grid.astype(np.int64), (self.rows // self.batch, 1, 1, 1))
        if not self.request.prefill(rows):
            return 0
        self.steps += 1
        return n

    def guided_logits(self, logits: np.ndarray, scale: float) -> np.ndarray:
        if not self.guided:
            return logits
        return apply_guidance(logits[: self.batch], logits[self.batch :], scale)


def forced_prefix_length(known_mask: np.ndarray | None) -> int:
    """How many leading positions are forced in every row (the prefill length)."""
    if known_mask is None:
        return 0
    all_rows = known_mask.all(axis=0)
    free = np.flatnonzero(~all_rows)
    return int(free[0]) if free.size else int(all_rows.shape[0])


def prefill(
    state: DecodeState, known: np.ndarray, length: int, prev: np.ndarray, start: int = 0
) -> np.ndarray:
    """Feed forced tokens ``known[:, start:length]`` into the cache; returns the last one fed.

    Whole leading frames go in one backend call where the backend has a prefill for the
    condition (the ONNX export's ``decoder_prefill``); the rest step by step."""
    if start == 0:
        start = state.prefill_frames(known, length)
        if start:
            prev = known[:, start - 1]
    for pos in range(start, length):
        state.step(prev, pos)
        prev = known[:, pos]
    return prev


def decode_one_token(
    state: DecodeState,
    prev: np.ndarray,
    position: int,
    choose: TokenChooser,
    guidance_scale: float,
) -> np.ndarray:
    """Feed ``prev`` at ``position`` and choose that position's tokens from the guided logits."""
    logits = state.step(prev, position)
    return choose(position, state.guided_logits(logits, guidance_scale))


def sampling_chooser(options: SamplingOptions) -> TokenChooser:
    """The default :data:`TokenChooser`: a :class:`Sampler` for ``options`` (its own seeded
    random stream; each position draws its own numbers)."""
    sampler = Sampler(options)
    return lambda position, logits: sampler(logits, position)


class TokenWalk:
    """One request's walk through its raster positions, whoever drives the steps.

    The request's own thread makes it and runs :meth:`start` (the forced prefix goes into its
    cache); then each step a driver feeds :meth:`feed` at :attr:`position` to the request's
    rows — alone (:func:`generate_tokens`), or beside other requests in a shared batch
    (:class:`nuwa.runtime.decode_scheduler.DecodeScheduler`) — and hands the rows' logits to
    :meth:`accept`, which chooses (or forces) the position's tokens. One definition of what a
    request does per position, so a request decodes the same alone and in company."""

    def __init__(
        self,
        state: DecodeState,
        options: SamplingOptions,
        known: np.ndarray | None = None,
        known_mask: np.ndarray | None = None,
        callback: StepObserver | None = None,
        progress: bool = True,
        choose: TokenChooser | None = None,
    ) -> None:
        spec = state.backend.spec
        b = state.batch
        n = state.num_frames * spec.tokens_per_frame
        given = (known, known_mask)
        if any(x is not None for x in given):
            if any(x is None or x.shape != (b, n) for x in given):
                raise ValueError(f"known and known_mask must both have shape {(b, n)}")
            known = np.asarray(known, dtype=np.int64)
            known_mask = np.asarray(known_mask, dtype=bool)
        self.state = state
        self.options = options
        self.known, self.known_mask = known, known_mask
        self.callback = callback
        self.choose = choose or sampling_chooser(options)
        self.total = n
        self.out = np.zeros((b, n), dtype=np.int64)
        self.prev = np.full((b,), spec.bos_id, dtype=np.int64)
        self.position = 0
        self.bar = tqdm(total=n, disable=not progress, desc="decoding", unit="tok", leave=False)

    @property
    def done(self) -> bool:
        return self.position >= self.total

    @property
    def rows(self) -> int:
        """Batch rows a step feeds (the samples, and their unconditional rows under guidance)."""
        return self.state.rows

    def start(self) -> None:
        """Feed the forced prefix (every row's known leading tokens) into the cache."""
        known, known_mask = self.known, self.known_mask
        start = forced_prefix_length(known_mask)
        if start and known is not None:
            self.prev = prefill(self.state, known, start, self.prev)
            self.out[:, :start] = known[:, :start]
            self.position = start
            self.bar.update(start)
            if self.callback is not None:
                self.callback(start - 1, self.out[:, :start])

    def feed(self) -> np.ndarray:
        """The tokens ``(rows,)`` to feed at :attr:`position` (the previous position's)."""
        state = self.state
        if state.rows == state.batch:
            return self.prev
        return np.tile(self.prev, state.rows // state.batch)

    def accept(self, logits: np.ndarray) -> None:
        """The logits ``(rows, V)`` of :attr:`position`: choose its tokens, move on."""
        pos = self.position
        known, known_mask = self.known, self.known_mask
        if known_mask is not None and known is not None and known_mask[:, pos].all():
            tok = known[:, pos]  # the step only filled the cache; nothing to sample
        else:
            tok = self.choose(pos, self.state.guided_logits(logits, self.options.guidance_scale))
            if known_mask is not None and known is not None:
                tok = np.where(known_mask[:, pos], known[:, pos], tok)
        self.out[:, pos] = tok
        self.prev = tok
        self.position = pos + 1
        self.bar.update(1)
        callback = self.callback  # read once: the request's own thread may drop it meanwhile
        if callback is not None:
            callback(pos, self.out[:, : pos + 1])

    def tokens(self) -> np.ndarray:
        """The token grid ``(B, num_frames, H, W)``."""
        spec = self.state.backend.spec
        return self.out.reshape(self.state.batch, self.state.num_frames, spec.grid_h, spec.grid_w)

    def close(self) -> None:
        self.bar.close()


def start_walk(
    backend: Backend,
    cond: Condition,
    num_frames: int,
    options: SamplingOptions | None = None,
    uncond: Condition | None = None,
    known: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    callback: StepObserver | None = None,
    progress: bool = True,
    choose: TokenChooser | None = None,
) -> TokenWalk:
    """A checked request's :class:`TokenWalk`, its forced prefix already in its cache (the
    arguments of :func:`generate_tokens`)."""
    if options is None:  # the defaults of a request without options (nuwa.spec.sampling)
        options = default_sampling_options(guided=uncond is not None)
    options.validate()
    if options.uses_guidance and uncond is None:
        raise ValueError("classifier-free guidance needs an unconditional condition")
    state = DecodeState(backend, cond, uncond if options.uses_guidance else None, num_frames)
    walk = TokenWalk(state, options, known, known_mask, callback, progress, choose)
    try:
        walk.start()
    except BaseException:
        walk.close()
        raise
    return walk


def generate_tokens(
    backend: Backend,
    cond: Condition,
    num_frames: int,
    options: SamplingOptions | None = None,
    uncond: Condition | None = None,
    known: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    callback: StepObserver | None = None,
    progress: bool = True,
    choose: TokenChooser | None = None,
) -> np.ndarray:
    """Generate a ``(B, num_frames, H, W)`` int64 token grid, stepping the request alone.

    ``known (B, N)`` / ``known_mask (B, N)`` (``N = num_frames*H*W``) force given tokens; other
    positions are chosen by ``choose`` from their guided logits (default: sampled with
    ``options``). ``uncond`` is used when ``options.guidance_scale != 1``. ``callback`` observes
    the tokens after every position.
    """
    walk = start_walk(
        backend, cond, num_frames, options, uncond, known, known_mask, callback, progress, choose
    )
    try:
        while not walk.done:
            walk.accept(walk.state.step(walk.prev, walk.position))
    finally:
        walk.close()
    return walk.tokens()
