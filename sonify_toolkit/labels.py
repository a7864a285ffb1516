"""Label files of the paper's collections (FSD50K, AudioSet, BBC SFX) and a generic `path,label` CSV.

Every reader returns a `LabelMap`: labels by file key. Files are matched by relative path first,
then by file name, then by stem, since collections are often re-foldered after download. The
format is detected from the file's header so users pass just `--labels NAME=CSV`.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from .errors import InputError

_YTID = re.compile(r"^Y?([A-Za-z0-9_-]{11})(?:_[-0-9.]+(?:_[-0-9.]+)?)?$")


class LabelFileError(InputError):
    """A label file in no format we know, or missing a companion file."""


class LabelMap:
    def __init__(self) -> None:
        self._by_key: dict[str, list[str]] = defaultdict(list)
        # the label file's own paths by file name and by stem, for collections re-foldered after download
        self._keys_by_name: dict[str, set[str]] = defaultdict(set)
        self._keys_by_stem: dict[str, set[str]] = defaultdict(set)

    def add(self, key: str, labels: list[str]) -> None:
        bucket = self._by_key[key]
        p = PurePosixPath(key)
        self._keys_by_name[p.name].add(key)
        self._keys_by_stem[p.stem].add(key)
        for label in labels:
            label = label.strip()
            if label and label not in bucket:
                bucket.append(label)

    def update(self, other: LabelMap) -> None:
        for key, labels in other._by_key.items():
            self.add(key, labels)

    def __len__(self) -> int:
        return len(self._by_key)

    def lookup(self, relpath: str) -> list[str]:
        """Labels for a file, by relative path, file name, stem, or YouTube id (AudioSet).

        A label-file path in another folder matches by file name (then stem) only when that name
        is unique in the label file, so two `1.wav` in different folders never swap labels.
        """
        p = PurePosixPath(relpath)
        for key in (relpath, p.name, p.stem):
            if key in self._by_key:
                return list(self._by_key[key])
        for index, key in ((self._keys_by_name, p.name), (self._keys_by_stem, p.stem)):
            keys = index.get(key, ())
            if len(keys) == 1:
                return list(self._by_key[next(iter(keys))])
        m = _YTID.match(p.stem)
        if m and m.group(1) in self._by_key:
            return list(self._by_key[m.group(1)])
        return []


def _split(cell: str, sep: str = ",") -> list[str]:
    return [c.strip() for c in cell.split(sep) if c.strip()]


def read_fsd50k(path: Path) -> LabelMap:
    """FSD50K ground truth (`dev.csv` / `eval.csv`): fname, labels ("Bark,Dog,Animal"), mids, ..."""
    out = LabelMap()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("fname"):  # short or blank rows carry nothing to match
                out.add(row["fname"].strip(), _split(row.get("labels") or ""))
    return out


def read_audioset(path: Path, class_index: Path | None = None) -> LabelMap:
    """AudioSet segments CSV (`# YTID, start_seconds, end_seconds, positive_labels`) with the
    class index (`class_labels_indices.csv`: index, mid, display_name) found beside it by default."""
    class_index = class_index or path.with_name("class_labels_indices.csv")
    if not class_index.exists():
        raise LabelFileError(f"AudioSet labels need class_labels_indices.csv beside {path} (mids -> names)")
    with open(class_index, newline="", encoding="utf-8") as f:
        names = {row["mid"]: row["display_name"] for row in csv.DictReader(f)}
    out = LabelMap()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if not row or row[0].startswith("#") or len(row) < 4:
                continue
            mids = _split(",".join(row[3:]).strip('"'))
            out.add(row[0].strip(), [names.get(m, m) for m in mids])
    return out


def read_bbc(path: Path) -> LabelMap:
    """BBC Sound Effects CSV: location (file name), description, category, ..."""
    out = LabelMap()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get("location"):
                continue
            labels = [row.get("description") or ""]
            if row.get("category"):
                labels += _split(row["category"])
            out.add(row["location"].strip(), labels)
    return out


def read_generic(path: Path) -> LabelMap:
    """`path,label` rows (a header is optional); several rows or ';'-separated labels per path."""
    out = LabelMap()
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["path", "label"], ["path", "labels"]):
        rows = rows[1:]
    for row in rows:
        if len(row) >= 2 and row[0].strip():
            out.add(row[0].strip(), _split(",".join(row[1:]), ";"))
    return out


def read_labels(path: str | Path) -> LabelMap:
    """Detect the format from the header and read it."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"label file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = [f.readline().strip().lower() for _ in range(4)]
    head = first[0]
    cols = [c.strip().strip('"') for c in head.lstrip("#").split(",")]
    if "fname" in cols and "labels" in cols:
        return read_fsd50k(path)
    if any(line.startswith("#") and "ytid" in line for line in first):
        return read_audioset(path)
    if "location" in cols and "description" in cols:
        return read_bbc(path)
    if len(cols) >= 2:
        return read_generic(path)
    raise LabelFileError(f"{path}: unknown label format (expected FSD50K, AudioSet, BBC SFX or path,label)")
