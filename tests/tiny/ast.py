"""A tiny random AST (ASTModel + ASTFeatureExtractor) that keeps the real 128-mel x 1024-frame grid."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel


def build_tiny_ast(out_dir: Path, seed: int = 0) -> Path:
    """12 x 101 patches like the released AST, hidden size 32; max_length/num_mel_bins match the extractor."""
    torch.manual_seed(seed)
    cfg = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=1024,
        num_mel_bins=128,
        patch_size=16,
        frequency_stride=10,
        time_stride=10,
    )
    path = Path(out_dir) / "ast"
    ASTModel(cfg).eval().save_pretrained(path)
    ASTFeatureExtractor(max_length=1024, num_mel_bins=128, sampling_rate=16000).save_pretrained(path)
    return path
