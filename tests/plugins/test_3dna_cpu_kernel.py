"""CPU 3DNA kernel (libnuwa_plugins.so through ctypes) vs the PyTorch dense oracle, 1e-5.

Hypothesis draws grids (unequal query/key grids), extents including 0 and -1, causal or not,
batch > 1, several heads, explicit query positions past the trained T, and decode steps against
ring caches whose positions wrap around.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    grid_size,
    nearby_attention_decode_dense,
    nearby_attention_dense,
)
from nuwa.plugins import library

TOL = 1e-5
SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

grids = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))
extents = st.tuples(st.integers(-1, 3), st.integers(-1, 3), st.integers(-1, 3))


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _oracle(q, k, v, spec, q_positions=None):
    t = [torch.from_numpy(x).double() for x in (q, k, v)]
    pos = None if q_positions is None else torch.from_numpy(q_positions).long()
    return nearby_attention_dense(*t, spec, q_positions=pos).numpy()


@st.composite
def whole_grid_cases(draw):
    q_grid = draw(grids)
    k_grid = q_grid if draw(st.booleans()) else draw(grids)
    spec = NearbyAttentionSpec(
        q_grid=q_grid,
        k_grid=k_grid,
        extents=draw(extents),
        causal=q_grid == k_grid and draw(st.booleans()),  # causal: one grid (DESIGN §4)
        scale=draw(st.none() | st.floats(0.05, 2.0)),
    )
    b, nh = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    hd = draw(st.sampled_from([1, 3, 8, 16]))
    explicit = draw(st.booleans())
    nq = draw(st.integers(1, 6)) if explicit else grid_size(q_grid)
    seed = draw(st.integers(0, 2**31 - 1))
    threads = draw(st.sampled_from([1, 2]))
    return spec, b, nh, hd, nq, explicit, seed, threads


@SETTINGS
@given(case=whole_grid_cases())
def test_cpu_whole_grid_matches_oracle(plugin_lib, case) -> None:
    spec, b, nh, hd, nq, explicit, seed, threads = case
    rng = np.random.default_rng(seed)
    nk = grid_size(spec.k_grid)
    q, k, v = _rand(rng, b, nh, nq, hd), _rand(rng, b, nh, nk, hd), _rand(rng, b, nh, nk, hd)
    pos = None
    if explicit:  # positions anywhere, including frames past q_grid's T (sliding window)
        pos = rng.integers(0, 3 * grid_size(spec.q_grid), size=(b, nq)).astype(np.int32)
    attrs = spec.onnx_attributes(hd, nh)
    out = library.nearby_attention_cpu(q, k, v, attrs, pos, num_threads=threads)
    np.testing.assert_allclose(out, _oracle(q, k, v, spec, pos), rtol=TOL, atol=TOL)


@st.composite
def decode_cases(draw):
    grid = draw(grids)
    spec = NearbyAttentionSpec(
        q_grid=grid,
        k_grid=grid,
        extents=draw(extents),
        causal=True,
        ring_cache=True,
        scale=draw(st.none() | st.floats(0.05, 2.0)),
    )
    capacity = spec.ring_capacity()
    slots = draw(st.sampled_from([capacity, capacity, max(1, capacity - 3), capacity + 5]))
    b, nh, hd = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.sampled_from([1, 4, 16]))
    nq = draw(st.sampled_from([1, 1, 2]))
    seed = draw(st.integers(0, 2**31 - 1))
    return spec, slots, b, nh, hd, nq, seed


@SETTINGS
@given(case=decode_cases())
def test_cpu_decode_ring_cache_matches_oracle(plugin_lib, case) -> None:
    spec, slots, b, nh, hd, nq, seed = case
    rng = np.random.default_rng(seed)
    q = _rand(rng, b, nh, nq, hd)
    k, v = _rand(rng, b, nh, slots, hd), _rand(rng, b, nh, slots, hd)
    # positions from the first token to well past the trained T: the ring wraps several times
    pos = rng.integers(0, 4 * grid_size(spec.q_grid), size=(b, nq)).astype(np.int32)
    attrs = spec.onnx_attributes(hd, nh)
    out = library.nearby_attention_cpu(q, k, v, attrs, pos, num_threads=2)
    tk, tv = torch.from_numpy(k).double(), torch.from_numpy(v).double()
    for i in range(nq):  # the oracle takes one query per batch row
        tq = torch.from_numpy(q[:, :, i : i + 1]).double()
        want = nearby_attention_decode_dense(tq, tk, tv, spec, torch.from_numpy(pos[:, i]).long())
        np.testing.assert_allclose(out[:, :, i : i + 1], want.numpy(), rtol=TOL, atol=TOL)


def test_cpu_decode_entry_point_and_demo_video_shape(plugin_lib) -> None:
    """The decode convenience entry on the demo-video config (8x8x8, 8 heads x 32, (3,3,3))."""
    spec = NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3), causal=True, ring_cache=True)
    rng = np.random.default_rng(0)
    s, b, nh, hd = spec.ring_capacity(), 2, 8, 32
    q, k, v = _rand(rng, b, nh, 1, hd), _rand(rng, b, nh, s, hd), _rand(rng, b, nh, s, hd)
    pos = np.array([300, 700], dtype=np.int32)  # second row is past the trained 8 frames
    out = library.nearby_attention_decode_cpu(q, k, v, spec.onnx_attributes(hd, nh), pos)
    want = nearby_attention_decode_dense(
        *(torch.from_numpy(x).double() for x in (q, k, v)), spec, torch.from_numpy(pos).long()
    )
    np.testing.assert_allclose(out, want.numpy(), rtol=TOL, atol=TOL)


def test_cpu_video_grid_default_positions(plugin_lib) -> None:
    """A larger fixed case: 4x8x8 self-attention, video extents, causal, 2 threads."""
    spec = NearbyAttentionSpec((4, 8, 8), (4, 8, 8), (3, 3, 3), causal=True)
    rng = np.random.default_rng(1)
    n, b, nh, hd = 256, 1, 4, 32
    q, k, v = _rand(rng, b, nh, n, hd), _rand(rng, b, nh, n, hd), _rand(rng, b, nh, n, hd)
    out = library.nearby_attention_cpu(q, k, v, spec.onnx_attributes(hd, nh), num_threads=2)
    np.testing.assert_allclose(out, _oracle(q, k, v, spec), rtol=TOL, atol=TOL)


def test_no_valid_key_gives_zeros(plugin_lib) -> None:
    """Ring cache of one slot, query at 5: slot 0 holds 5 (valid); with a negative position none."""
    spec = NearbyAttentionSpec((2, 2, 2), (2, 2, 2), (0, 0, 0), causal=True, ring_cache=True)
    q = np.ones((1, 1, 1, 4), np.float32)
    k = v = np.full((1, 1, 1, 4), 2.0, np.float32)
    attrs = spec.onnx_attributes(4, 1)
    out = library.nearby_attention_cpu(q, k, v, attrs, np.array([[-1]], np.int32))
    assert np.all(out == 0.0)
    out = library.nearby_attention_cpu(q, k, v, attrs, np.array([[5]], np.int32))
    np.testing.assert_allclose(out, v[:, :, :1], rtol=TOL)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"q_grid": [0, 2, 2]}, "positive"),
        ({"extents": [-2, 1, 1]}, "radii"),
        ({"ring_cache": 1, "causal": 0}, "ring_cache"),
        ({"k_grid": [2, 2, 3], "ring_cache": 1}, "ring_cache"),
        ({"k_grid": [2, 2, 3]}, "causal attention needs equal q_grid and k_grid"),
    ],
)
def test_invalid_attributes_raise(plugin_lib, change, needle) -> None:
    spec = NearbyAttentionSpec((2, 2, 2), (2, 2, 2), (1, 1, 1), causal=True)
    attrs = {**spec.onnx_attributes(4, 1), **change}
    x = np.zeros((1, 1, 8, 4), np.float32)
    with pytest.raises(library.PluginCallError, match=needle) as info:
        library.nearby_attention_cpu(x, x, x, attrs)
    assert info.value.status == 1  # NUWA_STATUS_INVALID_ARGUMENT


def test_shape_mismatch_raises(plugin_lib) -> None:
    spec = NearbyAttentionSpec((2, 2, 2), (2, 2, 2), (1, 1, 1))
    x = np.zeros((1, 2, 8, 4), np.float32)
    with pytest.raises(ValueError, match="num_heads"):
        library.nearby_attention_cpu(x, x, x, spec.onnx_attributes(4, 1))


def test_more_keys_than_the_key_grid_is_refused(plugin_lib) -> None:
    """Keys are the k_grid's raster positions: a 9th key of a 2x2x2 grid would sit in a frame past
    the grid, which the kernel's window could reach (nearbyAttention3DValidate refuses it)."""
    spec = NearbyAttentionSpec((2, 2, 2), (2, 2, 2), (1, 1, 1))
    q = np.zeros((1, 1, 8, 4), np.float32)
    for nk in (7, 8):  # a prefix of the grid or all of it: fine
        kv = np.zeros((1, 1, nk, 4), np.float32)
        library.nearby_attention_cpu(q, kv, kv, spec.onnx_attributes(4, 1))
    kv = np.zeros((1, 1, 9, 4), np.float32)
    with pytest.raises(library.PluginCallError, match="exceeds the k_grid") as info:
        library.nearby_attention_cpu(q, kv, kv, spec.onnx_attributes(4, 1))
    assert info.value.status == 1


@pytest.mark.parametrize("extra", [1, 3, 5])
def test_ring_cache_may_have_any_number_of_extra_slots(plugin_lib, extra: int) -> None:
    """DESIGN §5: a ring may have more slots than (et+1)*H*W (not only whole frames) and stays
    exact, including positions past several wraps."""
    spec = NearbyAttentionSpec((3, 2, 3), (3, 2, 3), (1, 1, 1), causal=True, ring_cache=True)
    slots = spec.ring_capacity() + extra
    rng = np.random.default_rng(extra)
    q = _rand(rng, 2, 2, 1, 8)
    k, v = _rand(rng, 2, 2, slots, 8), _rand(rng, 2, 2, slots, 8)
    for p in (0, slots - 1, slots, 5 * slots + 3):
        pos = np.array([p, p + 7], np.int32)
        out = library.nearby_attention_decode_cpu(q, k, v, spec.onnx_attributes(8, 2), pos)
        want = nearby_attention_decode_dense(
            *(torch.from_numpy(x).double() for x in (q, k, v)), spec, torch.from_numpy(pos).long()
        )
        np.testing.assert_allclose(out, want.numpy(), rtol=TOL, atol=TOL)
