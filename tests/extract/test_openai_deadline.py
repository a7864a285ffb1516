"""--timeout is wall-clock per request whatever the server trickles; the stored answer is capped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from sonify_toolkit.models.vlm_openai import OpenAIVLM
from sonify_toolkit.settings import OPENAI_MAX_ANSWER_CHARS

from .conftest import FakeServer

RED = Image.new("RGB", (16, 16), (220, 20, 20))


class Trickler:
    """A loopback server that answers every request one byte every `gap` seconds, for ever.

    `headers_first`: a valid status line and headers at once, then the body byte by byte (a stalled
    stream); otherwise the status line itself is trickled."""

    def __init__(self, headers_first: bool, gap: float = 0.5):
        self.headers_first, self.gap = headers_first, gap
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.requests = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(1 << 20)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            try:
                if self.headers_first:
                    conn.sendall(head)
                    head = b'{"choices": [{"message": {"content": "' + b"a" * 100000
                for i in range(len(head)):
                    if self.stop.is_set():
                        return
                    conn.sendall(head[i : i + 1])
                    time.sleep(self.gap)
            except OSError:  # the client hung up: what a deadline does
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=[True, False], ids=["body-trickled", "status-line-trickled"])
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    server = Trickler(headers_first=request.param)
    yield server
    server.close()


def test_a_trickling_server_cannot_keep_a_request_past_its_timeout(trickler: Trickler) -> None:
    e = OpenAIVLM("m", base_url=trickler.url, concurrency=1, timeout=2.0, max_retries=1, backoff=0.01)
    started = time.monotonic()
    (g,) = e.generate([RED], "p")
    elapsed = time.monotonic() - started
    e.close()
    assert g.text is None and "timeout after 2 s" in g.error and "2 attempts" in g.error
    assert trickler.requests == 2
    assert 4.0 <= elapsed < 5.5  # two attempts of 2 s each, not the minutes the trickle would take


def test_a_long_answer_is_cut_and_says_so(openai_server: FakeServer) -> None:
    openai_server.answer = lambda body: '{"caption": "a dog", "sounds": []}' + " pad" * 5000
    e = OpenAIVLM("m", base_url=openai_server.url, concurrency=1, max_answer_chars=1000)
    (g,) = e.generate([RED], "p")
    assert g.error is None and g.truncated and len(g.text) == 1000 and g.text.startswith('{"caption"')
    openai_server.answer = lambda body: "short"
    (g,) = e.generate([RED], "p")
    assert g.text == "short" and not g.truncated


def test_a_flood_is_never_read_whole(openai_server: FakeServer) -> None:
    openai_server.answer = lambda body: "x" * (3 << 20)
    e = OpenAIVLM("m", base_url=openai_server.url, concurrency=1, max_retries=3, max_answer_chars=1000)
    (g,) = e.generate([RED], "p")
    assert g.text is None and "over 1,048,576 bytes" in g.error
    assert openai_server.count() == 1  # the same request would get the same flood: not retried


def test_the_concepts_row_says_when_the_answer_was_cut(openai_server: FakeServer, tmp_path) -> None:
    from sonify_toolkit.runner import run_stage

    from .conftest import color_images
    from .test_stage import concepts, openai_stage

    long = '{"caption": "A dog.", "sounds": [{"name": "dog", "description": "a dog barking"}]}' + " " + "z" * 40_000
    pics = color_images(tmp_path / "pics", ["red_1"])
    openai_server.answer = lambda body: long
    run_stage(openai_stage(openai_server, [str(pics)]), tmp_path / "w", show_progress=False)
    (row,) = concepts(tmp_path / "w", "served/vlm").to_pylist()
    assert row["raw_response_truncated"] is True and len(row["raw_response"]) == OPENAI_MAX_ANSWER_CHARS


def test_older_concepts_tables_stay_readable(tmp_path) -> None:
    import pyarrow as pa

    from sonify_toolkit import schema

    old = pa.schema([f for f in schema.CONCEPTS if f.name != "raw_response_truncated"])
    row = {"image_id": "a", "vlm": "v", "concepts": [], "keep": False}
    table = schema.conform(pa.Table.from_pylist([row], schema=old), schema.CONCEPTS)
    assert table.schema == schema.CONCEPTS and table.column("raw_response_truncated").to_pylist() == [None]
