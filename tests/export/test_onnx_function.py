"""The ``nuwa::NearbyAttention3D`` local function alone against the dense-mask 3DNA oracle of
``model/attention3d.py`` (DESIGN §4): unequal grids, extents 0 and -1, causal, per-row query
positions, and the ring-cache decode variant with positions past the ring's capacity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from nuwa.export.onnx_function import (
    DOMAIN,
    OP_TYPE,
    Attention3DAttrs,
    attach_functions,
)
from nuwa.export.verify import session
from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    grid_size,
    nearby_attention_decode_dense,
    nearby_attention_dense,
)

OPSET = 18
HEADS, HEAD_DIM = 2, 4

SPECS = [  # (q_grid, k_grid, extents, causal)
    ((3, 4, 4), (3, 4, 4), (1, 1, 1), False),
    ((3, 4, 5), (3, 4, 5), (1, 2, 0), True),
    ((1, 1, 7), (1, 1, 7), (-1, -1, -1), False),
    ((4, 4, 4), (2, 2, 2), (0, 1, 1), False),  # grid rescaling, query grid larger
    ((2, 3, 3), (4, 6, 6), (1, 1, -1), False),  # key grid larger
    ((3, 4, 4), (1, 1, 6), (-1, -1, -1), False),  # video -> text cross-attention
    ((2, 4, 4), (2, 4, 4), (-1, 0, 2), True),
]


def single_node_model(attrs: Attention3DAttrs, nq: int, nk: int, with_positions: bool):
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", HEADS, nq, HEAD_DIM])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["b", HEADS, nk, HEAD_DIM])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["b", HEADS, nk, HEAD_DIM])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", HEADS, nq, HEAD_DIM])
    inputs = [q, k, v]
    if with_positions:
        inputs.append(helper.make_tensor_value_info("pos", TensorProto.INT32, ["b", nq]))
    node = helper.make_node(
        OP_TYPE,
        [i.name for i in inputs],
        ["out"],
        domain=DOMAIN,
        **attrs.as_dict(),
    )
    graph = helper.make_graph([node], "nearby_attention", inputs, [out])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)]
    )
    attach_functions(model, OPSET)
    onnx.checker.check_model(model, full_check=True)
    return model


def attrs_of(spec: NearbyAttentionSpec) -> Attention3DAttrs:
    return Attention3DAttrs.from_dict(spec.onnx_attributes(HEAD_DIM, HEADS))


@pytest.mark.parametrize(("q_grid", "k_grid", "extents", "causal"), SPECS)
def test_whole_grid_function_matches_dense_oracle(q_grid, k_grid, extents, causal):
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal)
    nq, nk = grid_size(q_grid), grid_size(k_grid)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, HEADS, n, HEAD_DIM, generator=g) for n in (nq, nk, nk))
    expected = nearby_attention_dense(q, k, v, spec).numpy()
    sess = session(single_node_model(attrs_of(spec), nq, nk, False))
    out = sess.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("q_grid", "k_grid", "extents", "causal"), SPECS[:5])
def test_function_with_query_positions_matches_dense_oracle(q_grid, k_grid, extents, causal):
    """Per-row query positions (the decoder's cross-attention), including frames past q_grid."""
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal)
    nk = grid_size(k_grid)
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 2 * grid_size(q_grid), (2, 3), generator=g)
    q = torch.randn(2, HEADS, 3, HEAD_DIM, generator=g)
    k, v = (torch.randn(2, HEADS, nk, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_dense(q, k, v, spec, q_positions=pos).numpy()
    sess = session(single_node_model(attrs_of(spec), 3, nk, True))
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos.int().numpy()}
    np.testing.assert_allclose(sess.run(None, feeds)[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("grid", "extents"), [((3, 4, 4), (1, 1, 1)), ((4, 3, 5), (2, 1, 2)), ((2, 4, 4), (0, 2, 2))]
)
def test_ring_cache_function_matches_dense_decode_oracle(grid, extents):
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = spec.ring_capacity()
    g = torch.Generator().manual_seed(2)
    # from the first position (empty slots) to well past three wraps of the ring
    pos = torch.tensor([0, 1, slots - 1, slots, 3 * slots + 7, 5 * grid_size(grid) + 2])
    b = len(pos)
    q = torch.randn(b, HEADS, 1, HEAD_DIM, generator=g)
    k, v = (torch.randn(b, HEADS, slots, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_decode_dense(q, k, v, spec, pos).numpy()
    sess = session(single_node_model(attrs_of(spec), 1, slots, True))
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos[:, None].int().numpy()}
    np.testing.assert_allclose(sess.run(None, feeds)[0], expected, rtol=0, atol=1e-5)
