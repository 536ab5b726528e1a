"""The SDK a C++ team adopts: examples/cpp/nuwa_generate (public headers only, PNG frames through
libpng) makes the Python runtime's frames; the installed SDK (``cmake --install --component
nuwa_sdk``) builds a C program through pkg-config and a C++ one through find_package(nuwa)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.runtime import Pipeline, media
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def test_example_app_writes_the_python_frames(
    build_dir: Path, tiny_export_dir: Path, tmp_path
) -> None:
    app = build_dir / "nuwa_generate"
    assert app.is_file(), "examples/cpp/nuwa_generate was not built (libpng-dev missing?)"
    prompt = "a ball moves left"
    done = run([str(app), str(tiny_export_dir), "t2v", prompt, "--frames", "3", "--guidance",
                "2", "--threads", "1", "--out", str(tmp_path / "clip")])  # fmt: skip
    written = done.stdout.split()
    assert written == [str(tmp_path / f"clip_r0_f{f}.png") for f in range(3)]
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)
    want = Pipeline(backend, progress=False)(
        "t2v", prompt, num_frames=3, temperature=0.0, guidance_scale=2.0
    )
    got = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in written])
    np.testing.assert_array_equal(got, want.frames[0])


def test_example_app_samples_as_python_per_seed(
    build_dir: Path, tiny_export_dir: Path, tmp_path
) -> None:
    prompt = "a ball moves left"
    done = run([str(build_dir / "nuwa_generate"), str(tiny_export_dir), "t2v", prompt,
                "--frames", "2", "--temperature", "1.5", "--seed", "12345", "--threads", "1",
                "--out", str(tmp_path / "clip")])  # fmt: skip
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)
    want = Pipeline(backend, progress=False)(
        "t2v", prompt, num_frames=2, temperature=1.5, seed=12345
    )
    got = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in done.stdout.split()])
    np.testing.assert_array_equal(got, want.frames[0])
    greedy = Pipeline(backend, progress=False)("t2v", prompt, num_frames=2, temperature=0.0)
    assert not np.array_equal(got, greedy.frames[0])  # sampled, not greedy


def test_example_app_writes_a_gif(build_dir: Path, tiny_export_dir: Path, tmp_path) -> None:
    """--gif: each row's frames as a looping GIF, read back by Pillow; the tiny model's 16x16
    frames have at most 256 colours, so the GIF holds them exactly."""
    done = run([str(build_dir / "nuwa_generate"), str(tiny_export_dir), "t2v", "a ball",
                "--frames", "3", "--batch", "2", "--guidance", "1", "--threads", "1", "--gif", "5",
                "--out", str(tmp_path / "clip")])  # fmt: skip
    gifs = [p for p in done.stdout.split() if p.endswith(".gif")]
    assert gifs == [str(tmp_path / "clip_r0.gif"), str(tmp_path / "clip_r1.gif")]
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)
    want = Pipeline(backend, progress=False)("t2v", "a ball", num_frames=3, batch=2,
                                             temperature=0.0, guidance_scale=1.0)  # fmt: skip
    for row, path in enumerate(gifs):
        with Image.open(path) as gif:
            assert (gif.n_frames, gif.size, gif.info["duration"], gif.info["loop"]) == (
                3,
                (16, 16),
                200,
                0,
            )
        np.testing.assert_array_equal(media.read_frames(path), want.frames[row])


def test_example_app_bad_input_exits_2(build_dir: Path, tiny_export_dir: Path) -> None:
    done = subprocess.run(
        [str(build_dir / "nuwa_generate"), str(tiny_export_dir), "t2x", "a"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "error: unknown task 't2x'; choose one of: t2i," in done.stderr


def test_installed_sdk_builds_with_pkg_config_and_find_package(build_dir: Path, tmp_path) -> None:
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is not installed")
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", str(build_dir), "--component", "nuwa_sdk", "--prefix", str(prefix)])
    # the installed library finds ONNX Runtime on the loader's path (here: the build folder's
    # libonnxruntime.so.1 link); the linker looks there too for the library's own needs
    loader = dict(os.environ, LD_LIBRARY_PATH=f"{prefix / 'lib'}:{build_dir}")
    env = dict(loader, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "nuwa"], env=env).stdout.split()
    source = tmp_path / "app.c"
    source.write_text(
        '#include <stdio.h>\n#include "nuwa/nuwa.h"\n'
        "int main(void) {\n"
        "  nuwa_model* m = NULL;\n"
        '  nuwa_status s = nuwa_open("/no/such/export", NULL, &m);\n'
        '  printf("%s %d %d %s\\n", nuwa_version(), nuwa_abi_version(), s, nuwa_last_error());\n'
        "  return m == NULL && nuwa_abi_version() == NUWA_ABI_VERSION ? 0 : 1;\n}\n"
    )
    run(
        ["cc", "-std=c99", "-Wall", "-Werror", str(source), "-o", str(tmp_path / "app"), *flags],
        env=env,
    )
    out = run([str(tmp_path / "app")], env=loader).stdout
    header = (ROOT / "include" / "nuwa" / "nuwa.h").read_text()
    abi = int(header.split("#define NUWA_ABI_VERSION ", 1)[1].split()[0])
    assert out == f"0.1.0 {abi} 1 model directory /no/such/export does not exist\n"

    project = tmp_path / "consumer"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(consumer CXX)\n"
        "set(CMAKE_CXX_STANDARD 17)\nfind_package(nuwa 0.1 REQUIRED)\n"
        "add_executable(consumer main.cpp)\n"
        "target_link_libraries(consumer PRIVATE nuwa::nuwa_runtime)\n"
    )
    (project / "main.cpp").write_text(
        '#include <cstdio>\n#include "nuwa/nuwa.hpp"\n'
        'int main() {\n  try {\n    nuwa::Model model("/no/such/export");\n  }'
        " catch (const nuwa::Error& e) {\n"
        '    std::printf("%d %s\\n", static_cast<int>(e.status()), e.what());\n    return 0;\n  }\n'
        "  return 1;\n}\n"
    )
    run(
        ["cmake", "-S", str(project), "-B", str(project / "build"), f"-DCMAKE_PREFIX_PATH={prefix}"]
    )
    run(["cmake", "--build", str(project / "build")], env=loader)
    out = run([str(project / "build" / "consumer")], env=loader).stdout
    assert out == "1 model directory /no/such/export does not exist\n"
