"""Benchmark `sonify render`: mixtures per second per core, against the decode floor of the same run.

A generated pool (wav/flac, 16-48 kHz, mono/stereo, 10-40 s) and pairs of three sources drawn with
heavy, Zipf-like reuse of a few files (as retrieval does at scale). Everything runs in one process
on one core, timed in CPU seconds of this process (the figure per core, and steady on a shared
machine). Four timings of the same windows:

* floor         read + decode + standardise each distinct file once, cut every window (nothing else)
* output floor  the floor, plus what any renderer must do to deliver a mix: gain each window, sum,
                FLAC-encode and write one file per pair (nothing else: no checks, no loudness, no index).
                render's rate as a share of it is the figure to watch (goal >= 0.8x)
* naive         decoding the file again for every source that uses it (no cache;
                timed on the first --naive-pairs pairs, it is slow)
* render        the whole render stage, inline (best of two, as the floors): verify, read windows
                or whole files (cached), normalise, mix, loudness (16 mixes per vectorised BS.1770
                call), FLAC encode, file writes and the index shards

    python bench/render.py [--pairs 1500] [--files 48] [--cache-mb 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from sonify_toolkit import audio, schema
from sonify_toolkit.fileio import safe_join, sha256_bytes
from sonify_toolkit.runner import run_stage
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.render import RenderStage


def make_pool(root: Path, n_files: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Write `n_files` recordings; returns (path, number of 5-s segments) per file."""
    out = []
    for i in range(n_files):
        sr = int(rng.choice([16_000, 22_050, 44_100, 48_000]))
        seconds = float(rng.uniform(10, 40))
        t = np.arange(int(sr * seconds)) / sr
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        data = np.stack([x, 0.7 * x], axis=1) if i % 2 else x
        rel = f"c{i % 4}/f{i:04d}.{'flac' if i % 3 else 'wav'}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, data.astype(np.float32), sr, subtype="PCM_16")
        out.append((rel, audio.num_segments(int(16_000 * seconds))))
    return out


def make_pairs(root: Path, files: list[tuple[str, int]], n_pairs: int, rng: np.random.Generator) -> list[dict]:
    """Three sources per pair, file chosen with probability ~ 1/rank (a few files serve most pairs)."""
    weights = 1.0 / np.arange(1, len(files) + 1)
    weights /= weights.sum()
    measured: dict[str, tuple[np.ndarray, str]] = {}
    rows = []
    for k in range(n_pairs):
        sources = []
        for j in rng.choice(len(files), size=3, replace=False, p=weights):
            rel, segs = files[j]
            if rel not in measured:
                data = (root / rel).read_bytes()
                measured[rel] = (audio.load_standard(data), sha256_bytes(data))
            signal, sha = measured[rel]
            seg = int(rng.integers(segs))
            lufs = audio.loudness(audio.window(signal, seg)[0])
            sources.append(
                {"source": "pool", "path": rel, "segment": seg, "source_sha256": sha, "clip_lufs": lufs}
                | {"target_lufs": float(rng.uniform(-24, -22)), "concept": "x", "clip_id": f"pool/{rel}#{seg}"}
            )
        rows.append(
            {"pair_id": f"img{k:07d}|bench", "image_id": f"img{k:07d}", "vlm": "bench", "seed": 0}
            | {"sources": sources}
        )
    return rows


def floor(root: Path, rows: list[dict], cache: bool) -> float:
    """Read and decode the windows the pairs use, nothing else; seconds."""
    t0 = time.process_time()
    decoded: dict[str, np.ndarray] = {}
    for row in rows:
        for s in row["sources"]:
            signal = decoded.get(s["path"]) if cache else None
            if signal is None:
                signal = audio.load_standard(safe_join(root, s["path"]).read_bytes())
                if cache:
                    decoded[s["path"]] = signal
            audio.window(signal, s["segment"])
    return time.process_time() - t0


