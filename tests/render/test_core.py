"""The mixing core and the per-source/per-pair functions: loudness, clipping, integrity, cache."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit import audio
from sonify_toolkit.fileio import sha256_file
from sonify_toolkit.settings import SEGMENT_FRAMES
from sonify_toolkit.soundtrack import (
    LOUDNESS_BATCH,
    FileCache,
    PairRenderError,
    SourceError,
    mix_loudness,
    mix_pair,
    render_pair,
    render_source,
    reuse_order,
)
from sonify_toolkit.stages.render import RenderStage, audio_relpath

from .conftest import SR_FILES, pair, write_pairs


@pytest.mark.parametrize("path", sorted(SR_FILES))
@pytest.mark.parametrize("target", [-26.0, -23.0, -20.5])
def test_each_source_alone_sits_at_its_target(roots, make_source, path, target):
    for collection in ("alpha", "beta"):
        src = make_source(collection, path, segment=1, target=target)
        win = render_source(roots, src)
        assert win.shape == (SEGMENT_FRAMES,) and win.dtype == np.float32
        assert abs(audio.loudness(win) - target) < 0.1


def test_single_source_pair_sits_at_target_and_unclipped(roots, make_source):
    mixed, info = render_pair(pair("p|v", [make_source("alpha", "noise/pink.flac", 2, -24.5)]), roots)
    assert info["mix_gain_db"] == 0.0
    assert abs(info["lufs"] - (-24.5)) < 0.1 and abs(audio.loudness(mixed) + 24.5) < 0.1
    # the encoded 16-bit FLAC still measures at the target
    decoded = audio.load_standard(audio.encode(mixed))
    assert decoded.shape == (SEGMENT_FRAMES,) and abs(audio.loudness(decoded) + 24.5) < 0.1


def test_mix_is_the_sum_of_normalised_sources(roots, make_source):
    sources = [make_source("alpha", "tones/a440.wav", 0, -25), make_source("beta", "noise/white.wav", 1, -24)]
    mixed, info = render_pair(pair("p|v", sources), roots)
    expected = render_source(roots, sources[0]) + render_source(roots, sources[1])
    assert info["mix_gain_db"] == 0.0
    np.testing.assert_allclose(mixed, expected, atol=1e-7)
    assert info["source_gains_db"] == pytest.approx([s["target_lufs"] - s["clip_lufs"] for s in sources])


def test_clipping_mix_is_scaled_down_and_recorded(roots, make_source):
    loud = [make_source(c, p, 0, -3.0) for c, p in [("alpha", "tones/a440.wav"), ("alpha", "tones/b1k.flac")]]
    loud.append(make_source("beta", "noise/pink.flac", 0, -3.0))
    raw_sum = sum(render_source(roots, s) for s in loud)
    assert audio.peak(raw_sum) > 1.0  # the test is about a mix that would clip
    mixed, info = render_pair(pair("loud|v", loud), roots)
    assert info["mix_gain_db"] < 0
    assert info["peak"] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(mixed, raw_sum * audio.db_to_gain(info["mix_gain_db"]), atol=1e-6)
    # the pure core alone agrees
    core, gain = audio.mix([render_source(roots, s) for s in loud])
    assert gain == pytest.approx(info["mix_gain_db"]) and np.array_equal(core, mixed)


def _reason(roots, src) -> str:
    with pytest.raises(PairRenderError) as exc:
        render_pair(pair("bad|v", [src]), roots)
    err = exc.value
    assert "bad|v" in str(err) and "source 0" in str(err)  # names the pair and the source
    return err.reason


def test_tampered_rows_are_refused_without_reading_outside(roots, make_source, tmp_path):
    outside = Path(roots["alpha"]).parent / "outside.wav"
    good_sha = sha256_file(outside)
    base = make_source("alpha", "tones/b1k.flac")
    # every row below would render if the path were followed: right sha, real audio
    assert _reason(roots, base | {"path": "../outside.wav", "source_sha256": good_sha}) == "unsafe_path"
    assert _reason(roots, base | {"path": "tones/../../outside.wav", "source_sha256": good_sha}) == "unsafe_path"
    assert _reason(roots, base | {"path": str(outside), "source_sha256": good_sha}) == "unsafe_path"
    assert _reason(roots, base | {"path": "link.wav", "source_sha256": good_sha}) == "unsafe_path"
    assert _reason(roots, base | {"source_sha256": "0" * 64}) == "sha256_mismatch"
    assert _reason(roots, base | {"path": "tones/nope.flac"}) == "missing_file"
    assert _reason(roots, base | {"segment": 2}) == "window_past_end"  # 7-s file: segments 0 and 1
    assert _reason(roots, base | {"source": "gamma"}) == "unknown_collection"
    assert _reason(roots, base | {"clip_lufs": float("-inf")}) == "bad_source_row"
    assert _reason(roots, base | {"segment": None}) == "bad_source_row"
    assert _reason(roots, base | {"segment": "1; rm"}) == "bad_source_row"  # a release column of another type
    assert _reason(roots, base | {"target_lufs": "loud"}) == "bad_source_row"
    # --no-verify skips only the checksum
    render_source(roots, base | {"source_sha256": "0" * 64}, verify=False)
    with pytest.raises(SourceError, match="starts past the end"):
        render_source(roots, base | {"segment": 5}, verify=False)


def test_every_failing_source_is_listed(roots, make_source):
    srcs = [
        make_source("alpha", "tones/b1k.flac"),
        make_source("alpha", "tones/b1k.flac") | {"path": "missing.wav"},
        make_source("beta", "noise/white.wav", 0, source_sha256="f" * 64),
    ]
    with pytest.raises(PairRenderError) as exc:
        render_pair(pair("x|v", srcs), roots)
    assert [(e.index, e.reason, e.collection) for e in exc.value.errors] == [
        (1, "missing_file", "alpha"),
        (2, "sha256_mismatch", "beta"),
    ]


def test_cache_reads_windows_then_whole_files_and_stays_bounded(roots, make_source, good_pairs):
    cache = FileCache()
    plain = [render_pair(p, roots)[0] for p in good_pairs]
    cached = [render_pair(good_pairs[i], roots, cache=cache)[0] for i in reuse_order(good_pairs)]
    order = reuse_order(good_pairs)
    for k, i in enumerate(order):
        assert np.array_equal(cached[k], plain[i])  # the cache changes nothing but speed
    used = Counter((s["source"], s["path"]) for p in good_pairs for s in p["sources"])
    stats = cache.stats
    # every use is a window read, a whole-file decode or a cache hit; no file is decoded whole twice
    assert stats["windows_decoded"] + stats["files_decoded"] + stats["cache_hits"] == sum(used.values())
    assert stats["files_decoded"] <= sum(n > 1 for n in used.values()) and stats["windows_decoded"] >= len(used)
    assert len(cache.entries) == stats["files_decoded"] > 0
    small = FileCache(max_bytes=16_000 * 13 * 4)  # room for one 12-s file
    for i in order + order:
        assert np.array_equal(render_pair(good_pairs[i], roots, cache=small)[0], plain[i])
    assert small.size <= small.max_bytes and small.stats["cache_evictions"] > 0


def test_reuse_order_groups_pairs_by_shared_file(make_source):
    a, b, c = (make_source("alpha", p) for p in ("tones/a440.wav", "tones/b1k.flac", "noise/pink.flac"))
    pairs = [pair("0|v", [b]), pair("1|v", [a, c]), pair("2|v", [c]), pair("3|v", [a]), pair("4|v", [b, c])]
    order = reuse_order(pairs)
    assert sorted(order) == list(range(5))
    with_c = [k for k, i in enumerate(order) if i in (1, 2, 4)]  # c is the most used file: one stretch
    assert with_c == list(range(with_c[0], with_c[0] + 3))


def test_audio_names_are_safe_and_distinct():
    a, b = audio_relpath("../../etc/passwd|v", "flac"), audio_relpath("__etc_passwd|v", "flac")
    assert a != b and ".." not in a and a.startswith("audio/") and a.count("/") == 2


def test_mixes_measured_in_batches_carry_the_bits_each_gets_alone(roots, good_pairs):
    """The stage measures LOUDNESS_BATCH mixes per call; each mix's lufs must be what it measures alone."""
    mixes, alone = [], []
    for p in good_pairs * 2:  # 20 mixes: more than one batch, the last one partial
        mixed, info = mix_pair(p, roots)
        assert "lufs" not in info and info["peak"] == float(np.max(np.abs(mixed)))
        mixes.append(mixed)
        alone.append(render_pair(p, roots)[1]["lufs"])
    assert len(mixes) > LOUDNESS_BATCH
    assert mix_loudness(mixes) == alone  # exact: the same float64 bits
    assert abs(alone[0] - audio.loudness(mixes[0])) < 1e-9  # and pyloudnorm's measurement
    assert mix_loudness([np.zeros(SEGMENT_FRAMES, np.float32)]) == [None]  # digital silence has no loudness


