"""A tiny random AutoencoderKL (4 latent channels, downsampling x2) in diffusers format."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL


def build_tiny_vae(out_dir: Path, seed: int = 0) -> Path:
    """32 px images -> 4 x 16 x 16 latents; saved to `out_dir/vae` like a pipeline's subfolder."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    )
    path = Path(out_dir) / "vae"
    vae.save_pretrained(path)
    return path
