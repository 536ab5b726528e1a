"""The options of a transformer training run (``train_transformer``): what the run does.

One dataclass, written to the run's ``run.json``: step counts and batch sizes, the optimizer, the
task mix (``task_weights``, keyed by the trained task codes of :mod:`nuwa.spec.tasks`), condition
and attribute dropout, the motion-aimed loss options, long clips past the trained frames, and
which clips are drawn (``clip_mix``).
What the options do to a batch is in :mod:`nuwa.training.batches`, the token cache they size in
:mod:`nuwa.training.token_cache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nuwa.data.synthetic_data import ClipMix


@dataclass
class TransformerTrainOptions:
    """What a transformer training run does (stored in its ``run.json``)."""

    steps: int = 2000  # total optimizer steps
    video_batch_size: int = 4  # clips per video-task step
    image_batch_size: int = 24  # frames per image-task step
    lr: float = 5e-4  # peak AdamW learning rate, cosine-decayed to 10%
    warmup: int = 100
    weight_decay: float = 0.01
    cond_dropout: float = 0.1  # per-sample chance of the empty prompt / blank sketch
    motion_weight: float = 0.0  # extra loss weight of video tokens changed since the frame before
    short_t2v_share: float = 0.0  # share of T2V batches that train on the first frames only
    short_t2v_frames: int = 2  # frames of such a batch (with T / short_t2v_frames times the clips)
    long_frames: int = 0  # > the model's frames: clips rendered this long (bouncing off borders)
    long_share: float = 0.0  # share of T2V / V2V batches on all long_frames frames (fewer clips)
    attribute_dropout: float = 0.0  # per-sample chance each of the position / motion goes unnamed
    motion_dropout: float | None = None  # the motion's own chance; None -> attribute_dropout
    digit_share: float | None = None  # each object's chance of being a digit; None -> 1 in 4
    two_object_share: float | None = None  # each clip's chance of two objects; None -> 1 in 2
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"T2I": 0.2, "T2V": 0.3, "S2I": 0.15, "S2V": 0.2, "V2V": 0.15}
    )
    num_clips: int = 4000  # training clips tokenised once
    seed: int = 0
    device: str | None = None  # None -> CUDA if available
    attn_impl: str = "dense"  # dense is ~10x faster than gather for training on the CPU
    amp: str = "none"  # "bf16": bfloat16 autocast (2-4x faster on CPUs with AVX512-BF16 / AMX)
    log_every: int = 10
    checkpoint_every: int = 100
    time_limit_s: float | None = None  # stop (with a checkpoint) after this much wall time
    new_layer_lr_scale: float = 1.0  # a deepened run's new decoder layers: lr x this
    threads: int | None = None
    progress: bool = True

    @property
    def effective_motion_dropout(self) -> float:
        """The motion's chance of going unnamed: ``motion_dropout``, else ``attribute_dropout``."""
        return self.attribute_dropout if self.motion_dropout is None else self.motion_dropout

    def clip_frames(self, trained_frames: int) -> int:
        """Frames of each tokenised clip: ``long_frames`` when past the trained ones, else those."""
        return max(trained_frames, self.long_frames)

    @property
    def clip_mix(self) -> ClipMix:
        """Which training clips are drawn (checks ``digit_share`` and ``two_object_share``)."""
        return ClipMix(self.digit_share, self.two_object_share)
