"""The ``nuwa::NearbyAttention3D`` local function alone against the dense-mask 3DNA oracle of
``model/attention3d.py`` (DESIGN §4): unequal grids, extents 0 and -1, causal, per-row query
positions, and the ring-cache decode variant with positions past the ring's capacity — through
every body: the gather body (key count unknown to the graph, or table bodies turned off), the
position-table body of decode-type calls (key count static) and the grid-table body of whole-grid
calls."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from nuwa.export.attention_masks import (
    MAX_GRID_TABLE_ENTRIES,
    MAX_TABLE_ENTRIES,
    bias_table_model,
    grid_bias_table,
    position_bias_table,
)
from nuwa.export.attention_node import (
    ATTRIBUTE_NAMES,
    DOMAIN,
    OP_TYPE,
    ORT_TRT_PLUGIN_DOMAIN,
    Attention3DAttrs,
    to_ort_tensorrt,
    to_tensorrt,
)
from nuwa.export.onnx_function import attach_functions
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


def single_node_model(
    attrs: Attention3DAttrs,
    nq: int,
    nk: int,
    with_positions: bool,
    static_keys: bool = True,
    table_bodies: bool = True,
):
    """One 3DNA node; ``static_keys=False`` leaves the key axis symbolic (a positioned call then
    takes the gather body), ``table_bodies=False`` asks for the gather body everywhere."""
    keys: int | str = nk if static_keys else "nk"
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b", HEADS, nq, HEAD_DIM])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, ["b", HEADS, keys, HEAD_DIM])
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["b", HEADS, keys, HEAD_DIM])
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
    attach_functions(model, OPSET, table_bodies=table_bodies)
    onnx.checker.check_model(model, full_check=True)
    return model


def attrs_of(spec: NearbyAttentionSpec) -> Attention3DAttrs:
    return Attention3DAttrs.from_dict(spec.onnx_attributes(HEAD_DIM, HEADS))


@pytest.mark.parametrize("table_bodies", [True, False], ids=["grid-table-body", "gather-body"])
@pytest.mark.parametrize(("q_grid", "k_grid", "extents", "causal"), SPECS)
def test_whole_grid_function_matches_dense_oracle(q_grid, k_grid, extents, causal, table_bodies):
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal)
    nq, nk = grid_size(q_grid), grid_size(k_grid)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, HEADS, n, HEAD_DIM, generator=g) for n in (nq, nk, nk))
    expected = nearby_attention_dense(q, k, v, spec).numpy()
    model = single_node_model(attrs_of(spec), nq, nk, False, table_bodies=table_bodies)
    full = all(e < 0 for e in extents) and not causal
    assert body_kind(model) == ("full" if full else "grid" if table_bodies else "gather")
    out = session(model).run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def body_kind(model: onnx.ModelProto) -> str:
    (function,) = model.functions
    tag = function.overload.split("_p")[-1]
    if "_n" in tag:
        return "table"
    if "_g" in tag:
        return "grid"
    return "gather" if any(n.op_type.startswith("Gather") for n in function.node) else "full"


@settings(max_examples=25, deadline=None)
@given(
    q_grid=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    k_grid=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    extents=st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)),
    causal=st.booleans(),
    prefix=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_grid_table_and_gather_bodies_agree_with_the_oracle(
    q_grid, k_grid, extents, causal, prefix, seed
):
    """Whole-grid calls on random grids and extents; a causal (self-attention) call also with
    only the first frames of its grid, as a prefill of the known leading frames runs it."""
    if causal:
        k_grid = q_grid
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal)
    nq = grid_size(q_grid)
    if causal:
        nq = min(prefix, q_grid[0]) * q_grid[1] * q_grid[2]
    nk = nq if causal else grid_size(k_grid)
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, HEADS, n, HEAD_DIM, generator=g) for n in (nq, nk, nk))
    if causal:  # the oracle on the whole grid, of which a prefill's q/k/v are the leading part
        full = [torch.randn(2, HEADS, grid_size(q_grid), HEAD_DIM, generator=g) for _ in range(3)]
        for x, part in zip(full, (q, k, v), strict=True):
            x[:, :, :nq] = part
        expected = nearby_attention_dense(*full, spec)[:, :, :nq].numpy()
    else:
        expected = nearby_attention_dense(q, k, v, spec).numpy()
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()}
    for table_bodies in (True, False):
        model = single_node_model(attrs_of(spec), nq, nk, False, table_bodies=table_bodies)
        out = session(model).run(None, feeds)[0]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_grid_table_falls_back_to_gather_when_too_large():
    video = attrs_of(NearbyAttentionSpec((16, 32, 32), (16, 32, 32), (3, 3, 3), True))
    assert grid_bias_table(video) is None  # the paper preset's 16k-token grid: gather
    demo = attrs_of(NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3)))
    table = grid_bias_table(demo)
    assert table is not None and table.bias.shape == (512, 512) and not table.has_empty_row
    text = attrs_of(NearbyAttentionSpec((1, 1, 7), (1, 1, 7), (-1, -1, -1)))
    assert grid_bias_table(text) is None  # full attention needs no mask


@pytest.mark.parametrize("causal", [False, True])
def test_grids_past_the_position_table_bound_get_the_grid_table_body(causal):
    """A whole grid of more than MAX_TABLE_ENTRIES mask entries (as the paper preset's 10-frame
    21x21 grids, whose gathered neighbourhoods would not fit in memory) still gets dense attention
    with its mask table, and matches the oracle (causal: a prefix of its first frames too)."""
    grid = (5, 15, 15)
    assert MAX_TABLE_ENTRIES < grid_size(grid) ** 2 <= MAX_GRID_TABLE_ENTRIES
    spec = NearbyAttentionSpec(grid, grid, (2, 3, 3), causal)
    nq = 2 * 15 * 15 if causal else grid_size(grid)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, HEADS, nq, HEAD_DIM, generator=g) for _ in range(3))
    prefix = NearbyAttentionSpec((2, 15, 15), (2, 15, 15), (2, 3, 3), causal) if causal else spec
    expected = nearby_attention_dense(q, k, v, prefix).numpy()
    model = single_node_model(attrs_of(spec), nq, nq, False)
    assert body_kind(model) == "grid"
    out = session(model).run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy()})[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_grid_table_rejects_keys_that_are_not_the_whole_key_grid():
    """A non-causal whole-grid call keeps every column of its mask: fewer keys fail loudly."""
    spec = NearbyAttentionSpec((2, 3, 3), (2, 3, 3), (1, 1, 1))
    model = single_node_model(attrs_of(spec), 18, 9, False, static_keys=False)
    assert body_kind(model) == "grid"
    q = np.zeros((1, HEADS, 18, HEAD_DIM), np.float32)
    k = np.zeros((1, HEADS, 9, HEAD_DIM), np.float32)
    with pytest.raises(Exception, match="(?i)broadcast|shape|dimension"):
        session(model).run(None, {"q": q, "k": k, "v": k})


@pytest.mark.parametrize("static_keys", [True, False], ids=["table-body", "gather-body"])
@pytest.mark.parametrize(("q_grid", "k_grid", "extents", "causal"), SPECS[:5])
def test_function_with_query_positions_matches_dense_oracle(
    q_grid, k_grid, extents, causal, static_keys
):
    """Per-row query positions (the decoder's cross-attention), including frames past q_grid."""
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal)
    nk = grid_size(k_grid)
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 2 * grid_size(q_grid), (2, 3), generator=g)
    q = torch.randn(2, HEADS, 3, HEAD_DIM, generator=g)
    k, v = (torch.randn(2, HEADS, nk, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_dense(q, k, v, spec, q_positions=pos).numpy()
    model = single_node_model(attrs_of(spec), 3, nk, True, static_keys)
    # a causal call without a ring cache takes the gather body, full attention its own
    full = all(e < 0 for e in extents)
    kind = "full" if full else "table" if static_keys and not causal else "gather"
    assert body_kind(model) == kind
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos.int().numpy()}
    np.testing.assert_allclose(session(model).run(None, feeds)[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("grid", "extents"), [((3, 4, 4), (1, 1, 1)), ((4, 3, 5), (2, 1, 2)), ((2, 4, 4), (0, 2, 2))]
)
@pytest.mark.parametrize("static_keys", [True, False], ids=["table-body", "gather-body"])
def test_ring_cache_function_matches_dense_decode_oracle(grid, extents, static_keys):
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = spec.ring_capacity()
    g = torch.Generator().manual_seed(2)
    # from the first position (empty slots) to well past three wraps of the ring
    pos = torch.tensor([0, 1, slots - 1, slots, 3 * slots + 7, 5 * grid_size(grid) + 2])
    b = len(pos)
    q = torch.randn(b, HEADS, 1, HEAD_DIM, generator=g)
    k, v = (torch.randn(b, HEADS, slots, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_decode_dense(q, k, v, spec, pos).numpy()
    model = single_node_model(attrs_of(spec), 1, slots, True, static_keys)
    assert body_kind(model) == ("table" if static_keys else "gather")
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos[:, None].int().numpy()}
    np.testing.assert_allclose(session(model).run(None, feeds)[0], expected, rtol=0, atol=1e-5)


def test_ring_with_more_slots_than_the_grid_needs():
    """One T2I/T2V decode graph serves every frame count: a 1-frame query grid decodes against
    the model's whole ring (here 3 frames of slots), so the table follows the cache, not the
    attributes."""
    grid, extents = (1, 4, 4), (2, 1, 1)
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = 3 * grid_size(grid)
    g = torch.Generator().manual_seed(3)
    pos = torch.arange(grid_size(grid))
    q = torch.randn(len(pos), HEADS, 1, HEAD_DIM, generator=g)
    k, v = (torch.randn(len(pos), HEADS, slots, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_decode_dense(q, k, v, spec, pos).numpy()
    model = single_node_model(attrs_of(spec), 1, slots, True)
    assert body_kind(model) == "table"
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos[:, None].int().numpy()}
    np.testing.assert_allclose(session(model).run(None, feeds)[0], expected, rtol=0, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4)),
    extents=st.tuples(st.integers(-1, 1), st.integers(-1, 1), st.integers(-1, 1)),
    extra_slots=st.integers(0, 13),
    seed=st.integers(0, 2**16),
)
def test_ring_bodies_are_exact_for_any_slot_count(grid, extents, extra_slots, seed):
    """DESIGN §5: a cache may have more slots than the ring needs, any number of them (not only
    whole frames); both ring bodies equal the decode oracle at positions over several periods of
    the table (``lcm(S, H*W)``), including the first positions (empty slots)."""
    spec = NearbyAttentionSpec(grid, grid, extents, causal=True, ring_cache=True)
    slots = spec.ring_capacity() + extra_slots
    table = position_bias_table(attrs_of(spec), slots)
    period = math.lcm(slots, grid[1] * grid[2])
    assert table is None or (table.base, table.period) == (slots, period)
    g = torch.Generator().manual_seed(seed)
    pos = torch.cat(
        [torch.arange(min(slots + 1, 4)), torch.randint(0, slots + 4 * period, (6,), generator=g)]
    )
    q = torch.randn(len(pos), HEADS, 1, HEAD_DIM, generator=g)
    k, v = (torch.randn(len(pos), HEADS, slots, HEAD_DIM, generator=g) for _ in range(2))
    expected = nearby_attention_decode_dense(q, k, v, spec, pos).numpy()
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": pos[:, None].int().numpy()}
    for static_keys in (True, False):
        model = single_node_model(attrs_of(spec), 1, slots, True, static_keys)
        if static_keys:
            assert body_kind(model) == ("table" if table is not None else "gather")
        out = session(model).run(None, feeds)[0]
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_table_falls_back_to_gather_when_too_large_or_mismatched():
    ring = attrs_of(NearbyAttentionSpec((8, 32, 32), (8, 32, 32), (3, 3, 3), True, None, True))
    assert MAX_TABLE_ENTRIES < 2 * 4096 * 4096
    assert position_bias_table(ring, 4096) is None  # the paper preset's ring: gather
    assert position_bias_table(ring, 100) is None  # fewer slots than the ring needs
    assert position_bias_table(ring, None) is None  # unknown key count
    cross = attrs_of(NearbyAttentionSpec((4, 4, 4), (2, 4, 4), (1, 1, 1)))
    assert position_bias_table(cross, 32) is not None
    assert position_bias_table(cross, 31) is None  # k is not the whole key grid


axis = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))


