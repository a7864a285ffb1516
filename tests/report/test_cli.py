"""`sonify report` argument errors: one line and exit 2, before anything is read or written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sonify_toolkit.cli import app


@pytest.mark.parametrize(
    ("sources", "message"),
    [(["a=/x", "a=/y"], "collection 'a' is given twice"), (["a"], "expected --source as NAME=VALUE")],
)
def test_bad_source_arguments_are_one_line_errors(tmp_path: Path, sources: list[str], message: str) -> None:
    args = ["report", str(tmp_path / "work"), "--out", str(tmp_path / "html")]
    for s in sources:
        args += ["--source", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"sonify report: error: {message}" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "html").exists()
