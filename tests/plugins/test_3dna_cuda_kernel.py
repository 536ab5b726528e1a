"""CUDA 3DNA kernels vs the PyTorch dense oracle (needs a GPU; skipped without one).

Every kernel (generic, decode, tiled, auto) x every dtype it supports, on a seeded table of
problems (whole grids, unequal grids, text, explicit positions past T, ring-cache decode) and on
hypothesis-drawn small problems. Outputs are poisoned with NaN first, so an unwritten element
fails. Tolerances: FP32 1e-5 relative, FP16 2e-3, BF16 2e-2.
"""

from __future__ import annotations

from dataclasses import dataclass

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

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]
FIXTURE_CHECK = HealthCheck.function_scoped_fixture

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
ALGOS = ["auto", "generic", "decode", "tiled"]


@pytest.fixture(scope="module")
def cuda_lib():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    try:
        library.require_cuda()
    except library.PluginLibraryError as e:
        pytest.fail(str(e), pytrace=False)
    if library.cuda_device_count() == 0:
        pytest.fail("torch sees a GPU but libnuwa_plugins does not (driver / build mismatch)")
    return library.load_library()


@dataclass(frozen=True)
class Case:
    name: str
    spec: NearbyAttentionSpec
    batch: int
    heads: int
    head_dim: int
    num_queries: int | None = None  # explicit positions when set (random, past T included)
    slots: int | None = None  # ring cache slots (ring specs)


CASES = [
    Case("video-causal", NearbyAttentionSpec((4, 8, 8), (4, 8, 8), (3, 3, 3), True), 2, 2, 64),
    Case("image", NearbyAttentionSpec((1, 16, 16), (1, 16, 16), (0, 3, 3)), 1, 3, 32),
    Case("cross-unequal", NearbyAttentionSpec((4, 8, 8), (2, 4, 4), (1, 1, 1)), 2, 2, 64),
    Case("text-full", NearbyAttentionSpec((1, 1, 40), (1, 1, 40), (-1, -1, -1)), 2, 2, 128),
    Case("odd-grid", NearbyAttentionSpec((3, 5, 7), (3, 5, 7), (1, 2, 0), causal=True), 1, 2, 64),
    Case("large", NearbyAttentionSpec((8, 16, 16), (8, 16, 16), (3, 3, 3)), 1, 2, 64),
    Case("odd-head-dim", NearbyAttentionSpec((2, 4, 4), (2, 4, 4), (1, 1, 1)), 1, 2, 48),
    Case("positions", NearbyAttentionSpec((4, 8, 8), (4, 8, 8), (3, 3, 3)), 2, 2, 64, 70),
    Case(
        "ring-demo-video",
        NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3), causal=True, ring_cache=True),
        3,
        8,
        32,
        1,
        256,
    ),
    Case(
        "ring-hd64",
        NearbyAttentionSpec((16, 8, 8), (16, 8, 8), (3, 3, 3), causal=True, ring_cache=True),
        2,
        4,
        64,
        1,
        256,
    ),
    Case(
        "ring-whole-time-short",
        NearbyAttentionSpec((4, 4, 4), (4, 4, 4), (-1, 1, 2), causal=True, ring_cache=True),
        2,
        2,
        128,
        1,
        40,
    ),
    Case(
        "ring-two-queries",
        NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3), causal=True, ring_cache=True),
        2,
        2,
        64,
        2,
        256,
    ),
]


def _oracle(q, k, v, spec: NearbyAttentionSpec, pos: torch.Tensor | None) -> torch.Tensor:
    q, k, v = (x.double().cpu() for x in (q, k, v))
    if not spec.ring_cache:
        return nearby_attention_dense(q, k, v, spec, q_positions=None if pos is None else pos.cpu())
    cols = []
    for i in range(q.shape[2]):  # the oracle decodes one query per batch row
        p = pos[:, i].cpu().long()
        cols.append(nearby_attention_decode_dense(q[:, :, i : i + 1], k, v, spec, p))
    return torch.cat(cols, dim=2)


def _run(case: Case, dtype: torch.dtype, algo: str, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    spec, b, nh, hd = case.spec, case.batch, case.heads, case.head_dim
    nq = case.num_queries or grid_size(spec.q_grid)
    nk = case.slots or grid_size(spec.k_grid)
    q, k, v = (torch.randn(b, nh, n, hd, generator=g) for n in (nq, nk, nk))
    pos = None
    if case.num_queries is not None:
        pos = torch.randint(0, 4 * grid_size(spec.q_grid), (b, nq), generator=g, dtype=torch.int32)
    attrs = spec.onnx_attributes(hd, nh)
    if not library.cuda_supports(attrs, q.shape, k.shape, NAMES[dtype], algo):
        pytest.skip(f"{algo} does not support {NAMES[dtype]} head_dim {hd}")
    dev = [x.to("cuda", dtype) for x in (q, k, v)]
    out = torch.full_like(dev[0], float("nan"))  # poison: every element must be written
    library.nearby_attention_torch(
        *dev, attrs, None if pos is None else pos.cuda(), algo=algo, out=out
    )
    torch.cuda.synchronize()
    want = _oracle(*(x.to(dtype) for x in (q, k, v)), spec, pos)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", list(TOL), ids=list(NAMES.values()))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cuda_kernel_matches_oracle(cuda_lib, case: Case, dtype: torch.dtype, algo: str) -> None:
    _run(case, dtype, algo)


@settings(max_examples=60, deadline=None, suppress_health_check=[FIXTURE_CHECK])
@given(
    q_grid=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    k_grid=st.none() | st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    extents=st.tuples(st.integers(-1, 3), st.integers(-1, 3), st.integers(-1, 3)),
    causal=st.booleans(),
    explicit=st.booleans(),
    head_dim=st.sampled_from([32, 64, 128, 40]),
    dtype=st.sampled_from(list(TOL)),
    algo=st.sampled_from(ALGOS),
    seed=st.integers(0, 2**16),
)
def test_cuda_kernel_random_grids(
    cuda_lib, q_grid, k_grid, extents, causal, explicit, head_dim, dtype, algo, seed
) -> None:
    spec = NearbyAttentionSpec(q_grid, k_grid or q_grid, extents, causal=causal)
    case = Case("random", spec, 2, 2, head_dim, 9 if explicit else None)
    attrs = spec.onnx_attributes(head_dim, 2)
    shape_q = (2, 2, case.num_queries or grid_size(q_grid), head_dim)
    shape_k = (2, 2, grid_size(spec.k_grid), head_dim)
    if not library.cuda_supports(attrs, shape_q, shape_k, NAMES[dtype], algo):
        return
    _run(case, dtype, algo, seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[FIXTURE_CHECK])
@given(
    grid=st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 8)),
    extents=st.tuples(st.integers(-1, 3), st.integers(-1, 3), st.integers(-1, 3)),
    slack=st.sampled_from([0, 0, -3, 7]),
    head_dim=st.sampled_from([32, 64, 128]),
    dtype=st.sampled_from(list(TOL)),
    algo=st.sampled_from(ALGOS),
    seed=st.integers(0, 2**16),
)
def test_cuda_decode_random_ring_caches(
    cuda_lib, grid, extents, slack, head_dim, dtype, algo, seed
) -> None:
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = max(1, spec.ring_capacity() + slack)
    _run(Case("ring", spec, 2, 2, head_dim, 1, slots), dtype, algo, seed)
