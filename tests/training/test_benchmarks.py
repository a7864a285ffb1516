"""benchmarks: centre frame and audio track of a tiny generated video; class-balanced sampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from sonify_toolkit import audio as au
from training_recipe.benchmarks import balanced_sample, benchmarks, read_vggsound_csv

FPS, SECONDS, SR = 10, 2, 22_050


def write_video(path: Path, freq: float, seconds: int = SECONDS, gray_step: int = 10) -> None:
    """A 32x32 video whose frame i is filled with gray level gray_step*i, plus a stereo sine track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=FPS)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=SR, layout="stereo")
        for i in range(FPS * seconds):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), gray_step * i, np.uint8), format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
        t = np.arange(SR * seconds) / SR
        wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        for k in range(0, len(wave), 1024):
            chunk = np.stack([wave[k : k + 1024]] * 2)
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            af.sample_rate = SR
            af.pts = k
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                c.mux(p)


def test_video_to_centre_frame_and_audio(tmp_path: Path) -> None:
    write_video(tmp_path / "videos" / "dog" / "clip_a.mp4", 440.0)
    (tmp_path / "videos" / "cat").mkdir()
    (tmp_path / "videos" / "cat" / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "bench"
    benchmarks(videos=[str(tmp_path / "videos")], out=out)
    pairs = pq.read_table(out / "pairs.parquet").to_pylist()
    assert [(p["id"], p["label"]) for p in pairs] == [("clip_a", "dog")]
    assert pq.read_table(out / "errors.parquet")["reason"].to_pylist() == ["undecodable"]
    frame = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(out / pairs[0]["image"]), np.float32)
    assert abs(frame.mean() - 10 * FPS * SECONDS / 2) < 12  # the frame at t = 1 s (gray ~100)
    wave = au.load_standard(out / pairs[0]["audio"])
    assert abs(len(wave) / 16_000 - SECONDS) < 0.1  # shorter than the 5-s clip: the whole track
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16_000 / len(wave) - 440.0) < 5


def test_audio_is_cut_to_the_training_clip_around_the_frame(tmp_path: Path) -> None:
    write_video(tmp_path / "videos" / "rain" / "long.mp4", 330.0, seconds=8, gray_step=3)
    benchmarks(videos=[str(tmp_path / "videos")], out=tmp_path / "bench")
    (pair,) = pq.read_table(tmp_path / "bench" / "pairs.parquet").to_pylist()
    assert abs(pair["seconds"] - 5.0) < 0.01 and abs(pair["start"] - 1.5) < 0.05  # 5 s centred on t = 4 s (AAC priming)
    wave = au.load_standard(tmp_path / "bench" / pair["audio"])
    assert abs(len(wave) - 5 * 16_000) <= 1
    frame = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "bench" / pair["image"]))
    assert abs(frame.astype(np.float32).mean() - 3 * FPS * 4) < 8  # the frame at the window's centre (t = 4 s)
    benchmarks(videos=[str(tmp_path / "videos")], out=tmp_path / "whole", clip_seconds=0)
    assert abs(pq.read_table(tmp_path / "whole" / "pairs.parquet")["seconds"][0].as_py() - 8.0) < 0.1


def test_a_merged_benchmark_prefixes_ids_by_source(tmp_path: Path) -> None:
    write_video(tmp_path / "landscapes" / "waterfall" / "a.mp4", 440.0)
    write_video(tmp_path / "itw" / "engine" / "a.mp4", 660.0)
    videos = [f"landscapes={tmp_path / 'landscapes'}", f"itw={tmp_path / 'itw'}"]
    benchmarks(videos=videos, out=tmp_path / "merged")
    pairs = pq.read_table(tmp_path / "merged" / "pairs.parquet").to_pylist()
    assert sorted((p["id"], p["label"]) for p in pairs) == [("itw__a", "engine"), ("landscapes__a", "waterfall")]


def test_class_balanced_sampling_and_vggsound_csv(tmp_path: Path) -> None:
    labels = {f"v{i:03d}": f"class{i % 7}" for i in range(300)}
    labels.update({f"rare{i}": "rare" for i in range(2)})
    chosen = balanced_sample(labels, 80, seed=0)
    counts = Counter(labels[c] for c in chosen)
    assert len(chosen) == 80 and counts["rare"] == 2  # the rare class's unused share goes to the others
    assert all(n in (11, 12) for c, n in counts.items() if c != "rare")
    assert chosen == balanced_sample(labels, 80, seed=0) and chosen != balanced_sample(labels, 80, seed=1)
    csv = tmp_path / "vggsound.csv"
    csv.write_text("abc,30,dog barking,test\nxyz,5,rain,train\nqqq,120,cat meowing,test\n")
    assert read_vggsound_csv(csv) == {"abc_000030": "dog barking", "qqq_000120": "cat meowing"}
