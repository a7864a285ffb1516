"""Images from AST features through PixArt's own pipeline, and labelled image grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from sonify_toolkit.errors import InputError

VAE_SUBFOLDER = "vae"


def make_pipeline(
    base_model: str,
    transformer: torch.nn.Module,
    vae: torch.nn.Module | None = None,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
):
    """`PixArtAlphaPipeline` without tokenizer or text encoder: audio features go in as prompt_embeds."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline

    if vae is None:
        vae = AutoencoderKL.from_pretrained(base_model, subfolder=VAE_SUBFOLDER, revision=revision, torch_dtype=dtype)
    scheduler = DPMSolverMultistepScheduler.from_pretrained(base_model, subfolder="scheduler", revision=revision)
    pipe = PixArtAlphaPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def images_from_audio(
    pipe,
    audio: torch.Tensor,
    null_audio: torch.Tensor,
    *,
    resolution: int,
    guidance_scale: float = 4.5,
    steps: int = 20,
    seed: int = 0,
) -> list[Image.Image]:
    """One image per row of `audio` (n, T, D); the null audio is the unconditional branch of CFG."""
    device = pipe.transformer.device
    dtype = pipe.transformer.dtype
    audio = audio.to(device, dtype)
    null = null_audio.to(device, dtype).expand_as(audio)
    mask = torch.ones(audio.shape[:2], dtype=torch.long, device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(
        prompt=None,
        negative_prompt=None,
        prompt_embeds=audio,
        prompt_attention_mask=mask,
        negative_prompt_embeds=null,
        negative_prompt_attention_mask=mask,
        guidance_scale=guidance_scale,
        num_inference_steps=steps,
        height=resolution,
        width=resolution,
        generator=generator,
        use_resolution_binning=False,
        clean_caption=False,
        output_type="pil",
    )
    return list(out.images)


def image_grid(
    images: Sequence[Image.Image],
    cols: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    label_width: int = 160,
    label_height: int = 20,
) -> Image.Image:
    """Images row-major in a grid, a label at the left of each row and above each column."""
    if not images:
        raise InputError("no images for the grid: nothing was generated (no sources, pairs or seeds)")
    rows = (len(images) + cols - 1) // cols
    w, h = images[0].size
    lw = label_width if row_labels else 0
    lh = label_height if col_labels else 0
    grid = Image.new("RGB", (lw + cols * w, lh + rows * h), "white")
    draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(im.convert("RGB").resize((w, h)), (lw + c * w, lh + r * h))
    for r, text in enumerate(row_labels or []):
        draw.text((4, lh + r * h + 4), str(text)[:40], fill="black")
    for c, text in enumerate(col_labels or []):
        draw.text((lw + c * w + 4, 4), str(text)[:40], fill="black")
    return grid


def save_grid(grid: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
