"""Each command's chain of stages and the barriers between them: one description that the CLI and
the demo both run, so `sonify demo` does exactly what `sonify pool` and `sonify retrieve` do.

    pool      segments -> embed                       (embed skipped with --no-embed)
    retrieve  search -> [barrier] -> reuse pass -> pairs

* pool: the embed stage reads the segments of its own shard (same plan, same shard index), so
  the segments stage of this machine's shards is all it waits for; no global barrier.
* retrieve: the pairs of any shard need the top-k of *every* distinct text, so the barrier is
  every search shard complete (on this machine or others). Until then the chain prints a note
  and stops; rerunning with the same options continues. The `--max-reuse` pass
  (`RetrievePairsStage.prepare_reuse`) is global too, so it runs once here, before the pairs
  workers start, rather than in every worker.

Stages are built by the caller (from CLI options or the demo's choices); this module only orders
and gates them, and imports no stage module, so `sonify --help` does not load the audio stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from .runner import RunOptions
from .shards import StageDir

if TYPE_CHECKING:
    from .stages.pool import PoolEmbedStage, PoolSegmentsStage
    from .stages.retrieve import RetrievePairsStage, RetrieveSearchStage

SEARCH_INCOMPLETE_NOTE = (
    "[yellow]note:[/] the search shards of other machines are not complete yet; "
    "rerun `sonify retrieve` with the same options once they are, to draw the pairs"
)


def run_pool(
    options: RunOptions,
    workdir: Path,
    segments: PoolSegmentsStage,
    embed: PoolEmbedStage | None,
    console: Console | None = None,
) -> None:
    """pool = segments -> embed; `embed` is None for a `--no-embed` pool."""
    options.run(segments, workdir, console)
    if embed is not None:
        options.run(embed, workdir, console)


def search_complete(search: RetrieveSearchStage, workdir: Path) -> bool:
    """The retrieve barrier: every search shard, of every machine, has its completion marker."""
    return StageDir(search.output_dir(workdir)).all_complete()


def run_retrieve(
    options: RunOptions,
    workdir: Path,
    search: RetrieveSearchStage,
    pairs: RetrievePairsStage,
    console: Console | None = None,
) -> bool:
    """retrieve = search -> [every search shard complete] -> reuse pass -> pairs.

    Returns False (after printing the note) when the barrier stops the chain before the pairs.
    """
    options.run(search, workdir, console)
    if not search_complete(search, workdir):
        (console or Console()).print(SEARCH_INCOMPLETE_NOTE)
        return False
    pairs.prepare_reuse()  # the --max-reuse global pass, once here rather than in every worker
    options.run(pairs, workdir, console)
    return True
