"""A checkpoint that cannot be loaded is one line: which model, why (offline, Hub unreachable, no folder), what to do.

transformers says "We couldn't connect to 'https://huggingface.co'..." for all of these without
naming the model; every `from_pretrained` of the toolkit goes through `load_pretrained` instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ModelLoadError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def offline_mode() -> bool:
    """Whether the Hub is switched off for this process (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep in model.replace("/", "", 1)


def load_failure_reason(model: str, exc: BaseException) -> str:
    """Why `model` did not load, in words a user can act on (no traceback needed)."""
    if Path(model).expanduser().is_dir():
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the folder exists but is not a loadable checkpoint ({first})"
    if _looks_like_path(model):
        return "no such folder"
    names = {type(e).__name__ for e in _chain(exc)}
    if offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE) and it is not in the local Hub cache"
    if names & {"ConnectError", "ConnectionError", "ConnectTimeout", "gaierror", "NewConnectionError", "Timeout"}:
        return "the Hub (https://huggingface.co) cannot be reached and it is not in the local Hub cache"
    if "GatedRepoError" in names:
        return "the repository is gated: accept its terms on the Hub and log in (hf auth login)"
    if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError", "HFValidationError"}:
        return "no such model on the Hub (or it is private: log in with hf auth login)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first


def load_pretrained(load: Callable[..., T], model: str, *, what: str, option: str, **kwargs: Any) -> T:
    """`load(model, **kwargs)` (a `from_pretrained`), turning any failure into one `ModelLoadError` line.

    `what` names the role ("CLAP model", "AST feature extractor"); `option` is the flag that passes
    a local folder instead.
    """
    try:
        return load(model, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        reason = load_failure_reason(model, exc)
        raise ModelLoadError(
            f"cannot load the {what} '{model}': {reason}; pass a local folder with {option} PATH "
            "(a save_pretrained or `hf download` copy)"
        ) from exc


def load_encoder(
    model_cls: Any,
    processor_cls: Any,
    model: str,
    *,
    what: str,
    processor_role: str,
    option: str,
    revision: str | None,
    device: Any,
    dtype: Any,
) -> tuple[Any, Any]:
    """An encoder checkpoint's model (on `device`, in eval mode) and its processor, each failing in one line."""
    net = load_pretrained(
        model_cls.from_pretrained, model, what=f"{what} model", option=option, revision=revision, dtype=dtype
    )
    net.to(device).eval()
    processor = load_pretrained(
        processor_cls.from_pretrained, model, what=f"{what} {processor_role}", option=option, revision=revision
    )
    return net, processor
