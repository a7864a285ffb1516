"""Point 5: stages mark their work directory; status reads only work directories, anything else is one line."""

from __future__ import annotations

import json
from pathlib import Path

from sonify_toolkit import __version__
from sonify_toolkit.errors import EXIT_CANNOT_RUN
from sonify_toolkit.workdir import WORKDIR_MARKER

from .conftest import sonify


def test_a_stage_marks_its_work_directory_and_status_reads_it(tmp_path: Path, sample_sounds: Path) -> None:
    w = tmp_path / "runs" / "w"
    assert sonify("pool", f"demo={sample_sounds}", "-w", w, "--no-embed", "-q").exit_code == 0
    marker = json.loads((w / WORKDIR_MARKER).read_text())
    assert marker == {"sonify": __version__}
    out = sonify("status", "-w", w)
    assert out.exit_code == 0 and "pool" in out.output
    parent = sonify("status", "-w", tmp_path / "runs")  # holds a work directory but is not one
    assert parent.exit_code == EXIT_CANNOT_RUN
    assert parent.error_line == (
        f"sonify status: error: {tmp_path / 'runs'} is not a sonify work directory; work directories below it: {w}"
    )


def test_a_system_folder_is_not_offered_a_run(tmp_path: Path) -> None:
    (tmp_path / "unrelated" / "deep").mkdir(parents=True)
    (tmp_path / "unrelated" / "deep" / "_stage.json").write_text("{}")  # someone else's folder, deeper down
    for folder in (tmp_path, Path("/usr")):
        out = sonify("status", "-w", folder)
        assert out.exit_code == EXIT_CANNOT_RUN and len(out.lines) == 1
        assert out.error_line == (
            f"sonify status: error: {folder} is not a sonify work directory "
            f"(stages write {WORKDIR_MARKER} when they first run in one)"
        )
        assert "sonify pool" not in out.output


def test_a_render_folder_is_not_marked_as_a_work_directory(tmp_path: Path) -> None:
    from tests.publish.synthetic import COLLECTIONS, make_workdir

    w = make_workdir(tmp_path, with_render=False)
    sources = [a for c in COLLECTIONS for a in ("--source", f"{c}={tmp_path / 'sounds' / c}")]
    assert sonify("render", w, *sources, "--out", tmp_path / "audio", "-q").exit_code == 0
    assert not (tmp_path / "audio" / WORKDIR_MARKER).exists()
