"""Inputs of the recipe: the released pairs, the SA-1B images they name, and each pair's audio.

The pairs come from the release through `datasets.load_dataset` (a local folder, a parquet file or a Hub
id: `ORG/NAME`, `hf://ORG/NAME`, `hf://datasets/ORG/NAME`), either split. Images are never in the release,
so each user points at a local SA-1B root (loose `sa_NNN.jpg` files anywhere below it, or the original
`.tar` shards). The audio comes from the release's `rendered_audio` config, a `sonify render` output
folder, or the sound collections rendered on the fly.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from sonify_toolkit import audio
from sonify_toolkit.errors import InputError
from sonify_toolkit.fileio import find_files, safe_join
from sonify_toolkit.hub_ids import hub_dataset_name
from sonify_toolkit.settings import IMAGE_EXTENSIONS, SAMPLE_RATE

TAR_SEP = "::"  # "shard.tar::member.jpg", as in the concepts table's image_path


PAIRS_CONFIG = "default"
RENDERED_CONFIG = "rendered_audio"


class ReleaseError(InputError):
    """A release that cannot serve the recipe: no such split or config, not a sonify pairs table."""


def hub_name(dataset: str) -> str | None:
    """`hf://datasets/ORG/NAME` or `hf://ORG/NAME` -> "ORG/NAME"; None for anything else (the toolkit's parser)."""
    return hub_dataset_name(dataset)


def _is_local(dataset: str) -> bool:
    return hub_name(dataset) is None and Path(dataset).exists()


def release_splits(dataset: str, config: str = PAIRS_CONFIG) -> list[str]:
    """The splits a release declares for a config (`train`, and `validation` after `publish --holdout`)."""
    from datasets import get_dataset_split_names

    name = hub_name(dataset) or dataset
    try:
        return list(get_dataset_split_names(name, config))
    except ValueError as exc:  # no such config
        raise ReleaseError(f"{dataset} has no config {config!r}: {exc}") from None


def load_release(
    dataset: str,
    config: str = PAIRS_CONFIG,
    split: str = "train",
    *,
    streaming: bool | None = None,
    cache_dir: str | None = None,
):
    """One split of a release config through `datasets.load_dataset`, a local folder and a Hub id alike.

    Hub ids stream by default (nothing is copied before it is needed); a local folder is loaded into the
    memory-mapped cache, which gives random access. An `audio` column is cast to `Audio(decode=False)`:
    `datasets` 5 decodes audio through torchcodec only, which has no build beside the pinned CPU torch,
    so the recipe decodes the bytes itself (`decode_audio`).
    """
    import datasets

    name = hub_name(dataset) or dataset
    if streaming is None:
        streaming = not _is_local(dataset)
    path = Path(name)
    try:
        if path.is_file():  # one parquet file: a single "train" split
            ds = datasets.load_dataset(
                "parquet", data_files=str(path), split="train", streaming=streaming, cache_dir=cache_dir
            )
        else:  # the pairs are the release's default config (a bare folder of parquet files has only that)
            ds = datasets.load_dataset(
                name, None if config == PAIRS_CONFIG else config, split=split, streaming=streaming, cache_dir=cache_dir
            )
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise ReleaseError(
                f"{dataset} ({config}) has no split {split!r}; it has: {', '.join(release_splits(dataset, config))}"
            ) from None
        raise ReleaseError(f"{dataset} has no config {config!r}: {str(exc).splitlines()[0]}") from None
    if "audio" in (ds.features or {}):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    return ds


def decode_audio(value: Mapping[str, Any] | bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """An `Audio(decode=False)` cell ({"bytes", "path"}) as mono float32 at `sr`, decoded with soundfile.

    The one place the recipe turns the release's audio column into samples: it needs neither torchcodec
    nor torchaudio, so it works in the environment `make` builds.
    """
    data = value if isinstance(value, bytes | bytearray) else value.get("bytes")
    if not data:
        where = value.get("path") if isinstance(value, Mapping) else None
        raise ValueError(f"audio cell holds no bytes (path: {where!r})")
    return audio.load_standard(bytes(data), sr)


def load_pairs(dataset: str, split: str = "train", *, cache_dir: str | None = None) -> pa.Table:
    """The pairs table of one split of a release (folder, parquet file, Hub id) through `datasets`."""
    ds = load_release(dataset, PAIRS_CONFIG, split, cache_dir=cache_dir)
    if hasattr(ds, "data"):  # a map-style dataset: its arrow table as is
        table = ds.data.table
    else:  # streamed: arrow batches as they arrive
        batches = list(ds.with_format("arrow").iter(batch_size=10_000))
        table = pa.concat_tables(batches) if batches else pa.table({})
    missing = [n for n in ("pair_id", "image_id") if n not in table.column_names]
    if missing:
        raise ReleaseError(f"{dataset} is not a sonify pairs release (missing columns: {', '.join(missing)})")
    return table.sort_by("pair_id")


class ReleaseAudio:
    """The release's `rendered_audio` config as pair_id -> 16 kHz mono mix (random access, every split).

    Loaded map-style (a local folder or a Hub id alike): prepare reads the mixes in pair order, not the
    release's, so it needs an index; the memory-mapped cache holds the bytes once per machine.
    """

    def __init__(self, dataset: str, *, cache_dir: str | None = None):
        self.parts = [
            load_release(dataset, RENDERED_CONFIG, split, streaming=False, cache_dir=cache_dir)
            for split in release_splits(dataset, RENDERED_CONFIG)
        ]
        self.index = {
            pid: (p, row) for p, ds in enumerate(self.parts) for row, pid in enumerate(ds["pair_id"])
        }  # fmt: skip

    def __contains__(self, pair_id: str) -> bool:
        return pair_id in self.index

    def read(self, pair_id: str, sr: int = SAMPLE_RATE) -> np.ndarray:
        part, row = self.index[pair_id]
        return decode_audio(self.parts[part][row]["audio"], sr)


def index_images(root: str | Path) -> dict[str, str]:
    """image_id -> reference: a POSIX path relative to `root`, or "shard.tar::member::OFFSET+SIZE" inside an
    uncompressed tar below it (where the member's bytes lie, so that reading one image needs no walk over the
    tar's ~20K headers; compressed tars get "shard.tar::member")."""
    found: dict[str, str] = {}
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    for rel in find_files(root, (*exts, ".tar")):
        if rel.lower().endswith(".tar"):
            for stem, ref in _index_tar(Path(root) / rel, exts):
                found.setdefault(stem, f"{rel}{TAR_SEP}{ref}")
        else:
            found.setdefault(Path(rel).stem, rel)
    return found


def _index_tar(path: Path, exts: set[str]) -> list[tuple[str, str]]:
    """(stem, "member::OFFSET+SIZE") per image member; without the span for a compressed tar."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = [(m, m.sparse is None) for m in tar]
    except tarfile.ReadError:  # compressed: offsets would be in the decompressed stream
        with tarfile.open(path) as tar:
            members = [(m, False) for m in tar]
    return [
        (Path(m.name).stem, f"{m.name}{TAR_SEP}{m.offset_data}+{m.size}" if plain else m.name)
        for m, plain in members
        if m.isfile() and Path(m.name).suffix.lower() in exts
    ]


def _read_tar_member(root: str | Path, ref: str) -> bytes:
    tar_rel, rest = ref.split(TAR_SEP, 1)
    member, sep, span = rest.rpartition(TAR_SEP)
    if sep and re.fullmatch(r"\d+\+\d+", span):
        offset, size = (int(v) for v in span.split("+"))
        with open(safe_join(root, tar_rel), "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{tar_rel} ends before {member} does (truncated tar?)")
        return data
    with tarfile.open(safe_join(root, tar_rel)) as tar:
        f = tar.extractfile(rest)
        if f is None:
            raise FileNotFoundError(f"{rest} not in {tar_rel}")
        return f.read()


def open_image(root: str | Path, ref: str) -> Image.Image:
    """Decode an image named by `index_images` as RGB."""
    if TAR_SEP in ref:
        return Image.open(io.BytesIO(_read_tar_member(root, ref))).convert("RGB")
    with Image.open(safe_join(root, ref)) as im:
        return im.convert("RGB")


def center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to `size` (bicubic) and crop the centre: (3, size, size) float32 in [-1, 1]."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    arr = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    return (arr / 127.5 - 1.0).transpose(2, 0, 1)


def load_rendered_index(audio_dir: str | Path) -> dict[str, tuple[str | None, str]]:
    """pair_id -> (path relative to the render folder, status) from DIR/index/*.parquet (schema.RENDERED)."""
    files = sorted((Path(audio_dir) / "index").glob("*.parquet"))
    if not files:
        raise InputError(f"no render index under {audio_dir}/index (run `sonify render` first)")
    table = pa.concat_tables([pq.read_table(f).select(["pair_id", "path", "status"]) for f in files])
    return {r["pair_id"]: (r["path"], r["status"]) for r in table.to_pylist()}


def load_rendered_audio(audio_dir: str | Path, relpath: str) -> np.ndarray:
    """A rendered mix as 16 kHz mono float32 (resampled if it was rendered at another rate)."""
    return audio.load_standard(safe_join(audio_dir, relpath), SAMPLE_RATE)


def render_on_the_fly(pair: Mapping[str, Any], roots: Mapping[str, str], cache: Any = None) -> np.ndarray:
    """Rebuild one pair's mix from local sound collections with the toolkit's own renderer
    (checksums verified; `cache` is a `soundtrack.FileCache` shared by a worker's pairs)."""
    from sonify_toolkit.soundtrack import render_pair  # the audio stack: imported only when used

    mix, _info = render_pair(dict(pair), dict(roots), cache=cache)
    return np.asarray(mix, dtype=np.float32)
