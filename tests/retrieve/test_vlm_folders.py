"""Which concepts folders retrieval reads: a failed start is skipped and named, `--vlm` chooses, partial is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sonify_toolkit import schema
from sonify_toolkit.shards import StageDir
from sonify_toolkit.stages.retrieve import concept_folders

from .conftest import TEXTS, concept_row, sample_concepts, sonify, write_concepts

Rows = Callable[[Path], list[dict[str, Any]]]


def started_but_empty(work: Path, name: str, num_shards: int = 3) -> None:
    """What an extraction that failed before its first shard leaves: `_stage.json`, no shard."""
    StageDir(work / "concepts" / name).prepare("extract", {"vlm": name}, num_shards)


def partial(work: Path, name: str) -> None:
    sd = StageDir(work / "concepts" / name)
    sd.prepare("extract", {"vlm": name}, 2)
    sd.write_shard(0, {"": schema.table([concept_row("a", name, [TEXTS[0]])], schema.CONCEPTS)}, {"items": 1})


def vlms_of(rows: list[dict[str, Any]]) -> set[str]:
    return {r["vlm"] for r in rows}


def test_a_folder_with_no_shard_is_skipped_and_named(work: Path, read_pairs: Rows) -> None:
    write_concepts(work, "tiny--vlm-a", [sample_concepts(4)])
    started_but_empty(work, "org--failed-vlm")
    out = sonify("retrieve", "-w", work, "--device", "cpu", "-q").output
    skipped = [line for line in out.splitlines() if "skipped concepts" in line]
    assert skipped == [
        "sonify retrieve: skipped concepts/org--failed-vlm: no shard written (0/3): an extraction that never started"
    ]
    assert vlms_of(read_pairs(work)) == {"tiny/vlm-a"} and len(read_pairs(work)) == 4


def test_vlm_chooses_folders_and_leaves_a_partial_one_out(work: Path, read_pairs: Rows) -> None:
    write_concepts(work, "tiny--vlm-a", [sample_concepts(4)])
    partial(work, "vlm-b")
    refused = sonify("retrieve", "-w", work, "--device", "cpu", "-q", expect=2).output
    assert "incomplete (1/2 shards)" in refused and "--vlm" in refused and refused.count("\n") == 1

    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--vlm", "tiny/vlm-a")  # the id given to extract
    assert vlms_of(read_pairs(work)) == {"tiny/vlm-a"}
    assert list(StageDir(work / "pairs").manifest()["params"]["concepts"]) == ["tiny--vlm-a"]


def test_vlm_by_folder_name_and_repeated(work: Path, read_pairs: Rows) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(3)])
    write_concepts(work, "vlm-b", [[concept_row("b1", "tiny/vlm-b", [TEXTS[1]])]])
    sonify("retrieve", "-w", work, "--device", "cpu", "-q", "--vlm", "vlm-b", "--vlm", "vlm-a")
    assert vlms_of(read_pairs(work)) == {"tiny/vlm-a", "tiny/vlm-b"}
    assert concept_folders(work, ["vlm-b"]).used == ("vlm-b",)


def test_vlm_refuses_an_unknown_or_empty_folder_in_one_line(work: Path) -> None:
    write_concepts(work, "vlm-a", [sample_concepts(3)])
    started_but_empty(work, "vlm-empty")
    unknown = sonify("retrieve", "-w", work, "--vlm", "org/other", expect=2).output
    assert "--vlm org/other: no concepts folder concepts/org--other (have: vlm-a, vlm-empty)" in unknown
    empty = sonify("retrieve", "-w", work, "--vlm", "vlm-empty", expect=2).output
    assert "concepts/vlm-empty cannot be used (no shard written" in empty and empty.count("\n") == 1


def test_only_failed_starts_is_no_concepts(work: Path) -> None:
    started_but_empty(work, "vlm-a")
    out = sonify("retrieve", "-w", work, expect=2).output
    assert "no complete concepts tables" in out and "run `sonify extract` first" in out
