"""A small synthetic sound collection that anyone may redistribute (it is generated, not recorded).

Used by `make demo`, the tests and the benchmarks: tones, sirens, rain-like noise, footsteps and
engine hums at several sample rates, channel counts, formats and lengths, plus a `labels.csv`.
Deterministic for a given seed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

Synth = Callable[[np.random.Generator, int, float], np.ndarray]


def _t(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(sr * seconds)) / sr


def tone(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    f = rng.uniform(220, 880)
    return 0.3 * np.sin(2 * np.pi * f * _t(sr, seconds))


def siren(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    t = _t(sr, seconds)
    f = 700 + 250 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t)
    return 0.25 * np.sin(2 * np.pi * np.cumsum(f) / sr)


def rain(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    noise = rng.standard_normal(int(sr * seconds))
    kernel = np.ones(8) / 8  # a gentle low-pass: rain on a roof rather than white hiss
    return 0.1 * np.convolve(noise, kernel, mode="same")


def footsteps(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    out = np.zeros(int(sr * seconds))
    step = int(sr * rng.uniform(0.45, 0.6))
    click = np.exp(-np.arange(int(0.05 * sr)) / (0.008 * sr)) * rng.standard_normal(int(0.05 * sr))
    for start in range(0, len(out) - len(click), step):
        out[start : start + len(click)] += 0.5 * click
    return out


def engine(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    t = _t(sr, seconds)
    f0 = rng.uniform(40, 70)
    hum = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return 0.15 * hum * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))


SYNTHS: dict[str, Synth] = {"tone": tone, "siren": siren, "rain": rain, "footsteps": footsteps, "engine": engine}
LABELS = {
    "tone": "Sine wave",
    "siren": "Siren",
    "rain": "Rain",
    "footsteps": "Walk, footsteps",
    "engine": "Engine",
}
# (sample rate, channels, format, subtype, seconds): covers resampling, downmix, padding, long files
VARIANTS = [
    (16_000, 1, "WAV", "PCM_16", 5.0),
    (44_100, 2, "FLAC", "PCM_24", 3.2),
    (48_000, 1, "WAV", "FLOAT", 12.5),
    (22_050, 2, "OGG", "VORBIS", 7.0),
    (8_000, 1, "WAV", "PCM_U8", 2.0),
    (32_000, 1, "FLAC", "PCM_16", 10.0),
]
EXT = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}


def make_sample_sounds(out_dir: str | Path, n_per_kind: int = 6, seed: int = 0) -> Path:
    """Write `n_per_kind` clips of each kind under `out_dir/<kind>/` and `out_dir/labels.csv`."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for kind, synth in SYNTHS.items():
        for i in range(n_per_kind):
            sr, channels, fmt, subtype, seconds = VARIANTS[i % len(VARIANTS)]
            mono = synth(rng, sr, seconds)
            data = np.stack([mono * (1.0 - 0.2 * c) for c in range(channels)], axis=1) if channels > 1 else mono
            rel = f"{kind}/{kind}_{i:02d}{EXT[fmt]}"
            (out / kind).mkdir(parents=True, exist_ok=True)
            sf.write(out / rel, np.clip(data, -1, 1).astype(np.float32), sr, format=fmt, subtype=subtype)
            rows.append((rel, LABELS[kind]))
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return out


if __name__ == "__main__":
    import sys

    print(make_sample_sounds(sys.argv[1] if len(sys.argv) > 1 else "samples/generated/sounds"))
