"""data: images inside SA-1B-style tar shards are read straight from their byte span, not by walking the tar."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

from training_recipe import data


def _tar_of_images(tmp_path, mode: str) -> tuple:
    src = tmp_path / "src"
    src.mkdir()
    arrays = {}
    for i in range(3):
        arr = np.full((8, 10, 3), 40 * (i + 1), np.uint8)
        Image.fromarray(arr).save(src / f"sa_{i}.png")
        arrays[f"sa_{i}"] = arr
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "sa_000000.tar", mode) as tar:
        for i in range(3):
            tar.add(src / f"sa_{i}.png", arcname=f"sa_{i}.png")
    return root, arrays


def test_plain_tar_members_are_read_from_their_span_without_opening_the_tar(tmp_path, monkeypatch) -> None:
    root, arrays = _tar_of_images(tmp_path, "w")
    refs = data.index_images(root)
    assert sorted(refs) == ["sa_0", "sa_1", "sa_2"]
    assert all(ref.count(data.TAR_SEP) == 2 for ref in refs.values())  # tar::member::OFFSET+SIZE

    def no_walk(*args, **kwargs):
        raise AssertionError("tarfile.open walks every header of a ~20K-member shard for each image")

    monkeypatch.setattr(tarfile, "open", no_walk)
    for image_id, ref in refs.items():
        np.testing.assert_array_equal(np.asarray(data.open_image(root, ref)), arrays[image_id])


def test_compressed_tar_members_fall_back_to_the_member_name(tmp_path) -> None:
    root, arrays = _tar_of_images(tmp_path, "w:gz")
    refs = data.index_images(root)
    assert refs["sa_1"] == f"sa_000000.tar{data.TAR_SEP}sa_1.png"
    np.testing.assert_array_equal(np.asarray(data.open_image(root, refs["sa_1"])), arrays["sa_1"])


def test_a_truncated_tar_is_an_error_not_a_short_image(tmp_path) -> None:
    root, _ = _tar_of_images(tmp_path, "w")
    ref = data.index_images(root)["sa_2"]
    tar = root / "sa_000000.tar"
    offset = int(ref.rsplit(data.TAR_SEP, 1)[1].split("+")[0])
    tar.write_bytes(tar.read_bytes()[: offset + 10])
    with pytest.raises(ValueError, match="truncated"):
        data.open_image(root, ref)
