"""Point 3 and 4: render exits 3 when pairs failed, 2 when it cannot run; an unknown collection is one line
listing the collections the pairs use; the summary names every collection and its root; hf://datasets/ works."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sonify_toolkit.errors import EXIT_CANNOT_RUN, EXIT_ITEM_ERRORS
from sonify_toolkit.hub_ids import HubReferenceError, hub_dataset_name
from tests.publish.synthetic import COLLECTIONS, make_workdir

from .conftest import sonify


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first-hour")
    make_workdir(root, with_render=False)
    return root


def _sources(sounds: Path) -> list[str]:
    return [arg for c in COLLECTIONS for arg in ("--source", f"{c}={sounds / c}")]


def test_a_clean_render_exits_0_and_names_each_collection_and_root(run_root: Path, tmp_path: Path) -> None:
    out = sonify("render", run_root / "work", *_sources(run_root / "sounds"), "--out", tmp_path / "audio", "-q")
    assert out.exit_code == 0, out.output
    line = next(line for line in out.lines if line.startswith("collections: "))
    for c in COLLECTIONS:
        assert f"{c} -> {(run_root / 'sounds' / c).resolve()} (" in line


def test_failed_pairs_exit_3_after_the_summary(run_root: Path, tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    shutil.copytree(run_root / "sounds", sounds)
    for wav in (sounds / "fsd50k" / "clips").glob("*.wav"):
        wav.unlink()  # a wrong root: every fsd50k source is missing
    out = sonify("render", run_root / "work", *_sources(sounds), "--out", tmp_path / "audio", "-q")
    assert out.exit_code == EXIT_ITEM_ERRORS, out.output
    assert "missing in fsd50k" in out.output and "Traceback" not in out.output
    assert out.lines[-1].startswith("sonify render: finished with item errors (render: ")
    assert out.lines[-1].endswith(f"; exit {EXIT_ITEM_ERRORS}")


def test_an_unknown_collection_is_one_line_listing_the_ones_the_pairs_use(run_root: Path, tmp_path: Path) -> None:
    args = ["--source", f"fsd5Ok={run_root / 'sounds' / 'fsd50k'}", "--out", tmp_path / "audio"]
    out = sonify("render", run_root / "work", *args)
    assert out.exit_code == EXIT_CANNOT_RUN
    line = out.error_line
    assert line.startswith("sonify render: error: --source fsd5Ok: no pair uses such a collection; the pairs use: ")
    assert "bbc_sfx (" in line and "fsd50k (" in line and len(out.lines) == 1


def test_hub_references_in_both_forms() -> None:
    assert hub_dataset_name("hf://datasets/org/name") == hub_dataset_name("hf://org/name") == "org/name"
    assert hub_dataset_name("hf://datasets/name/") == "name"
    assert hub_dataset_name("org/name") is None and hub_dataset_name("/data/release") is None
    for bad in ("hf://", "hf://datasets/", "hf://org/name/extra", "hf://org/name@main"):
        with pytest.raises(HubReferenceError, match="expected hf://ORG/NAME or hf://datasets/ORG/NAME"):
            hub_dataset_name(bad)


@pytest.mark.parametrize("prefix", ["hf://", "hf://datasets/"])
def test_render_reads_a_hub_dataset_in_either_form(
    prefix: str, run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = tmp_path / "org" / "release"
    assert sonify("publish", "-w", run_root / "work", "--out", release).exit_code == 0
    monkeypatch.chdir(tmp_path)  # datasets.load_dataset("org/release") finds the local folder first (offline here)
    out = sonify("render", f"{prefix}org/release", *_sources(run_root / "sounds"), "--out", tmp_path / "audio", "-q")
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output and "rendered" in out.output


def test_report_refuses_an_unreachable_hub_release_in_one_line(tmp_path: Path) -> None:
    out = sonify("report", "hf://datasets/org/not-cached", "--out", tmp_path / "html")
    assert out.exit_code == EXIT_CANNOT_RUN
    assert out.error_line.startswith("sonify report: error: cannot fetch the release 'org/not-cached': offline mode")
