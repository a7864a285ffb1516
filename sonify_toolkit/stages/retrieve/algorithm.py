"""Algorithm 1 of the paper as pure numpy over top-k similarity rows: SSR, dynamic threshold, weighted draw.

Everything here works on a matrix of top-k cosine similarities (one row per concept, best first)
and per-concept uniforms, so it runs vectorised over a whole shard and knows nothing of files,
models or indexes. The randomness of a concept comes only from `(seed, pair_id, concept index)`
through a stable hash, so a pair gets the same sources whatever the sharding or worker count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import InputError

# r values within this distance of tau count as reaching it: the mean of k equal scores can land
# one ulp above them, which must not empty the candidate set of "many equally good matches".
TIE_TOLERANCE = 1e-12


def ssr(similarity: np.ndarray) -> np.ndarray:
    """Signed square root r = sign(s) * sqrt(|s|): damps outliers and narrows the spread of top matches."""
    s = np.asarray(similarity, dtype=np.float64)
    return np.sign(s) * np.sqrt(np.abs(s))


def threshold(r: np.ndarray) -> np.ndarray:
    """Dynamic threshold tau = mean of r over the top-k (per row)."""
    return np.asarray(r, dtype=np.float64).mean(axis=-1)


def candidate_mask(r: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Candidates C = {i : r_i >= tau}; the best match always qualifies since max >= mean."""
    return np.asarray(r) >= np.asarray(tau)[..., None] - TIE_TOLERANCE


def draw_weights(r: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unnormalised draw probabilities: r over the candidates, or uniform when a candidate has r <= 0."""
    r = np.asarray(r, dtype=np.float64)
    w = np.where(mask, r, 0.0)
    uniform = (mask & (r <= 0)).any(axis=-1)
    w[uniform] = mask[uniform].astype(np.float64)
    return w


def draw(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: the position i with cumsum_{<i} <= u * total < cumsum_{<=i}."""
    cum = np.cumsum(weights, axis=-1)
    target = np.asarray(u, dtype=np.float64) * cum[..., -1]
    pick = (cum > target[..., None]).argmax(axis=-1)
    return pick.astype(np.int64)


@dataclass(frozen=True)
class Selection:
    """Algorithm 1's outcome for n concepts: the chosen top-k position and the numbers behind it."""

    rank: np.ndarray  # (n,) position in the top-k row (0 = best match)
    score: np.ndarray  # (n, k) r = ssr(s)
    threshold: np.ndarray  # (n,) tau
    candidates: np.ndarray  # (n, k) bool
    weights: np.ndarray  # (n, k) unnormalised draw probabilities


def select(similarity: np.ndarray, u: np.ndarray) -> Selection:
    """Steps 2-4 of Algorithm 1 for rows of top-k similarities (best first) and one uniform per row."""
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"expected an (n, k>0) similarity matrix, got shape {s.shape}")
    r = ssr(s)
    tau = threshold(r)
    mask = candidate_mask(r, tau)
    w = draw_weights(r, mask)
    return Selection(rank=draw(w, u), score=r, threshold=tau, candidates=mask, weights=w)


# --- per-concept randomness ---------------------------------------------------------------------
def item_digest(seed: int, pair_id: str, concept_index: int) -> bytes:
    """A stable 32-byte hash of (seed, pair id, concept index); Python's hash() is salted per process."""
    return hashlib.sha256(f"{int(seed)}\x1f{pair_id}\x1f{int(concept_index)}".encode()).digest()


def digest_rng(digest: bytes) -> np.random.Generator:
    """PCG64 seeded through a SeedSequence of a concept's digest."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest, "little"))))


def item_rng(seed: int, pair_id: str, concept_index: int) -> np.random.Generator:
    """The generator of one concept of one pair."""
    return digest_rng(item_digest(seed, pair_id, concept_index))


@dataclass(frozen=True)
class ItemDraws:
    """Per-concept random numbers: the uniform of the candidate draw and the target loudness."""

    u: np.ndarray  # (n,) in [0, 1)
    target_lufs: np.ndarray  # (n,) ~ U(lufs_min, lufs_max)
    order: np.ndarray  # (n,) uint64, a pseudo-random global order used only by the reuse cap


def item_draws(
    seed: int, pair_ids: Sequence[str], concept_indices: Sequence[int], lufs_min: float, lufs_max: float
) -> ItemDraws:
    """First draw of each concept's generator picks the candidate, the second its target loudness."""
    if lufs_min > lufs_max:
        raise InputError(f"--lufs-min ({lufs_min}) must not exceed --lufs-max ({lufs_max})")
    n = len(pair_ids)
    u = np.empty(n, np.float64)
    lufs = np.empty(n, np.float64)
    order = np.empty(n, np.uint64)
    for i, (pid, ci) in enumerate(zip(pair_ids, concept_indices, strict=True)):
        digest = item_digest(seed, pid, ci)
        rng = digest_rng(digest)
        u[i] = rng.random()
        lufs[i] = rng.uniform(lufs_min, lufs_max)
        order[i] = int.from_bytes(digest[:8], "big")
    return ItemDraws(u=u, target_lufs=lufs, order=order)


# --- optional reuse cap (beyond the paper) ------------------------------------------------------
def preferences(selection: Selection) -> np.ndarray:
    """Top-k positions each concept would accept, best first: its draw, then the other candidates by rank.

    An (n, k) int array padded with -1. The threshold is the paper's relevance guarantee, so a cap
    never reaches below it.
    """
    k = selection.candidates.shape[1]
    key = np.where(selection.candidates, np.arange(k), k)  # non-candidates last
    np.put_along_axis(key, selection.rank[:, None], -1, axis=1)  # the draw first
    ranks = np.argsort(key, axis=1, kind="stable")
    return np.where(np.take_along_axis(key, ranks, 1) < k, ranks, -1)


def cap_reuse(
    order: np.ndarray, preferences: Sequence[Sequence[int]] | np.ndarray, max_reuse: int
) -> tuple[np.ndarray, np.ndarray]:
    """One global pass in `order`: each concept takes its first preferred clip used fewer than N times.

    `preferences[i]` lists pool rows (not ranks); negative entries are padding (so an (n, k) int
    array serves at a million images, where lists of Python ints would take gigabytes). Returns
    the chosen row per concept and whether the cap could not be met (every candidate already
    full: the concept keeps its own draw). The pass order comes from hashes of (seed, pair_id,
    concept index), not from shards, so the result is the same however the pairs are split; the
    cost is one sequential sweep.
    """
    if max_reuse < 1:
        raise InputError("--max-reuse must be at least 1")
    used: dict[int, int] = {}  # at most one entry per pool row
    chosen = np.empty(len(preferences), np.int64)
    overflow = np.zeros(len(preferences), bool)
    for i in np.argsort(order, kind="stable"):
        row_prefs = preferences[i]
        prefs = [r for r in (row_prefs.tolist() if isinstance(row_prefs, np.ndarray) else row_prefs) if r >= 0]
        pick = next((row for row in prefs if used.get(row, 0) < max_reuse), None)
        if pick is None:
            pick, overflow[i] = prefs[0], True
        used[pick] = used.get(pick, 0) + 1
        chosen[i] = pick
    return chosen, overflow
