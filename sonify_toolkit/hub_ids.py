"""Hub dataset references as users write them: `hf://ORG/NAME` (sonify's form) and `hf://datasets/ORG/NAME`
(huggingface_hub's filesystem form). One parser for render, report and the training recipe."""

from __future__ import annotations

from .errors import InputError

HF_SCHEME = "hf://"
HF_PREFIXES = ("hf://datasets/", HF_SCHEME)  # the filesystem form first: "datasets" is not an ORG here


class HubReferenceError(InputError):
    """An `hf://` reference without an ORG/NAME (or NAME) after the prefix."""


def is_hub_reference(text: str) -> bool:
    return str(text).startswith(HF_SCHEME)


def hub_dataset_name(text: str) -> str | None:
    """`hf://datasets/ORG/NAME` or `hf://ORG/NAME` -> "ORG/NAME"; None for anything that is not `hf://`.

    A bare `hf://` or `hf://datasets/` is a one-line error; `@revision` and sub-paths are not accepted.
    """
    text = str(text)
    for prefix in HF_PREFIXES:
        if text.startswith(prefix):
            name = text[len(prefix) :].strip("/")
            if not name or name.count("/") > 1 or "@" in name:
                raise HubReferenceError(f"expected hf://ORG/NAME or hf://datasets/ORG/NAME, got {text!r}")
            return name
    return None


def local_release(text: str) -> str:
    """A local folder for `text`: the path itself, or the Hub release downloaded into the Hub cache.

    The report reads a release's files (parquet, card, stats) directly, so a Hub release is fetched
    whole (`snapshot_download`, cached); a failure is one line naming the release and why.
    """
    name = hub_dataset_name(text)
    if name is None:
        return text
    from huggingface_hub import snapshot_download

    from .models.loading import load_failure_reason

    try:
        return snapshot_download(name, repo_type="dataset")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot fetch the release {name!r}: {load_failure_reason(name, exc)}; pass a local release folder instead"
        ) from exc
