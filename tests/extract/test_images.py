"""Image sources (folder, SA-1B tar, manifest, HF dataset saved or streamed) and the robust decoder."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sonify_toolkit import images as imgs
from sonify_toolkit.stages.extract import plan_inputs

from .conftest import bad_exif_jpeg, jpeg_bytes, png_bytes


def read_all(items: list[tuple]) -> dict[str, object]:
    reader = imgs.ImageReader("image")
    try:
        out = {}
        for item, payload in reader.iter_payloads(items):
            if isinstance(payload, imgs.ImageDecodeError):
                out[item[1]] = payload.reason
                continue
            try:
                out[item[1]] = imgs.decode_image(payload, 256).size
            except imgs.ImageDecodeError as exc:
                out[item[1]] = exc.reason
        return out
    finally:
        reader.close()


def test_folder_ids_outcomes_and_odd_images(awkward_images: tuple[Path, dict[str, str]]) -> None:
    root, expected = awkward_images
    items = imgs.plan_folder(root)
    assert [it[1] for it in items] == sorted(str(Path(r).with_suffix("")) for r in expected)
    got = read_all(items)
    for rel, outcome in expected.items():
        value = got[str(Path(rel).with_suffix(""))]
        if outcome == "ok":
            assert isinstance(value, tuple) and max(value) <= 256 and min(value) >= 1, rel
        else:
            assert value == outcome, rel
    assert got["huge"] == (256, 171)  # 6000x4000 decoded in draft mode, then downscaled
    assert got["one"] == (1, 1)


def test_exif_orientation_applied_and_a_malformed_exif_is_not_fatal() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees for display
    assert imgs.decode_image(jpeg_bytes(Image.new("RGB", (8, 6)), exif=exif)).size == (6, 8)
    img = imgs.decode_image(bad_exif_jpeg((8, 6)))  # exif_transpose raises struct.error on it: kept as stored
    assert img.size == (8, 6) and img.mode == "RGB"


def test_modes_become_rgb() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent: white, not black
    assert imgs.decode_image(png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)
    cmyk = imgs.decode_image(jpeg_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200
    assert imgs.decode_image(png_bytes(Image.new("L", (3, 3), 77))).getpixel((1, 1)) == (77, 77, 77)
    pal = Image.new("P", (5, 5), 3)
    assert imgs.decode_image(png_bytes(pal)).mode == "RGB"


def test_stem_collisions_keep_extensions(tmp_path: Path) -> None:
    for name in ("a.jpg", "a.png", "b.webp"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    assert [it[1] for it in imgs.plan_folder(tmp_path)] == ["a.jpg", "a.png", "b"]


def make_sa1b_tar(path: Path, ids: list[int], broken: int | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for i in ids:
            for name, data in (
                (f"sa_{i}.jpg", jpeg_bytes(Image.new("RGB", (30 + i % 7, 20), (i % 255, 40, 90)))),
                (f"sa_{i}.json", b'{"image": {}, "annotations": []}'),
            ):
                if i == broken and name.endswith(".jpg"):
                    data = data[:100]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_sa1b_tars_read_in_place(tmp_path: Path) -> None:
    d = tmp_path / "sa1b"
    d.mkdir()
    make_sa1b_tar(d / "sa_000000.tar", [223750, 11, 5], broken=5)
    make_sa1b_tar(d / "sa_000001.tar", [42])
    items = plan_inputs([str(d)])  # a folder of tars
    assert [it[1] for it in items] == ["sa_223750", "sa_11", "sa_5", "sa_42"]
    assert imgs.image_path(items[0]) == f"{d / 'sa_000000.tar'}::sa_223750.jpg"
    got = read_all(items)
    assert got["sa_223750"] == (30 + 223750 % 7, 20) and got["sa_42"] == (30 + 42 % 7, 20)
    assert got["sa_5"] == "unreadable_image"
    assert plan_inputs([str(d / "sa_000001.tar")])[0][1] == "sa_42"
    with pytest.raises(imgs.ImageSourceError, match="duplicate"):
        plan_inputs([str(d / "sa_000001.tar"), str(d)])


def test_manifests_parquet_and_csv(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "pics" / "x.png")
    Image.new("RGB", (12, 10)).save(tmp_path / "y.jpg")
    rows = {"image_id": ["img-2", "img-1", "img-3"], "path": ["pics/x.png", str(tmp_path / "y.jpg"), "missing.png"]}
    pq.write_table(pa.table(rows), tmp_path / "m.parquet")
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "image_id", "extra"])
        w.writerows(zip(rows["path"], ["007", "008", "009"], "abc", strict=True))
    items = plan_inputs([str(tmp_path / "m.parquet")])
    assert [it[1] for it in items] == ["img-1", "img-2", "img-3"]
    assert read_all(items) == {"img-1": (12, 10), "img-2": (10, 10), "img-3": "unreadable_image"}
    assert [it[1] for it in plan_inputs([str(tmp_path / "m.csv")])] == ["007", "008", "009"]  # ids stay strings
    pq.write_table(pa.table({"id": ["a"], "file": ["b"]}), tmp_path / "bad.parquet")
    with pytest.raises(imgs.ImageSourceError, match="image_id"):
        plan_inputs([str(tmp_path / "bad.parquet")])
    pq.write_table(pa.table({"image_id": ["a", None, "c"], "path": ["a.png", "b.png", ""]}), tmp_path / "gap.parquet")
    with pytest.raises(imgs.ImageSourceError, match=r"2 row\(s\) without image_id or path \(first: row 1\)"):
        plan_inputs([str(tmp_path / "gap.parquet")])


def _hf_dataset(n: int):
    import datasets

    feats = datasets.Features({"uid": datasets.Value("string"), "image": datasets.Image()})
    return datasets.Dataset.from_dict(
        {
            "uid": [f"u{i:03d}" for i in range(n)],
            "image": [Image.new("RGB", (20 + i, 10), (i * 10, 0, 0)) for i in range(n)],
        },
        features=feats,
    )


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    ds = _hf_dataset(5)
    ds.save_to_disk(str(tmp_path / "saved"))
    name = str(tmp_path / "saved")
    items = imgs.plan_hf(name, "train", "image", "uid")
    assert [it[1] for it in items] == [f"u{i:03d}" for i in range(5)]
    assert imgs.image_path(items[3]) == f"hf://{name}/train#3"
    assert read_all(items[2:4]) == {"u002": (22, 10), "u003": (23, 10)}
    assert [it[1] for it in imgs.plan_hf(name, "train", "image", None)] == ["0", "1", "2", "3", "4"]
    with pytest.raises(imgs.ImageSourceError, match="no column"):
        imgs.plan_hf(name, "train", "img", None)


def test_hf_dataset_streamed_from_parquet_files(tmp_path: Path) -> None:
    ds = _hf_dataset(7)
    d = tmp_path / "pq" / "data"
    d.mkdir(parents=True)
    ds.select(range(4)).to_parquet(str(d / "train-00000-of-00002.parquet"))
    ds.select(range(4, 7)).to_parquet(str(d / "train-00001-of-00002.parquet"))
    name = str(tmp_path / "pq")
    items = imgs.plan_hf(name, "train", "image", "uid")
    assert [it[1] for it in items] == [f"u{i:03d}" for i in range(7)]
    assert [it[4] for it in items] == [0, 0, 0, 0, 1, 1, 1]  # one dataset file per group: bounded skips
    got = read_all(items[3:6])  # crosses the file boundary
    assert got == {"u003": (23, 10), "u004": (24, 10), "u005": (25, 10)}
    no_id = imgs.plan_hf(name, "train", "image", None)
    assert [it[1] for it in no_id] == [str(i) for i in range(7)]
    with pytest.raises(imgs.ImageSourceError, match="no column 'key'"):
        imgs.plan_hf(name, "train", "image", "key")


def test_hf_rows_stream_one_image_at_a_time(tmp_path: Path) -> None:
    """A shard of a saved dataset is read a row at a time, never a shard's images in memory at once."""
    import tracemalloc

    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    blobs = [rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes() for _ in range(40)]  # 8 MB in all
    feats = datasets.Features({"image": datasets.Image()})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs]}, features=feats)
    ds.save_to_disk(str(tmp_path / "big"))
    del ds, feats
    items = imgs.plan_hf(str(tmp_path / "big"), "train", "image", None)
    reader = imgs.ImageReader("image")
    tracemalloc.start()
    try:
        for k, (_, payload) in enumerate(reader.iter_payloads(items)):
            assert payload == blobs[k]
            del payload
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        reader.close()
    assert peak < 2_000_000, peak
