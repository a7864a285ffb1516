"""Which sound collections a set of pairs draws on, checked against the `--source NAME=ROOT` given to render.

A misspelt collection name used to render 0 of N pairs and exit 0; now it is one line listing the
names the pairs use, and the run summary says which collection was read from which root.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pyarrow.parquet as pq

from .errors import InputError
from .pair_source import PairSource
from .stats import source_column, value_counts


class UnknownCollectionError(InputError):
    """A `--source` name that no pair uses (a typo, or the wrong release)."""


def source_counts(pairs: PairSource) -> Counter[str]:
    """How many pair sources name each collection (read from the `sources` column alone)."""
    total: Counter[str] = Counter()
    for index, part in enumerate(pairs.parts):
        if Path(part).suffix == ".parquet" and Path(part).is_file():
            names = source_column(pq.read_table(part, columns=["sources"]), "source")
            total += Counter({str(name): n for name, n in value_counts(names).items()})
        else:
            rows = pairs.read(index, list(range(len(pairs.pair_ids(index)))))
            total += Counter(str(s.get("source")) for row in rows for s in row.get("sources") or [])
    return total


def check_collection_names(given: Mapping[str, str], used: Counter[str]) -> None:
    """Refuse, in one line, a `--source` name the pairs never use, listing the names they do use."""
    unknown = sorted(set(given) - set(used))
    if unknown:
        listed = ", ".join(f"{name} ({n:,} sources)" for name, n in sorted(used.items())) or "none"
        raise UnknownCollectionError(
            f"--source {', '.join(unknown)}: no pair uses such a collection; the pairs use: {listed}"
        )


def collections_line(given: Mapping[str, str], used: Counter[str]) -> str:
    """The summary's account of every collection involved: its root, or that no --source was given."""
    parts = [
        f"{name} -> {given[name]} ({n:,} sources)" if name in given else f"{name} -> no --source given ({n:,} sources)"
        for name, n in sorted(used.items())
    ]
    return "collections: " + ("; ".join(parts) if parts else "none")
