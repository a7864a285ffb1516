"""Image sources (folders, SA-1B tars, manifests, Hugging Face datasets) as shard items, and a robust decoder.

Planning lists *references* only (ids, paths, tar offsets, dataset positions): nothing is decoded
and no dataset is held in memory. Each reference is a small JSON-able tuple, so shards pickle and
fingerprint cheaply; `ImageReader.iter_payloads` turns a shard's references back into encoded
bytes, streaming from tars (one seek per image) and datasets (one file's slice per shard).

Item tuples (the first two fields are always kind and image id):
  ("file", id, path)                                   folders and manifests
  ("tar", id, tar_path, member, data_offset, size)     SA-1B style tars, read in place
  ("hf", id, name, split, file_shard, position, index) a dataset row; file_shard -1 = saved to disk
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .error_text import describe
from .errors import InputError
from .fileio import find_files
from .settings import IMAGE_EXTENSIONS

Item = tuple[Any, ...]
Payload = bytes | Image.Image


class ImageSourceError(InputError):
    """The run cannot start: a missing input, a manifest without the needed columns, duplicate ids."""


class ImageDecodeError(Exception):
    """One image cannot be used; `reason` becomes the error row's reason, the message its detail
    (built with `error_text.describe`: no object reprs or addresses, so reruns write the same bytes)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# --- planning ----------------------------------------------------------------------------------------
def _stem_ids(rels: Sequence[str]) -> list[str]:
    """Ids are paths without extension ('a/sa_1.jpg' -> 'a/sa_1'); colliding stems keep their extension."""
    stems = [str(PurePosixPath(r).with_suffix("")) for r in rels]
    clash = {s for s, n in Counter(stems).items() if n > 1}
    return [r if s in clash else s for r, s in zip(rels, stems, strict=True)]


def plan_folder(root: str | Path) -> list[Item]:
    """Every jpg/jpeg/png/webp under `root` (recursive, hidden files skipped), sorted by path."""
    rels = find_files(root, IMAGE_EXTENSIONS)
    return [("file", i, str(Path(root) / r)) for i, r in zip(_stem_ids(rels), rels, strict=True)]


def plan_tar(path: str | Path) -> list[Item]:
    """The images of one uncompressed tar (SA-1B: `sa_N.jpg` beside `sa_N.json`), ids = file stems."""
    out: list[Item] = []
    tar = str(path)  # one string shared by every item of the tar (plans of 1M images stay small)
    try:
        with tarfile.open(path, "r:") as tf:  # uncompressed: headers are read by seeking over the data
            for m in tf:
                if m.isfile() and PurePosixPath(m.name).suffix.lower() in IMAGE_EXTENSIONS:
                    out.append(("tar", PurePosixPath(m.name).stem, tar, m.name, m.offset_data, m.size))
    except (tarfile.TarError, OSError) as exc:
        raise ImageSourceError(f"cannot read tar {path}: {exc}") from exc
    return out


