"""A tiny random DINOv2 saved like a downloaded one (`save_pretrained`), for tests that load DINOv2 by folder.

    folder = save_tiny_dinov2(tmp_path / "dinov2")            # hidden size 32, 14-px patches, 56-px position grid
    extractor = build_extractor("dinov2", model=str(folder), input_size=56)
"""
from pathlib import Path

import torch


def save_tiny_dinov2(folder: Path, num_hidden_layers: int = 1) -> Path:
    """Build a `Dinov2Model` (seed 0, hidden size 32, 2 heads) and save it into `folder`; returns the folder."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=num_hidden_layers, num_attention_heads=2,
                          intermediate_size=64, patch_size=14, image_size=56)
    Dinov2Model(config).save_pretrained(folder)
    return Path(folder)
