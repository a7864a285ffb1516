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
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from PIL import Image

from ..errors import ModelLoadError
from ..images import encode_jpeg
from ..settings import (
    OPENAI_BACKOFF,
    OPENAI_CONCURRENCY,
    OPENAI_MAX_RETRIES,
    OPENAI_TIMEOUT,
    VLM_MAX_NEW_TOKENS,
    VLM_RETRY_TEMPERATURE,
)
from .vlm_engine import Generation

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401: "check --api-key or $OPENAI_API_KEY", 403: "check --api-key", 404: "check --base-url and --vlm"}
MAX_BACKOFF = 60.0


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


def _refused(exc: requests.ConnectionError) -> bool:
    """No connection could be made (refused, unknown host), as opposed to one dropped mid-request."""
    from urllib3.exceptions import NewConnectionError  # also the parent of NameResolutionError

    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class OpenAIVLM:
    """Chat completions over HTTP with bounded concurrency, timeouts and retries."""

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
    ):
        self.model_id = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.concurrency = max(1, concurrency)
        self.batch_size = self.concurrency * 4  # enough queued work to keep every connection busy
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_new_tokens = max_new_tokens
        self._headers = {"Content-Type": "application/json"}
        self._key = api_key or ""  # only to redact it from a server's error text
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sonify-vlm")
        self.retries = 0  # requests retried so far (read by the stage for its stats)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show headers
        return f"OpenAIVLM(model={self.model_id!r}, url={self.url!r})"

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

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

    def _once(self, body: dict[str, Any]) -> Generation:
        try:
            resp = self._session().post(self.url, json=body, headers=self._headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise _Retryable(f"timeout after {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}", unreachable=_refused(exc)) from exc
        except requests.RequestException as exc:  # a body cut short, a bad chunk ...: the transfer, not the image
            raise _Retryable(f"transfer failed: {type(exc).__name__}") from exc
        if resp.status_code in FATAL_STATUS:  # the body may quote the key: never shown
            raise ServerRefused(f"{self.url} answered HTTP {resp.status_code} ({FATAL_STATUS[resp.status_code]})")
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status_code}", _retry_after(resp))
        if resp.status_code != 200:
            detail = resp.text[:300].replace(self._key, "***") if self._key else resp.text[:300]
            return Generation(None, 0, f"HTTP {resp.status_code}: {detail}")
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
            if isinstance(text, list):  # some servers return content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Retryable(f"malformed response: {type(exc).__name__}") from exc
        if not isinstance(text, str):
            raise _Retryable("malformed response: no message content")
        return Generation(text.strip(), tokens)

    def _request(self, img: Image.Image, prompt: str, sample_seed: int | None) -> Generation:
        try:
            body = self._body(img, prompt, sample_seed)
        except Exception as exc:  # the image cannot be encoded: that image's error, not the batch's
            return Generation(None, 0, f"cannot encode image: {type(exc).__name__}: {exc}")
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(body)
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
