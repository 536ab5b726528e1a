"""``nuwa build-engine`` up to the point TensorRT is needed: graph preparation, profiles, the
plugin-library check, and a clear error without TensorRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest

from nuwa.runtime.backends.tensorrt.engine_build import (
    BuildOptions,
    EngineBuildError,
    build_engines,
    check_plugin_library,
    check_tensorrt_graph,
    find_plugin_creator,
    import_tensorrt,
    profile_shapes,
)
from nuwa.spec.manifest import GraphInfo, TensorInfo, load_manifest

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_tensorrt_export_passes_graph_preparation(tiny_tensorrt: Path) -> None:
    m = load_manifest(tiny_tensorrt)
    for name, info in m.graphs.items():
        assert check_tensorrt_graph(onnx.load(str(m.path(name))), name) == info.attention_nodes
    assert sum(g.attention_nodes for g in m.graphs.values()) > 0


def test_portable_graph_is_refused(tiny_portable: Path) -> None:
    m = load_manifest(tiny_portable)
    with pytest.raises(EngineBuildError, match="local functions"):
        check_tensorrt_graph(onnx.load(str(m.path("decoder_step.text"))), "decoder_step.text")


def test_untagged_plugin_node_and_asymmetric_qdq_are_refused(tiny_trt_int8: Path) -> None:
    m = load_manifest(tiny_trt_int8)
    model = onnx.load(str(m.path("decoder_step.text")))
    assert check_tensorrt_graph(model, "x") > 0  # the quantized tensorrt graph is fine
    zp = next(i for i in model.graph.initializer if i.name.endswith("_act_zp"))
    zp.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(zp) + 3, zp.name))
    with pytest.raises(EngineBuildError, match="zero point"):
        check_tensorrt_graph(model, "x")
    model = onnx.load(str(m.path("decoder_step.text")))
    node = next(n for n in model.graph.node if n.op_type == "NearbyAttention3D")
    keep = [a for a in node.attribute if a.name != "plugin_namespace"]
    del node.attribute[:]
    node.attribute.extend(keep)
    with pytest.raises(EngineBuildError, match="plugin_namespace"):
        check_tensorrt_graph(model, "x")


def test_profiles_cover_the_decode_batch_rows(tiny_tensorrt: Path) -> None:
    m = load_manifest(tiny_tensorrt)
    opts = BuildOptions(max_batch=6, opt_batch=2)
    step = profile_shapes(m.graph("decoder_step.text"), opts, frames=3)
    d = m.decoder
    assert step[d.input_ids] == {"min": [1], "opt": [2], "max": [6]}
    past = step[d.past_key % 0]
    assert past["max"] == [6, d.num_heads, d.cache_slots, d.head_dim]
    assert set(step) == set(m.graph("decoder_step.text").input_names)
    vq = profile_shapes(m.graph("vq_decoder"), opts, frames=3)  # rows x frames images
    assert vq["codes"]["max"][0] == 18 and vq["codes"]["opt"][0] == 6
    with pytest.raises(EngineBuildError, match="opt-batch"):
        BuildOptions(max_batch=2, opt_batch=3).validate()


def test_prefill_profile_and_unknown_axes() -> None:
    tokens = TensorInfo("target_tokens", "int64", ("batch", "prefix_frames", 8, 8))
    prefill = GraphInfo(
        "decoder_prefill.text", "decoder_prefill.text.onnx", "decoder_prefill", "0", (tokens,), ()
    )
    shapes = profile_shapes(prefill, BuildOptions(max_batch=4, opt_batch=2), frames=8)
    assert shapes["target_tokens"] == {
        "min": [1, 1, 8, 8],
        "opt": [2, 2, 8, 8],
        "max": [4, 8, 8, 8],
    }
    odd = GraphInfo("g", "g.onnx", "decoder_step", "0", (TensorInfo("x", "int64", ("n",)),), ())
    with pytest.raises(EngineBuildError, match="dynamic axis 'n'"):
        profile_shapes(odd, BuildOptions(), frames=8)


def test_plugin_library_checks(tmp_path: Path) -> None:
    with pytest.raises(EngineBuildError, match="not found"):
        check_plugin_library(tmp_path / "libnuwa_plugins.so")
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not a library")
    with pytest.raises(EngineBuildError, match="not a nuwa plugin library"):
        check_plugin_library(fake)


def test_plugin_creator_lookup_with_a_fake_registry() -> None:
    class Creator:
        name, plugin_version, plugin_namespace = "NearbyAttention3D", "1", "nuwa"

    class Registry:  # TensorRT 10 style: get_creator returns None for unknown, all_creators
        all_creators = [Creator()]

        def get_creator(self, name: str, version: str, namespace: str) -> None:
            return None

    assert isinstance(find_plugin_creator(Registry()), Creator)
    Registry.all_creators = []
    assert find_plugin_creator(Registry()) is None


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_missing_tensorrt_is_a_clear_error(tiny_tensorrt: Path, monkeypatch) -> None:
    with pytest.raises(EngineBuildError, match='pip install "nuwa-edge\\[trt\\]"'):
        import_tensorrt()
    # the whole build gets as far as TensorRT: pretend the plugin library is fine
    monkeypatch.setattr(
        "nuwa.runtime.backends.tensorrt.engine_build.check_plugin_library",
        lambda p: {"library": str(p)},
    )
    with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
        build_engines(tiny_tensorrt, "lib.so", tiny_tensorrt.parent / "engines")
