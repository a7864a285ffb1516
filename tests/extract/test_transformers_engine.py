"""The transformers engine on a tiny random LLaVA loaded by path (its answers are noise)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sonify_toolkit.errors import ModelLoadError
from sonify_toolkit.models.vlm import TransformersVLM
from sonify_toolkit.models.vlm_factory import make_engine

PROMPT = "List the sounds."


@pytest.fixture(scope="module")
def engine(tiny_llava: Path) -> TransformersVLM:
    e = make_engine("transformers", str(tiny_llava), device="cpu", dtype="auto", batch_size=4, max_new_tokens=6)
    assert isinstance(e, TransformersVLM)
    return e


def test_batched_greedy_equals_one_by_one(engine: TransformersVLM) -> None:
    images = [
        Image.new("RGB", size, color)
        for size, color in [((64, 48), (200, 0, 0)), ((1, 1), (0, 0, 0)), ((300, 20), (0, 0, 255))]
    ]
    batched = engine.generate(images, PROMPT)
    single = [engine.generate([img], PROMPT)[0] for img in images]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.error is None and isinstance(g.text, str) and 0 < g.tokens <= 6 for g in batched)
    assert engine.model.dtype.is_floating_point and engine.device == "cpu"


def test_sampling_is_seeded_per_image(engine: TransformersVLM) -> None:
    """An image's sampled answer depends on its seed only, not on the images retried beside it."""
    a, b = Image.new("RGB", (40, 40), (10, 200, 10)), Image.new("RGB", (30, 50), (200, 10, 10))
    alone = engine.generate([b], PROMPT, sample_seeds=[4])[0]
    assert engine.generate([a, b], PROMPT, sample_seeds=[3, 4])[1].text == alone.text
    assert engine.generate([b, a], PROMPT, sample_seeds=[4, 5])[0].text == alone.text


def test_model_errors_become_generation_errors(engine: TransformersVLM) -> None:
    bad = Image.new("RGB", (0, 0))  # the processor cannot resize it: one error, the other image still answered
    out = engine.generate([Image.new("RGB", (8, 8)), bad], PROMPT)
    assert out[0].error is None and out[1].text is None and out[1].error


def test_not_a_vlm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"cannot load the VLM '{tmp_path}': the folder exists"):
        TransformersVLM(str(tmp_path), device="cpu")


def test_checkpoint_without_chat_template_fails_at_setup(tiny_llava: Path, tmp_path: Path) -> None:
    import json
    import shutil

    copy = tmp_path / "no_template"
    shutil.copytree(tiny_llava, copy)
    for f in copy.glob("*chat_template*"):
        f.unlink()
    for name in ("tokenizer_config.json", "processor_config.json"):
        p = copy / name
        if p.exists():
            cfg = json.loads(p.read_text())
            cfg.pop("chat_template", None)
            p.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="chat prompt"):
        TransformersVLM(str(copy), device="cpu")
