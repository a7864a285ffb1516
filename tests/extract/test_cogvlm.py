"""CogVLM-style checkpoints: remote code that builds its own inputs (no chat template), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sonify_toolkit import schema
from sonify_toolkit.cli.extract import extract
from sonify_toolkit.errors import EXIT_ITEM_ERRORS, ModelLoadError
from sonify_toolkit.models.vlm import TransformersVLM
from sonify_toolkit.models.vlm_factory import make_engine
from sonify_toolkit.shards import StageDir

from .conftest import color_images

PROMPT = "List the sounds."


@pytest.fixture(scope="module")
def engine(tiny_cogvlm: Path) -> TransformersVLM:
    e = make_engine("transformers", str(tiny_cogvlm), device="cpu", trust_remote_code=True, max_new_tokens=6)
    assert isinstance(e, TransformersVLM)
    return e


def test_the_model_builds_the_inputs_and_batches_match_single_images(engine: TransformersVLM) -> None:
    """The tiny model asserts the real call shape (`images` as one list per row, pixels in its dtype)."""
    assert engine.builds_own_inputs
    images = [Image.new("RGB", (40, 30), (220, 10, 10)), Image.new("RGB", (9, 64), (10, 10, 220))]
    batched = engine.generate(images, PROMPT)
    assert all(g.error is None and isinstance(g.text, str) and 0 < g.tokens <= 6 for g in batched), batched
    assert [g.text for g in batched] == [engine.generate([img], PROMPT)[0].text for img in images]
    assert batched[0].text != batched[1].text  # the image reaches the model: two images, two answers
    sampled = engine.generate(images, PROMPT, sample_seeds=[5, 6])
    assert all(g.error is None for g in sampled)
    assert engine.generate(images[1:], PROMPT, sample_seeds=[6])[0].text == sampled[1].text


def test_a_tokenizer_for_a_chat_template_model_is_refused(tiny_llava: Path) -> None:
    with pytest.raises(ModelLoadError, match="--tokenizer is for checkpoints that build their own inputs"):
        TransformersVLM(str(tiny_llava), device="cpu", tokenizer=str(tiny_llava))


def test_cogvlm_end_to_end_through_the_cli(tiny_cogvlm: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("extract")(extract)

    @app.callback()
    def _root() -> None:
        pass

    pics = color_images(tmp_path / "pics", ["red_1", "green_1", "blue_1"])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Name up to {max_concepts} sounds.")
    args = ["extract", str(pics), "-w", str(tmp_path / "w"), "--vlm", str(tiny_cogvlm), "--trust-remote-code"]
    args += ["--device", "cpu", "--max-new-tokens", "6", "--batch-size", "2", "--prompt-file", str(prompt), "--quiet"]
    res = CliRunner().invoke(app, args)
    sd = StageDir(tmp_path / "w" / "concepts" / tiny_cogvlm.name)
    rows = sd.read_table("", schema.CONCEPTS).to_pylist()
    assert res.exit_code == (EXIT_ITEM_ERRORS if any(r["error"] for r in rows) else 0), res.output
    assert [r["image_id"] for r in rows] == ["blue_1", "green_1", "red_1"]
    for r in rows:  # noise answers: parsed or unparsable after a retry, never a failed generation
        assert r["raw_response"] is not None and r["drop_reason"] != "generation_failed"
    params = json.loads((sd.path / "_stage.json").read_text())["params"]
    assert params["trust_remote_code"] is True and params["prompt"] == "Name up to 5 sounds."
    assert sum(s["counters"]["generated_tokens"] for s in sd.stats()) > 0