def plan_manifest(path: str | Path) -> list[Item]:
    """A parquet or CSV table with `image_id` and `path` (relative paths are relative to the table's folder)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            tbl = pq.read_table(path, columns=["image_id", "path"])
        else:
            import pyarrow.csv as pcsv

            tbl = pcsv.read_csv(
                path,
                convert_options=pcsv.ConvertOptions(
                    include_columns=["image_id", "path"],
                    column_types={"image_id": "string", "path": "string"},
                ),
            )
    except (KeyError, ValueError, OSError) as exc:
        raise ImageSourceError(f"manifest {path} needs columns 'image_id' and 'path': {exc}") from exc
    ids, paths = tbl.column("image_id").to_pylist(), tbl.column("path").to_pylist()
    blank = [n for n, (i, p) in enumerate(zip(ids, paths, strict=True)) if i is None or str(i) == "" or not p]
    if blank:  # dropped silently, they would be images missing from every count
        raise ImageSourceError(f"manifest {path}: {len(blank)} row(s) without image_id or path (first: row {blank[0]})")
    rows = sorted((str(i), str(p)) for i, p in zip(ids, paths, strict=True))
    return [("file", i, str(p if Path(p).is_absolute() else path.parent / p)) for i, p in rows]


def _is_saved_dataset(name: str) -> bool:
    p = Path(name)
    return p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists())


def _load_saved(name: str, split: str) -> Any:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(name)
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise ImageSourceError(f"dataset {name} has no split '{split}' (has: {', '.join(ds)})")
        ds = ds[split]
    return ds


def _load_stream(name: str, split: str) -> Any:
    from datasets import load_dataset

    return load_dataset(name, split=split, streaming=True)


def _check_columns(name: str, have: Sequence[str] | None, *wanted: str | None) -> None:
    """Refuse a dataset without the named columns (`have` None: the stream does not know its columns)."""
    for col in wanted:
        if col and have is not None and col not in have:
            raise ImageSourceError(f"dataset {name} has no column '{col}' (has: {', '.join(have)})")


def plan_hf(name: str, split: str, image_column: str, id_column: str | None) -> list[Item]:
    """Rows of a Hugging Face image dataset: a folder saved with `save_to_disk` (memory-mapped), or any
    name `load_dataset` streams (Hub id, local parquet folder). Only the id column is read to plan;
    without `--id-column` the row index is the id (and planning a stream reads the image column once)."""
    if _is_saved_dataset(name):
        ds = _load_saved(name, split)
        _check_columns(name, ds.column_names, image_column, id_column)
        ids = [str(v) for v in ds[id_column]] if id_column else [str(i) for i in range(len(ds))]
        return [("hf", ids[i], name, split, -1, i, i) for i in range(len(ds))]
    try:
        ds = _load_stream(name, split)
    except Exception as exc:  # datasets raises many types for a missing or unknown dataset
        raise ImageSourceError(f"cannot open dataset {name!r} split {split!r}: {exc}") from exc
    _check_columns(name, list(ds.features) if ds.features is not None else None, image_column, id_column)
    out: list[Item] = []
    index = 0
    n = ds.num_shards
    for j in range(n):
        part = ds.shard(num_shards=n, index=j, contiguous=True).select_columns([id_column or image_column])
        if not id_column:
            part = part.decode(False)
        for pos, row in enumerate(part):
            out.append(("hf", str(row[id_column]) if id_column else str(index), name, split, j, pos, index))
            index += 1
    return out


def sample_key(image_id: str, seed: int) -> bytes:
    """An image's place in the seeded random order of `sample_items`: sha256 of the seed and the id."""
    return hashlib.sha256(f"{seed}\x00{image_id}".encode()).digest()


def sample_items(items: Sequence[Item], n: int, seed: int) -> list[Item]:
    """A uniform random subset of `n` images (the paper's "1M randomly selected images from SAM").

    The `n` images whose seeded hash of the id is smallest: a function of the ids and the seed only,
    so every machine, shard count and worker count picks the same images, the order of the inputs
    does not matter, and a larger `n` with the same seed keeps every image of a smaller one. The
    chosen items keep their plan order. Asking for more images than there are is refused: the run
    would not be the sample its parameters say."""
    if n < 1:
        raise ImageSourceError(f"--sample must be at least 1 (got {n})")
    if n > len(items):
        raise ImageSourceError(f"--sample {n:,} but the inputs hold {len(items):,} images; drop --sample to use all")
    chosen = set(sorted(range(len(items)), key=lambda i: sample_key(str(items[i][1]), seed))[:n])
    return [it for i, it in enumerate(items) if i in chosen]


def check_unique(items: Sequence[Item]) -> None:
    """Image ids must be unique across every input: they key the pairs and the release."""
    dup = [i for i, n in Counter(it[1] for it in items).items() if n > 1]
    if dup:
        raise ImageSourceError(f"{len(dup)} duplicate image id(s), e.g. {', '.join(sorted(dup)[:3])}")


def image_path(item: Item) -> str:
    """The `image_path` column: a path, "tar::member" or "hf://name/split#index"."""
    kind = item[0]
    if kind == "file":
        return item[2]
    if kind == "tar":
        return f"{item[2]}::{item[3]}"
    return f"hf://{item[2]}/{item[3]}#{item[6]}"


