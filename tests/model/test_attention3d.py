"""3DNA: the dense oracle against a hand-written case (DESIGN §4), and the gather fast path and
the ring-cache decode variants against the oracle on random problems."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    grid_size,
    nearby_attention_decode_dense,
    nearby_attention_decode_gather,
    nearby_attention_dense,
    nearby_attention_gather,
    nearby_mask,
)

axis = st.integers(1, 4)
extent = st.integers(-1, 2)


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


@st.composite
def problems(draw: st.DrawFn) -> tuple[NearbyAttentionSpec, int, int, int]:
    causal = draw(st.booleans())
    q_grid = (draw(axis), draw(axis), draw(axis))
    k_grid = q_grid if causal or draw(st.booleans()) else (draw(axis), draw(axis), draw(axis))
    extents = (draw(extent), draw(extent), draw(extent))
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal=causal)
    return spec, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.sampled_from([4, 8]))


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(0, 2**31 - 1))
def test_gather_matches_dense_oracle(problem, seed: int) -> None:
    spec, batch, heads, hd = problem
    torch.manual_seed(seed)
    q = _rand(batch, heads, grid_size(spec.q_grid), hd)
    k = _rand(batch, heads, grid_size(spec.k_grid), hd)
    v = _rand(batch, heads, grid_size(spec.k_grid), hd)
    dense = nearby_attention_dense(q, k, v, spec)
    gather = nearby_attention_gather(q, k, v, spec)
    torch.testing.assert_close(gather, dense, atol=1e-5, rtol=0)


def _hand_neighbours(
    q: tuple[int, int, int], q_grid, k_grid, extents, causal: bool
) -> set[tuple[int, int, int]]:
    """DESIGN §4 written out with plain loops: centre, clipped box, raster causality."""
    centre = [q[i] * k_grid[i] // q_grid[i] for i in range(3)]
    out = set()
    for key in itertools.product(*(range(n) for n in k_grid)):
        inside = all(extents[i] < 0 or abs(key[i] - centre[i]) <= extents[i] for i in range(3))
        raster_k = (key[0] * k_grid[1] + key[1]) * k_grid[2] + key[2]
        raster_q = (q[0] * q_grid[1] + q[1]) * q_grid[2] + q[2]
        if inside and (not causal or raster_k <= raster_q):
            out.add(key)
    return out


def test_oracle_mask_on_a_hand_computed_case() -> None:
    # Causal self-attention on a 2x3x3 grid with extents (1, 1, 1).
    # Query (1, 0, 2) = raster 11: box t in {0,1}, h in {0,1}, w in {1,2}; causality keeps every
    # key of frame 0 and, in frame 1, only keys up to raster 11 -> (1,0,1), (1,0,2).
    mask = nearby_mask((2, 3, 3), (2, 3, 3), (1, 1, 1), causal=True)
    attended = {int(i) for i in torch.nonzero(mask[11])[:, 0]}
    expected = {
        (0 * 3 + 0) * 3 + 1, (0 * 3 + 0) * 3 + 2, (0 * 3 + 1) * 3 + 1, (0 * 3 + 1) * 3 + 2,
        (1 * 3 + 0) * 3 + 1, (1 * 3 + 0) * 3 + 2,
    }  # fmt: skip
    assert attended == expected == {1, 2, 4, 5, 10, 11}
    # Border clipping: corner query (0, 0, 0) non-causal sees only the 2x2x2 corner box.
    mask = nearby_mask((2, 3, 3), (2, 3, 3), (1, 1, 1), causal=False)
    assert {int(i) for i in torch.nonzero(mask[0])[:, 0]} == {0, 1, 3, 4, 9, 10, 12, 13}
    # Grid rescaling: a 1x4x4 query grid onto a 1x2x2 key grid with extents (0, 0, 0): each
    # query attends exactly the key under floor(h*2/4), floor(w*2/4).
    mask = nearby_mask((1, 4, 4), (1, 2, 2), (0, 0, 0))
    for h, w in itertools.product(range(4), range(4)):
        assert torch.nonzero(mask[h * 4 + w])[:, 0].tolist() == [(h // 2) * 2 + (w // 2)]
    # Whole axis (-1): text-style full attention.
    assert bool(nearby_mask((1, 1, 5), (1, 1, 5), (-1, -1, -1)).all())


@pytest.mark.parametrize(
    ("q_grid", "k_grid", "extents", "causal"),
    [
        ((2, 3, 3), (2, 3, 3), (1, 1, 1), True),
        ((3, 4, 2), (3, 4, 2), (0, 2, -1), True),
        ((2, 4, 4), (1, 2, 3), (0, 1, 1), False),
        ((3, 2, 2), (5, 3, 1), (1, 0, -1), False),
    ],
)
def test_oracle_matches_written_out_definition(q_grid, k_grid, extents, causal) -> None:
    mask = nearby_mask(q_grid, k_grid, extents, causal)
    for q in itertools.product(*(range(n) for n in q_grid)):
        row = mask[(q[0] * q_grid[1] + q[1]) * q_grid[2] + q[2]]
        got = {
            (int(i) // (k_grid[1] * k_grid[2]), int(i) // k_grid[2] % k_grid[1], int(i) % k_grid[2])
            for i in torch.nonzero(row)[:, 0]
        }
        assert got == _hand_neighbours(q, q_grid, k_grid, extents, causal)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)),
    st.integers(1, 2),
    st.integers(0, 2**31 - 1),
)
def test_ring_decode_matches_whole_grid_oracle(grid, extents, batch: int, seed: int) -> None:
    """Step through 2x the grid's frames with a ring cache; while inside the grid, every step
    equals the whole-grid causal oracle's row; both decode implementations agree everywhere."""
    torch.manual_seed(seed)
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True)
    ring = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = ring.ring_capacity()
    n_grid = grid_size(grid)
    n = 2 * n_grid  # slide past the grid's last frame
    q, k, v = (_rand(batch, 2, n, 4) for _ in range(3))
    full = nearby_attention_dense(q[:, :, :n_grid], k[:, :, :n_grid], v[:, :, :n_grid], spec)
    k_cache = torch.full((batch, 2, slots, 4), 1e6, dtype=torch.float64)
    v_cache = k_cache.clone()
    for p in range(n):
        k_cache[:, :, p % slots] = k[:, :, p]
        v_cache[:, :, p % slots] = v[:, :, p]
        # never-written slots hold 1e6: attending one would wreck the output
        pos = torch.full((batch,), p)
        dense = nearby_attention_decode_dense(q[:, :, p : p + 1], k_cache, v_cache, ring, pos)
        gather = nearby_attention_decode_gather(q[:, :, p : p + 1], k_cache, v_cache, ring, pos)
        torch.testing.assert_close(gather, dense, atol=1e-5, rtol=0)
        if p < n_grid:
            torch.testing.assert_close(dense, full[:, :, p : p + 1], atol=1e-5, rtol=0)


