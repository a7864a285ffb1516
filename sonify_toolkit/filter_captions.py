"""Another VLM's captions as the non-sonic filter of this one (`sonify extract --filter-caption-from`).

The paper drops an image when *LLaVA's* caption contains a keyword (A.2), whichever VLM's concepts
the row holds; by default each VLM's own caption decides its row. With a caption source, every
image of this run is looked up by id in the other VLM's complete concepts table: the filter reads
its caption, the rest of the row (concepts, keep/drop for emptiness) stays this VLM's own.

The source must be complete and hold every image of this run (same inputs, same `--sample`): a
missing image would otherwise pass unfiltered, so the run refuses to start instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError
from .shards import StageDir

NO_FILTER_CAPTION = "no_filter_caption"  # drop reason: the source VLM failed on this image (error row)


class FilterCaptionError(InputError):
    """The caption source cannot serve this run: absent, incomplete, or missing some of its images."""


class FilterCaptions:
    """The `image_id`, `caption` and `error` columns of one finished extract folder, held as arrow."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        sd = StageDir(self.folder)
        manifest = sd.manifest()
        if manifest is None or manifest.get("stage") != "extract":
            raise FilterCaptionError(
                f"--filter-caption-from: no extract run at {self.folder}; run `sonify extract` with that VLM first"
            )
        if not sd.all_complete():
            raise FilterCaptionError(
                f"--filter-caption-from: the run at {self.folder} is unfinished "
                f"({len(sd.complete_shards())} of {manifest['num_shards']} shards); finish it first"
            )
        self.vlm: str = str(manifest["params"].get("vlm", self.folder.name))
        self.fingerprint: str = str(manifest["fingerprint"])
        self._table: pa.Table | None = None

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            parts = [t.select(["image_id", "caption", "error"]) for _, t in StageDir(self.folder).iter_tables("")]
            self._table = pa.concat_tables(parts) if parts else pa.table({"image_id": [], "caption": [], "error": []})
        return self._table

    def check_covers(self, image_ids: Sequence[str]) -> None:
        """Refuse a run with images the source never saw (other inputs, another --sample)."""
        have = self.table.column("image_id")
        missing = pc.invert(pc.is_in(pa.array(list(image_ids), pa.string()), value_set=have))
        n = pc.sum(missing).as_py() or 0
        if n:
            first = pa.array(list(image_ids)).filter(missing)[0].as_py()
            raise FilterCaptionError(
                f"--filter-caption-from {self.vlm}: {n:,} of {len(image_ids):,} images have no row there "
                f"(e.g. {first!r}); run both VLMs on the same inputs and --sample"
            )

    def lookup(self, image_ids: Sequence[str]) -> Mapping[str, tuple[str | None, str | None]]:
        """{image_id: (caption, error)} for one shard's images."""
        t = self.table
        rows = t.filter(pc.is_in(t.column("image_id"), value_set=pa.array(list(image_ids), pa.string())))
        return {r["image_id"]: (r["caption"], r["error"]) for r in rows.to_pylist()}

    def close(self) -> None:
        self._table = None