# --- reading -----------------------------------------------------------------------------------------
class ImageReader:
    """Streams encoded images for a shard's items; keeps tar files and datasets open between shards."""

    def __init__(self, image_column: str = "image") -> None:
        self.image_column = image_column
        self._tars: dict[str, Any] = {}
        self._hf: dict[tuple[str, str], Any] = {}

    def close(self) -> None:
        for f in self._tars.values():
            f.close()
        self._tars.clear()
        self._hf.clear()

    def _tar_bytes(self, path: str, offset: int, size: int) -> bytes:
        f = self._tars.get(path)
        if f is None:
            f = self._tars[path] = open(path, "rb")  # noqa: SIM115 - kept open across items, closed in close()
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise OSError(f"tar {path} is truncated at offset {offset}")
        return data

    def _dataset(self, name: str, split: str, saved: bool) -> Any:
        key = (name, split)
        if key not in self._hf:
            self._hf[key] = _load_saved(name, split) if saved else _load_stream(name, split)
        return self._hf[key]

    def _hf_rows(self, items: Sequence[Item]) -> Iterator[Any]:
        """Image values of consecutive rows of one dataset (one file shard for streams)."""
        _, _, name, split, file_shard, first, _ = items[0]
        saved = file_shard < 0
        ds = self._dataset(name, split, saved)
        if saved:  # a memory-mapped slice, raw values (no decoding), one row in Python at a time
            tbl = ds.with_format("arrow")[first : first + len(items)]
            for part in tbl.column(self.image_column).chunks:
                for value in part:
                    yield value.as_py()
            return
        part = ds.shard(num_shards=ds.num_shards, index=file_shard, contiguous=True)
        part = part.select_columns([self.image_column]).decode(False).skip(first).take(len(items))
        for row in part:
            yield row[self.image_column]

    def iter_payloads(self, items: Sequence[Item]) -> Iterator[tuple[Item, Payload | ImageDecodeError]]:
        """(item, encoded bytes or PIL image) in item order, or (item, ImageDecodeError) for a failed read."""
        i = 0
        while i < len(items):
            item = items[i]
            if item[0] == "hf":  # group consecutive rows of the same dataset file
                j = i + 1
                while (
                    j < len(items)
                    and items[j][0] == "hf"
                    and items[j][2:5] == item[2:5]
                    and items[j][5] == items[j - 1][5] + 1
                ):
                    j += 1
                yield from self._hf_payloads(items[i:j])
                i = j
                continue
            try:
                if item[0] == "file":
                    yield item, Path(item[2]).read_bytes()
                else:
                    yield item, self._tar_bytes(item[2], item[4], item[5])
            except OSError as exc:
                yield item, ImageDecodeError("unreadable_image", describe(exc))
            i += 1

    def _hf_payloads(self, group: Sequence[Item]) -> Iterator[tuple[Item, Payload | ImageDecodeError]]:
        """One row at a time (a shard of images is never all in memory); a broken dataset file fails
        the rows from where it broke, not the run."""
        rows = self._hf_rows(group)
        failed: ImageDecodeError | None = None
        for it in group:
            if failed is None:
                try:
                    value = next(rows, _MISSING)
                except Exception as exc:
                    failed = ImageDecodeError("unreadable_image", describe(exc))
            if failed is not None:
                yield it, failed
            elif value is _MISSING:
                yield it, ImageDecodeError("unreadable_image", "row missing from dataset")
            else:
                yield it, _hf_value(value)


_MISSING = object()


def _hf_value(v: Any) -> Payload | ImageDecodeError:
    """A dataset cell (Image feature dict, bytes, path or PIL image) -> payload."""
    if isinstance(v, dict):
        if v.get("bytes"):
            return v["bytes"]
        v = v.get("path")
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, Image.Image):
        return v
    if isinstance(v, str) and v:
        try:
            return Path(v).read_bytes()
        except OSError as exc:
            return ImageDecodeError("unreadable_image", describe(exc))
    return ImageDecodeError("unreadable_image", f"no image in dataset cell ({type(v).__name__})")


# --- decoding ----------------------------------------------------------------------------------------
def to_rgb(img: Image.Image) -> Image.Image:
    """RGB for every mode: alpha over white (transparent logos stay visible), 16-bit/float rescaled."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def decode_image(payload: Payload, max_side: int | None = None) -> Image.Image:
    """Encoded bytes -> an RGB image no larger than `max_side`; raises ImageDecodeError(reason)."""
    try:
        with warnings.catch_warnings():  # PIL warns per damaged file ("Tag data larger than file"): noise at scale
            warnings.simplefilter("ignore")
            img = payload if isinstance(payload, Image.Image) else Image.open(io.BytesIO(payload))
            if max_side and img.format == "JPEG" and max(img.size) > max_side:
                scale = max_side / max(img.size)  # decode at a reduced DCT scale, never below the target size
                img.draft("RGB", (max(1, round(img.width * scale)), max(1, round(img.height * scale))))
            img.load()
            with contextlib.suppress(Exception):  # a malformed EXIF block (struct.error ...): pixels kept as stored
                img = ImageOps.exif_transpose(img) or img
            img = to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image_too_large", describe(exc)) from exc
    except Exception as exc:  # decoders raise far more than OSError on damaged files; one image, never the shard
        raise ImageDecodeError("unreadable_image", describe(exc)) from exc
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError("unreadable_image", f"empty image {img.size}")
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    """RGB image -> JPEG bytes (what the OpenAI engine sends as a data URL)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
