"""Fixtures for extraction: a tiny LLaVA, a folder of awkward images, a loopback OpenAI-style server."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

COLORS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20), "black": (0, 0, 0)}


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny.llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


def jpeg_bytes(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_awkward_images(root: Path) -> dict[str, str]:
    """Files of every awkward kind; returns {relative path: expected outcome ('ok' or an error reason)}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), "RGB")
    files: dict[str, tuple[bytes, str]] = {
        "rgb.jpg": (jpeg_bytes(noise), "ok"),
        "sub/rgba.png": (png_bytes(Image.new("RGBA", (40, 30), (255, 0, 0, 0))), "ok"),
        "cmyk.jpg": (jpeg_bytes(Image.new("CMYK", (50, 40), (0, 255, 255, 0))), "ok"),
        "gray.png": (png_bytes(Image.new("L", (33, 47), 128)), "ok"),
        "gray16.png": (png_bytes(Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)), "ok"),
        "one.png": (png_bytes(Image.new("RGB", (1, 1), (9, 9, 9))), "ok"),
        "palette.webp": (_webp(noise), "ok"),
        "huge.jpg": (jpeg_bytes(Image.new("RGB", (6000, 4000), (90, 120, 30)), quality=50), "ok"),
        "bad_exif.jpg": (bad_exif_jpeg(), "ok"),
        "corrupt.jpg": (b"this is not an image at all" * 10, "unreadable_image"),
        "truncated.jpg": (jpeg_bytes(noise)[:300], "unreadable_image"),
        "empty.png": (b"", "unreadable_image"),
        "bomb.png": (png_header_only(30_000, 30_000), "image_too_large"),
        ".hidden.jpg": (jpeg_bytes(noise), "skipped"),
        "notes.txt": (b"not an image", "skipped"),
    }
    for rel, (data, _) in files.items():
        (root / rel).write_bytes(data)
    return {rel: outcome for rel, (_, outcome) in files.items() if outcome != "skipped"}


# EXIF with orientation 6 and a known LONG tag (TileByteCounts) stored as ASCII: PIL reads it, but
# re-serialising it inside `ImageOps.exif_transpose` raises struct.error (found by fuzzing WEBP files)
BAD_EXIF = bytes.fromhex("4d4d002a000000080002014300020000000463616d0001120003000000010006000000000000")


def bad_exif_jpeg(size: tuple[int, int] = (8, 6)) -> bytes:
    return jpeg_bytes(Image.new("RGB", size, (200, 30, 30)), exif=b"Exif\x00\x00" + BAD_EXIF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size (a decompression bomb) without the pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _webp(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="WEBP")
    return buf.getvalue()


@pytest.fixture(scope="session")
def awkward_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("awkward")
    return root, write_awkward_images(root)


def color_images(root: Path, names: list[str]) -> Path:
    """Solid images named after their colour: the fake server answers by colour."""
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        color = n.split("_")[0]
        Image.new("RGB", (48, 32), COLORS[color]).save(root / f"{n}.png")
    return root


# --- a loopback OpenAI-compatible server -----------------------------------------------------------
def answer_by_color(body: dict[str, Any]) -> str:
    """red: two sounds; blue: a logo caption; green: nothing sounds; black: garbage (unparsable)."""
    parts = body["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert url.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    r, g, b = (int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    if r > 150:
        return (
            'Sure! Here is the JSON:\n```json\n{"caption": "A dog next to a river.", "sounds": '
            '[{"name": "Dog", "description": "a dog barking"}, {"name": "river", "description": "water flowing"}]}\n```'
        )
    if b > 150:
        return '{"caption": "The logo of a company on a white wall.", "sounds": [{"name": "wall", "description": "x"}]}'
    if g > 150:
        return '{"caption": "A quiet field.", "sounds": []}'
    return "%%% ??? ###"


@dataclass
class FakeServer:
    url: str
    answer: Callable[[dict[str, Any]], str] = answer_by_color
    # per request, in order: "500", "429", "401", "404", "400", "slow", "bad", "short" (body cut), "ok"
    script: list[str] = field(default_factory=list)
    slow_seconds: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        return len(self.requests)


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                action = server.script.pop(0) if server.script else "ok"
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                elif action == "500":
                    self._send(500, b'{"error": "internal"}')
                elif action in ("401", "404", "400"):  # a server quoting the key back, as some do
                    auth = self.headers.get("Authorization", "")
                    self._send(int(action), json.dumps({"error": f"refused {auth}"}).encode())
                elif action == "short":  # promises more bytes than it sends, then hangs up
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"choices": [')
                    self.wfile.flush()
                    self.close_connection = True
                elif action == "429":
                    self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
                elif action == "bad":
                    self._send(200, b'{"choices": [ this is not json')
                else:
                    if action == "slow":
                        time.sleep(server.slow_seconds)
                    else:
                        time.sleep(0.01)  # lets concurrent requests overlap
                    text = server.answer(body)
                    out = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split()), "total_tokens": 0},
                    }
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out
                        self._send(200, json.dumps(out).encode())
            finally:
                with server.lock:
                    server.in_flight -= 1

    return Handler


@contextlib.contextmanager
def serve_fake_vlm() -> Iterator[FakeServer]:
    """A loopback OpenAI-style VLM server on a free port, answering by image colour and counting requests."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    httpd.RequestHandlerClass = _handler(fake)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def openai_server() -> Iterator[FakeServer]:
    with serve_fake_vlm() as fake:
        yield fake


@pytest.fixture(scope="session")
def tiny_cogvlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .tiny_cogvlm import build_tiny_cogvlm

    return build_tiny_cogvlm(tmp_path_factory.mktemp("tiny_cogvlm"), ["List the sounds.", "Name up to 5 sounds."])
