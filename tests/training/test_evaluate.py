"""evaluate: Fréchet distance against closed forms; AIS (three forms) and IIS on tiny CLIP/Wav2CLIP."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sonify_toolkit import audio as au
from tests.training.conftest import tone
from training_recipe.evaluate import (
    ClipImages,
    EvaluateError,
    Wav2ClipAudio,
    evaluate,
    evaluate_triples,
    fid,
    frechet_distance,
    paired_cosine,
    win_rate,
    zscore_cosine,
)


def test_frechet_distance_is_zero_for_identical_features() -> None:
    f = np.random.default_rng(0).standard_normal((200, 8))
    assert fid(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    s1, s2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.25, 1.0, 2.0, 3.0])
    # diagonal covariances: ||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2))
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-9)
    # a shared rotation leaves the distance unchanged (non-diagonal covariances)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    rot = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rot == pytest.approx(closed, rel=1e-6)
    # and estimated from samples of the two Gaussians
    a = mu1 + rng.standard_normal((40_000, 4)) * np.sqrt(s1)
    b = mu2 + rng.standard_normal((40_000, 4)) * np.sqrt(s2)
    assert fid(a, b) == pytest.approx(closed, rel=0.05)


def test_ais_forms_on_known_embeddings() -> None:
    a = np.eye(4)
    b = np.eye(4) + 0.1  # each row closest to its own partner
    assert paired_cosine(a, b).shape == (4,)
    np.testing.assert_allclose(win_rate(a, b), 1.0)
    np.testing.assert_allclose(win_rate(a, b[::-1]), [1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert (zscore_cosine(a, b) > 0).all() and (zscore_cosine(a, b[[1, 0, 3, 2]]) < 0).all()


def _images(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def test_ais_iis_fid_on_tiny_models(tiny_clip, tiny_wav2clip) -> None:
    clip, w2c = ClipImages(str(tiny_clip), "cpu"), Wav2ClipAudio(str(tiny_wav2clip), "cpu")
    audio = [tone(220.0 * (i + 1), 1.0, noise=0.05, seed=i) for i in range(4)]
    refs, gens = _images(4, 0), _images(4, 1)
    assert w2c.embed(audio).shape == (4, 16) and clip.embed(gens).shape == (4, 16)
    m = evaluate_triples(audio, refs, gens, clip, w2c)
    assert set(m) == {"count", "iis", "ais_cosine", "ais_win_rate", "ais_zscore", "ais_reference_cosine", "fid_clip"}
    assert -1 <= m["iis"] <= 1 and -1 <= m["ais_cosine"] <= 1 and 0 <= m["ais_win_rate"] <= 1
    assert m["fid_clip"] >= 0
    same = evaluate_triples(audio, refs, refs, clip, None)
    assert same["iis"] == pytest.approx(1.0, abs=1e-5) and same["fid_clip"] == pytest.approx(0.0, abs=1e-6)


def _bench(tmp_path, n: int = 3):
    """A benchmark folder (benchmarks' layout) and a folder of generated images named ID.png."""
    (tmp_path / "bench" / "images").mkdir(parents=True)
    (tmp_path / "bench" / "audio").mkdir()
    (tmp_path / "gen").mkdir()
    rows = []
    for i, (ref, gen) in enumerate(zip(_images(n, 0), _images(n, 1), strict=True)):
        ref.save(tmp_path / "bench" / "images" / f"v{i}.jpg")
        gen.save(tmp_path / "gen" / f"v{i}.png")
        (tmp_path / "bench" / "audio" / f"v{i}.flac").write_bytes(au.encode(tone(300.0 * (i + 1), 1.0)))
        rows.append({"id": f"v{i}", "image": f"images/v{i}.jpg", "audio": f"audio/v{i}.flac"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bench" / "pairs.parquet")


def test_evaluate_command_reads_benchmark_pairs(tiny_clip, tiny_wav2clip, tmp_path) -> None:
    _bench(tmp_path)
    out = tmp_path / "metrics.json"
    evaluate(
        pairs=tmp_path / "bench" / "pairs.parquet",
        generated=tmp_path / "gen",
        clip=str(tiny_clip),
        wav2clip=str(tiny_wav2clip),
        fid_features="clip",
        device="cpu",
        out=out,
    )
    metrics = json.loads(out.read_text())
    assert metrics["count"] == 3 and {"iis", "ais_cosine", "ais_win_rate", "ais_zscore", "fid_clip"} <= set(metrics)
    assert metrics["missing"] == 0 and "ais" not in metrics


def test_evaluate_without_an_audio_encoder_refuses_in_one_line(tiny_clip, tmp_path, capsys) -> None:
    import typer

    _bench(tmp_path)
    with pytest.raises(typer.Exit) as refused:
        evaluate(pairs=tmp_path / "bench" / "pairs.parquet", generated=tmp_path / "gen", clip=str(tiny_clip))
    assert refused.value.exit_code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AIS needs an audio encoder: --wav2clip wav2clip" in err[0] and "--no-ais" in err[0]


def test_evaluate_with_no_ais_flags_it_in_the_json_and_on_stderr(tiny_clip, tmp_path, capsys) -> None:
    _bench(tmp_path)
    out = tmp_path / "metrics.json"
    evaluate(
        pairs=tmp_path / "bench",
        generated=tmp_path / "gen",
        clip=str(tiny_clip),
        no_ais=True,
        fid_features="clip",
        device="cpu",
        out=out,
    )
    metrics = json.loads(out.read_text())
    assert metrics["ais"] is None and "no audio encoder" in metrics["ais_reason"]
    assert not any(k.startswith("ais_") and k != "ais_reason" for k in metrics)
    assert "WARNING: AIS not computed: no audio encoder" in capsys.readouterr().err


def test_a_baseline_folder_is_scored_like_our_outputs(tiny_clip, tiny_wav2clip, tmp_path, capsys) -> None:
    """A baseline's images (WebP here, one pair missing) go through the same code as ours."""
    _bench(tmp_path, n=4)
    baseline = tmp_path / "sound2scene"
    baseline.mkdir()
    for i in range(3):  # v3 was not generated by the baseline
        Image.open(tmp_path / "gen" / f"v{i}.png").save(baseline / f"v{i}.webp", lossless=True)
    common = {"pairs": tmp_path / "bench" / "pairs.parquet", "clip": str(tiny_clip), "wav2clip": str(tiny_wav2clip)}
    evaluate(generated=baseline, fid_features="clip", device="cpu", out=tmp_path / "baseline.json", **common)
    assert "1 of 4 pairs have no image" in capsys.readouterr().err
    ours = tmp_path / "ours"
    ours.mkdir()
    for i in range(3):
        (ours / f"v{i}.png").write_bytes((tmp_path / "gen" / f"v{i}.png").read_bytes())
    evaluate(generated=ours, fid_features="clip", device="cpu", out=tmp_path / "ours.json", **common)
    b, o = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("baseline", "ours"))
    assert b["count"] == o["count"] == 3 and b["missing"] == o["missing"] == 1
    for key in ("iis", "ais_cosine", "ais_win_rate", "ais_zscore", "fid_clip"):  # same pixels: same scores
        assert b[key] == pytest.approx(o[key], rel=1e-9), key


def test_an_unknown_fid_feature_is_a_one_line_error(tmp_path, capsys) -> None:
    import typer

    with pytest.raises(typer.Exit) as exit_info:  # was: silently reported CLIP features for a typo
        evaluate(pairs=tmp_path / "pairs.parquet", generated=tmp_path, fid_features="Inception", device="cpu")
    assert exit_info.value.exit_code == 2
    assert "sonify evaluate: error: --fid-features must be inception or clip" in capsys.readouterr().err


def test_wav2clip_state_dict_without_the_package_says_what_to_install(tmp_path) -> None:
    import importlib.util

    import torch

    if importlib.util.find_spec("wav2clip") is not None:
        pytest.skip("wav2clip is installed here: the error path does not apply")
    path = tmp_path / "Wav2CLIP.pt"
    torch.save({"state_dict": {}}, path)  # a plain checkpoint, not TorchScript
    with pytest.raises(EvaluateError, match="pip install wav2clip"):
        Wav2ClipAudio(str(path), "cpu")
