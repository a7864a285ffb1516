"""bench_gpu: step time and peak memory of the full-size PixArt-XL-2 512 px with the audio projector.

    python -m training_recipe.bench_gpu --batch-sizes 8 16 32 40 48 --steps 5 [--no-checkpointing]

Random weights (no download): the architecture of PixArt-alpha/PixArt-XL-2-512x512 (28 layers, width
1152, 64 x 64 x 4 latents, learned sigma), its caption projection replaced by the audio projector over
(101, 768) AST sequences. Each batch size runs a few warm-up and timed training steps in bf16 autocast
(fp32 master weights, AdamW), exactly the per-device work of `train.py`; prints one JSON line per batch
size and a table, so the per-device batch and accumulation of the 640 global batch can be chosen.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from .model import AudioPixArt, attach_audio_projector

AUDIO_SHAPE = (101, 768)


def full_size_transformer(num_layers: int = 28):
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        num_attention_heads=16,
        attention_head_dim=72,
        in_channels=4,
        out_channels=8,
        num_layers=num_layers,
        cross_attention_dim=1152,
        sample_size=64,  # 512 px / 8
        patch_size=2,
        caption_channels=4096,
        use_additional_conditions=False,
    )


def bench(batch: int, steps: int, warmup: int, checkpointing: bool, device: str, num_layers: int = 28) -> dict:
    torch.manual_seed(0)
    transformer = full_size_transformer(num_layers)
    attach_audio_projector(transformer, AUDIO_SHAPE[1])
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    model = AudioPixArt(transformer, AUDIO_SHAPE, "learned").to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3.16e-5, weight_decay=3e-2)
    latents = torch.randn(batch, 4, 64, 64, device=device)
    audio = torch.randn(batch, *AUDIO_SHAPE, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            pred = model(latents + noise, t, audio, torch.rand(batch, device=device) < 0.1)
        loss = F.mse_loss(pred.chunk(2, dim=1)[0].float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]
    out = {
        "batch": batch,
        "layers": num_layers,
        "checkpointing": checkpointing,
        "step_s": round(step, 4),
        "images_per_s": round(batch / step, 2),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
    }
    if device.startswith("cuda"):
        out["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["device"] = torch.cuda.get_device_name()
    del model, opt
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 40, 48])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--layers", type=int, default=28, help="fewer for a quick smoke run (28 = PixArt-XL-2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for b in args.batch_sizes:
        try:
            row = bench(b, args.steps, args.warmup, not args.no_checkpointing, args.device, args.layers)
        except torch.OutOfMemoryError:
            row = {"batch": b, "error": "out of memory"}
            torch.cuda.empty_cache()
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"{'batch':>6} {'step s':>8} {'img/s':>8} {'peak GiB':>9}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r.get('step_s', '-'):>8} {r.get('images_per_s', '-'):>8} {r.get('peak_mem_GiB', '-'):>9}"
        )


if __name__ == "__main__":
    main()
