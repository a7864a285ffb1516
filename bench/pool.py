"""Benchmark: segments per second per core of the pool's standardise + loudness + checksum path.

Generates a corpus (default 90 x 20-s files = 30 min at mixed rates, channel counts and formats)
in a temporary folder, then times, on one core and in the same run:

* floor: read + decode + downmix + resample each file to 16 kHz, and nothing else;
* stage: `PoolSegmentsStage.process` on the same files (the above, plus 5-s windows, BS.1770
  loudness, peak, sha256 and the segments table).

Both are measured in CPU seconds of this process (robust on a shared machine) and wall seconds,
best of `--repeats`. The figure to watch is the ratio stage / floor: how much the pool adds on top
of what any reader of these files must pay. Run: `.venv/bin/python bench/pool.py [--profile]`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per core: one worker is one core

import numpy as np
import soundfile as sf

from sonify_toolkit import audio
from sonify_toolkit.stage import chunk
from sonify_toolkit.stages.pool import PoolSegmentsStage

# (sample rate, channels, format, subtype): what sound collections ship
VARIANTS = [
    (44_100, 2, "FLAC", "PCM_16"),
    (48_000, 1, "WAV", "PCM_24"),
    (16_000, 1, "WAV", "PCM_16"),
    (22_050, 2, "OGG", "VORBIS"),
    (32_000, 1, "FLAC", "PCM_24"),
    (8_000, 1, "WAV", "PCM_16"),
]
EXT = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}


def make_corpus(root: Path, files: int, seconds: float, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    rels = []
    for i in range(files):
        sr, ch, fmt, sub = VARIANTS[i % len(VARIANTS)]
        t = np.arange(int(sr * seconds)) / sr
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)  # loudness varies between segments
        data = np.stack([x * (1 - 0.3 * c) for c in range(ch)], axis=1) if ch > 1 else x
        rel = f"f{i:03d}{EXT[fmt]}"
        sf.write(root / rel, data.astype(np.float32), sr, format=fmt, subtype=sub)
        rels.append(rel)
    return rels


def floor_pass(root: Path, rels: list[str]) -> int:
    """Read, decode and resample every file: the cost any consumer of these files pays."""
    frames = 0
    for rel in rels:
        data, sr = audio.decode((root / rel).read_bytes())
        frames += len(audio.standardize(data, sr))
    return frames


def stage_pass(stage: PoolSegmentsStage, rels: list[str]) -> tuple[int, dict[str, float]]:
    segments, phases = 0, {}
    for shard in chunk([("bench", r) for r in rels], 30):
        result = stage.process(shard)
        segments += result.tables["segments"].num_rows
        for k, v in result.extra["phase_seconds"].items():
            phases[k] = phases.get(k, 0.0) + v
    return segments, phases


def timed(fn, repeats: int):
    best = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        if best is None or cpu < best[0]:
            best = (cpu, wall, out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=90)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print the stage's top functions (cProfile)")
    ap.add_argument(
        "--compare-pyloudnorm",
        action="store_true",
        help="also time the stage measuring each window with pyloudnorm alone (the path before loudness_rows)",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sonify-bench-pool-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        rels = make_corpus(root, args.files, args.seconds)
        minutes = args.files * args.seconds / 60
        print(f"corpus: {args.files} files x {args.seconds:g} s = {minutes:.1f} min ({time.perf_counter() - t0:.1f} s)")
        stage = PoolSegmentsStage({"bench": str(root)}, files_per_shard=30)
        stage.setup()
        floor_pass(root, rels[:6])  # warm caches and imports for both
        stage_pass(stage, rels[:6])

        f_cpu, f_wall, _ = timed(lambda: floor_pass(root, rels), args.repeats)
        s_cpu, s_wall, (segments, phases) = timed(lambda: stage_pass(stage, rels), args.repeats)
        print(f"segments: {segments}")
        print(f"floor (decode + resample): {f_cpu:6.2f} s CPU {f_wall:6.2f} s wall  {segments / f_cpu:8.1f} seg/s/core")
        print(f"stage (pool segments):     {s_cpu:6.2f} s CPU {s_wall:6.2f} s wall  {segments / s_cpu:8.1f} seg/s/core")
        print(f"ratio stage/floor: {s_cpu / f_cpu:.2f}x CPU ({s_wall / f_wall:.2f}x wall)")
        if args.compare_pyloudnorm:
            vectorised = audio.loudness_rows
            audio.loudness_rows = lambda w, sr=16_000, chunk_rows=64: np.array([audio.loudness(r, sr) for r in w])
            try:
                p_cpu, p_wall, _ = timed(lambda: stage_pass(stage, rels), args.repeats)
            finally:
                audio.loudness_rows = vectorised
            rate = segments / p_cpu
            print(f"stage, pyloudnorm per window: {p_cpu:6.2f} s CPU {p_wall:6.2f} s wall  {rate:8.1f} seg/s/core")
            print(f"ratio with pyloudnorm per window: {p_cpu / f_cpu:.2f}x CPU")
        total = sum(phases.values())
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(phases.items()))
        print(f"stage phases (wall, best repeat): {shares}")

        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(stage_pass, stage, rels)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue())


if __name__ == "__main__":
    main()