@settings(max_examples=25, deadline=None)
@given(
    q_grid=axis,
    k_grid=axis,
    extents=st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)),
    ring=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_table_and_gather_bodies_agree_with_the_oracle(q_grid, k_grid, extents, ring, seed):
    """Random grids, extents and positions (past the grid and past several ring wraps)."""
    if ring:
        k_grid = q_grid
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal=ring, ring_cache=ring)
    nk = spec.ring_capacity() if ring else grid_size(k_grid)
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, 4 * max(nk, grid_size(q_grid)), (3,), generator=g)
    nq = 1 if ring else 2
    q = torch.randn(3, HEADS, nq, HEAD_DIM, generator=g)
    k, v = (torch.randn(3, HEADS, nk, HEAD_DIM, generator=g) for _ in range(2))
    if ring:
        expected = nearby_attention_decode_dense(q, k, v, spec, pos)
        q_pos = pos[:, None]
    else:
        q_pos = torch.stack([pos, pos.flip(0)], dim=1)
        expected = nearby_attention_dense(q, k, v, spec, q_positions=q_pos)
    feeds = {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "pos": q_pos.int().numpy()}
    for static_keys in (True, False):
        model = single_node_model(attrs_of(spec), nq, nk, True, static_keys)
        out = session(model).run(None, feeds)[0]
        np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-5)


