"""The OpenAI-compatible engine: any chat-completions server (vLLM, SGLang, TGI, hosted APIs).

This is how a run gets vLLM throughput on many GPUs: the server batches, we keep `concurrency`
requests in flight per worker. Images travel as JPEG data URLs. 429, 5xx, timeouts, broken
connections and malformed bodies are retried with exponential backoff (honouring Retry-After);
what still fails becomes that image's `Generation.error`. Two failures are the run's, not the
image's, and stop it (`ServerRefused`) instead of writing an error row for every image left, rows
a resumed run would never send again: the server refusing the request itself (401/403: the key,
404: the URL or the model name), and a server that cannot be reached at all once retries are spent.
The API key lives only in the request header: it is never part of an error message, a log line, a
table or the stage parameters.

Deadlines and caps. `timeout` is wall-clock per attempt, from connect to the last byte, whatever
the server trickles: a watchdog shuts the socket down when it expires (socket timeouts alone bound
only the gap between two bytes, so a server sending a byte every second kept a request alive for
minutes). The body is read in blocks up to `max_body_bytes` (a longer one is that image's error,
never held in memory), and the answer kept is cut to `max_answer_chars`, with
`Generation.truncated` set so the concepts row says it was cut.

Why the standard library's `http.client` and not the official `openai` client: its retries,
Retry-After handling and typed errors are what this module already does in ~40 lines, but its
`timeout` (httpx's) is per phase, like `requests`', so the wall-clock deadline would still be ours
to build around it, and it reads whole bodies before we could cap them; it would add openai,
httpx, pydantic and anyio to the core dependencies for no behaviour we lack. One connection per
request (no keep-alive), so a stale pooled socket never costs a retry; proxies are not used (the
servers this is for are vLLM/SGLang on the cluster network).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from ..error_text import describe
from ..errors import InputError, ModelLoadError
from ..images import encode_jpeg
from ..settings import (
    OPENAI_BACKOFF,
    OPENAI_CONCURRENCY,
    OPENAI_MAX_ANSWER_CHARS,
    OPENAI_MAX_RETRIES,
    OPENAI_TIMEOUT,
    VLM_MAX_NEW_TOKENS,
    VLM_RETRY_TEMPERATURE,
)
from .vlm_engine import Generation

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401: "check --api-key or $OPENAI_API_KEY", 403: "check --api-key", 404: "check --base-url and --vlm"}
MAX_BACKOFF = 60.0
READ_BLOCK = 64 << 10


class ServerRefused(ModelLoadError):
    """Every request would fail the same way (wrong key, URL or model, server gone): the run stops, resumable.

    A `ModelLoadError`: the model cannot be reached as configured, which the user fixes (one line, exit 2)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable  # no connection at all: fatal once the retries are spent


