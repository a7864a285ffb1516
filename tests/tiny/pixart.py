"""A tiny random PixArt-α "checkpoint" laid out like the Hub repo: transformer/, vae/, scheduler/.

The transformer keeps PixArt's shape conventions (learned sigma: 8 output channels, a caption
projection from `caption_channels`, no extra resolution conditions as at 512 px), only smaller.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel

from tests.tiny.vae import build_tiny_vae

TINY_RESOLUTION = 32  # pixels; the tiny VAE downsamples by 2 -> 16 x 16 latents


def build_tiny_pixart(out_dir: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    root = Path(out_dir) / "pixart"
    dit = PixArtTransformer2DModel(
        sample_size=TINY_RESOLUTION // 2,
        patch_size=2,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=48,  # a stand-in for T5's 4096; replaced by the audio projector in training
        norm_num_groups=8,
        use_additional_conditions=False,
    )
    dit.save_pretrained(root / "transformer")
    build_tiny_vae(root, seed)
    DPMSolverMultistepScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    return root
