"""`sonify publish --holdout`: a validation split by image, the same for every VLM and every rerun."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from sonify_toolkit.cli import app
from sonify_toolkit.stages.publish import ReleaseSummary, build_release, in_holdout
from sonify_toolkit.stats import RELEASE_MANIFEST, compute_stats, load_run
from tests.publish.synthetic import pairs_table

FRACTION = 0.5


@pytest.fixture(scope="module")
def held(workdir: Path) -> ReleaseSummary:
    return build_release(
        workdir, workdir.parent / "held", repo_id="sonify-test/pairs", rendered=workdir / "render", holdout=FRACTION
    )


def _image_ids(folder: Path, split: str) -> list[str]:
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    assert files, f"no {split} files"
    return [i for f in files for i in pq.read_table(f).column("image_id").to_pylist()]


def test_splits_are_disjoint_by_image_and_cover_every_pair(workdir: Path, held: ReleaseSummary) -> None:
    train, validation = _image_ids(held.folder, "train"), _image_ids(held.folder, "validation")
    assert train and validation
    assert not set(train) & set(validation)  # both VLMs' pairs of an image are on the same side
    everything = pairs_table(workdir)
    assert len(train) + len(validation) == everything.num_rows
    expected = {i for i, h in zip(everything.column("image_id").to_pylist(),
                                  in_holdout(everything.column("image_id"), FRACTION), strict=True) if h}  # fmt: skip
    assert set(validation) == expected


def test_the_split_is_a_pure_function_of_the_image_id(workdir: Path, held: ReleaseSummary, tmp_path: Path) -> None:
    ids = pa.array([f"img{i}" for i in range(2000)])
    whole = in_holdout(ids, 0.1)
    assert list(in_holdout(ids.slice(1000), 0.1)) == list(whole[1000:])  # any sharding gives the same answer
    assert 150 < whole.sum() < 250  # about the fraction asked for
    assert set(ids.filter(pa.array(in_holdout(ids, 0.05))).to_pylist()) <= set(ids.filter(pa.array(whole)).to_pylist())
    again = build_release(workdir, tmp_path / "again", repo_id="sonify-test/pairs", rendered=workdir / "render",
                          holdout=FRACTION)  # fmt: skip
    assert again.data_files == held.data_files
    for rel in held.data_files:
        assert (held.folder / rel).read_bytes() == (again.folder / rel).read_bytes()


def test_load_dataset_sees_both_splits(held: ReleaseSummary, tmp_path: Path) -> None:
    ds = datasets.load_dataset(str(held.folder), cache_dir=str(tmp_path / "c"))
    assert set(ds) == {"train", "validation"}
    assert len(ds["train"]) + len(ds["validation"]) == 22
    assert not set(ds["train"]["image_id"]) & set(ds["validation"]["image_id"])
    audio = datasets.load_dataset(str(held.folder), "rendered_audio", cache_dir=str(tmp_path / "a"))
    assert set(audio) == {"train", "validation"}
    ids = {split: set(audio[split].cast_column("audio", datasets.Audio(decode=False))["pair_id"]) for split in audio}
    assert ids["validation"] <= set(ds["validation"]["pair_id"])
    assert ids["train"] <= set(ds["train"]["pair_id"])


def test_card_and_manifest_describe_each_split(held: ReleaseSummary) -> None:
    card = DatasetCard.load(held.folder / "README.md")
    data = card.data.to_dict()
    for config in data["configs"]:
        assert [f["split"] for f in config["data_files"]] == ["train", "validation"]
    default = next(i for i in data["dataset_info"] if i["config_name"] == "default")
    sizes = {s["name"]: s["num_examples"] for s in default["splits"]}
    meta = json.loads((held.folder / RELEASE_MANIFEST).read_text())
    assert meta["holdout"]["fraction"] == FRACTION
    splits = meta["stats"]["splits"]
    assert {k: v["pairs"] for k, v in splits.items()} == sizes
    assert sum(sizes.values()) == 22
    assert "| validation |" in card.text and "--holdout 0.5" in card.text
    # a report of the release reads the same per-split figures back from its files
    assert compute_stats(load_run(held.folder))["splits"] == splits


def test_without_holdout_the_release_has_one_split(release: ReleaseSummary) -> None:
    assert all(f.startswith("data/train-") for f in release.data_files)
    meta = json.loads((release.folder / RELEASE_MANIFEST).read_text())
    assert "holdout" not in meta and "splits" not in meta["stats"]


@pytest.mark.parametrize("fraction", ["0", "1", "-0.1", "1.5"])
def test_a_fraction_outside_0_1_is_one_line(workdir: Path, tmp_path: Path, fraction: str) -> None:
    result = CliRunner().invoke(
        app, ["publish", "--workdir", str(workdir), "--out", str(tmp_path / "r"), "--holdout", fraction]
    )
    assert result.exit_code == 2, result.output
    assert "--holdout" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # refused before anything was written
