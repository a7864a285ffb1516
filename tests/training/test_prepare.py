"""prepare: AST sequences and VAE latents for the pairs found locally, error rows for the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sonify_toolkit import schema
from sonify_toolkit.runner import run_stage
from sonify_toolkit.shards import StageDir
from tests.training.conftest import tiny_prepare_stage
from training_recipe.features import build_stage


def test_prepare_encodes_found_pairs_and_records_missing_image(features) -> None:
    out, summary = features
    assert summary.finalized and summary.shards_total == 2
    assert summary.errors == {"image_missing": 1}
    sd = StageDir(out)
    table = sd.read_table("")
    assert table["pair_id"].to_pylist() == [f"sa_{i}|tiny-vlm" for i in range(4)]  # sa_3 came from the tar
    errors = sd.read_table("errors", schema.ERRORS)
    assert errors["item"].to_pylist() == ["sa_4|tiny-vlm"]
    audio, latents = sd.read_array("audio"), sd.read_array("latents")
    assert audio.dtype == np.float16 and audio.shape == (4, 101, 32)  # (time steps, AST hidden)
    assert latents.dtype == np.float16 and latents.shape == (4, 4, 16, 16)
    assert np.isfinite(audio.astype(np.float32)).all() and np.isfinite(latents.astype(np.float32)).all()
    assert not np.allclose(audio[0], audio[1])  # different sounds, different features
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["audio_shape"] == [101, 32] and manifest["latent_shape"] == [4, 16, 16]
    assert manifest["count"] == 4 and manifest["resolution"] == 32


def test_prepare_resumes_and_is_shard_count_independent(features, release, tiny_pixart, tiny_ast, tmp_path) -> None:
    out, _ = features
    again = run_stage(tiny_prepare_stage(release, tiny_pixart, tiny_ast), out, show_progress=False)
    assert again.shards_skipped == 2 and again.shards_done_now == 0
    one = run_stage(tiny_prepare_stage(release, tiny_pixart, tiny_ast, shard_size=10), tmp_path, show_progress=False)
    assert one.shards_total == 1
    np.testing.assert_array_equal(StageDir(tmp_path).read_array("audio"), StageDir(out).read_array("audio"))
    # conv kernels round differently by batch composition: equal to fp16 precision, byte-identical per plan
    np.testing.assert_allclose(
        StageDir(tmp_path).read_array("latents").astype(np.float32),
        StageDir(out).read_array("latents").astype(np.float32),
        atol=2e-4,
    )


def test_prepare_renders_on_the_fly_from_sound_collections(release, tiny_pixart, tiny_ast, tmp_path) -> None:
    stage = build_stage(
        str(release["release"]),
        release["images"],
        sources={"x": str(release["collection"])},
        base_model=str(tiny_pixart),
        ast_model=str(tiny_ast),
        resolution=32,
        device="cpu",
        batch_size=4,
    )
    summary = run_stage(stage, tmp_path, show_progress=False)
    assert summary.errors == {"image_missing": 1, "audio_unreadable": 1}  # pair 1's sound file is missing
    sd = StageDir(tmp_path)
    assert sd.read_table("")["pair_id"].to_pylist() == ["sa_0|tiny-vlm", "sa_2|tiny-vlm", "sa_3|tiny-vlm"]
    detail = sd.read_table("errors", schema.ERRORS).to_pylist()
    assert any(r["item"] == "sa_1|tiny-vlm" and "missing" in r["detail"].lower() for r in detail), detail
    assert sd.read_array("audio").shape == (3, 101, 32)


def test_prepare_command_needs_exactly_one_audio_input(release, tmp_path, capsys) -> None:
    import typer

    from training_recipe.prepare import prepare

    with pytest.raises(typer.Exit):
        prepare(dataset=str(release["release"]), images=release["images"], out=tmp_path, audio_dir=None, source=None)
    assert "either --audio" in capsys.readouterr().err


def test_prepare_refuses_an_empty_plan(release) -> None:
    with pytest.raises(ValueError, match="no pairs to prepare"):
        build_stage(str(release["release"]), release["images"], audio_dir=release["audio"], limit=0)