def test_mask_table_bound_is_the_torch_dense_bound():
    """The exported bodies switch from a mask table to the gather at the same size as PyTorch's
    "auto" switches from dense to gather (defined twice: the export module imports no torch)."""
    from nuwa.model.attention3d import AUTO_DENSE_MAX_ENTRIES

    assert MAX_TABLE_ENTRIES == AUTO_DENSE_MAX_ENTRIES


@settings(max_examples=40, deadline=None)
@given(
    q_grid=axis,
    k_grid=axis,
    extents=st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)),
    causal=st.booleans(),
    ring=st.booleans(),
    extra_slots=st.integers(0, 2),
)
def test_mask_tables_computed_in_the_graph_equal_the_numpy_tables(
    q_grid, k_grid, extents, causal, ring, extra_slots
):
    """The bodies compute their additive mask tables from a few integers at load; the values are
    exactly the NumPy tables' (0 and -inf), for rings with more slots than they need too."""
    if ring:
        k_grid, causal = q_grid, True
    causal = causal and q_grid == k_grid  # causal attention is defined on one grid (DESIGN §4)
    spec = NearbyAttentionSpec(q_grid, k_grid, extents, causal=causal, ring_cache=ring)
    attrs = attrs_of(spec)
    cases = []
    if ring:
        slots = spec.ring_capacity() + extra_slots * grid_size(q_grid[1:] + (1,))
        cases.append((slots, position_bias_table(attrs, slots)))
    else:
        cases.append((None, grid_bias_table(attrs)))
        cases.append((grid_size(k_grid), position_bias_table(attrs, grid_size(k_grid))))
    for key_count, table in cases:
        if table is None:
            with pytest.raises(ValueError, match="no (position|grid) table"):
                bias_table_model(attrs, key_count, OPSET)
            continue
        (bias,) = session(bias_table_model(attrs, key_count, OPSET)).run(None, {})
        assert bias.dtype == np.float32 and bias.shape == table.bias.shape
        assert np.array_equal(bias, table.bias)


