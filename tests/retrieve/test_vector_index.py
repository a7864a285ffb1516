"""Top-k search: exact answers on constructed vectors, k beyond the pool, approximate recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonify_toolkit.errors import InputError
from sonify_toolkit.pool_files import PoolVectors
from sonify_toolkit.vector_index import (
    ExactIndex,
    IndexSpec,
    build_index,
    canonical_order,
    exact_topk,
    recall_at_k,
    search,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_exact_search_finds_constructed_neighbours() -> None:
    pool = np.eye(4, dtype=np.float32)
    q = unit(np.array([[0.8, 0.6, 0.0, 0.0]]))
    scores, rows = search(build_index(pool, IndexSpec()), q, 2)
    assert rows.tolist() == [[0, 1]]
    np.testing.assert_allclose(scores, [[0.8, 0.6]], atol=1e-6)


def test_k_larger_than_the_pool_returns_the_whole_pool() -> None:
    pool = unit(np.random.default_rng(0).standard_normal((5, 8)))
    scores, rows = search(build_index(pool, IndexSpec()), pool[:2], 16)
    assert rows.shape == (2, 5)
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ties_are_broken_by_pool_row() -> None:
    s, r = canonical_order(np.array([[0.5, 0.5, 0.9]], np.float32), np.array([[7, 3, 9]]))
    assert r.tolist() == [[9, 3, 7]]
    assert s.tolist() == [[pytest.approx(0.9), 0.5, 0.5]]


def test_exact_kinds_agree_and_scores_are_recomputed_in_float64() -> None:
    rng = np.random.default_rng(1)
    pool, q = unit(rng.standard_normal((300, 16))), unit(rng.standard_normal((20, 16)))
    s_torch, a = search(build_index(pool, IndexSpec()), q, 10, pool)
    s_faiss, b = search(build_index(pool, IndexSpec("flat")), q, 10, pool)
    _, c = exact_topk(pool, q, 10)
    assert np.array_equal(a, b) and recall_at_k(a, c) == 1.0
    assert np.array_equal(s_torch, s_faiss)  # same rows -> bit-identical stored similarities
    expected = np.einsum("nkd,nd->nk", pool[a].astype(np.float64), q.astype(np.float64)).astype(np.float32)
    assert np.array_equal(s_torch, expected)


def test_exact_index_searches_in_blocks() -> None:
    rng = np.random.default_rng(4)
    pool, q = unit(rng.standard_normal((50, 8))), unit(rng.standard_normal((7, 8)))
    small = ExactIndex(pool, block_floats=100)  # two queries per block
    assert small.block == 2
    _, a = search(small, q, 5, pool)
    _, b = exact_topk(pool, q, 5)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("spec", [IndexSpec("ivf", nlist=16, nprobe=8), IndexSpec("hnsw", ef_search=64)])
def test_approximate_indexes_have_high_recall(spec: IndexSpec) -> None:
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((16, 32))
    pool = unit(centers[rng.integers(0, 16, 2000)] + 0.3 * rng.standard_normal((2000, 32)))
    q = unit(centers[rng.integers(0, 16, 50)] + 0.3 * rng.standard_normal((50, 32)))
    _, approx = search(build_index(pool, spec), q, 10, pool)
    _, exact = exact_topk(pool, q, 10)
    assert approx.shape == (50, 10)
    assert recall_at_k(approx, exact) > 0.8


def test_unknown_index_kind_is_refused() -> None:
    with pytest.raises(InputError, match="unknown --index"):
        IndexSpec("annoy")


def write_shards(tmp_path: Path, pool: np.ndarray, sizes: list[int]) -> PoolVectors:
    paths = []
    for i, (a, b) in enumerate(zip(np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True)):
        paths.append(tmp_path / f"{i:05d}.npy")
        np.save(paths[-1], pool[a:b])
    return PoolVectors(paths)


def test_memory_mapped_pool_reads_like_the_array(tmp_path: Path) -> None:
    pool = unit(np.random.default_rng(5).standard_normal((37, 8)))
    mapped = write_shards(tmp_path, pool, [10, 0, 20, 7])
    assert mapped.shape == (37, 8) and len(mapped) == 37
    assert np.array_equal(np.asarray(mapped), pool)
    rows = np.array([[36, 0], [10, 29]])
    assert np.array_equal(mapped[rows], pool[rows])
    blocks = list(mapped.blocks(4))
    assert [s for s, _ in blocks] == list(range(0, 37, 4))  # full blocks, gathered across shard files
    assert [len(b) for _, b in blocks] == [4] * 9 + [1]
    assert np.array_equal(np.concatenate([b for _, b in mapped.blocks(4)]), pool)


@pytest.mark.parametrize("half", [False, True])
def test_streamed_search_over_the_memory_map_is_byte_identical_to_the_in_memory_search(
    tmp_path: Path, half: bool
) -> None:
    """Blocked (and half-precision) search over shard memory maps == one in-memory matrix product + float64."""
    rng = np.random.default_rng(6)
    pool, q = unit(rng.standard_normal((700, 32))), unit(rng.standard_normal((40, 32)))
    pool[5] = pool[6]  # an exact tie: broken by pool row, as on the CPU
    q[0] = pool[5]
    mapped = write_shards(tmp_path, pool, [300, 250, 150])
    in_memory = search(build_index(pool, IndexSpec()), q, 10, pool)
    streamed = search(ExactIndex(mapped, pool_block_rows=64, block_floats=64 * 8, half=half), q, 10, mapped)
    assert streamed[0].tobytes() == in_memory[0].tobytes() and streamed[1].tobytes() == in_memory[1].tobytes()
    assert streamed[1][0, :2].tolist() == [5, 6]
    _, ref_rows = exact_topk(pool, q, 10)
    assert np.array_equal(streamed[1], ref_rows)
    expected = np.einsum("nkd,nd->nk", pool[ref_rows].astype(np.float64), q.astype(np.float64)).astype(np.float32)
    assert streamed[0].tobytes() == expected.tobytes()


def test_faiss_indexes_are_built_from_the_memory_map_in_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    pool, q = unit(rng.standard_normal((300, 16))), unit(rng.standard_normal((5, 16)))
    mapped = write_shards(tmp_path, pool, [100, 200])
    a = search(build_index(mapped, IndexSpec("flat")), q, 5, mapped)
    b = search(build_index(pool, IndexSpec("flat")), q, 5, pool)
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
