"""Byte-level text tokenizer: needs no download and no vocabulary file.

Text is normalised (Unicode NFKC, lower case, whitespace collapsed), encoded as UTF-8 bytes
(ids 0–255), closed with ``<eos>`` and padded with ``<pad>`` to the model's fixed text length, so
the text condition is always the grid ``(1, 1, max_text_len)`` (DESIGN §4). Pure Python: the
runtime uses it without PyTorch.
"""

from __future__ import annotations

import unicodedata

import numpy as np

PAD_ID = 256
EOS_ID = 257
MASK_ID = 258  # reserved
VOCAB_SIZE = 259


class PromptError(ValueError):
    """A prompt that cannot be encoded (empty, or longer than the model's text length)."""


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class ByteTokenizer:
    """Encodes prompts to fixed-length id rows ``(max_len,)`` of dtype int64."""

    vocab_size = VOCAB_SIZE
    pad_id = PAD_ID
    eos_id = EOS_ID

    def __init__(self, max_len: int) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        self.max_len = max_len

    @property
    def max_prompt_bytes(self) -> int:
        return self.max_len - 1  # one slot for <eos>

    def encode(self, text: str, allow_empty: bool = False) -> np.ndarray:
        data = normalise(text).encode("utf-8")
        if not data and not allow_empty:
            raise PromptError("the prompt is empty")
        if len(data) > self.max_prompt_bytes:
            raise PromptError(
                f"the prompt is {len(data)} bytes long; this model takes at most "
                f"{self.max_prompt_bytes} bytes (UTF-8, after normalising)"
            )
        ids = np.full(self.max_len, PAD_ID, dtype=np.int64)
        ids[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        ids[len(data)] = EOS_ID
        return ids

    def encode_batch(self, texts: list[str], allow_empty: bool = False) -> np.ndarray:
        return np.stack([self.encode(t, allow_empty=allow_empty) for t in texts])

    def empty(self) -> np.ndarray:
        """The unconditional (empty) prompt used for classifier-free guidance and V2V/I2I."""
        return self.encode("", allow_empty=True)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        out = bytearray()
        for i in np.asarray(ids).tolist():
            if i == EOS_ID:
                break
            if 0 <= i < 256:
                out.append(i)
        return out.decode("utf-8", errors="replace")