def test_function_bodies_hold_no_mask_table():
    """The demo's ring (512 x 256 table) and 8-frame grids: every constant in the bodies is a few
    integers; the tables are built in the graph."""
    ring = NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (1, 3, 3), True, None, True)
    grid = NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3), False)
    for spec, nq, nk, with_positions in ((ring, 1, 256, True), (grid, 512, 512, False)):
        model = single_node_model(attrs_of(spec), nq, nk, with_positions)
        assert body_kind(model) in ("table", "grid")
        constants = [n for f in model.functions for n in f.node if n.op_type == "Constant"]
        assert constants and all(c.attribute[0].t.ByteSize() < 64 for c in constants)
        assert model.ByteSize() < 20_000


def _node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("with_positions", [False, True])
def test_tensorrt_targets_tag_the_nodes_for_the_plugin(with_positions: bool) -> None:
    """``--target tensorrt`` (TensorRT's parser: domain ``nuwa``) and the ONNX Runtime TensorRT
    EP variant (domain ``trt.plugins``): no function bodies, no overload, every 3DNA attribute
    kept, and the plugin's namespace and version for the parser's plugin importer."""
    spec = NearbyAttentionSpec((2, 3, 3), (2, 3, 3), (1, 1, 1), causal=True, ring_cache=True)
    attrs = attrs_of(spec).as_dict()
    for convert, domain in ((to_tensorrt, DOMAIN), (to_ort_tensorrt, ORT_TRT_PLUGIN_DOMAIN)):
        model = single_node_model(attrs_of(spec), 1, 18, with_positions)
        assert convert(model) == 1
        assert len(model.functions) == 0
        (node,) = model.graph.node
        assert (node.domain, node.op_type, node.overload) == (domain, OP_TYPE, "")
        got = _node_attributes(node)
        assert got.pop("plugin_namespace") == b"nuwa" and got.pop("plugin_version") == b"1"
        assert set(got) == set(ATTRIBUTE_NAMES)
        for name in ATTRIBUTE_NAMES:
            assert got[name] == pytest.approx(attrs[name])
        assert len(node.input) == (4 if with_positions else 3)
        domains = {o.domain: o.version for o in model.opset_import}
        assert domains.get(domain) == 1
        if domain == ORT_TRT_PLUGIN_DOMAIN:
            assert DOMAIN not in domains  # no node left in it
        onnx.checker.check_model(model)  # a custom domain: the schema check is TensorRT's


def test_ort_tensorrt_variant_does_not_run_without_the_tensorrt_ep() -> None:
    """Without function bodies nothing but the TensorRT EP can run the node: a CPU session
    refuses the graph at load instead of silently computing something else."""
    spec = NearbyAttentionSpec((1, 2, 2), (1, 2, 2), (0, 1, 1))
    model = single_node_model(attrs_of(spec), 4, 4, False)
    to_ort_tensorrt(model)
    with pytest.raises(Exception, match=OP_TYPE):
        session(model)
