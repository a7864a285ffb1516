"""PoolSegmentsStage on a mixed corpus: segments, padding, silence, checksums, labels, error rows."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sonify_toolkit import schema
from sonify_toolkit.pool_files import pool_dir
from sonify_toolkit.runner import run_stage
from sonify_toolkit.settings import SAMPLE_RATE, SEGMENT_FRAMES
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stage import Shard
from sonify_toolkit.stages.pool import PoolInputError, PoolSegmentsStage, segment_rows
from tests.pool.corpus import BAD, GOOD


def expected_frames(rel: str) -> int:
    sr, _, _, _, seconds, _ = GOOD[rel]
    return round(round(sr * seconds) * SAMPLE_RATE / sr)


@pytest.fixture(scope="module")
def pooled(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table, Path]:
    labels = tmp_path_factory.mktemp("labels") / "labels.csv"
    labels.write_text("path,label\ntones/a_16k_mono_short.wav,Sine wave\nc_48k_mono_long.wav,Noise;Hiss\n")
    work = tmp_path_factory.mktemp("work")
    summary = run_stage(
        PoolSegmentsStage({"syn": str(corpus)}, {"syn": [str(labels)]}, files_per_shard=4), work, show_progress=False
    )
    assert summary.finalized and summary.shards_complete == summary.shards_total == math.ceil(
        (len(GOOD) + len(BAD)) / 4
    )
    sd = StageDir(pool_dir(work))
    return sd.read_table("segments", schema.POOL_SEGMENTS), sd.read_table("errors", schema.ERRORS), work


def test_segment_count_and_padding(pooled) -> None:
    segs, _, _ = pooled
    rows = segs.to_pylist()
    for rel in GOOD:
        mine = [r for r in rows if r["path"] == rel]
        frames = expected_frames(rel)
        if rel.startswith("quiet/"):
            continue
        assert [r["segment"] for r in mine] == list(range(math.ceil(frames / SEGMENT_FRAMES))), rel
        assert all(r["num_frames"] == SEGMENT_FRAMES for r in mine[:-1]), rel
        assert mine[-1]["num_frames"] == frames - SEGMENT_FRAMES * (len(mine) - 1), rel
        assert all(r["clip_id"] == f"syn/{rel}#{r['segment']}" for r in mine)


def test_silent_segments_are_left_out_and_counted(pooled) -> None:
    segs, _, work = pooled
    rows = segs.to_pylist()
    mixed = [r for r in rows if r["path"] == "quiet/g_silence_then_tone.wav"]
    assert [(r["segment"], r["num_frames"]) for r in mixed] == [(2, 2 * SAMPLE_RATE)]
    assert not [r for r in rows if r["path"] == "quiet/h_all_silent.flac"]
    stats = StageDir(pool_dir(work)).stats()
    counters = {k: sum(s["counters"].get(k, 0) for s in stats) for k in ("silent_segments", "segments", "files_ok")}
    assert counters == {"silent_segments": 2 + 2, "segments": segs.num_rows, "files_ok": len(GOOD)}
    assert all(np.isfinite(r["lufs"]) and r["lufs"] >= -70 for r in rows)


def test_sha256_peak_and_loudness(pooled, corpus: Path) -> None:
    segs, _, _ = pooled
    for row in segs.to_pylist():
        assert row["source_sha256"] == hashlib.sha256((corpus / row["path"]).read_bytes()).hexdigest()
        assert 0 < row["peak"] <= 1.0
    tone = next(r for r in segs.to_pylist() if r["path"] == "tones/b_44k_stereo_exact10.flac")
    # a full-scale-0.3 sine (mean of channels 1.0 and 0.9 -> 0.285): about -13.9 LUFS at 300-400 Hz
    assert tone["peak"] == pytest.approx(0.285, abs=0.005)
    assert -16 < tone["lufs"] < -12


def test_labels_from_the_generic_csv(pooled) -> None:
    segs, _, _ = pooled
    by_path = {r["path"]: r["labels"] for r in segs.to_pylist()}
    assert by_path["tones/a_16k_mono_short.wav"] == ["Sine wave"]
    assert by_path["tones/c_48k_mono_long.wav"] == ["Noise", "Hiss"]  # matched by file name
    assert by_path["tones/e_8k_u8.wav"] == []


def test_bad_files_become_error_rows_with_reasons(pooled, corpus: Path) -> None:
    _, errors, work = pooled
    got = {r["item"]: r["reason"] for r in errors.to_pylist()}
    assert got == {f"syn/{rel}": reason for rel, reason in BAD.items()}
    assert all(r["detail"] and "0x" not in r["detail"] for r in errors.to_pylist())
    summary_errors: dict[str, int] = {}
    for s in StageDir(pool_dir(work)).stats():
        for k, v in s["errors"].items():
            summary_errors[k] = summary_errors.get(k, 0) + v
    assert sum(summary_errors.values()) == len(BAD)
    assert not any(".hidden" in p or p.endswith(".txt") for p in (r["item"] for r in errors.to_pylist()))


def test_manifest_counts_the_segments(pooled) -> None:
    segs, _, work = pooled
    import json

    manifest = json.loads((pool_dir(work) / "manifest.json").read_text())
    assert manifest["segments"]["count"] == segs.num_rows == 14
    assert manifest["segments"]["per_source"] == {"syn": 14}
    assert manifest["segments"]["params"]["sample_rate"] == SAMPLE_RATE


def test_segment_rows_pure_core_matches_audio_functions() -> None:
    x = np.concatenate([np.zeros(SEGMENT_FRAMES, np.float32), 0.5 * np.ones(SAMPLE_RATE, np.float32)])
    x[SEGMENT_FRAMES:] *= np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    rows, silent = segment_rows(x, "s", "p.wav", "abc", ["L"])
    assert silent == 1 and len(rows) == 1
    assert rows[0]["segment"] == 1 and rows[0]["num_frames"] == SAMPLE_RATE and rows[0]["labels"] == ["L"]
    assert schema.table(rows, schema.POOL_SEGMENTS).num_rows == 1


def test_process_is_pure_and_repeatable(corpus: Path) -> None:
    stage = PoolSegmentsStage({"syn": str(corpus)}, files_per_shard=3)
    stage.setup()
    shard = Shard(0, (("syn", "tones/d_22k_stereo.ogg"), ("syn", "bad/text.wav")))
    calls: list[int] = []
    a = stage.process(shard, calls.append)
    b = stage.process(shard)
    assert a.tables["segments"].equals(b.tables["segments"]) and a.tables["errors"].equals(b.tables["errors"])
    assert calls == [1, 1] and a.items == 2 and a.errors == {"unsupported_format": 1}


@pytest.mark.parametrize("setup", ["missing", "empty", "bad_name"])
def test_roots_that_cannot_work_are_refused(tmp_path: Path, setup: str) -> None:
    if setup == "missing":
        with pytest.raises(PoolInputError, match="is not a folder"):
            PoolSegmentsStage({"x": str(tmp_path / "nope")}).plan()
    elif setup == "empty":
        (tmp_path / "readme.txt").write_text("no audio here")
        with pytest.raises(PoolInputError, match="no audio files"):
            PoolSegmentsStage({"x": str(tmp_path)}).plan()
    else:
        with pytest.raises(PoolInputError, match="collection name"):
            PoolSegmentsStage({"a/b": str(tmp_path)})


def test_long_files_are_measured_in_bounded_passes_with_the_same_result() -> None:
    """A 6-minute file spans two passes of 64 windows; each window reads what pyloudnorm reads alone."""
    from sonify_toolkit import audio

    rng = np.random.default_rng(3)
    x = rng.standard_normal(73 * SEGMENT_FRAMES - 500) * np.repeat(rng.uniform(0, 0.3, 73), SEGMENT_FRAMES)[:-500]
    x = x.astype(np.float32)
    rows, silent = segment_rows(x, "s", "long.wav", "abc", [])
    assert (
        silent == 0
        and [r["segment"] for r in rows] == list(range(73))
        and rows[-1]["num_frames"] == SEGMENT_FRAMES - 500
    )
    for r in (rows[0], rows[63], rows[64], rows[72]):
        win, _ = audio.window(x, r["segment"])
        assert r["lufs"] == pytest.approx(audio.loudness(win), abs=1e-9)
        assert r["peak"] == pytest.approx(audio.peak(win))


@pytest.mark.parametrize(
    ("sr", "channels", "subtype"), [(44_100, 2, "PCM_24"), (48_000, 1, "FLOAT"), (8_000, 1, "PCM_16")]
)
def test_a_minus_23_lufs_sine_file_reads_minus_23(tmp_path: Path, sr: int, channels: int, subtype: str) -> None:
    """End to end through decode, downmix and resampling: a 1 kHz sine at -23 LUFS reads -23.0 +- 0.1.

    The sine's level is set at 48 kHz, the rate BS.1770 is specified at (K-weighting designed for
    8 kHz warps near its Nyquist, so "-23 LUFS" must not be measured there)."""
    import soundfile as sf

    from sonify_toolkit import audio

    ref = np.sin(2 * np.pi * 1000 * np.arange(10 * 48_000) / 48_000).astype(np.float32)
    gain = audio.db_to_gain(-23.0 - audio.loudness(ref, 48_000))
    x = (gain * np.sin(2 * np.pi * 1000 * np.arange(10 * sr) / sr)).astype(np.float32)
    sf.write(tmp_path / "ref.wav", np.stack([x] * channels, axis=1) if channels > 1 else x, sr, subtype=subtype)
    stage = PoolSegmentsStage({"ref": str(tmp_path)})
    stage.setup()
    rows = stage.process(Shard(0, (("ref", "ref.wav"),))).tables["segments"].to_pylist()
    assert [r["segment"] for r in rows] == [0, 1]
    for r in rows:
        assert r["lufs"] == pytest.approx(-23.0, abs=0.1)
