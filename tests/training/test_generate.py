"""generate: the ablation conditions, and images through PixArt's own pipeline into a labelled grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonify_toolkit import audio as au
from sonify_toolkit.errors import InputError
from tests.training.conftest import tone
from training_recipe.generate import arrange, conditions, generate, reverberate

FAST_CPU = {"guidance": 2.0, "steps": 2, "device": "cpu", "dtype": "fp32"}  # the tiny checkpoint, 2 steps


def test_arrange_mix_and_sequence() -> None:
    a, b = tone(440, 1.0), tone(660, 0.5)
    mixed = arrange([a, b], [1.0, 0.5], "mix")
    assert mixed.shape == a.shape
    np.testing.assert_allclose(mixed[: len(b)], a[: len(b)] + 0.5 * b, atol=1e-6)
    seq = arrange([a, b], [1.0, 1.0], "sequence")
    assert seq.shape == (len(a) + len(b),)
    with pytest.raises(InputError, match="mix or sequence"):
        arrange([a], [1.0], "stack")


def test_conditions_sweep_solo_reverb() -> None:
    a, b = tone(440, 1.0), tone(660, 1.0)
    ir = np.zeros(1600, np.float32)
    ir[0], ir[800] = 1.0, 0.5
    rows = conditions(["dog", "siren"], [a, b], sweep_db=[-20, 0], solo=True, reverbs=[("church", ir)])
    labels = [r.label for r in rows]
    assert labels[:4] == ["dog", "siren", "dog -20 dB + siren", "dog +0 dB + siren"]
    assert len(rows) == 8 and labels[-1] == "dog +0 dB + siren @ church"
    quiet, loud = rows[2].wave, rows[3].wave
    assert au.loudness(quiet) < au.loudness(loud)
    wet = reverberate(a, ir)
    assert len(wet) == len(a) + len(ir) - 1 and abs(au.loudness(wet) - au.loudness(a)) < 0.5


def test_generate_writes_a_labelled_grid(checkpoint: Path, tmp_path: Path) -> None:
    files = []
    for name, f in (("low", 220.0), ("high", 1760.0)):
        p = tmp_path / f"{name}.flac"
        p.write_bytes(au.encode(tone(f)))
        files.append(p)
    out = tmp_path / "grid.png"
    generate(
        checkpoint=checkpoint,
        audio_files=files,
        out=out,
        arrange_mode="sequence",
        solo=True,
        seeds=[0, 1],
        save_each=True,
        **FAST_CPU,
    )
    grid = Image.open(out)
    # 3 rows (low, high, low -> high) x 2 seeds of 32 px, plus the label column and header
    assert grid.size == (160 + 2 * 32, 20 + 3 * 32)
    singles = sorted(tmp_path.glob("grid-r*-seed*.png"))
    assert len(singles) == 6
    a, b = (np.asarray(Image.open(p), np.float32) for p in singles[:2])  # same condition, seeds 0 and 1
    assert a.shape == (32, 32, 3) and not np.array_equal(a, b)


def test_generate_for_benchmark_pairs(checkpoint: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(3):
        (tmp_path / "audio" / f"v{i}.flac").write_bytes(au.encode(tone(300.0 * (i + 1), 2.0)))
        rows.append({"id": f"v{i}", "image": f"images/v{i}.jpg", "audio": f"audio/v{i}.flac"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    generate(checkpoint=checkpoint, pairs=tmp_path / "pairs.parquet", out_dir=tmp_path / "gen", **FAST_CPU)
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["v0.png", "v1.png", "v2.png"]
    assert Image.open(tmp_path / "gen" / "v0.png").size == (32, 32)


def test_generate_draws_held_out_pairs_from_the_validation_split(checkpoint, validation_features, tmp_path) -> None:
    out = tmp_path / "held_out.png"
    generate(checkpoint=checkpoint, features=validation_features, out=out, seeds=[0, 1], count=8, **FAST_CPU)
    # one held-out pair (sa_3) x (its real image + 2 seeds), label column and header
    assert Image.open(out).size == (160 + 3 * 32, 20 + 32)


def test_generate_refuses_training_clips_when_the_release_holds_some_out(checkpoint, features, tmp_path, capsys):
    import json

    import typer

    out, _ = features
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["split"] == "train"
    held_back = tmp_path / "train_features"
    import shutil

    shutil.copytree(out, held_back)
    (held_back / "features.json").write_text(json.dumps({**manifest, "release_splits": ["train", "validation"]}))
    with pytest.raises(typer.Exit) as refused:
        generate(checkpoint=checkpoint, features=held_back, out=tmp_path / "x.png", **FAST_CPU)
    assert refused.value.exit_code == 2
    assert "holds the train split: prepare the held-out images with --split validation" in capsys.readouterr().err
    generate(checkpoint=checkpoint, features=out, out=tmp_path / "train.png", count=2, **FAST_CPU)  # no validation
    assert "the release has no validation split" in capsys.readouterr().err


def test_concepts_find_the_pool_clip_clap_ranks_first(clap_pool, tiny_clap) -> None:
    from sonify_toolkit.models.clap import ClapEncoder
    from sonify_toolkit.pool_files import load_pool
    from training_recipe.pool_sources import concept_sources

    texts = ["a dog barking", "rain on a roof"]
    found = concept_sources(clap_pool, texts, device="cpu")
    pool = load_pool(clap_pool)
    sims = ClapEncoder(str(tiny_clap), device="cpu").embed_text(texts) @ np.asarray(pool.embeddings).T
    best = [pool.segments.column("clip_id")[int(i)].as_py() for i in sims.argmax(axis=1)]
    assert [s.clip_id for s in found] == best
    assert all(len(s.wave) == 5 * 16_000 and np.abs(s.wave).max() > 0 for s in found)
    second = concept_sources(clap_pool, texts[:1], device="cpu", rank=1)[0]
    assert second.clip_id == pool.segments.column("clip_id")[int(np.argsort(-sims[0])[1])].as_py()


def test_generate_mixes_sources_drawn_from_the_pool_by_concept(checkpoint, clap_pool, tmp_path, capsys) -> None:
    out = tmp_path / "fig4.png"
    generate(checkpoint=checkpoint, concepts=["cows", "police siren"], pool=clap_pool, out=out, solo=True, **FAST_CPU)
    assert Image.open(out).size == (160 + 32, 20 + 3 * 32)  # cows, police siren, cows + police siren
    err = capsys.readouterr().err
    assert "'cows' -> " in err and "'police siren' -> " in err  # which clip each concept found


def test_a_concept_without_a_pool_is_a_one_line_error(checkpoint, tmp_path, capsys) -> None:
    import typer

    with pytest.raises(typer.Exit) as refused:
        generate(checkpoint=checkpoint, concepts=["cows"], out=tmp_path / "x.png", **FAST_CPU)
    assert refused.value.exit_code == 2 and "--concept needs --pool" in capsys.readouterr().err


def _cli(*args: str):
    """`python -m training_recipe.generate ARGS` through Typer, as a user runs it."""
    import typer
    from typer.testing import CliRunner

    command = typer.Typer()
    command.command()(generate)
    return CliRunner().invoke(command, list(args))


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--arrange", "stack", "mix"), ("--dtype", "fp64", "fp32"), ("--device", "gpu", "cuda")],
)
def test_a_value_outside_a_choice_is_refused_in_one_line(checkpoint, tmp_path, option, value, named) -> None:
    result = _cli("--checkpoint", str(checkpoint), "--audio", str(tmp_path / "x.wav"), option, value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert value in result.output and named in result.output  # what was given and what is accepted


def test_an_ast_of_another_shape_than_the_checkpoint_is_one_line(checkpoint, tmp_path) -> None:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    other = tmp_path / "ast16"  # the tiny AST's patch grid with 16-d tokens instead of 32-d
    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ASTModel(config).save_pretrained(other)
    ASTFeatureExtractor(max_length=1024, num_mel_bins=128, sampling_rate=16000).save_pretrained(other)
    wav = tmp_path / "tone.wav"
    wav.write_bytes(au.encode(tone(440, 1.0), fmt="wav"))
    result = _cli("--checkpoint", str(checkpoint), "--audio", str(wav), "--ast", str(other), "--device", "cpu")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]  # beside loading bars
    assert "Traceback" not in result.output and len(errors) == 1
    assert "the checkpoint was trained on" in errors[0] and "--ast" in errors[0]


def test_a_folder_that_is_no_checkpoint_is_one_line(tmp_path) -> None:
    wav = tmp_path / "tone.wav"
    wav.write_bytes(au.encode(tone(440, 1.0), fmt="wav"))
    result = _cli("--checkpoint", str(tmp_path), "--audio", str(wav), "--device", "cpu")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not an exported checkpoint" in result.output


def test_a_grid_of_nothing_is_an_input_error() -> None:
    from training_recipe.pipeline import image_grid

    with pytest.raises(InputError, match="no images for the grid"):
        image_grid([], cols=2)