def data_url(img: Image.Image) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(encode_jpeg(img)).decode("ascii")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _Deadline:
    """Shuts a connection's socket down when the attempt's time is up, unblocking any read or write."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.conn, self.expired = conn, threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired.set()
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self.conn.close()


class OpenAIVLM:
    """Chat completions over HTTP with bounded concurrency, wall-clock deadlines, caps and retries."""

    def __init__(
        self,
        model: str,
        base_url: str = "http://localhost:8000/v1",
        api_key: str | None = None,
        concurrency: int = OPENAI_CONCURRENCY,
        timeout: float = OPENAI_TIMEOUT,
        max_retries: int = OPENAI_MAX_RETRIES,
        backoff: float = OPENAI_BACKOFF,
        max_new_tokens: int = VLM_MAX_NEW_TOKENS,
        max_answer_chars: int = OPENAI_MAX_ANSWER_CHARS,
    ):
        self.model_id = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--base-url must be an http(s) URL, got {base_url!r}")
        self._https, self._host, self._port = parts.scheme == "https", parts.hostname, parts.port
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.concurrency = max(1, concurrency)
        self.batch_size = self.concurrency * 4  # enough queued work to keep every connection busy
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_new_tokens = max_new_tokens
        self.max_answer_chars = max_answer_chars
        # a JSON body escapes what it carries (\uXXXX: up to 6 bytes a character): room for the capped
        # answer plus the envelope; anything longer is not read at all
        self.max_body_bytes = max(1 << 20, 8 * max_answer_chars)
        self._headers = {"Content-Type": "application/json", "Connection": "close"}
        self._key = api_key or ""  # only to redact it from a server's error text
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sonify-vlm")
        self.retries = 0  # requests retried so far (read by the stage for its stats)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show headers
        return f"OpenAIVLM(model={self.model_id!r}, url={self.url!r})"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            import ssl

            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _body(self, img: Image.Image, prompt: str, sample_seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url(img)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": self.max_new_tokens,
            "temperature": 0.0,
        }
        if sample_seed is not None:
            body.update(temperature=VLM_RETRY_TEMPERATURE, seed=sample_seed)
        return body

    def _exchange(self, payload: bytes) -> tuple[int, str | None, bytes | None]:
        """One POST within `timeout` seconds of wall clock: (status, Retry-After, body or None if too long)."""
        started = time.monotonic()
        conn = self._connection(self.timeout)
        try:
            conn.connect()  # bounded by the socket timeout; the watchdog covers everything after
        except (ConnectionRefusedError, socket.gaierror) as exc:
            conn.close()
            raise _Retryable(f"connection failed: {type(exc).__name__}", unreachable=True) from None
        except TimeoutError:
            conn.close()
            raise _Retryable(f"timeout after {self.timeout:g} s") from None
        except OSError as exc:
            conn.close()
            raise _Retryable(f"connection failed: {type(exc).__name__}") from None
        with _Deadline(conn, max(0.0, self.timeout - (time.monotonic() - started))) as deadline:
            try:
                conn.request("POST", self._path, body=payload, headers=self._headers)
                resp = conn.getresponse()
                if resp.status in FATAL_STATUS or resp.status in RETRY_STATUS:
                    return resp.status, resp.getheader("Retry-After"), b""
                chunks, size = [], 0
                while block := resp.read(READ_BLOCK):
                    size += len(block)
                    if size > self.max_body_bytes:
                        return resp.status, None, None
                    chunks.append(block)
            except (OSError, http.client.HTTPException) as exc:
                if deadline.expired.is_set():
                    raise _Retryable(f"timeout after {self.timeout:g} s") from None
                raise _Retryable(f"transfer failed: {type(exc).__name__}") from None
            if deadline.expired.is_set():  # the socket was shut down under a read that then saw "the end"
                raise _Retryable(f"timeout after {self.timeout:g} s")
        return resp.status, None, b"".join(chunks)

    def _once(self, payload: bytes) -> Generation:
        status, retry_after, raw = self._exchange(payload)
        if status in FATAL_STATUS:  # the body may quote the key: never read, never shown
            raise ServerRefused(f"{self.url} answered HTTP {status} ({FATAL_STATUS[status]})")
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status}", _retry_after(retry_after))
        if raw is None:  # the same request would get the same flood: that image's error, not retried
            return Generation(None, 0, f"response body over {self.max_body_bytes:,} bytes: not read")
        if status != 200:
            text = raw[:300].decode("utf-8", errors="replace")
            detail = text.replace(self._key, "***") if self._key else text
            return Generation(None, 0, f"HTTP {status}: {detail}")
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"]["content"]
            if isinstance(text, list):  # some servers return content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Retryable(f"malformed response: {type(exc).__name__}") from exc
        if not isinstance(text, str):
            raise _Retryable("malformed response: no message content")
        text = text.strip()
        if len(text) > self.max_answer_chars:
            return Generation(text[: self.max_answer_chars], tokens, truncated=True)
        return Generation(text, tokens)

    def _request(self, img: Image.Image, prompt: str, sample_seed: int | None) -> Generation:
        try:
            payload = json.dumps(self._body(img, prompt, sample_seed)).encode()
        except Exception as exc:  # the image cannot be encoded: that image's error, not the batch's
            return Generation(None, 0, f"cannot encode image: {describe(exc)}")
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(payload)
            except _Retryable as exc:
                if attempt == self.max_retries:
                    if exc.unreachable:
                        raise ServerRefused(f"cannot reach {self.url} ({exc}, {attempt + 1} attempts)") from exc
                    return Generation(None, 0, f"{exc} (after {attempt + 1} attempts)")
                with self._lock:
                    self.retries += 1
                wait = exc.retry_after if exc.retry_after is not None else self.backoff * 2**attempt
                time.sleep(min(MAX_BACKOFF, wait) * (1 + 0.1 * random.random()))
        raise AssertionError("unreachable")

    def generate(
        self, images: Sequence[Image.Image], prompt: str, sample_seeds: Sequence[int] | None = None
    ) -> list[Generation]:
        """Every image concurrently (at most `concurrency` in flight); answers in input order."""
        seeds = [None] * len(images) if sample_seeds is None else list(sample_seeds)
        futures = [self._pool.submit(self._request, img, prompt, seed) for img, seed in zip(images, seeds, strict=True)]
        try:
            return [f.result() for f in futures]
        except ServerRefused:  # the run stops: requests still queued would fail the same way, slowly
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=True)
