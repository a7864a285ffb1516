"""The bundled demo inputs: a dozen redistributable images and a few dozen generated sounds.

Images are public-domain / CC0 photographs (provenance in NOTICE) plus one emblem we drew, which
the non-sonic filter must drop. Sounds are synthesised here (so they carry no licence at all),
one kind per sounding thing in the pictures, with the synthetic collection of `sample_data` added
as distractors: CLAP must pick among them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from ..sample_data import LABELS as SAMPLE_LABELS
from ..sample_data import SYNTHS, Synth, _t

IMAGES_DIR = Path(__file__).parent / "images"


def meow(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Harmonic calls with a rising-then-falling pitch, like a cat's meow, one every ~1.5 s."""
    out = np.zeros(int(sr * seconds))
    call = int(0.7 * sr)
    t = np.arange(call) / sr
    f = 500 + 350 * np.sin(np.pi * t / t[-1])
    phase = 2 * np.pi * np.cumsum(f) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * np.hanning(call)
    for start in range(int(rng.uniform(0, 0.4) * sr), len(out) - call, int(1.5 * sr)):
        out[start : start + call] += 0.3 * voice
    return out


def clock_ticks(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Short bright clicks once a second, alternating pitch (tick, tock)."""
    out = np.zeros(int(sr * seconds))
    n = int(0.02 * sr)
    env = np.exp(-np.arange(n) / (0.002 * sr))
    for i, start in enumerate(range(int(rng.uniform(0, 0.5) * sr), len(out) - n, sr)):
        f = 3000 if i % 2 else 2200
        out[start : start + n] += 0.6 * env * np.sin(2 * np.pi * f * np.arange(n) / sr)
    return out


def clinks(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Metal coins: inharmonic high partials with fast decays at random times."""
    out = np.zeros(int(sr * seconds))
    n = int(0.3 * sr)
    t = np.arange(n) / sr
    for start in np.sort(rng.integers(0, len(out) - n, size=int(3 * seconds))):
        partials = rng.uniform(2500, 7000, size=4)
        ring = sum(np.sin(2 * np.pi * f * t) for f in partials) * np.exp(-t / 0.06)
        out[start : start + n] += 0.15 * ring
    return out


def wind(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Low-passed noise with a slow swell: wind through grass."""
    noise = rng.standard_normal(int(sr * seconds))
    smooth = np.convolve(noise, np.ones(64) / 64, mode="same")
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * _t(sr, seconds))
    return 0.5 * smooth * swell


def roar(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """A rocket's broadband rumble: heavily low-passed noise plus crackle."""
    noise = rng.standard_normal(int(sr * seconds))
    rumble = np.convolve(noise, np.ones(200) / 200, mode="same") * 4
    crackle = (rng.random(noise.size) < 0.002) * rng.standard_normal(noise.size)
    return 0.6 * rumble + 0.2 * crackle


def pour(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Liquid pouring into a cup: band-limited noise whose resonance rises as the cup fills."""
    t = _t(sr, seconds)
    noise = rng.standard_normal(t.size)
    f = 300 + 500 * t / t[-1]
    tone = np.sin(2 * np.pi * np.cumsum(f) / sr)
    return 0.15 * np.convolve(noise, np.ones(6) / 6, mode="same") * (0.5 + 0.5 * tone)


def birds(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """Fast downward chirps in bursts: birdsong."""
    out = np.zeros(int(sr * seconds))
    n = int(0.08 * sr)
    t = np.arange(n) / sr
    for start in np.sort(rng.integers(0, len(out) - n, size=int(4 * seconds))):
        f0 = rng.uniform(3000, 5000)
        f = f0 - 1500 * t / t[-1]
        out[start : start + n] += 0.25 * np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(n)
    return out


DEMO_SYNTHS: dict[str, Synth] = {
    "meow": meow,
    "clock": clock_ticks,
    "coins": clinks,
    "wind": wind,
    "rocket": roar,
    "pour": pour,
    "birds": birds,
}
DEMO_LABELS = {
    "meow": "Meow",
    "clock": "Tick-tock",
    "coins": "Coin (dropping)",
    "wind": "Wind",
    "rocket": "Rocket",
    "pour": "Pour",
    "birds": "Bird vocalization",
}


def write_demo_images(out_dir: Path) -> Path:
    """Copy the bundled images into `out_dir` (the extract stage's input folder)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(IMAGES_DIR.glob("*.jpg")):
        shutil.copyfile(src, out_dir / src.name)
    return out_dir


def write_demo_sounds(out_dir: Path, per_kind: int = 3, seed: int = 0) -> Path:
    """Generate `per_kind` clips of every kind (demo kinds and sample_data's) plus `labels.csv`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    synths = {**DEMO_SYNTHS, **SYNTHS}
    labels = {**DEMO_LABELS, **SAMPLE_LABELS}
    rng = np.random.default_rng(seed)
    lines = ["path,label"]
    for kind in sorted(synths):
        for i in range(per_kind):
            seconds = float(rng.choice([3.0, 5.0, 7.5]))
            sr = int(rng.choice([16_000, 22_050, 44_100]))
            x = synths[kind](rng, sr, seconds)
            x = 0.9 * x / max(1e-6, float(np.max(np.abs(x)))) * rng.uniform(0.3, 1.0)
            name = f"{kind}/{kind}_{i:02d}.flac"
            (out_dir / kind).mkdir(exist_ok=True)
            sf.write(out_dir / name, x.astype(np.float32), sr, subtype="PCM_16")
            lines.append(f"{name},{labels[kind]}")
    (out_dir / "labels.csv").write_text("\n".join(lines) + "\n")
    return out_dir