def test_sliding_window_sees_the_same_relative_neighbourhood() -> None:
    """Past the grid's last frame a ring query attends the same relative window as inside."""
    grid, extents = (2, 2, 2), (1, 1, 1)
    ring = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = ring.ring_capacity()
    from nuwa.model.attention3d import ring_slot_positions

    for p in (7, 11, 15, 23):  # last position of frames 1, 2, 3, 5
        keys = ring_slot_positions(torch.tensor([p]), slots)
        mask = nearby_mask(grid, grid, extents, True, torch.tensor([[p]]), keys, True)
        attended = sorted(int(keys[0, i]) for i in torch.nonzero(mask[0, 0])[:, 0])
        assert attended == list(range(p - 7, p + 1))  # frames t-1 and t, all of them


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="extents"):
        NearbyAttentionSpec((1, 2, 2), (1, 2, 2), (-2, 0, 0))
    with pytest.raises(ValueError, match="q_grid"):
        NearbyAttentionSpec((0, 2, 2), (1, 2, 2), (0, 0, 0))
    with pytest.raises(ValueError, match="ring_cache"):
        NearbyAttentionSpec((1, 2, 2), (1, 2, 2), (0, 0, 0), causal=False, ring_cache=True)


@pytest.mark.parametrize(
    ("q_grid", "k_grid"), [((2, 2, 2), (1, 2, 2)), ((2, 4, 4), (2, 2, 2)), ((1, 1, 3), (1, 1, 4))]
)
def test_causal_spec_with_unequal_grids_is_refused(q_grid, k_grid) -> None:
    """Raster causality is defined on one grid (DESIGN §4): the gather table and the dense mask
    would compute two different functions, so the spec refuses it where it is made."""
    with pytest.raises(ValueError, match="causal attention needs equal query and key grids"):
        NearbyAttentionSpec(q_grid, k_grid, (1, 1, 1), causal=True)
    NearbyAttentionSpec(q_grid, k_grid, (1, 1, 1), causal=False)  # cross-attention is fine
