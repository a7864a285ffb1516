"""PixArt-α with an audio projector: the one model change of the recipe (paper A.10-A.11).

PixArt maps T5 tokens (4096-d) into its cross-attention width with `caption_projection`, a two-layer
MLP (Linear, GELU-tanh, Linear). We keep every other pretrained weight and replace that MLP by a
freshly initialised one of the same kind whose input is the AST sequence (101 x 768), recording
`caption_channels = 768` in the transformer config. The saved transformer is therefore a plain
`PixArtTransformer2DModel`, and PixArt's own `PixArtAlphaPipeline` runs it with the AST features
passed as `prompt_embeds` (no tokenizer, no text encoder).

Classifier-free guidance needs an unconditional input: a "null audio" sequence, either learned
(a trained (T, D) parameter, saved beside the transformer) or all zeros, dropped in for a whole
clip at `null_audio_rate` during training and given as `negative_prompt_embeds` at generation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import PixArtTransformer2DModel
from diffusers.models.embeddings import PixArtAlphaTextProjection
from safetensors.torch import load_file, save_file
from torch import nn

from sonify_toolkit.errors import InputError

from .config import NULL_AUDIO_KINDS, ConfigError

RECIPE_FILE = "recipe.json"
NULL_FILE = "null_audio.safetensors"


def attach_audio_projector(transformer: PixArtTransformer2DModel, audio_dim: int, hidden: int | None = None) -> None:
    """Swap the caption projection for a from-scratch MLP over `audio_dim` features (in place)."""
    inner = transformer.inner_dim
    if hidden is not None and hidden != inner:
        # a wider hidden layer: Linear(audio_dim, hidden) -> GELU -> Linear(hidden, inner)
        transformer.caption_projection = PixArtAlphaTextProjection(audio_dim, hidden, out_features=inner)
    else:
        transformer.caption_projection = PixArtAlphaTextProjection(audio_dim, inner)
    transformer.register_to_config(caption_channels=audio_dim)


class AudioPixArt(nn.Module):
    """What is trained: the transformer (with its audio projector) and the null audio used for CFG."""

    def __init__(self, transformer: PixArtTransformer2DModel, audio_shape: tuple[int, int], null_audio: str):
        super().__init__()
        if null_audio not in NULL_AUDIO_KINDS:
            raise ConfigError(f"null_audio must be {' or '.join(NULL_AUDIO_KINDS)}, not {null_audio!r}")
        self.transformer = transformer
        self.null_kind = null_audio
        self.null_audio = nn.Parameter(torch.zeros(1, *audio_shape), requires_grad=null_audio == "learned")

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, audio: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict noise (and the learned-sigma channels); clips where `drop` is True see the null audio."""
        if drop is not None:
            audio = torch.where(drop[:, None, None], self.null_audio.to(audio.dtype).expand_as(audio), audio)
        mask = torch.ones(audio.shape[:2], dtype=torch.long, device=audio.device)
        return self.transformer(
            noisy,
            encoder_hidden_states=audio,
            encoder_attention_mask=mask,
            timestep=timesteps,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample


def load_base_transformer(base_model: str, revision: str | None = None) -> PixArtTransformer2DModel:
    """The pretrained transformer from a PixArt repo or path (subfolder `transformer`), or a bare folder."""
    path = Path(base_model)
    if path.is_dir() and (path / "config.json").exists():
        return PixArtTransformer2DModel.from_pretrained(base_model)
    return PixArtTransformer2DModel.from_pretrained(base_model, subfolder="transformer", revision=revision)


def export(model: AudioPixArt, out_dir: Path, recipe: dict[str, Any]) -> None:
    """An inference folder: transformer/ (plain diffusers), the null audio, and recipe.json (which VAE, AST)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.transformer.save_pretrained(out_dir / "transformer")
    save_file({"null_audio": model.null_audio.detach().float().cpu().contiguous()}, str(out_dir / NULL_FILE))
    (out_dir / RECIPE_FILE).write_text(json.dumps({**recipe, "null_audio": model.null_kind}, indent=2) + "\n")


def load_export(path: Path, dtype: torch.dtype = torch.float32) -> tuple[PixArtTransformer2DModel, torch.Tensor, dict]:
    """The transformer, null audio (1, T, D) and recipe of an exported checkpoint."""
    path = Path(path)
    if not (path / RECIPE_FILE).exists():
        raise InputError(f"{path} is not an exported checkpoint (no {RECIPE_FILE}): pass a checkpoint folder")
    recipe = json.loads((path / RECIPE_FILE).read_text())
    transformer = PixArtTransformer2DModel.from_pretrained(path / "transformer", dtype=dtype)
    null = load_file(str(path / NULL_FILE))["null_audio"].to(dtype)
    return transformer, null, recipe
