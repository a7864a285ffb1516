"""`sonify publish`: the release loads offline as declared, the card parses, the upload plan is exact."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from sonify_toolkit import schema
from sonify_toolkit.cli import app
from sonify_toolkit.stages.publish import PublishError, ReleaseSummary, build_release, write_parquet_shards
from sonify_toolkit.stats import RELEASE_MANIFEST
from tests.publish.synthetic import make_workdir, pairs_table


def test_load_dataset_round_trip_equals_pairs(workdir: Path, release: ReleaseSummary, tmp_path: Path) -> None:
    ds = datasets.load_dataset(str(release.folder), split="train", cache_dir=str(tmp_path))  # no stale global cache
    assert ds.features == schema.pairs_features()
    expected = pairs_table(workdir).to_pylist()
    assert len(expected) == 22
    got = ds.to_list()
    # float32 fields round-trip exactly: compare rows as stored
    assert got == expected


def test_rendered_config_holds_the_flac_mixes(workdir: Path, release: ReleaseSummary, tmp_path: Path) -> None:
    ds = datasets.load_dataset(str(release.folder), "rendered_audio", split="train", cache_dir=str(tmp_path))
    ds = ds.cast_column("audio", datasets.Audio(decode=False))  # decoding needs torchcodec; bytes are ours
    assert release.rendered_rows == len(ds) == 21  # one pair failed to render: not published
    row = ds[0]
    x, sr = sf.read(io.BytesIO(row["audio"]["bytes"]))
    assert sr == 16_000 and len(x) == 80_000
    assert row["pair_id"] == pairs_table(workdir).column("pair_id")[0].as_py()


def test_card_parses_with_hub_parser(release: ReleaseSummary) -> None:
    card = DatasetCard.load(release.folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other"
    assert data["size_categories"] == ["n<1K"]
    assert data["pretty_name"] == "pairs"
    assert {c["config_name"] for c in data["configs"]} == {"default", "rendered_audio"}
    default = next(i for i in data["dataset_info"] if i["config_name"] == "default")
    assert default["splits"][0]["num_examples"] == 22
    assert [f["name"] for f in default["features"]] == schema.PAIRS.names
    body = card.text
    for licence in ("SA-1B", "AudioSet", "FSD50K", "BBC Sound Effects"):
        assert licence in body
    assert "sonify render hf://sonify-test/pairs --source bbc_sfx=" in body
    assert "Seeing Sound" in body
    assert "SMOKE RUN" not in body
    # every parameter of the stage manifests is listed; plots referenced exist
    assert "```text\nList the sounding concepts.\n```" in body  # the prompt verbatim
    assert "| CLAP checkpoint | tiny-clap @ local |" in body
    assert "| pairs | top_k | 4 |" in body and "List the sounding concepts." in body and "tiny-clap" in body
    for line in body.splitlines():
        if line.startswith("![") and "(" in line:
            assert (release.folder / line.split("(")[1].rstrip(")")).is_file()
    meta = json.loads((release.folder / RELEASE_MANIFEST).read_text())
    assert meta["rows"] == 22 and "pairs" in meta["stages"]


def test_dry_run_lists_exactly_the_upload(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    result = CliRunner().invoke(
        app, ["publish", "--workdir", str(workdir), "--out", str(out), "--push-to-hub", "org/x", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    (out / ".cache" / "huggingface").mkdir(parents=True)  # upload state files are never uploaded
    (out / ".cache" / "huggingface" / "state.json").write_text("{}")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts)
    for f in files:
        assert f in result.output
    assert "dry run: nothing uploaded to org/x" in result.output
    assert "data/train-00000-of-00001.parquet" in files and "README.md" in files


def test_shards_respect_size_limit_and_order(workdir: Path, tmp_path: Path) -> None:
    table = pairs_table(workdir)
    paths = write_parquet_shards(table, tmp_path, max_bytes=table.nbytes // 4)
    assert len(paths) >= 4
    assert paths[0].name.endswith(f"-of-{len(paths):05d}.parquet")
    back = [r for p in paths for r in pq.read_table(p).to_pylist()]
    assert back == table.to_pylist()


def test_smoke_run_is_loud(tmp_path: Path) -> None:
    w = make_workdir(tmp_path, smoke_run=True, with_render=False)
    rel = build_release(w, tmp_path / "rel")
    card = DatasetCard.load(rel.folder / "README.md")
    assert "smoke-run" in card.data.tags
    assert card.data.pretty_name.startswith("SMOKE RUN")
    assert "THE PAIRINGS IN THIS DATASET MEAN NOTHING" in card.text


def test_refuses_unfinished_pairs_and_foreign_folder(tmp_path: Path) -> None:
    w = make_workdir(tmp_path, partial=True)
    with pytest.raises(PublishError, match=r"unfinished \(1/2 shards\)"):
        build_release(w, tmp_path / "rel")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    full = make_workdir(tmp_path / "b", with_render=False)
    with pytest.raises(PublishError, match="not a sonify release"):
        build_release(full, foreign)


def test_republish_is_byte_identical(workdir: Path, release: ReleaseSummary, tmp_path: Path) -> None:
    again = build_release(workdir, release.folder, repo_id="sonify-test/pairs", rendered=workdir / "render")
    assert again.files == release.files
    other = build_release(workdir, tmp_path / "rel", repo_id="sonify-test/pairs", rendered=workdir / "render")
    for path, _ in again.files:
        assert (release.folder / path).read_bytes() == (other.folder / path).read_bytes(), path


def test_push_offline_fails_in_one_line_after_building(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    result = CliRunner().invoke(app, ["publish", "--workdir", str(workdir), "--out", str(out), "--push-to-hub", "o/x"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("sonify publish: error:")
    assert (out / "README.md").is_file()  # the folder is there to upload later (or to inspect)


def test_card_leaks_no_local_roots(release: ReleaseSummary) -> None:
    text = (release.folder / "README.md").read_text() + (release.folder / RELEASE_MANIFEST).read_text()
    assert "/data/fsd50k" not in text


def test_rendered_shards_are_cut_by_audio_bytes_in_pair_order(workdir: Path, tmp_path: Path) -> None:
    flac = sorted((workdir / "render").rglob("*.flac"))
    limit = 3 * max(f.stat().st_size for f in flac)  # a few mixes per shard
    rel = build_release(workdir, tmp_path / "rel", rendered=workdir / "render", max_shard_bytes=limit)
    shards = sorted((rel.folder / "rendered").glob("train-*.parquet"))
    assert len(shards) >= 7 and all(s.name.endswith(f"-of-{len(shards):05d}.parquet") for s in shards)
    assert all(s.stat().st_size <= limit for s in shards)
    ds = datasets.load_dataset(str(rel.folder), "rendered_audio", split="train", cache_dir=str(tmp_path / "c"))
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    pair_order = pairs_table(workdir).column("pair_id").to_pylist()
    assert ds["pair_id"] == [p for p in pair_order if p in set(ds["pair_id"])] and len(ds) == 21


def test_a_publish_killed_half_way_is_replaced_by_the_next(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sonify_toolkit.stages.publish as publish

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "rel"
    with monkeypatch.context() as m:
        m.setattr(publish, "stream_release_shards", killed)  # dies after the plots, before the data
        with pytest.raises(KeyboardInterrupt):
            build_release(workdir, out)
    assert (out / "plots").is_dir() and not (out / "README.md").exists()
    again = build_release(workdir, out)
    assert again.rows == 22 and (out / "README.md").is_file()
    assert json.loads((out / RELEASE_MANIFEST).read_text())["rows"] == 22