def test_mix_adds_sources_as_a_stacked_sum_would():
    rng = np.random.default_rng(3)
    for k in (1, 2, 3, 5):
        sources = [(rng.standard_normal(SEGMENT_FRAMES) * rng.uniform(0.05, 2)).astype(np.float32) for _ in range(k)]
        mixed, gain_db = audio.mix(sources, peak_ceiling=1e9)
        stacked = np.sum(np.stack(sources), axis=0, dtype=np.float32)
        assert gain_db == 0.0 and mixed.tobytes() == stacked.tobytes()
        assert all(s.flags.writeable for s in sources) and not np.shares_memory(mixed, sources[0])


def test_stage_cache_is_per_worker_and_closed_by_teardown(roots, good_pairs, tmp_path):
    stage = RenderStage(str(write_pairs(tmp_path / "pairs", good_pairs)), dict(roots), out=str(tmp_path / "out"))
    stage.setup()
    assert stage._cache is not None
    stage._cache.get(stage._cache.resolve(roots, good_pairs[0]["sources"][0]))
    assert stage._cache.size > 0
    shipped = pickle.loads(pickle.dumps(stage))  # what an executor sends a worker: no decoded audio
    assert shipped._cache is None and shipped._plan is None
    cache = stage._cache
    stage.teardown()
    assert stage._cache is None and cache.size == 0 and not cache.entries
