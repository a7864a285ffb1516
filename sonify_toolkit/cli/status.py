"""`sonify status`: shards done per stage, rows, errors by reason, and the command that continues the run."""

from __future__ import annotations

from pathlib import Path

from ..settings import DEFAULT_WORKDIR
from ..status import print_status
from .common import Workdir, one_line_errors


@one_line_errors("status")
def status(workdir: Workdir = Path(DEFAULT_WORKDIR)) -> None:
    """Show each stage's progress in a work directory and how to continue it."""
    print_status(workdir)
