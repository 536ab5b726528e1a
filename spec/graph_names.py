"""The names of the exported graphs and of their tensors: the one definition that export writes
and the runtime, calibration and quality read (DESIGN §5).

- Graph *kinds* (the manifest's ``graphs.<name>.kind``): what a graph computes.
- Graph *names* (file stems, the manifest's keys): one per graph, e.g. ``decoder_step.text``,
  ``sketch_condition_encoder.t3``, ``decoder_prefill.text``.
- Condition keys: ``text`` and ``sketch_t{Ts}`` (a sketch of ``Ts`` frames).
- Tensor names: the VQ / sketch / condition encoders' inputs and outputs, and the decoder's
  ONNX Runtime GenAI / Optimum names (``input_ids``, ``past_key_values.%d.key`` ...).
- Symbolic dimension names of the dynamic axes.

Torch-free and import-free: every floor may read it.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Graph kinds
# --------------------------------------------------------------------------------------------

VQ_ENCODER_KIND = "vq_encoder"  # frames -> codes
VQ_DECODER_KIND = "vq_decoder"  # codes -> frames
SKETCH_ENCODER_KIND = "sketch_encoder"  # class map -> sketch codes (VQ-GAN-Seg)
CONDITION_ENCODER_KIND = "condition_encoder"  # text ids / sketch tokens -> cross K/V
DECODER_STEP_KIND = "decoder_step"  # one token per row against the ring cache
DECODER_PREFILL_KIND = "decoder_prefill"  # known prefix frames -> ring caches
GRAPH_KINDS = (
    VQ_ENCODER_KIND,
    VQ_DECODER_KIND,
    SKETCH_ENCODER_KIND,
    CONDITION_ENCODER_KIND,
    DECODER_STEP_KIND,
    DECODER_PREFILL_KIND,
)

# --------------------------------------------------------------------------------------------
# Condition keys
# --------------------------------------------------------------------------------------------

TEXT_CONDITION = "text"
SKETCH_CONDITION_PREFIX = "sketch_t"


def sketch_condition_key(sketch_frames: int) -> str:
    """``sketch_t{Ts}``: the condition of a sketch with ``Ts`` frames."""
    return f"{SKETCH_CONDITION_PREFIX}{sketch_frames}"


def condition_kind(condition: str) -> str:
    """``text`` or ``sketch``: the kind of a condition key (``sketch_t3`` -> ``sketch``)."""
    return TEXT_CONDITION if condition == TEXT_CONDITION else "sketch"


# --------------------------------------------------------------------------------------------
# Graph names
# --------------------------------------------------------------------------------------------

VQ_ENCODER = "vq_encoder"
VQ_DECODER = "vq_decoder"
SKETCH_ENCODER = "sketch_encoder"
TEXT_ENCODER = "text_encoder"
SKETCH_CONDITION_ENCODER = "sketch_condition_encoder"


def sketch_condition_encoder_name(sketch_frames: int) -> str:
    """``sketch_condition_encoder.t{Ts}``: the encoder of a ``Ts``-frame sketch condition."""
    return f"{SKETCH_CONDITION_ENCODER}.t{sketch_frames}"


def condition_encoder_name(condition: str, sketch_frames: int) -> str:
    """The encoder graph of a condition key (``sketch_frames`` is the sketch grid's ``Ts``)."""
    if condition == TEXT_CONDITION:
        return TEXT_ENCODER
    return sketch_condition_encoder_name(sketch_frames)


def decoder_step_name(condition: str, frames: int | None = None) -> str:
    """``decoder_step.{condition}``, or ``decoder_step.{condition}.t{frames}`` when a condition
    needs one graph per group of frame counts (``frames``: the group's largest)."""
    base = f"{DECODER_STEP_KIND}.{condition}"
    return base if frames is None else f"{base}.t{frames}"


def decoder_prefill_name(condition: str) -> str:
    """``decoder_prefill.{condition}``."""
    return f"{DECODER_PREFILL_KIND}.{condition}"


# --------------------------------------------------------------------------------------------
# Tensor names
# --------------------------------------------------------------------------------------------

FRAMES = "frames"  # vq_encoder input / vq_decoder output (B, 3, S, S) in [-1, 1]
CODES = "codes"  # vq_encoder output / vq_decoder input (B, h, w) int64
SKETCH = "sketch"  # sketch_encoder input: class map (B, S, S) int64
SKETCH_CODES = "sketch_codes"  # sketch_encoder output (B, h, w) int64
TEXT_IDS = "text_ids"  # text_encoder input (B, L) int64
SKETCH_TOKENS = "sketch_tokens"  # sketch_condition_encoder input (B, Ts, Hs, Ws) int64

# the decoder's I/O (DESIGN §5, the ONNX Runtime GenAI / Optimum convention)
INPUT_IDS = "input_ids"
POSITIONS = "positions"
LOGITS = "logits"
PAST_KEY = "past_key_values.%d.key"
PAST_VALUE = "past_key_values.%d.value"
PRESENT_KEY = "present.%d.key"
PRESENT_VALUE = "present.%d.value"
CROSS_KEY = "cross_key_values.%d.key"
CROSS_VALUE = "cross_key_values.%d.value"
TARGET_TOKENS = "target_tokens"  # decoder_prefill: known prefix frames (B, F, H, W)


def kv_names(pattern_key: str, pattern_value: str, layers: int) -> list[str]:
    """Per-layer key/value names interleaved: ``[key 0, value 0, key 1, value 1, ...]``."""
    return [p % i for i in range(layers) for p in (pattern_key, pattern_value)]


# --------------------------------------------------------------------------------------------
# Symbolic dimensions
# --------------------------------------------------------------------------------------------

BATCH = "batch"
PREFIX_FRAMES = "prefix_frames"  # decoder_prefill's frame axis
CACHE_LAYOUT = (BATCH, "heads", "slots", "head_dim")  # every K/V cache tensor's axes
