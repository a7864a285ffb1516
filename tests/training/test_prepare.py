"""prepare: AST sequences and VAE latents for the pairs found locally, error rows for the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sonify_toolkit import schema
from sonify_toolkit.errors import InputError
from sonify_toolkit.runner import run_stage
from sonify_toolkit.shards import StageDir
from tests.training.conftest import TRAIN_IDS, VALIDATION_IDS, tiny_prepare_stage
from training_recipe import data
from training_recipe.features import build_stage


def _split_stage(split_release, release, tiny_pixart, tiny_ast, split: str, tmp_path):
    return build_stage(
        str(split_release),
        release["images"],
        release_audio=True,
        split=split,
        cache_dir=str(tmp_path / "hf-cache"),
        base_model=str(tiny_pixart),
        ast_model=str(tiny_ast),
        resolution=32,
        device="cpu",
        batch_size=2,
    )


def test_prepare_reads_each_split_of_a_published_release_through_load_dataset(
    split_release, release, tiny_pixart, tiny_ast, tmp_path
) -> None:
    assert data.release_splits(str(split_release)) == ["train", "validation"]
    assert data.release_splits(str(split_release), data.RENDERED_CONFIG) == ["train", "validation"]
    stage = _split_stage(split_release, release, tiny_pixart, tiny_ast, "train", tmp_path)
    train = run_stage(stage, tmp_path / "t", show_progress=False)
    assert train.errors == {"audio_missing": 1}  # pair 1's mix is not in the rendered_audio config
    assert StageDir(tmp_path / "t").read_table("")["pair_id"].to_pylist() == ["sa_0|tiny-vlm", "sa_2|tiny-vlm"]
    val = run_stage(
        _split_stage(split_release, release, tiny_pixart, tiny_ast, "validation", tmp_path),
        tmp_path / "v",
        show_progress=False,
    )
    assert val.errors == {"image_missing": 1}
    assert StageDir(tmp_path / "v").read_table("")["pair_id"].to_pylist() == ["sa_3|tiny-vlm"]
    manifest = json.loads((tmp_path / "v" / "features.json").read_text())
    assert manifest["split"] == "validation" and manifest["release_splits"] == ["train", "validation"]
    # the mixes decoded from the release equal the same mixes read from a render folder, feature for feature
    stage = tiny_prepare_stage(release, tiny_pixart, tiny_ast, shard_size=10)
    rendered = run_stage(stage, tmp_path / "r", show_progress=False)
    assert rendered.finalized
    from_folder = StageDir(tmp_path / "r")
    rows = {pid: i for i, pid in enumerate(from_folder.read_table("")["pair_id"].to_pylist())}
    np.testing.assert_array_equal(
        StageDir(tmp_path / "v").read_array("audio")[0], from_folder.read_array("audio")[rows["sa_3|tiny-vlm"]]
    )


def test_the_audio_column_decodes_without_torchcodec(split_release, tmp_path) -> None:
    ds = data.load_release(str(split_release), data.RENDERED_CONFIG, "validation", cache_dir=str(tmp_path))
    cell = ds[0]["audio"]
    assert set(cell) == {"bytes", "path"}  # Audio(decode=False): datasets 5 would call torchcodec
    wave = data.decode_audio(cell)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 5 * 16_000
    streamed = data.load_release(str(split_release), data.RENDERED_CONFIG, "validation", streaming=True)
    np.testing.assert_array_equal(data.decode_audio(next(iter(streamed))["audio"]), wave)


def test_pairs_load_alike_from_a_folder_a_streamed_load_and_a_parquet_file(split_release, tmp_path) -> None:
    folder = data.load_pairs(str(split_release), "validation", cache_dir=str(tmp_path))
    assert folder.column("pair_id").to_pylist() == [f"sa_{i}|tiny-vlm" for i in VALIDATION_IDS]
    one_file = data.load_pairs(str(next((split_release / "data").glob("train-*.parquet"))), cache_dir=str(tmp_path))
    assert one_file.column("pair_id").to_pylist() == [f"sa_{i}|tiny-vlm" for i in TRAIN_IDS]
    streamed = data.load_release(str(split_release), split="validation", streaming=True)
    assert [r["pair_id"] for r in streamed] == folder.column("pair_id").to_pylist()


def test_a_missing_split_names_the_splits_there_are(release, tmp_path) -> None:
    assert data.release_splits(str(release["release"])) == ["train"]  # a release published without --holdout
    with pytest.raises(data.ReleaseError, match="has no split 'validation'; it has: train"):
        data.load_pairs(str(release["release"]), "validation", cache_dir=str(tmp_path))


def test_hub_names_in_both_forms() -> None:
    assert data.hub_name("hf://datasets/org/sonified") == "org/sonified"
    assert data.hub_name("hf://org/sonified") == "org/sonified"
    assert data.hub_name("org/sonified") is None and data.hub_name("/data/release") is None


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

    with pytest.raises(typer.Exit) as refused:
        prepare(dataset=str(release["release"]), images=release["images"], out=tmp_path, audio_dir=None, source=None)
    assert refused.value.exit_code == 2
    assert "give exactly one audio input: --rendered-audio, --audio" in capsys.readouterr().err
    with pytest.raises(typer.Exit):
        prepare(
            dataset=str(release["release"]),
            images=release["images"],
            out=tmp_path,
            audio_dir=release["audio"],
            rendered_audio=True,
        )


def test_prepare_refuses_an_empty_plan(release) -> None:
    with pytest.raises(InputError, match="no pairs to prepare"):
        build_stage(str(release["release"]), release["images"], audio_dir=release["audio"], limit=0)
