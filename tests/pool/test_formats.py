"""Every format users hold: compressed files (encoded here with PyAV) pool and render like wav/flac,
decode the same twice, and a window read alone is byte-identical to the window of the whole file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import soxr

from sonify_toolkit import audio, schema
from sonify_toolkit.fileio import sha256_file
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.runner import run_stage
from sonify_toolkit.settings import SAMPLE_RATE, SEGMENT_FRAMES
from sonify_toolkit.shards import StageDir
from sonify_toolkit.soundtrack import FileCache, load_file, load_file_window, load_window, render_source
from sonify_toolkit.stages.pool import PoolSegmentsStage
from tests.pool.encoded import FORMATS, tone_noise, write

SECONDS = 12.0  # three segments, the last one short


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    for i, ext in enumerate(sorted(FORMATS)):
        write(root / f"enc/clip{ext}", SECONDS, channels=2 if i % 2 else 1, seed=i)
    (root / "pcm").mkdir()
    for name, sr, subtype in (
        ("clip.wav", 44_100, "PCM_16"),
        ("clip.flac", 48_000, "PCM_24"),
        ("clip.aiff", 22_050, "PCM_16"),
    ):
        sf.write(root / "pcm" / name, tone_noise(sr, SECONDS, 2, seed=sr).T, sr, subtype=subtype)
    return root


@pytest.fixture(scope="module")
def pooled(collection: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table]:
    work = tmp_path_factory.mktemp("work")
    run_stage(PoolSegmentsStage({"c": str(collection)}, files_per_shard=3), work, show_progress=False)
    sd = StageDir(pool_dir(work))
    return sd.read_table("segments", schema.POOL_SEGMENTS), sd.read_table("errors", schema.ERRORS)


def test_every_format_pools_into_segments(pooled) -> None:
    segs, errors = pooled
    assert errors.num_rows == 0, errors.to_pylist()
    by_path: dict[str, list[int]] = {}
    for row in segs.to_pylist():
        by_path.setdefault(row["path"], []).append(row["segment"])
    expected = {f"enc/clip{ext}" for ext in FORMATS} | {"pcm/clip.wav", "pcm/clip.flac", "pcm/clip.aiff"}
    assert set(by_path) == expected
    assert all(segments == [0, 1, 2] for segments in by_path.values()), sorted(by_path.items())
    assert all(-25 < r["lufs"] < -15 for r in segs.to_pylist())  # a -19 LUFS signal, whatever the codec


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_decoding_is_deterministic_and_names_its_decoder(collection: Path, ext: str) -> None:
    path = collection / f"enc/clip{ext}"
    first, again = audio.load_standard(path), audio.load_standard(path.read_bytes())
    assert first.dtype == np.float32 and np.array_equal(first, again)
    with audio.open_audio(path) as reader:
        # libsndfile reads Ogg Opus and MP3 itself; AAC and the WebM/Matroska/MP4 containers go to FFmpeg
        assert reader.header.decoder == ("libsndfile" if ext in (".opus", ".mp3") else "ffmpeg")
        assert reader.header.sample_rate == FORMATS[ext][2]
        assert reader.header.seconds == pytest.approx(SECONDS, abs=0.1)


def test_pool_to_render_round_trip_keeps_the_recorded_loudness(pooled, collection: Path) -> None:
    """A file pooled from AAC (or any format) renders back, through render's reader, to its row's LUFS."""
    segs, _ = pooled
    for row in segs.to_pylist():
        source = {
            "concept": "x",
            "description": "",
            "clip_id": row["clip_id"],
            "source": "c",
            "path": row["path"],
            "segment": row["segment"],
            "source_sha256": row["source_sha256"],
            "similarity": 0.5,
            "score": 0.7,
            "threshold": 0.6,
            "clip_lufs": row["lufs"],
            "target_lufs": -23.0,
        }
        raw = load_window({"c": str(collection)}, source)
        assert audio.loudness_rows(raw[None])[0] == row["lufs"], row["clip_id"]  # the very same samples
        rendered = render_source({"c": str(collection)}, source, cache=FileCache())
        assert audio.loudness(rendered) == pytest.approx(-23.0, abs=0.01)


@pytest.mark.parametrize("rel", ["pcm/clip.wav", "pcm/clip.flac", "pcm/clip.aiff", "enc/clip.m4a", "enc/clip.webm"])
def test_a_window_read_alone_equals_the_window_of_the_whole_file(collection: Path, rel: str) -> None:
    whole = load_file(collection / rel)
    assert whole.error is None and whole.sha256 == sha256_file(collection / rel)
    for segment in range(3):
        alone = load_file_window(collection / rel, segment)
        assert alone.sha256 == whole.sha256
        expected = audio.window(whole.signal, segment)[0]
        assert np.array_equal(alone.window(segment), expected), (rel, segment)  # byte-identical
    assert load_file_window(collection / rel, 3).window(3) is None  # past the end
    if rel.endswith((".wav", ".flac")):  # exact seeks: a late window decodes a few seconds, not the file
        assert load_file_window(collection / rel, 2).decoded_seconds < SECONDS - 5


def test_the_cache_reads_windows_first_and_the_whole_file_once_it_pays(collection: Path) -> None:
    cache = FileCache()
    path = collection / "pcm/clip.flac"  # 12 s; windows 0, 1, 2 decode 5.5 + 5.5 + 2.1 s (whole 64k-frame reads)
    reads = [cache.get(path, s % 3) for s in range(6)]
    # once the windows cost more than the file, it is decoded whole, once, and served from the cache
    assert cache.stats == {"windows_decoded": 3, "files_decoded": 1, "cache_hits": 2}
    whole = load_file(path)
    for k, entry in enumerate(reads):
        assert np.array_equal(entry.window(k % 3), audio.window(whole.signal, k % 3)[0])


@pytest.mark.parametrize("sr", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 37_800])
def test_block_standardisation_agrees_with_a_one_shot_resample(sr: int) -> None:
    """5-s blocks with margins, joined, are the one-shot soxr resample of the whole file to float rounding."""
    x = tone_noise(sr, 17.3, 2, seed=sr).T
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="FLOAT")
    blocked = audio.load_standard(buf.getvalue())
    one_shot = soxr.resample(x.mean(axis=1, dtype=np.float32), sr, SAMPLE_RATE, quality="HQ")
    assert blocked.shape == one_shot.shape == (round(len(x) * SAMPLE_RATE / sr),)
    np.testing.assert_allclose(blocked, one_shot, rtol=0, atol=2e-6)
    with audio.open_audio(buf.getvalue()) as reader:
        assert [len(b) for b in audio.standard_blocks(reader)][:-1] == [SEGMENT_FRAMES] * 3


def test_with_the_shard_in_view_a_file_used_once_is_read_for_its_window_alone(collection: Path) -> None:
    once, twice = {"source": "c", "path": "pcm/clip.wav"}, {"source": "c", "path": "pcm/clip.flac"}
    cache = FileCache()
    cache.expect([{"sources": [once, twice]}, {"sources": [twice]}, {"sources": "tampered"}, None])
    roots = {"c": str(collection)}
    assert cache.get(cache.resolve(roots, once), 1, cache.uses[("c", "pcm/clip.wav")]).first_segment == 1
    first = cache.get(cache.resolve(roots, twice), 2, cache.uses[("c", "pcm/clip.flac")])
    again = cache.get(cache.resolve(roots, twice), 0, cache.uses[("c", "pcm/clip.flac")])
    assert first is again and first.first_segment == 0  # decoded whole at its first use, then a hit
    assert cache.stats == {"windows_decoded": 1, "files_decoded": 1, "cache_hits": 1}
