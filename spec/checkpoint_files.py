"""The files of a checkpoint directory (``NuwaModel.save_pretrained``), named once: the config
and one safetensors file per part. Plain strings; the torch side (:mod:`nuwa.model.checkpoint`)
and the torch-free side (the runtime, the checkpoint hash) both read them."""

from __future__ import annotations

CONFIG_FILE = "config.json"
# model part (attribute of NuwaModel) -> its weights file
WEIGHT_FILES: dict[str, str] = {
    "transformer": "transformer.safetensors",
    "vqgan": "vqgan.safetensors",
    "vqgan_seg": "vqgan_seg.safetensors",
}
# the files whose bytes identify a checkpoint, in hashing order
CHECKPOINT_FILES: tuple[str, ...] = (CONFIG_FILE, *WEIGHT_FILES.values())
