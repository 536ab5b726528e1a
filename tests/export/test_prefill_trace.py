"""The prefill is traced and checked on a short prefix, its 3DNA nodes still describing the whole
target grid; the export op's kernel runs whole-grid calls in bounded blocks of queries.

Both keep the export of a paper-size model within the machine's memory: traced on all frames at
batch 2, one 3DNA call's gathered neighbourhoods are ~9 GB there (bench/RESULTS.md, decode_scale).
"""

from __future__ import annotations

import onnx
import pytest
import torch

from nuwa.export.attention_marker import OnnxNodeAttention, whole_grid_attention_in_blocks
from nuwa.export.attention_node import Attention3DAttrs, is_attention_node
from nuwa.export.graph_specs import PREFILL_EXAMPLE_FRAMES
from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    grid_size,
    nearby_attention_dense,
    nearby_attention_gather,
)
from nuwa.spec import graph_names as names

PREFILL = names.decoder_prefill_name(names.TEXT_CONDITION)


def test_prefill_is_traced_on_a_prefix_shorter_than_the_trained_frames(tiny_loaded, tiny_specs):
    c = tiny_loaded.config.transformer
    spec = tiny_specs[PREFILL]
    tokens = spec.make_inputs(2, torch.Generator().manual_seed(0))[0]
    assert tokens.shape == (2, PREFILL_EXAMPLE_FRAMES, c.grid_h, c.grid_w)
    assert c.frames > PREFILL_EXAMPLE_FRAMES  # the tiny model exercises the short trace
    assert spec.attention_grid == c.target_grid


def test_prefill_nodes_carry_the_whole_target_grid(tiny_export, tiny_loaded):
    c = tiny_loaded.config.transformer
    model = onnx.load(str(tiny_export.path(PREFILL)), load_external_data=False)
    attrs = [Attention3DAttrs.from_node(n) for n in model.graph.node if is_attention_node(n)]
    # self and cross per layer but the last (whose attention output no present K/V needs)
    assert len(attrs) == 2 * (c.n_decoder_layers - 1)
    assert all(a.q_grid == c.target_grid for a in attrs)
    causal = [a for a in attrs if a.causal]
    assert len(causal) == c.n_decoder_layers - 1
    assert all(a.k_grid == c.target_grid for a in causal)


def test_whole_target_widens_only_prefixes_of_the_target_grid():
    hook = OnnxNodeAttention(whole_target=(5, 4, 4))
    prefix = NearbyAttentionSpec((2, 4, 4), (2, 4, 4), (1, 1, 1), causal=True)
    assert hook.recorded_spec(prefix).q_grid == (5, 4, 4)
    assert hook.recorded_spec(prefix).k_grid == (5, 4, 4)
    cross = NearbyAttentionSpec((2, 4, 4), (1, 1, 7), (-1, -1, -1))
    assert hook.recorded_spec(cross).q_grid == (5, 4, 4)
    assert hook.recorded_spec(cross).k_grid == (1, 1, 7)
    other = NearbyAttentionSpec((2, 3, 3), (2, 3, 3), (1, 1, 1))  # not the target's H x W
    assert hook.recorded_spec(other) == other
    assert OnnxNodeAttention().recorded_spec(prefix) == prefix


def _qkv(nq: int, nk: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 3, n, 8, generator=g) for n in (nq, nk, nk))


@pytest.mark.parametrize("blocks", [1, 7])
def test_kernel_blocks_equal_the_oracle_and_the_gather_path_on_a_whole_grid(blocks):
    spec = NearbyAttentionSpec((4, 5, 5), (4, 5, 5), (1, 2, 2))
    n = grid_size(spec.q_grid)
    q, k, v = _qkv(n, n)
    row_bytes = 2 * 3 * n * 4  # one query's scores over every key, batch 2, 3 heads
    block_bytes = row_bytes * -(-n // blocks)  # n / blocks queries (rounded up) per block
    got = whole_grid_attention_in_blocks(q, k, v, spec, block_bytes)
    torch.testing.assert_close(got, nearby_attention_dense(q, k, v, spec), rtol=0, atol=1e-5)
    torch.testing.assert_close(got, nearby_attention_gather(q, k, v, spec), rtol=0, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 4])
def test_kernel_on_a_causal_prefix_equals_the_prefix_grids_dense_oracle(frames):
    whole = NearbyAttentionSpec((4, 3, 3), (4, 3, 3), (2, 1, 1), causal=True)
    prefix = NearbyAttentionSpec((frames, 3, 3), (frames, 3, 3), (2, 1, 1), causal=True)
    n = grid_size(prefix.q_grid)
    q, k, v = _qkv(n, n, seed=frames)
    got = whole_grid_attention_in_blocks(q, k, v, whole, block_bytes=512)  # several blocks
    torch.testing.assert_close(got, nearby_attention_dense(q, k, v, prefix), rtol=0, atol=1e-5)
    torch.testing.assert_close(got, nearby_attention_gather(q, k, v, prefix), rtol=0, atol=1e-5)


def test_kernel_refuses_queries_past_the_grid_and_missing_keys():
    spec = NearbyAttentionSpec((2, 3, 3), (2, 3, 3), (1, 1, 1))
    q, k, v = _qkv(19, 18)
    with pytest.raises(ValueError, match="does not fit"):
        whole_grid_attention_in_blocks(q, k, v, spec, 1 << 20)
    q, k, v = _qkv(9, 9)  # a non-causal call needs every key of its grid
    with pytest.raises(ValueError, match="does not fit"):
        whole_grid_attention_in_blocks(q, k, v, spec, 1 << 20)
