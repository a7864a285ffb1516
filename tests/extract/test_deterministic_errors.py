"""Error rows say the same thing every run: no object reprs, memory addresses or temporary names."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonify_toolkit import images
from sonify_toolkit.error_text import describe, scrub
from sonify_toolkit.runner import run_stage

from .conftest import FakeServer, color_images
from .test_stage import openai_stage


def stage_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def test_extract_twice_over_a_non_image_jpg_writes_the_same_bytes(openai_server: FakeServer, tmp_path: Path) -> None:
    pics = color_images(tmp_path / "pics", ["red_1", "green_1"])
    (pics / "not_an_image.jpg").write_bytes(b"GIF89a? no: plain text that only has a .jpg name" * 4)
    (pics / "empty.jpg").write_bytes(b"")
    runs = []
    for name in ("a", "b"):
        run_stage(openai_stage(openai_server, [str(pics)]), tmp_path / name, show_progress=False)
        runs.append(stage_bytes(tmp_path / name / "concepts"))
    assert any("errors" in k for k in runs[0]) and runs[0] == runs[1]
    errors = b"".join(v for k, v in runs[0].items() if "errors" in k)
    assert b"not_an_image" in errors and b" at 0x" not in errors and b"BytesIO" not in errors


def test_decode_error_text_names_no_object() -> None:
    with pytest.raises(images.ImageDecodeError) as err:
        images.decode_image(b"not an image" * 10)
    assert str(err.value) == "UnidentifiedImageError: cannot identify image file <object>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot identify image file <_io.BytesIO object at 0x7f54c3a9b240>", "cannot identify image file <object>"),
        ("<soundfile.SoundFile object at 0xDEADBEEF12>: bad", "<object>: bad"),
        ("buffer at 0x7ffd5e8b1c40 overrun", "buffer at <address> overrun"),
        ("cannot open /tmp/tmpk2_8xq1z/part.wav", "cannot open <temporary file>"),
        ("cannot open /data/audio/tmpfiles/a.wav", "cannot open /data/audio/tmpfiles/a.wav"),  # a real folder stays
        ("segment 3 past the end (7.00 s)", "segment 3 past the end (7.00 s)"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_describe_keeps_the_type_and_cuts_long_text() -> None:
    assert describe(ValueError("")) == "ValueError"
    assert describe(OSError("x" * 5000), limit=100) == ("OSError: " + "x" * 5000)[:100]
