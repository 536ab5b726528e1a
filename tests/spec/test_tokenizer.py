from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuwa.spec.tokenizer import EOS_ID, PAD_ID, ByteTokenizer, PromptError


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
def test_round_trip_of_normalised_text(text: str) -> None:
    from nuwa.spec.tokenizer import normalise

    tok = ByteTokenizer(200)
    ids = tok.encode(text)
    assert ids.shape == (200,) and ids.dtype == np.int64
    assert tok.decode(ids) == normalise(text)


def test_padding_eos_and_clear_errors() -> None:
    tok = ByteTokenizer(8)
    ids = tok.encode("  A  Red ")
    assert ids.tolist() == [
        ord("a"),
        ord(" "),
        ord("r"),
        ord("e"),
        ord("d"),
        EOS_ID,
        PAD_ID,
        PAD_ID,
    ]
    with pytest.raises(PromptError, match="empty"):
        tok.encode("   ")
    with pytest.raises(PromptError, match="at most 7 bytes"):
        tok.encode("a red square")
    assert tok.empty().tolist() == [EOS_ID] + [PAD_ID] * 7
