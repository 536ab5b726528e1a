"""Each exported graph: the manifest contract, the ONNX checker, and ONNX Runtime (CPU) against
PyTorch on random inputs (FP32, max abs error <= 1e-4), batch 1 and 2, and a decoder step whose
ring cache has wrapped around, checked against the dense-mask 3DNA oracle."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from nuwa.export import ManifestError, load_manifest
from nuwa.export.attention_node import DOMAIN, OP_TYPE, Attention3DAttrs, is_attention_node
from nuwa.export.verify import check_graph, session
from nuwa.export.weights import WEIGHTS_FILE
from nuwa.spec.config import NuwaConfig
from nuwa.spec.manifest import sha256_file

TOL = 1e-4
TINY_GRAPHS = [
    "vq_encoder",
    "vq_decoder",
    "sketch_encoder",
    "text_encoder",
    "sketch_condition_encoder.t1",
    "sketch_condition_encoder.t2",
    "sketch_condition_encoder.t3",
    "decoder_step.text",
    "decoder_step.sketch_t1",
    "decoder_step.sketch_t2",
    "decoder_step.sketch_t3",
    "decoder_prefill.text",
]


def test_manifest_lists_every_graph_with_shapes_and_hashes(tiny_export, tiny_loaded):
    m = load_manifest(tiny_export.directory, verify_hashes=True)
    cfg = tiny_loaded.config.transformer
    assert sorted(m.graphs) == sorted(TINY_GRAPHS)
    assert (m.target, m.precision) == ("portable", "fp32") and m.opset >= 18
    assert NuwaConfig.from_dict(m.config) == tiny_loaded.config
    for g in m.graphs.values():
        assert sha256_file(m.path(g.name)) == g.sha256
        assert all(t.shape[0] == "batch" for t in (*g.inputs, *g.outputs)), g.name
        assert g.check["max_abs_error"] <= TOL and g.check["code_mismatch"] == 0.0
    d = m.decoder
    assert (d.num_layers, d.num_heads, d.head_dim) == (cfg.n_decoder_layers, cfg.n_heads, 8)
    assert d.cache_slots == cfg.cache_slots and d.bos_id == cfg.bos_id
    step = m.decoder_step("text", num_frames=7)  # longer than trained: the window slides
    assert step.input_names[:2] == ["input_ids", "positions"]
    assert step.input_names[2:6] == [
        "past_key_values.0.key",
        "past_key_values.0.value",
        "past_key_values.1.key",
        "past_key_values.1.value",
    ]
    assert step.output_names == ["logits", *d.present_names()]
    past = {t.name: t for t in step.inputs}["past_key_values.1.value"]
    assert past.shape == ("batch", cfg.n_heads, cfg.cache_slots, cfg.head_dim)
    assert past.dtype == "float32"
    assert {t.name: t for t in step.outputs}["logits"].shape == ("batch", cfg.image_vocab_size)
    for nf in (1, 2, 3, 9):
        assert m.decoder_step("text", nf).name == "decoder_step.text"
    assert m.decoder_step(m.condition_key("sketch", 1), 1).name == "decoder_step.sketch_t1"
    assert m.decoder_step(m.condition_key("sketch", 3), 6).name == "decoder_step.sketch_t3"
    assert m.decoder_step(m.condition_key("sketch", 2), 2).name == "decoder_step.sketch_t2"
    with pytest.raises(ManifestError, match="sketch condition with 4 frame"):
        m.condition_key("sketch", 4)
    assert m.conditions["sketch_t3"].grid == (3, 4, 4)
    prefill = m.decoder_prefill("text")
    assert prefill.inputs[0].shape == ("batch", "prefix_frames", 4, 4)
    assert prefill.output_names == d.present_names()
    with pytest.raises(ManifestError, match="no decoder_prefill"):
        m.decoder_prefill("sketch_t3")


def test_load_manifest_rejects_a_modified_graph(tiny_export, tmp_path):
    shutil.copytree(tiny_export.directory, tmp_path / "a")
    shutil.copytree(tiny_export.directory, tmp_path / "b")
    load_manifest(tmp_path / "a")
    with open(tmp_path / "a" / "vq_decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="vq_decoder.onnx does not match its SHA-256"):
        load_manifest(tmp_path / "a")
    with open(tmp_path / "b" / WEIGHTS_FILE, "r+b") as f:
        f.write(b"\1\2\3")
    with pytest.raises(ManifestError, match="weights.bin does not match its SHA-256"):
        load_manifest(tmp_path / "b")
    load_manifest(tmp_path / "b", verify_hashes=False)


def test_graphs_share_one_weights_file(tiny_export):
    """Every decoder step points at the same bytes of weights.bin (no copy per graph)."""
    assert list(tiny_export.external_data) == [WEIGHTS_FILE]
    locations = {}
    for name in ("decoder_step.text", "decoder_step.sketch_t1", "decoder_step.sketch_t3"):
        model = onnx.load(str(tiny_export.path(name)), load_external_data=False)
        external = {
            t.name: tuple(sorted((e.key, e.value) for e in t.external_data))
            for t in model.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
        }
        assert external, name
        assert all(dict(e)["location"] == WEIGHTS_FILE for e in external.values())
        locations[name] = sorted(external.values())
    first, *others = locations.values()
    assert all(o == first for o in others)


def test_portable_graphs_pass_the_full_checker_and_carry_3dna_nodes(tiny_export):
    for name in TINY_GRAPHS:
        model = onnx.load(str(tiny_export.path(name)))
        onnx.checker.check_model(model, full_check=True)
        nodes = [n for n in model.graph.node if is_attention_node(n)]
        assert len(nodes) == tiny_export.graph(name).attention_nodes
        if tiny_export.graph(name).kind in ("vq_encoder", "vq_decoder", "sketch_encoder"):
            assert not nodes and not model.functions  # VQ graphs have no attention
            continue
        assert nodes, name
        overloads = {(f.domain, f.name, f.overload) for f in model.functions}
        for node in nodes:
            assert (node.domain, node.op_type) == (DOMAIN, OP_TYPE)
            assert (node.domain, node.op_type, node.overload) in overloads
            attrs = {a.name for a in node.attribute}
            assert {"q_grid", "k_grid", "extents", "causal", "scale", "num_heads"} <= attrs
            assert not any(a.startswith("plugin_") for a in attrs)
        if name.startswith("decoder_step"):  # 2 layers x (ring self, cross)
            assert len(nodes) == 4
            ring = [n for n in nodes if Attention3DAttrs.from_node(n).ring_cache == 1]
            assert len(ring) == 2 and all(len(n.input) == 4 for n in ring)


@pytest.mark.parametrize("name", TINY_GRAPHS)
@pytest.mark.parametrize("batch", [1, 2])
def test_graph_matches_pytorch_in_onnxruntime(tiny_export, tiny_specs, name, batch):
    spec = tiny_specs[name]
    result = check_graph(spec, tiny_export.path(name), tiny_export.opset, batch=batch, seed=7)
    assert result.max_abs_error <= TOL
    assert result.code_mismatch == 0.0


@pytest.mark.parametrize("condition", ["text", "sketch_t3"])
def test_decoder_step_with_wrapped_cache_matches_the_dense_oracle(
    tiny_export, tiny_dense, condition
):
    """Positions far past the ring's capacity (3x the trained video), a random cache, batch 2:
    ORT vs ``decode_step`` with the dense-mask oracle."""
    tr = tiny_dense.transformer
    c = tr.cfg
    cond = tiny_export.conditions[condition]
    g = torch.Generator().manual_seed(3)
    b, slots = 2, c.cache_slots
    n_video = c.frames * c.tokens_per_frame
    positions = torch.tensor([2 * n_video + 5, 3 * n_video - 1])
    assert bool((positions > 2 * slots).all())  # every slot has been overwritten at least once
    tokens = torch.randint(0, c.image_vocab_size, (b,), generator=g)
    shape = (b, c.n_heads, slots, c.head_dim)
    past = [(torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for _ in range(2)]
    n_cond = cond.grid[0] * cond.grid[1] * cond.grid[2]
    kv_shape = (b, c.n_heads, n_cond, c.head_dim)
    cross = [
        (torch.randn(kv_shape, generator=g), torch.randn(kv_shape, generator=g)) for _ in range(2)
    ]
    with torch.no_grad():
        logits, present = tr.decode_step(
            tokens, positions, past, cross, cond.grid, cond.cross_extents, 9
        )
    step = tiny_export.decoder_step(condition, num_frames=9)
    d = tiny_export.decoder
    feeds = {d.input_ids: tokens.numpy(), d.positions: positions.numpy()}
    feeds.update(zip(d.past_names(), [t.numpy() for kv in past for t in kv], strict=True))
    feeds.update(zip(d.cross_names(), [t.numpy() for kv in cross for t in kv], strict=True))
    out = session(tiny_export.path(step.name)).run(None, feeds)
    expected = [logits.numpy(), *(t.numpy() for kv in present for t in kv)]
    for a, e in zip(out, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=TOL)
    slot = int(positions[0]) % slots  # the step wrote its own key into its ring slot
    assert not np.allclose(out[1][0, :, slot], feeds[d.past_names()[0]][0, :, slot])


@pytest.mark.parametrize("name", ["vq_encoder", "vq_decoder"])
def test_channel_norm_vqgan_graphs_match_pytorch(tmp_path, name):
    """A VQ-GAN with ``norm="channel"`` (per-position normalisation) exports and runs in ONNX
    Runtime like PyTorch (export_graph raises on a mismatch; checked here again at batch 1)."""
    from nuwa.export.exporter import DEFAULT_OPSET, default_frames, export_graph
    from nuwa.export.graph_specs import build_graph_specs
    from nuwa.model.nuwa import NuwaModel

    cfg = NuwaConfig.from_name("tiny")
    cfg.vqgan.norm = cfg.vqgan_seg.norm = "channel"
    torch.manual_seed(3)
    model = NuwaModel(cfg).eval()
    spec = next(s for s in build_graph_specs(model, default_frames(model)) if s.name == name)
    path = tmp_path / spec.file
    export_graph(spec, model, path, "portable", DEFAULT_OPSET)
    result = check_graph(spec, path, DEFAULT_OPSET, batch=1, seed=5)
    assert result.max_abs_error <= TOL and result.code_mismatch == 0.0
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "LayerNormalization" in ops  # one node, kept FP32 by the FP16 conversion
    assert "GroupNormalization" not in ops and "InstanceNormalization" not in ops
