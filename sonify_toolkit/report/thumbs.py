"""Image references -> small JPEG thumbnails for the report (a path, "tar::member" or "hf://name/split#index")."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..fileio import UnsafePathError, safe_join
from ..settings import IMAGE_EXTENSIONS

THUMB_SIDE = 256


def read_image_bytes(ref: str) -> bytes:
    """The encoded bytes behind an image reference (raises OSError/ValueError when unreadable)."""
    if ref.startswith("hf://"):
        import datasets

        name_split, _, index = ref[len("hf://") :].rpartition("#")
        name, _, split = name_split.rpartition("/")
        ds = datasets.load_dataset(name, split=split)
        value = ds.cast_column(ds.column_names[0], ds.features[ds.column_names[0]])[int(index)]
        for v in value.values():
            if isinstance(v, Image.Image):
                buf = io.BytesIO()
                v.save(buf, format="PNG")
                return buf.getvalue()
            if isinstance(v, dict) and v.get("bytes"):
                return v["bytes"]
        raise ValueError(f"no image column in {ref}")
    if "::" in ref:
        tar_path, member = ref.split("::", 1)
        with tarfile.open(tar_path) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise OSError(f"{member} is not a file in {tar_path}")
            return f.read()
    return Path(ref).read_bytes()


def find_image(image_id: str, roots: Sequence[Path]) -> str | None:
    """An image of a release found by id under the `--images` folders (ROOT/ID or ROOT/ID.ext).

    The id comes from the release (anyone's metadata): one that is absolute, climbs out with `..` or
    resolves outside its root is never looked up.
    """
    for root in roots:
        for name in [image_id, *(image_id + ext for ext in IMAGE_EXTENSIONS)]:
            try:
                path = safe_join(root, name)
            except UnsafePathError:
                return None
            if path.is_file():
                return str(path)
    return None


def write_thumbnail(ref: str, out: Path, side: int = THUMB_SIDE) -> None:
    """A JPEG of at most side×side pixels (aspect kept)."""
    with Image.open(io.BytesIO(read_image_bytes(ref))) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side))
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, format="JPEG", quality=80)
