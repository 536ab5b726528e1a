"""uint8 pixels <-> the model's [-1, 1] (``nuwa.spec.pixel_scaling``): the NumPy functions the
backends use, the torch methods of the reference model, and the round trip."""

from __future__ import annotations

import numpy as np
import pytest

from nuwa.spec.pixel_scaling import model_to_pixels, pixels_to_model


def test_every_pixel_value_survives_the_round_trip() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = pixels_to_model(pixels)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(model_to_pixels(x), pixels)


def test_out_of_range_values_are_clipped() -> None:
    x = np.array([-3.0, -1.0, 0.0, 1.0, 7.5], dtype=np.float32)
    np.testing.assert_array_equal(model_to_pixels(x), [0, 0, 128, 255, 255])


def test_the_torch_model_scales_the_same_way() -> None:
    torch = pytest.importorskip("torch")
    from nuwa.model.nuwa import NuwaModel

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = NuwaModel.frames_to_tensor(frames)  # (2, 3, 8, 8)
    np.testing.assert_array_equal(x.movedim(-3, -1).numpy(), pixels_to_model(frames))
    values = torch.as_tensor(rng.normal(0, 1, (2, 3, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(
        NuwaModel.tensor_to_frames(values).numpy(),
        model_to_pixels(values.movedim(-3, -1).numpy()),
    )
