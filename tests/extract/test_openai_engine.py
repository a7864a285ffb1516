"""The openai engine against a real HTTP server on loopback that can fail on demand."""

from __future__ import annotations

import pytest
from PIL import Image

from sonify_toolkit.models.vlm_openai import OpenAIVLM, ServerRefused

from .conftest import COLORS, FakeServer

RED = Image.new("RGB", (16, 16), COLORS["red"])


def engine(server: FakeServer, **kw: object) -> OpenAIVLM:
    opts = {"concurrency": 4, "timeout": 5.0, "max_retries": 3, "backoff": 0.01, "max_new_tokens": 64} | kw
    return OpenAIVLM("served/model-7b", base_url=server.url, api_key="sk-test-secret", **opts)  # type: ignore[arg-type]


def test_wire_format_key_and_order(openai_server: FakeServer) -> None:
    e = engine(openai_server)
    images = [Image.new("RGB", (16, 16), COLORS[c]) for c in ("red", "green", "blue", "red", "green")]
    out = e.generate(images, "list the sounds")
    e.close()
    assert [g.error for g in out] == [None] * 5
    assert '"Dog"' in out[0].text and '"sounds": []' in out[1].text and "logo" in out[2].text
    assert out[3].text == out[0].text and out[0].tokens > 0
    body = openai_server.requests[0]
    assert body["model"] == "served/model-7b" and body["temperature"] == 0.0 and body["max_tokens"] == 64
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "list the sounds"}
    assert all(h["Authorization"] == "Bearer sk-test-secret" for h in openai_server.headers)
    assert openai_server.max_in_flight <= 4
    assert "sk-test-secret" not in repr(e)


def test_retries_500_429_and_malformed_bodies(openai_server: FakeServer) -> None:
    openai_server.script = ["500", "429", "bad", "ok"]
    e = engine(openai_server, concurrency=1)
    (g,) = e.generate([RED], "p")
    assert g.error is None and "dog" in g.text.lower()
    assert openai_server.count() == 4 and e.retries == 3


def test_gives_up_after_max_retries(openai_server: FakeServer) -> None:
    openai_server.script = ["500"] * 10
    e = engine(openai_server, concurrency=1, max_retries=2)
    (g,) = e.generate([RED], "p")
    assert g.text is None and "HTTP 500" in g.error and "3 attempts" in g.error
    assert openai_server.count() == 3
    assert "sk-test-secret" not in g.error


def test_slow_server_times_out_then_recovers(openai_server: FakeServer) -> None:
    openai_server.script = ["slow"]
    openai_server.slow_seconds = 1.5
    e = engine(openai_server, concurrency=1, timeout=0.3, max_retries=1)
    (g,) = e.generate([RED], "p")
    assert g.error is None and openai_server.count() == 2


def test_unreachable_server_stops_the_run() -> None:
    """Not one error row per image left (rows a resumed run never sends again): the run stops, resumable."""
    e = OpenAIVLM("m", base_url="http://127.0.0.1:9/v1", concurrency=2, timeout=0.5, max_retries=1, backoff=0.01)
    with pytest.raises(ServerRefused, match="cannot reach"):
        e.generate([RED, RED], "p")


def test_a_body_cut_short_is_retried(openai_server: FakeServer) -> None:
    openai_server.script = ["short", "ok"]
    (g,) = engine(openai_server, concurrency=1).generate([RED], "p")
    assert g.error is None and "dog" in g.text.lower() and openai_server.count() == 2


@pytest.mark.parametrize("status", ["401", "404"])
def test_wrong_key_url_or_model_stops_the_run_without_the_key(openai_server: FakeServer, status: str) -> None:
    openai_server.script = [status] * 3
    with pytest.raises(ServerRefused, match=f"HTTP {status}") as err:
        engine(openai_server, concurrency=1).generate([RED], "p")
    assert "sk-test-secret" not in str(err.value) and openai_server.count() == 1  # not retried


def test_a_refused_run_sends_no_more_requests(openai_server: FakeServer) -> None:
    openai_server.script = ["404"] * 10
    e = engine(openai_server, concurrency=1)
    with pytest.raises(ServerRefused):
        e.generate([RED] * 6, "p")
    e.close()  # waits for whatever is still running or queued
    assert openai_server.count() <= 2


def test_a_refused_image_is_its_error_row_with_the_key_redacted(openai_server: FakeServer) -> None:
    openai_server.script = ["400"]
    (g,) = engine(openai_server, concurrency=1).generate([RED], "p")
    assert g.text is None and "HTTP 400" in g.error and "sk-test-secret" not in g.error


def test_sampled_retry_sends_temperature_and_seed(openai_server: FakeServer) -> None:
    e = engine(openai_server)
    e.generate([RED, RED], "p", sample_seeds=[7, 3])
    seeds = sorted(b["seed"] for b in openai_server.requests)
    assert seeds == [3, 7] and all(b["temperature"] > 0 for b in openai_server.requests)
