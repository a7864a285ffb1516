"""A tiny random CLIPModel + CLIPImageProcessorPil (no torchvision) for IIS, AIS and CLIP-feature FID."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
from transformers.models.clip import CLIPImageProcessorPil


def build_tiny_clip(out_dir: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    torch.manual_seed(seed)
    text = CLIPTextConfig(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,  # the defaults (49406/7) lie outside a tiny vocabulary
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)
    path = Path(out_dir) / "clip"
    CLIPModel(cfg).eval().save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


class TinyWav2Clip(torch.nn.Module):
    """A random audio encoder into a CLIP space: |STFT| -> mean over time -> linear (Wav2CLIP's interface)."""

    def __init__(self, projection_dim: int = 16, n_fft: int = 256):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft))
        self.proj = torch.nn.Linear(n_fft // 2 + 1, projection_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, hop_length=self.n_fft // 2, window=self.window, return_complex=True)
        return self.proj(torch.log1p(spec.abs()).mean(dim=-1))


def build_tiny_wav2clip(out_dir: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """TorchScript file, loaded by path like any scripted Wav2CLIP export."""
    torch.manual_seed(seed)
    path = Path(out_dir) / "wav2clip.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyWav2Clip(projection_dim).eval()).save(str(path))
    return path
