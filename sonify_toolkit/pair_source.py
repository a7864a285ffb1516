"""Where pair rows come from: a pairs folder, a release folder, or a Hub dataset (`hf://org/name`).

Render (and anything else that consumes the metadata release) addresses a pair as
`(part, row)`: a part is one parquet file (or the whole Hub dataset), so a worker can fetch the
rows of its shard without reading the others, and the plan only needs the `pair_id` column.

Rows are handed over as the release stores them, whatever their types: a release is anyone's
metadata, so each row is checked against the pairs schema where it is used (`pair_rows`, called by
`soundtrack.render_pair`), and one that does not conform becomes that row's error, not the run's.
Only a table without the PAIRS columns at all is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema
from .errors import InputError
from .hub_ids import hub_dataset_name
from .shards import STAGE_FILE, StageDir, fingerprint


class PairSourceError(InputError):
    """The pairs input cannot be read: no such folder, no parquet shards, an unfinished stage."""


class PairSource:
    """A list of parts holding PAIRS rows; `read(part, indices)` gives them as plain dicts."""

    spec: str
    parts: list[str]

    def pair_ids(self, part: int) -> list[str]:
        raise NotImplementedError

    def read(self, part: int, indices: Sequence[int]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What identifies these inputs in a stage's parameters (changed inputs refuse a resume)."""
        raise NotImplementedError


def _conform(table: pa.Table) -> pa.Table:
    """Keep the PAIRS columns (a release may carry more); fail clearly when one is missing."""
    missing = [n for n in schema.PAIRS.names if n not in table.column_names]
    if missing:
        raise PairSourceError(f"pairs table lacks column(s): {', '.join(missing)}")
    return table.select(schema.PAIRS.names)


class ParquetPairs(PairSource):
    """Local parquet files: `W/pairs/NNNNN.parquet` (complete shards only) or `RELEASE/data/*.parquet`."""

    def __init__(self, spec: str, files: list[Path]):
        self.spec = spec
        self.parts = [str(f) for f in files]
        self._cached: tuple[int, pa.Table] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cached": None}

    def _table(self, part: int) -> pa.Table:
        if self._cached is None or self._cached[0] != part:
            self._cached = (part, _conform(pq.read_table(self.parts[part])))
        return self._cached[1]

    def pair_ids(self, part: int) -> list[Any]:
        """The raw `pair_id` values (any type: `pair_rows.row_label` names the unusable ones)."""
        try:
            return pq.read_table(self.parts[part], columns=["pair_id"]).column("pair_id").to_pylist()
        except (KeyError, pa.ArrowInvalid) as exc:
            raise PairSourceError(f"pairs table {self.parts[part]} lacks column pair_id") from exc

    def read(self, part: int, indices: Sequence[int]) -> list[dict[str, Any]]:
        return self._table(part).take(pa.array(indices, pa.int64())).to_pylist()

    def identity(self) -> dict[str, Any]:
        files = [Path(p) for p in self.parts]  # by content, not path: a moved or remounted folder resumes
        return {"pairs": fingerprint([[f.name, f.stat().st_size] for f in files])}


class HubPairs(PairSource):
    """A dataset loaded through `datasets.load_dataset` (Hub id or local dataset folder), split `train`.

    Loaded non-streaming on purpose: workers need random access to their shard's rows, and the
    datasets cache is a memory-mapped arrow file, so each worker maps it rather than copying it.
    """

    def __init__(self, spec: str, name: str, split: str = "train"):
        self.spec, self.name, self.split = spec, name, split
        self.parts = [f"{name}:{split}"]
        self._table_cache: pa.Table | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_table_cache": None}

    def _table(self) -> pa.Table:
        if self._table_cache is None:
            import datasets

            ds = datasets.load_dataset(self.name, split=self.split)
            self._table_cache = _conform(ds.with_format("arrow")[:])
        return self._table_cache

    def pair_ids(self, part: int) -> list[str]:
        return self._table().column("pair_id").to_pylist()

    def read(self, part: int, indices: Sequence[int]) -> list[dict[str, Any]]:
        return self._table().take(pa.array(indices, pa.int64())).to_pylist()

    def identity(self) -> dict[str, Any]:
        return {"pairs": self.spec, "rows": self._table().num_rows}


def _stage_files(folder: Path) -> list[Path]:
    sd = StageDir(folder)
    manifest = sd.manifest() or {}
    done = sd.complete_shards()
    if len(done) != manifest.get("num_shards"):
        raise PairSourceError(
            f"the pairs in {folder} are unfinished ({len(done)}/{manifest.get('num_shards')} shards): "
            "finish `sonify retrieve` first"
        )
    return [sd.table_path("", i) for i in done]


def open_pairs(spec: str | Path) -> PairSource:
    """Resolve PAIRS as given on the command line: `hf://ORG/NAME`, a work directory (its `pairs/`
    stage, complete shards only), a pairs stage folder, a release (`data/train-*.parquet`) or a
    folder of parquet files."""
    text = str(spec)
    name = hub_dataset_name(text)  # hf://ORG/NAME or hf://datasets/ORG/NAME
    if name is not None:
        return HubPairs(text, name)
    folder = Path(text)
    if not folder.is_dir():
        raise PairSourceError(f"pairs input {text} is neither a folder nor hf://ORG/NAME")
    if (folder / "pairs" / STAGE_FILE).exists():  # a work directory: use its pairs stage
        folder = folder / "pairs"
    if (folder / STAGE_FILE).exists():
        files = _stage_files(folder)
    elif (folder / "data").is_dir():  # a release: the train split's shards
        files = sorted((folder / "data").glob("train-*.parquet")) or sorted((folder / "data").glob("*.parquet"))
    else:
        files = sorted(folder.glob("*.parquet"))
    if not files:
        raise PairSourceError(f"no pairs parquet files in {text} (expected NNNNN.parquet or data/*.parquet)")
    return ParquetPairs(str(folder.resolve()), files)