def output_floor(root: Path, rows: list[dict], out: Path) -> float:
    """Decode each distinct file once, cut, gain, sum, FLAC-encode and write each mix; seconds."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    decoded: dict[str, np.ndarray] = {}
    for k, row in enumerate(rows):
        windows = []
        for s in row["sources"]:
            signal = decoded.get(s["path"])
            if signal is None:
                signal = decoded[s["path"]] = audio.load_standard(safe_join(root, s["path"]).read_bytes())
            gain = audio.db_to_gain(s["target_lufs"] - s["clip_lufs"])
            windows.append(audio.window(signal, s["segment"])[0] * np.float32(gain))
        (out / f"{k:07d}.flac").write_bytes(audio.encode(np.sum(windows, axis=0, dtype=np.float32)))
    return time.process_time() - t0


def render(tmp_path: Path, root: Path, args: argparse.Namespace, k: int) -> tuple[float, float, Any, dict[str, float]]:
    """The render stage over the pairs into a fresh folder: CPU s, wall s, its summary and phase seconds."""
    out = tmp_path / f"out{k}"
    stage = RenderStage(
        str(tmp_path / "pairs"), {"pool": str(root)}, str(out), cache_mb=args.cache_mb, pairs_per_shard=args.shard_size
    )
    t0, w0 = time.process_time(), time.perf_counter()
    summary = run_stage(stage, out, show_progress=False)
    t_render, wall = time.process_time() - t0, time.perf_counter() - w0
    phases: dict[str, float] = {}
    for st in StageDir(out).stats():
        for name, v in st.get("phase_seconds", {}).items():
            phases[name] = phases.get(name, 0.0) + v
    return t_render, wall, summary, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1500)
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--cache-mb", type=int, default=512)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--naive-pairs", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "pool"
        files = make_pool(root, args.files, rng)
        rows = make_pairs(root, files, args.pairs, rng)
        (tmp_path / "pairs").mkdir()
        pq.write_table(schema.table(rows, schema.PAIRS), tmp_path / "pairs" / "00000.parquet")
        uses = 3 * len(rows)
        distinct = len({s["path"] for r in rows for s in r["sources"]})

        t_floor = min(floor(root, rows, cache=True) for _ in range(2))  # best of two: the machine is shared
        # best of two for the output floor and render, interleaved (floor, render, floor, render) so that
        # a quiet or busy moment of the shared machine falls on both alike
        t_outs, runs = [], []
        for k in range(2):
            t_outs.append(output_floor(root, rows, tmp_path / f"floor{k}"))
            runs.append(render(tmp_path, root, args, k))
        t_out = min(t_outs)
        n_naive = min(args.naive_pairs, len(rows))
        t_naive = floor(root, rows[:n_naive], cache=False) * len(rows) / max(1, n_naive)
        t_render, wall, summary, phases = min(runs, key=lambda r: r[0])
        assert summary.counters["rendered"] == len(rows), summary.errors

    n = len(rows)
    print(f"pool: {args.files} files; pairs: {n} x 3 sources = {uses} uses of {distinct} distinct files")
    print(f"floor  (decode each file once, cut windows): {n / t_floor:9.1f} mixtures/s  ({t_floor:.2f} s)")
    print(f"output floor (+ gain, sum, FLAC, write):     {n / t_out:9.1f} mixtures/s  ({t_out:.2f} s)")
    print(
        f"naive  (decode per source use, no cache):    {n / t_naive:9.1f} mixtures/s  ({t_naive:.2f} s, extrapolated)"
    )
    print(f"render (whole stage, 1 core):                {n / t_render:9.1f} mixtures/s  ({t_render:.2f} s)")
    print(
        f"render / output floor = {t_out / t_render:.2f} (goal >= 0.8)   render / floor = {t_floor / t_render:.2f}"
        f"   render / naive = {t_naive / t_render:.2f}"
    )
    print(f"(CPU seconds of this process, one core; render took {wall:.2f} s of wall time)")
    print(
        f"reads: {summary.counters.get('windows_decoded', 0)} windows, {summary.counters.get('files_decoded', 0)} "
        f"whole files, {summary.counters.get('cache_hits', 0)} cache hits; "
        "phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(phases.items()))
    )


if __name__ == "__main__":
    main()
