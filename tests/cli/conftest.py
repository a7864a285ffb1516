"""Helpers for the first-hour CLI tests: run `sonify` as a user would and read its one error line."""

from __future__ import annotations

from dataclasses import dataclass

from typer.testing import CliRunner

from sonify_toolkit.cli import app


@dataclass
class Outcome:
    exit_code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]

    @property
    def error_line(self) -> str:
        """The one `sonify CMD: error: ...` line (asserting there is exactly one, and no traceback)."""
        errors = [line for line in self.lines if ": error: " in line]
        assert len(errors) == 1, self.output
        assert "Traceback" not in self.output, self.output
        return errors[0]


def sonify(*args: str) -> Outcome:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.output)
