"""The tiled CUDA kernel's transposed V chunk ``sVt`` (nearbyAttention3DKernel.cu, ``vtColumn``):
a model of its shared-memory addressing, checked here where no GPU runs the kernel. The staging
stores and the ``mma`` B-operand loads must be bank-conflict free, and the swizzle must be a
bijection of each row that keeps the two halves of a 32-bit pair adjacent (so the stored values
are read back unchanged)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

KERNEL = (
    Path(__file__).resolve().parents[2] / "plugins/nearbyAttention3D/nearbyAttention3DKernel.cu"
)
CHUNK, PAD = 64, 8  # kChunk, kPad (halves)


def vt_column(head_dim: int, row: int, kk: int) -> int:
    """``vtColumn<HD>`` of the kernel."""
    return kk ^ ((row >> 3) * (256 // head_dim))


def _word(row: int, column: int) -> int:
    return (row * (CHUNK + PAD) + column) // 2


def _ways(words: list[int]) -> int:
    """Worst number of distinct 4-byte words one of the 32 banks serves in one access."""
    banks: dict[int, set[int]] = {}
    for w in words:
        banks.setdefault(w % 32, set()).add(w)
    return max(len(ws) for ws in banks.values())


def test_the_model_is_the_kernels_formula() -> None:
    source = KERNEL.read_text()
    assert "return kk ^ ((row >> 3) * (256 / HD));" in source
    assert re.search(r"constexpr int kChunk = 64;", source)
    assert re.search(r"constexpr int kPad = 8;", source)
    assert "sVt[d0 + e][vtColumn<HD>(d0 + e, kk)] = vv[e];" in source
    assert source.count("&sVt[vr][vtColumn<HD>(vr, j * 16") == 2


@pytest.mark.parametrize("head_dim", [32, 64, 128])
def test_staging_stores_are_conflict_free(head_dim: int) -> None:
    per_key = head_dim // 8  # 16-byte pieces of one key row
    for base in range(0, CHUNK * per_key, 32):  # one warp's 32 consecutive indices
        for e in range(8):  # the unrolled element of the 16-byte piece
            words = []
            for lane in range(32):
                kk, d0 = (base + lane) // per_key, ((base + lane) % per_key) * 8
                words.append(_word(d0 + e, vt_column(head_dim, d0 + e, kk)))
            assert _ways(words) == 1
    # without the swizzle the same stores conflict HD/8-way (the review's finding)
    kk_plain = [_word(8 * j, 0) for j in range(per_key)]
    assert _ways(kk_plain) == per_key


@pytest.mark.parametrize("head_dim", [32, 64, 128])
def test_mma_operand_loads_stay_conflict_free_and_rows_are_permutations(head_dim: int) -> None:
    for dt in range(head_dim // 8):
        for j in range(CHUNK // 16):
            for offset in (0, 8):
                words = []
                for lane in range(32):
                    g, tig = lane >> 2, lane & 3
                    column = vt_column(head_dim, dt * 8 + g, j * 16 + offset + tig * 2)
                    assert column % 2 == 0  # the pair (column, column + 1) is one 32-bit word
                    words.append(_word(dt * 8 + g, column))
                assert _ways(words) == 1
    for row in range(head_dim):
        columns = [vt_column(head_dim, row, kk) for kk in range(CHUNK)]
        assert sorted(columns) == list(range(CHUNK))
        assert all(vt_column(head_dim, row, 2 * i + 1) == columns[2 * i] + 1 for i in range(32))
