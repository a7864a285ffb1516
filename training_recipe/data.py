"""Inputs of the recipe: the released pairs, the SA-1B images they name, and each pair's audio.

Images and audio are never in the release (only ids and numbers), so each user points at local
copies: an SA-1B root (loose `sa_NNN.jpg` files anywhere below it, or the original `.tar` shards),
and either a `sonify render` output folder or the sound collections to render from on the fly.
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
from sonify_toolkit.fileio import find_files, safe_join
from sonify_toolkit.settings import IMAGE_EXTENSIONS, SAMPLE_RATE

TAR_SEP = "::"  # "shard.tar::member.jpg", as in the concepts table's image_path


def load_pairs(dataset: str, split: str = "train") -> pa.Table:
    """The pairs table from a release folder (data/*.parquet), one parquet file, or a Hub dataset id."""
    path = Path(dataset)
    if path.is_dir():
        files = sorted((path / "data").glob("*.parquet")) or sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no parquet files under {path}")
        table = pa.concat_tables([pq.read_table(f) for f in files])
    elif path.is_file():
        table = pq.read_table(path)
    else:
        from datasets import load_dataset

        table = load_dataset(dataset, split=split).data.table
    missing = [n for n in ("pair_id", "image_id") if n not in table.column_names]
    if missing:
        raise ValueError(f"{dataset} is not a sonify pairs release (missing columns: {', '.join(missing)})")
    return table.sort_by("pair_id")


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
        raise FileNotFoundError(f"no render index under {audio_dir}/index (run `sonify render` first)")
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
