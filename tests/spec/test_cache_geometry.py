"""The ring KV cache's geometry (``nuwa.spec.cache_geometry``) is the one every part reads: the
config, the runtime's model spec, the manifest an export writes, the attention's ring capacity
and the runtime's cache buffers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nuwa.spec.cache_geometry import CacheGeometry, ring_frames, ring_slots
from nuwa.spec.config import NuwaConfig
from nuwa.spec.model_spec import ModelSpec


@pytest.mark.parametrize(
    ("frames", "et", "expected"), [(8, 3, 4), (8, -1, 8), (8, 7, 8), (8, 20, 8), (1, 0, 1)]
)
def test_ring_frames(frames: int, et: int, expected: int) -> None:
    assert ring_frames(frames, et) == expected
    assert ring_slots(frames, et, 3, 5) == expected * 15


@pytest.mark.parametrize("preset", ["tiny", "demo", "paper"])
@pytest.mark.parametrize("et", [-1, 0, 1, 3, 50])
def test_config_and_model_spec_read_the_same_slots(preset: str, et: int) -> None:
    cfg = NuwaConfig.from_name(preset)
    t = cfg.transformer
    extents = (et, *t.decoder_self_extents[1:])
    cfg = dataclasses.replace(cfg, transformer=dataclasses.replace(t, decoder_self_extents=extents))
    slots = ring_slots(t.frames, et, t.grid_h, t.grid_w)
    assert cfg.transformer.cache_slots == slots
    assert ModelSpec.from_dict(cfg.to_dict()).cache_slots == slots


def test_the_export_the_attention_and_the_runtime_cache_agree(tiny_export_dir) -> None:
    pytest.importorskip("torch")
    from nuwa.model.attention3d import NearbyAttentionSpec
    from nuwa.runtime.kv_cache import RingCache
    from nuwa.spec.manifest import load_manifest

    manifest = load_manifest(tiny_export_dir)
    t = NuwaConfig.from_dict(manifest.config).transformer
    assert manifest.decoder.cache_slots == t.cache_slots
    # a backend's spec takes the geometry from the manifest, not from the config
    spec = ModelSpec.from_manifest(manifest)
    d = manifest.decoder
    assert (spec.cache_slots, spec.n_decoder_layers, spec.n_heads, spec.head_dim) == (
        d.cache_slots,
        d.num_layers,
        d.num_heads,
        d.head_dim,
    )
    grid = (t.frames, t.grid_h, t.grid_w)
    attention = NearbyAttentionSpec(
        grid, grid, t.decoder_self_extents, causal=True, ring_cache=True
    )
    assert attention.ring_capacity() == t.cache_slots
    d = manifest.decoder
    geometry = CacheGeometry(d.num_layers, d.num_heads, d.cache_slots, d.head_dim)
    cache = RingCache.zeros(geometry, rows=3)
    assert all(b.shape == geometry.shape(3) for b in cache.past)
    assert sum(b.nbytes for b in cache.past) == geometry.nbytes(3, np.dtype(np.float32).itemsize)
